package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

// newLocalEnvoyStack is the local Envoy run: newLocalStack plus one Envoy
// gateway process, subscribed with state-of-the-world xDS as the shipped
// bootstrap is. One only: every gateway of a group listens on the same
// ports, which local processes would share.
func newLocalEnvoyStack(t *testing.T, bin string) *stack {
	t.Helper()
	return newLocalEnvoyStackFor(t, bin, xdstest.SotW)
}

// newLocalEnvoyStackFor is newLocalEnvoyStack with a gateway subscribed
// with mode (SotW or delta xDS).
func newLocalEnvoyStackFor(t *testing.T, bin string, mode xdstest.Mode) *stack {
	t.Helper()
	s, fakes, ca := newLocalStack(t)
	gw := startLocalGatewayFor(t, bin, "it-gateway-1", s.xdsAddr, mode)
	s.gatewayProtocol = map[string]string{gw.id: mode.String()}
	if err := waitReady(gw, len(s.env.listeners())); err != nil {
		t.Fatalf("gateway not ready: %v\n%s", err, tail(gw.stderr.String(), 40))
	}
	s.traffic = &Traffic{env: s.env, gw: gw, proxy: gw, gateways: []gateway{gw}, ca: ca.Pool(), issuer: ca,
		fakes: "http://" + fakes.ControlAddr, dns: s.dns}
	return s
}

// localBootstrap is the bootstrap of a local gateway: egress-gateway.yaml
// rendered for node id, the control plane at xdsAddr, admin on a free
// loopback port.
func localBootstrap(id, xdsAddr string) ([]byte, error) {
	return localBootstrapFor(id, xdsAddr, xdstest.SotW)
}

// localBootstrapFor is localBootstrap subscribing with mode.
func localBootstrapFor(id, xdsAddr string, mode xdstest.Mode) ([]byte, error) {
	host, port, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	return bootstrap.Render(bootstrap.Params{NodeID: id, Cluster: group, XDSHost: host, XDSPort: p, AdminPort: -1, Delta: mode == xdstest.Delta})
}

// localGateway is an Envoy process on 127.0.0.1.
type localGateway struct {
	id             string
	stdout, stderr *syncBuffer
	adminAddr      string
}

func startLocalGateway(t *testing.T, bin, id, xdsAddr string) *localGateway {
	t.Helper()
	return startLocalGatewayFor(t, bin, id, xdsAddr, xdstest.SotW)
}

// startLocalGatewayFor is startLocalGateway subscribing with mode.
func startLocalGatewayFor(t *testing.T, bin, id, xdsAddr string, mode xdstest.Mode) *localGateway {
	t.Helper()
	dir := t.TempDir()
	boot, err := localBootstrapFor(id, xdsAddr, mode)
	if err != nil {
		t.Fatal(err)
	}
	bootPath, adminPath := filepath.Join(dir, "bootstrap.yaml"), filepath.Join(dir, "admin-address")
	if err := os.WriteFile(bootPath, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	gw := &localGateway{id: id, stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-c", bootPath, "--admin-address-path", adminPath,
		"--service-node", id, "--service-cluster", group, "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn",
		// Access logs reach stdout within 100 ms, not Envoy's 10 s.
		"--file-flush-interval-msec", "100")
	cmd.Stdout, cmd.Stderr = gw.stdout, gw.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("%s stderr:\n%s", id, tail(gw.stderr.String(), 40))
		}
	})
	err = retry(30*time.Second, func() error {
		select {
		case <-exited:
			return errors.New("envoy exited")
		default:
		}
		b, err := os.ReadFile(adminPath)
		if err != nil || len(b) == 0 {
			return fmt.Errorf("no admin address yet: %v", err)
		}
		gw.adminAddr = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", id, err, tail(gw.stderr.String(), 40))
	}
	return gw
}

func (g *localGateway) name() string { return g.id }

func (g *localGateway) addr(port uint32) (string, error) {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), nil
}

func (g *localGateway) admin(path string) ([]byte, error) {
	resp, err := (&http.Client{Timeout: requestTimeout}).Get("http://" + g.adminAddr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func (g *localGateway) logs() (string, error) { return g.stdout.String(), nil }
