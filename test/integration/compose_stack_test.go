package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// Service names and ports of docker-compose.yaml the harness relies on
// (TestComposeFile checks them).
const (
	svcXDS       = "xds-server"
	svcGateway1  = "egress-gateway-1" // the external names resolve to it
	svcGateway2  = "egress-gateway-2" // the explicit proxy of the client
	svcFakes     = fakesHost
	svcClient    = "client"
	svcRateLimit = "ratelimit"
	svcRedis     = "redis"
	xdsPort      = 18000
	adminPort    = 9090
)

// dockerMissing says why the compose stack cannot run here; "" when it can.
func dockerMissing() string {
	if _, err := exec.LookPath("docker"); err != nil {
		return "no docker command on PATH"
	}
	for _, args := range [][]string{{"info", "--format", "{{.ServerVersion}}"}, {"compose", "version"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Sprintf("`docker %s` failed: %v: %s", strings.Join(args, " "), err, firstLine(out))
		}
	}
	return ""
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// composeProject runs docker compose on the repository's file, with the
// scenario intents and the test CA in folders of the test
// (EGRESS_XDS_INTENTS, EGRESS_XDS_CERTS).
type composeProject struct {
	file, name string
	env        []string
	mu         sync.Mutex
	ports      map[string]string
}

func (p *composeProject) run(timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"compose", "-f", p.file, "-p", p.name}, args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("docker compose %s: %v\n%s", strings.Join(args, " "), err, tail(stderr.String(), 30))
	}
	return stdout.Bytes(), nil
}

// port is the loopback address docker published a container port on.
func (p *composeProject) port(service string, port uint32) (string, error) {
	key := fmt.Sprint(service, "/", port)
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.ports[key]; ok {
		return a, nil
	}
	out, err := p.run(time.Minute, "port", service, fmt.Sprint(port))
	if err != nil {
		return "", err
	}
	a := strings.TrimSpace(string(out))
	p.ports[key] = a
	return a, nil
}

func (p *composeProject) mustPort(t *testing.T, service string, port uint32) string {
	t.Helper()
	a, err := p.port(service, port)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newComposeStack brings the compose stack up on the scenario intents
// rendered for composeEnv, and takes it down after the test.
func newComposeStack(t *testing.T) *stack {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	intents, certs := filepath.Join(dir, "intents"), filepath.Join(dir, "certs")
	for _, d := range []string{intents, certs} {
		// The containers run as other users than the test.
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := fakeservices.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	if err := fakeservices.WriteCertsDir(certs, ca); err != nil {
		t.Fatal(err)
	}
	env := composeEnv()
	writeIntents(t, intents, env)
	p := &composeProject{file: filepath.Join(root, "docker-compose.yaml"), name: fmt.Sprintf("egress-xds-it-%d", os.Getpid()),
		env: []string{"EGRESS_XDS_INTENTS=" + intents, "EGRESS_XDS_CERTS=" + certs}, ports: map[string]string{}}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run(time.Minute, "logs", "--no-color", "--tail", "60")
			t.Logf("docker compose logs:\n%s", out)
		}
		if _, err := p.run(3*time.Minute, "down", "--volumes", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Error(err)
		}
	})
	if _, err := p.run(20*time.Minute, "up", "--detach", "--build", "--wait", "--wait-timeout", "300"); err != nil {
		t.Fatal(err)
	}
	s := &stack{env: env, intentsDir: intents, xdsAddr: p.mustPort(t, svcXDS, xdsPort),
		adminURL: "http://" + p.mustPort(t, svcXDS, adminPort)}
	gws := []gateway{&composeGateway{p: p, service: svcGateway1}, &composeGateway{p: p, service: svcGateway2}}
	for _, gw := range gws {
		if err := waitReady(gw, len(env.listeners())); err != nil {
			t.Fatalf("%s not ready: %v", gw.name(), err)
		}
	}
	s.traffic = &Traffic{env: env, gw: gws[0], proxy: gws[1], gateways: gws, ca: ca.Pool(), issuer: ca,
		fakes: "http://" + p.mustPort(t, svcFakes, fakeservices.ControlPort)}
	return s
}

// composeGateway is a gateway container; its admin interface listens on
// 127.0.0.1 inside the container only, so it is read through docker exec.
type composeGateway struct {
	p       *composeProject
	service string
}

// adminScript sends one GET to the admin port with the shell of the Envoy
// image ($1 is the path).
var adminScript = adminScriptFor(bootstrap.DefaultAdminPort)

func adminScriptFor(port int) string {
	return fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET %%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$1" >&3 && cat <&3`, port)
}

func (g *composeGateway) name() string { return g.service }

func (g *composeGateway) addr(port uint32) (string, error) { return g.p.port(g.service, port) }

func (g *composeGateway) admin(path string) ([]byte, error) {
	out, err := g.p.run(time.Minute, "exec", "-T", g.service, "bash", "-c", adminScript, "admin", path)
	if err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		return nil, fmt.Errorf("admin %s: %w", path, err)
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func (g *composeGateway) logs() (string, error) {
	out, err := g.p.run(time.Minute, "logs", "--no-color", "--no-log-prefix", g.service)
	return string(out), err
}
