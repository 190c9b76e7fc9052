package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// gatewayStack is one xds-server in-process on a folder, one real Envoy
// gateway, and the upstream its destinations reach.
type gatewayStack struct {
	srv      *server.Server
	gw       *localGateway
	dir      string
	up       *net.TCPAddr // the upstream every destination reaches
	logs     *syncBuffer
	httpPort uint32 // the gateway's listener of declared port 80
	tcpPort  uint32 // of declared port 5432
}

const stackNode = "nack-gateway"

// webIntent declares web.example.com over HTTP, and with tcp also a TCP
// destination on port 5432, both to the upstream at up; webExtra are
// more fields of web (YAML flow, e.g. "connectionPool: {connectTimeout: 2s}").
func webIntent(up *net.TCPAddr, tcp bool, webExtra string) string {
	s := fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: apps, labels: {egress-xds.io/intent: "true"}}
data:
  egress.yaml: |
    gateways: [%s]
    destinations:
      - name: web
        host: web.example.com
        ports: [{number: 80, protocol: HTTP}]
        endpoints: [{address: 127.0.0.1, port: %d}]
`, group, up.Port)
	if webExtra != "" {
		s += "        " + webExtra + "\n"
	}
	if tcp {
		s += fmt.Sprintf(`      - name: db
        host: db.example.com
        ports: [{number: 5432, protocol: TCP}]
        endpoints: [{address: 127.0.0.1, port: %d}]
`, up.Port)
	}
	return s
}

func newGatewayStack(t *testing.T, bin envoytest.Binary) *gatewayStack {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream answered %s", r.Host)
	}))
	t.Cleanup(up.Close)
	ports := freePorts(t, 3)
	s := &gatewayStack{dir: filepath.Join(t.TempDir(), "config"), up: up.Listener.Addr().(*net.TCPAddr), logs: &syncBuffer{},
		httpPort: ports[0], tcpPort: ports[1]}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeIntent(t, s.dir, "web", webIntent(s.up, false, ""))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Config{
		ConfigDir: s.dir, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", ShutdownGrace: time.Second,
		Translate: translate.Options{ListenerAddress: "127.0.0.1", ForwardProxyPort: ports[2],
			PortMap: map[uint32]uint32{80: s.httpPort, 5432: s.tcpPort}},
		Log: slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("xds-server log:\n%s", tail(s.logs.String(), 40))
		}
	})
	s.srv = srv
	s.gw = startLocalGateway(t, bin.Path, stackNode, srv.XDSAddr)
	if err := waitReady(s.gw, 2); err != nil {
		t.Fatalf("gateway not ready: %v\n%s", err, tail(s.gw.stderr.String(), 40))
	}
	return s
}

// get sends one request for web.example.com through the gateway's port.
func (s *gatewayStack) get(port uint32) (string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(int(port))+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = "web.example.com"
	resp, err := (&http.Client{Timeout: requestTimeout, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "upstream answered web.example.com" {
		return "", fmt.Errorf("%s %q", resp.Status, body)
	}
	return string(body), nil
}

func (s *gatewayStack) mustPass(t *testing.T, port uint32, when string) {
	t.Helper()
	if err := retry(waitTimeout, func() error { _, err := s.get(port); return err }); err != nil {
		t.Fatalf("%s: traffic through the gateway's port %d: %v", when, port, err)
	}
}

// listenerStatus is the gateway's Listener status as /debug/status serves it.
func (s *gatewayStack) listenerStatus(t *testing.T) xds.TypeSyncStatus {
	t.Helper()
	var out []xds.ProxyStatus
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+s.srv.AdminAddr+"/debug/status?node="+stackNode)), &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("/debug/status lists %d proxies for node %s, want 1", len(out), stackNode)
	}
	return out[0].Types["Listener"]
}

func (s *gatewayStack) waitListener(t *testing.T, what string, ok func(xds.TypeSyncStatus) bool) xds.TypeSyncStatus {
	t.Helper()
	var st xds.TypeSyncStatus
	err := retry(waitTimeout, func() error {
		st = s.listenerStatus(t)
		if !ok(st) {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for the gateway's listeners to be %s: %+v", what, st)
	}
	return st
}

// envoyListeners is what the gateway itself says of its listeners in
// /config_dump: the LDS version it accepted last, and per listener the
// version active and Envoy's error for the last update it refused.
type envoyListeners struct {
	version string
	active  map[string]string
	errors  map[string]string
}

func listenersOf(gw gateway) (envoyListeners, error) {
	body, err := gw.admin("/config_dump?resource=dynamic_listeners")
	if err != nil {
		return envoyListeners{}, err
	}
	var dump struct {
		Configs []struct {
			Name   string `json:"name"`
			Active struct {
				Version string `json:"version_info"`
			} `json:"active_state"`
			Error *struct {
				Details string `json:"details"`
			} `json:"error_state"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		return envoyListeners{}, fmt.Errorf("config_dump: %w", err)
	}
	out := envoyListeners{active: map[string]string{}, errors: map[string]string{}}
	for _, l := range dump.Configs {
		out.active[l.Name] = l.Active.Version
		if l.Error != nil {
			out.errors[l.Name] = l.Error.Details
		}
	}
	v, err := gw.admin("/stats?filter=" + "^listener_manager\\.lds\\.version_text$")
	if err != nil {
		return envoyListeners{}, err
	}
	_, text, _ := strings.Cut(strings.TrimSpace(string(v)), ": ")
	out.version = strings.Trim(text, `"`)
	return out, nil
}

// A real NACK, end to end: the test injects into one version a listener
// that passes every check of ours but that Envoy refuses (two filter
// chains with the same match). Envoy's own error text and the ConfigMap
// the listener comes from are in /debug/status, `xds-server status`, the
// log and the NACK metric; the gateway keeps serving the version it
// accepted before; without the injection the next version is ACKed.
func TestEnvoyNACK(t *testing.T) {
	bin := envoytest.Find(t)
	s := newGatewayStack(t, bin)
	s.mustPass(t, s.httpPort, "before the injection")
	good := s.waitListener(t, "SYNCED", func(st xds.TypeSyncStatus) bool { return st.State == xds.Synced })
	listener := fmt.Sprintf("http_%d", s.httpPort)

	remove := snapshot.InjectForTest(t, s.srv.Builder, func(_ string, res *translate.Resources) {
		for i, l := range res.Listeners {
			if l.GetName() == listener {
				l = proto.Clone(l).(*listenerv3.Listener)
				dup := proto.Clone(l.FilterChains[0]).(*listenerv3.FilterChain)
				dup.Name += "-duplicate"
				l.FilterChains = append(l.FilterChains, dup)
				res.Listeners[i] = l
			}
		}
	})
	nacked := s.waitListener(t, "NACKED", func(st xds.TypeSyncStatus) bool { return st.State == xds.NACKed })
	t.Logf("Envoy's NACK: %q", nacked.NACKError)

	// Envoy's own words: the error it keeps on the listener it refused.
	var held envoyListeners
	err := retry(waitTimeout, func() error {
		var err error
		if held, err = listenersOf(s.gw); err != nil {
			return err
		}
		if held.errors[listener] == "" {
			return fmt.Errorf("no error_state on %s: %+v", listener, held)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	envoyErr := held.errors[listener]
	if !strings.Contains(nacked.NACKError, envoyErr) || !strings.Contains(envoyErr, "has the same matching rules defined as") {
		t.Errorf("/debug/status has NACK error %q; Envoy's config_dump says %q", nacked.NACKError, envoyErr)
	}
	if nacked.NACKedVersion != nacked.Current || nacked.Acked != good.Acked {
		t.Errorf("status: rejected %s (current %s), acked %s (want the last good %s)", nacked.NACKedVersion, nacked.Current, nacked.Acked, good.Acked)
	}
	if strings.Join(nacked.NACKSources, ",") != "apps/web" {
		t.Errorf("the NACK traces to %v, want [apps/web]", nacked.NACKSources)
	}

	// The gateway keeps serving what it accepted last.
	if held.version != good.Acked || held.active[listener] != good.Acked {
		t.Errorf("the gateway holds LDS %s, %s at %s; want the last accepted %s", held.version, listener, held.active[listener], good.Acked)
	}
	s.mustPass(t, s.httpPort, "while the gateway refuses the injected version")
	if n := gatewayStat(t, s.gw, "listener_manager.lds.update_rejected"); n != 1 {
		t.Errorf("the gateway counted %d rejected LDS updates, want 1", n)
	}

	// The command operators run, against this server.
	out := xdsServer(t, "status", "--admin-address", s.srv.AdminAddr)
	for _, want := range []string{
		"NACKED (" + nacked.NACKedVersion[:8] + ")",
		stackNode + " (" + group + ") LDS version " + nacked.NACKedVersion[:8] + ": " + nacked.NACKError,
		"from ConfigMaps: apps/web",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("xds-server status lacks %q:\n%s", want, out)
		}
	}
	// The log line and the metric.
	logged := false
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(line, `msg="proxy rejected configuration (NACK)"`) && strings.Contains(line, "error="+strconv.Quote(nacked.NACKError)) &&
			strings.Contains(line, "configmaps=[apps/web]") && strings.Contains(line, "node="+stackNode) {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no NACK log line with Envoy's error and the ConfigMap:\n%s", tail(s.logs.String(), 20))
	}
	wantMetric := `egress_xds_nacks_total{group="` + group + `",type="Listener"} 1`
	if m := httpGet(t, "http://"+s.srv.AdminAddr+"/metrics"); !strings.Contains(m, wantMetric+"\n") {
		t.Errorf("/metrics lacks %s", wantMetric)
	}

	// Without the injection the served version is the one the gateway
	// holds again: SYNCED, nothing to send.
	remove()
	s.waitListener(t, "SYNCED again", func(st xds.TypeSyncStatus) bool { return st.State == xds.Synced && st.Acked == good.Acked })
	// The next version, a TCP destination added, is ACKed and applied.
	writeIntent(t, s.dir, "web", webIntent(s.up, true, ""))
	next := s.waitListener(t, "SYNCED at a new version", func(st xds.TypeSyncStatus) bool {
		return st.State == xds.Synced && st.Acked != good.Acked
	})
	s.mustPass(t, s.tcpPort, "the version after the NACK")
	s.mustPass(t, s.httpPort, "the version after the NACK")
	if err := retry(waitTimeout, func() error {
		h, err := listenersOf(s.gw)
		if err == nil && h.version != next.Acked {
			err = fmt.Errorf("the gateway holds LDS %s, want %s", h.version, next.Acked)
		}
		return err
	}); err != nil {
		t.Error(err)
	}
	if m := httpGet(t, "http://"+s.srv.AdminAddr+"/metrics"); !strings.Contains(m, wantMetric+"\n") {
		t.Errorf("more NACKs after the fix: /metrics lacks %s", wantMetric)
	}
}

// gatewayStat is one counter or gauge of a gateway, 0 when absent.
func gatewayStat(t *testing.T, gw gateway, name string) int64 {
	t.Helper()
	s, err := stats(gw, "^"+regexpQuote(name)+"$")
	if err != nil {
		t.Fatal(err)
	}
	return s[name]
}

// xdsServer runs the xds-server command from the repository root (go run,
// which caches the binary) and returns its output; exit 0 is required.
func xdsServer(t *testing.T, args ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to run xds-server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, append([]string{"run", "./cmd/xds-server"}, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xds-server %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
