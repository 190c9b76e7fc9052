package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

const group = "egress-gateway"

// syncBuffer is a log sink tests read while it is written.
type syncBuffer = xdstest.LogBuffer

type running struct {
	*server.Server
	log    *syncBuffer
	cancel context.CancelFunc
}

// start runs a control plane on dir, on loopback ports, until the test ends.
func start(t *testing.T, dir string) *running {
	t.Helper()
	return startWith(t, context.Background(), dir)
}

func startWith(t testing.TB, parent context.Context, dir string) *running {
	t.Helper()
	return startConfig(t, parent, server.Config{ConfigDir: dir})
}

// startConfig starts a server on loopback ports with cfg (its addresses,
// translation options, grace and log filled in) until the test ends.
func startConfig(t testing.TB, parent context.Context, cfg server.Config) *running {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(parent)
	cfg.XDSAddress, cfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0"
	if cfg.Translate.ForwardProxyPort == 0 {
		cfg.Translate.ForwardProxyPort = 3128
	}
	cfg.ShutdownGrace = time.Second
	cfg.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{Server: srv, log: logs, cancel: cancel}
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	if err := r.Wait(); err != nil {
		panic(err)
	}
}

// examples copies the repository's examples into a fresh folder.
func examples(t *testing.T) string { return xdstest.CopyFiles(t, "../../examples/*.yaml") }

func write(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func edit(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	write(t, path, strings.Replace(string(data), old, new, 1))
}

func timeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, r *running, mode xdstest.Mode, id string, opts ...func(*xdstest.Options)) *xdstest.Client {
	t.Helper()
	o := xdstest.Options{Address: r.XDSAddr, NodeID: id, NodeCluster: group, Mode: mode, Validator: xdstest.ProtoValidate}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := xdstest.Dial(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func served(t *testing.T, r *running) map[string]string {
	t.Helper()
	waitSnapshot(t, r)
	gs := r.Cache.Snapshot(group)
	if gs == nil {
		t.Fatal("no snapshot for the group")
	}
	return gs.Versions()
}

var modes = []xdstest.Mode{xdstest.SotW, xdstest.Delta}

// A gateway gets the full, consistent configuration of the examples, every
// resource valid, over SotW and over delta.
func TestGatewayGetsTheExamples(t *testing.T) {
	r := start(t, examples(t))
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			c := dial(t, r, mode, "gw-"+mode.String())
			if err := c.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasVersions(served(t, r)))); err != nil {
				t.Fatalf("%v\n%s", err, c.State())
			}
			st := c.State()
			want := map[string]int{resourcev3.ClusterType: 10, resourcev3.ListenerType: 4, resourcev3.RouteType: 2,
				resourcev3.EndpointType: 2, resourcev3.SecretType: 2}
			for typ, n := range want {
				if got := len(st.Type(typ).Resources); got != n {
					t.Errorf("%s: %d resources, want %d", xdstest.ShortType(typ), got, n)
				}
			}
			for _, name := range []string{"tls_443", "http_80", "tcp_5432", "forward_proxy_3128"} {
				if _, ok := st.Type(resourcev3.ListenerType).Resources[name]; !ok {
					t.Errorf("listener %s missing", name)
				}
			}
			if _, ok := st.Type(resourcev3.SecretType).Resources["apps/partner-client-cert"]; !ok {
				t.Error("the mTLS client certificate was not delivered over SDS")
			}
		})
	}
}

// An edit of a file reaches connected gateways as a new version of only the
// type that changed.
func TestFileEditReachesGateways(t *testing.T) {
	dir := examples(t)
	r := start(t, dir)
	c := dial(t, r, xdstest.SotW, "gw-1")
	before := served(t, r)
	if err := c.WaitFor(timeout(t), xdstest.HasVersions(before)); err != nil {
		t.Fatal(err)
	}
	edit(t, filepath.Join(dir, "tls-origination.yaml"), "timeout: 10s", "timeout: 20s")
	if err := c.WaitFor(timeout(t), func(s *xdstest.State) bool {
		rc, ok := s.Type(resourcev3.RouteType).Resources["http_80"].(*routev3.RouteConfiguration)
		if !ok {
			return false
		}
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() == "apps/external-api/external-api/80" {
				return vh.GetRoutes()[0].GetRoute().GetTimeout().AsDuration() == 20*time.Second
			}
		}
		return false
	}); err != nil {
		t.Fatalf("the new timeout never arrived: %v", err)
	}
	after := served(t, r)
	for _, typ := range snapshot.Types {
		changed := before[typ] != after[typ]
		if changed != (typ == resourcev3.RouteType) {
			t.Errorf("%s: version %s -> %s; only routes should change", xdstest.ShortType(typ), before[typ], after[typ])
		}
	}
}

// A NACK is logged with the proxy, type and Envoy's error, counted, and the
// rejected version is not pushed again; the next version is.
func TestNACKIsLoggedCountedAndDoesNotLoop(t *testing.T) {
	dir := examples(t)
	r := start(t, dir)
	reject := func(typeURL string, _ []proto.Message) error {
		if typeURL == resourcev3.ListenerType {
			return errors.New("Proto constraint validation failed: test rejects listeners")
		}
		return nil
	}
	c := dial(t, r, xdstest.SotW, "gw-nack", func(o *xdstest.Options) { o.Validator = reject })
	if err := c.WaitFor(timeout(t), func(s *xdstest.State) bool { return s.Type(resourcev3.ListenerType).NACKs >= 1 }); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, func() float64 { return testutil.ToFloat64(r.Metrics.NACKs.WithLabelValues(group, "Listener")) }, 1)
	if !strings.Contains(r.log.String(), "proxy rejected configuration (NACK)") || !strings.Contains(r.log.String(), "test rejects listeners") ||
		!strings.Contains(r.log.String(), "node=gw-nack") {
		t.Fatalf("NACK not logged with node and error:\n%s", r.log.String())
	}
	// No loop: the server stays silent on the rejected version.
	time.Sleep(500 * time.Millisecond)
	if n := c.State().Type(resourcev3.ListenerType).Responses; n != 1 {
		t.Fatalf("the rejected version was pushed %d times", n)
	}
	// A new version is pushed (and rejected again by this client).
	edit(t, filepath.Join(dir, "passthrough.yaml"), "host: api.github.com", "host: api2.github.com")
	if err := c.WaitFor(timeout(t), func(s *xdstest.State) bool { return s.Type(resourcev3.ListenerType).Responses == 2 }); err != nil {
		t.Fatal(err)
	}
}

// A restarted server on the same folder serves the same versions, and a
// gateway reconnecting with what it holds is sent nothing.
func TestRestartSendsNothingNew(t *testing.T) {
	dir := examples(t)
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			r1 := start(t, dir)
			c1 := dial(t, r1, mode, "gw-restart")
			v1 := served(t, r1)
			if err := c1.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasVersions(v1))); err != nil {
				t.Fatal(err)
			}
			held := c1.State()
			_ = c1.Close()
			r1.stop()

			r2 := start(t, dir)
			waitSnapshot(t, r2)
			if v2 := served(t, r2); !equal(v1, v2) {
				t.Fatalf("versions differ after restart:\n%v\n%v", v1, v2)
			}
			c2 := dial(t, r2, mode, "gw-restart", func(o *xdstest.Options) { o.Resume = held })
			// Give the server every chance to (wrongly) send something.
			time.Sleep(500 * time.Millisecond)
			if n := c2.State().TotalResourcesReceived(); n != 0 {
				t.Fatalf("reconnecting gateway was sent %d resources it already had:\n%s", n, c2.State())
			}
		})
	}
}

// Two servers on one folder serve identical versions.
func TestReplicasServeIdenticalVersions(t *testing.T) {
	dir := examples(t)
	a, b := start(t, dir), start(t, dir)
	waitSnapshot(t, a)
	waitSnapshot(t, b)
	if va, vb := served(t, a), served(t, b); !equal(va, vb) {
		t.Fatalf("replicas differ:\n%v\n%v", va, vb)
	}
}

// An invalid edit leaves what gateways are served unchanged and is
// reported with its field path.
func TestInvalidEditKeepsServedConfig(t *testing.T) {
	dir := examples(t)
	r := start(t, dir)
	c := dial(t, r, xdstest.SotW, "gw-invalid")
	before := served(t, r)
	if err := c.WaitFor(timeout(t), xdstest.HasVersions(before)); err != nil {
		t.Fatal(err)
	}
	edit(t, filepath.Join(dir, "database.yaml"), "number: 5432", "number: 70000")
	waitFor(t, "the error to be reported", func() bool {
		return strings.Contains(r.Builder.Diagnostics().Error(), "destinations[0].ports[0].number: 70000 is not a valid port")
	})
	write(t, filepath.Join(dir, "passthrough.yaml"), "this: [is not yaml")
	waitFor(t, "the broken file to be reported", func() bool {
		return strings.Contains(r.Builder.Diagnostics().Error(), "passthrough.yaml")
	})
	if after := served(t, r); !equal(before, after) {
		t.Fatalf("served config changed:\n%v\n%v", before, after)
	}
	body := get(t, "http://"+r.AdminAddr+"/debug/config")
	if !strings.Contains(body, `"field": "destinations[0].ports[0].number"`) {
		t.Fatalf("/debug/config does not show the problem:\n%s", body)
	}
	if n := c.State().Type(resourcev3.ClusterType).Responses; n != 1 {
		t.Fatalf("gateway was pushed %d cluster responses", n)
	}
}

// Delta clients receive only what changed.
func TestDeltaReceivesOnlyWhatChanged(t *testing.T) {
	dir := examples(t)
	r := start(t, dir)
	c := dial(t, r, xdstest.Delta, "gw-delta")
	if err := c.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasVersions(served(t, r)))); err != nil {
		t.Fatal(err)
	}
	before := c.State().Type(resourcev3.ClusterType).ResourcesReceived
	edit(t, filepath.Join(dir, "database.yaml"), "connectTimeout: 5s", "connectTimeout: 3s")
	if err := c.WaitFor(timeout(t), xdstest.HasVersions(servedEventually(t, r, resourcev3.ClusterType))); err != nil {
		t.Fatal(err)
	}
	if got := c.State().Type(resourcev3.ClusterType).ResourcesReceived - before; got != 1 {
		t.Fatalf("delta sent %d clusters for one changed cluster", got)
	}
}

// A gateway of a group no intent names gets a valid deny-all configuration
// at once: the forward proxy answering 403, nothing else.
func TestUnknownGroupGetsDenyAll(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../../examples/passthrough.yaml") // names gateways: [egress-gateway]
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "passthrough.yaml"), string(data))
	r := start(t, dir)
	c := dial(t, r, xdstest.SotW, "gw-other", func(o *xdstest.Options) { o.NodeCluster = "nobody" })
	if err := c.WaitFor(timeout(t), xdstest.Synced); err != nil {
		t.Fatal(err)
	}
	st := c.State()
	if len(st.Type(resourcev3.ClusterType).Resources) != 0 || len(st.Type(resourcev3.ListenerType).Resources) != 1 {
		t.Fatalf("unexpected config for an unknown group:\n%s", st)
	}
}

// The admin endpoints: health, readiness, metrics that pass the linter.
func TestAdminEndpoints(t *testing.T) {
	dir := examples(t)
	r := start(t, dir)
	waitSnapshot(t, r)
	c := dial(t, r, xdstest.SotW, "gw-admin")
	if err := c.WaitFor(timeout(t), xdstest.Synced); err != nil {
		t.Fatal(err)
	}
	// A change ACKed by the proxy, so that every histogram has samples
	// for the linter.
	edit(t, filepath.Join(dir, "tls-origination.yaml"), "timeout: 10s", "timeout: 20s")
	waitFor(t, "a convergence sample", func() bool {
		return histogramCount(t, r.Metrics.Registry, "egress_xds_convergence_seconds", nil) >= 1
	})
	if body := get(t, "http://"+r.AdminAddr+"/healthz"); body != "ok\n" {
		t.Fatalf("healthz: %q", body)
	}
	if body := get(t, "http://"+r.AdminAddr+"/readyz"); !strings.Contains(body, "ready") {
		t.Fatalf("readyz: %q", body)
	}
	waitMetric(t, func() float64 { return testutil.ToFloat64(r.Metrics.ConnectedProxies.WithLabelValues(group, "sotw")) }, 1)
	metrics := get(t, "http://"+r.AdminAddr+"/metrics")
	for _, m := range []string{"egress_xds_connected_proxies", "egress_xds_pushes_total", "egress_xds_acks_total",
		"egress_xds_snapshot_builds_total", "egress_xds_snapshot_version_info", "egress_xds_convergence_seconds",
		"egress_xds_push_size_bytes"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	problems, err := testutil.GatherAndLint(r.Metrics.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if body := get(t, "http://"+r.AdminAddr+"/debug/proxies"); !strings.Contains(body, `"node": "gw-admin"`) {
		t.Fatalf("/debug/proxies:\n%s", body)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitMetric(t *testing.T, value func() float64, want float64) {
	t.Helper()
	waitFor(t, "a metric", func() bool { return value() >= want })
}

func waitSnapshot(t *testing.T, r *running) {
	t.Helper()
	waitFor(t, "the first snapshot", func() bool {
		select {
		case <-r.Builder.Ready():
			return r.Cache.Snapshot(group) != nil
		default:
			return false
		}
	})
}

// servedEventually waits for a new version of typ and returns every type's.
func servedEventually(t *testing.T, r *running, typ string) map[string]string {
	t.Helper()
	old := served(t, r)[typ]
	waitFor(t, "a new "+typ, func() bool { return served(t, r)[typ] != old })
	return served(t, r)
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// The metrics address serves probes and Prometheus what they need, and
// nothing of /debug/: every tenant's destinations and allow lists stay on
// the admin address.
func TestMetricsAddressServesNoDebug(t *testing.T) {
	r := startConfig(t, context.Background(), server.Config{ConfigDir: examples(t), MetricsAddress: "127.0.0.1:0"})
	waitSnapshot(t, r)
	if r.MetricsAddr == "" || r.MetricsAddr == r.AdminAddr {
		t.Fatalf("metrics address %q (admin %q)", r.MetricsAddr, r.AdminAddr)
	}
	base := "http://" + r.MetricsAddr
	if body := get(t, base+"/healthz"); body != "ok\n" {
		t.Errorf("healthz: %q", body)
	}
	if body := get(t, base+"/readyz"); body != "ready\n" {
		t.Errorf("readyz: %q", body)
	}
	if body := get(t, base+"/metrics"); !strings.Contains(body, "egress_xds_snapshot_builds_total") {
		t.Errorf("/metrics lacks egress_xds_snapshot_builds_total")
	}
	for _, path := range []string{"/debug/config", "/debug/config_dump?group=" + group, "/debug/proxies", "/debug/status"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s on the metrics address: %s, want 404", path, resp.Status)
		}
		if body := get(t, "http://"+r.AdminAddr+path); len(body) < 2 {
			t.Errorf("%s on the admin address: %q", path, body)
		}
	}
}
