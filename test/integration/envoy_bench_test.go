package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// BenchmarkEnvoyEdit measures, with one real Envoy gateway (--concurrency
// 1) fed by the in-process server on a folder, what an operator waits for
// after editing a file: the time from the write until the gateway's own
// /config_dump shows the edited resource, active, at the version the
// edit produced. Every destination is an SNI passthrough to a STATIC
// endpoint (no DNS), 100 per ConfigMap file. Each iteration edits one
// destination of one file:
//   - edit=cluster changes its connect timeout: one cluster (CDS) and, sent
//     again with it, its endpoints (EDS);
//   - edit=listener changes its connection rate limit: one filter chain
//     of the TLS listener (LDS, and the forward proxy's routes).
//
// It reports p50 and p90 over the iterations (ms; the clock includes the
// folder watcher's 100 ms debounce and the builder's 20 ms), the p50 of
// when the server had published the version and the gateway ACKed it, the
// gateway's
// server.memory_allocated and memory_heap_size once the destinations are
// loaded (MiB), and how long that initial load took (s).
//
//	go test ./test/integration -run '^$' -bench BenchmarkEnvoyEdit -benchtime 10x -timeout 40m
//
// CI (.ci/run) runs destinations=1000 once (about 10 s): the 10,000 case
// takes minutes on 2 cores.
func BenchmarkEnvoyEdit(b *testing.B) {
	bin := envoytest.Find(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("destinations=%d", n), func(b *testing.B) {
			f := newEditFixture(b, bin, n)
			b.Run("edit=cluster", func(b *testing.B) { f.run(b, f.editCluster) })
			b.Run("edit=listener", func(b *testing.B) { f.run(b, f.editListener) })
		})
	}
}

const (
	benchPerFile = 100
	// statsFlush is Envoy's default stats_flush_interval (the bootstrap
	// sets none).
	statsFlush = 5 * time.Second
)

type editFixture struct {
	srv      *server.Server
	admin    string // the gateway's admin address
	dir      string
	n        int
	tlsPort  uint32
	edits    int            // edits so far: picks the destination and the new value
	timeout  map[int]int    // destination -> connect timeout (ms) set by an edit
	limit    map[int]int    // destination -> rate limit tokens set by an edit
	loadTime time.Duration  // from Envoy's start to every destination active
	memory   map[string]int // server.memory_* gauges after the load
	// marks are when the current edit was first seen published by the
	// server and ACKed by the gateway.
	marks map[string]time.Time
}

func (f *editFixture) mark(what string) {
	if _, ok := f.marks[what]; !ok {
		f.marks[what] = time.Now()
	}
}

func newEditFixture(b *testing.B, bin envoytest.Binary, n int) *editFixture {
	b.Helper()
	ports, err := benchPorts(2)
	if err != nil {
		b.Fatal(err)
	}
	f := &editFixture{dir: filepath.Join(b.TempDir(), "config"), n: n, tlsPort: ports[0],
		timeout: map[int]int{}, limit: map[int]int{}}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for file := 0; file < n/benchPerFile; file++ {
		if err := f.write(file); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Config{
		ConfigDir: f.dir, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", ShutdownGrace: time.Second,
		Translate: translate.Options{ListenerAddress: "127.0.0.1", ForwardProxyPort: ports[1], PortMap: map[uint32]uint32{443: f.tlsPort}},
		Log:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); _ = srv.Wait() })
	f.srv = srv
	boot, err := localBootstrap("bench-gateway", srv.XDSAddr)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	f.admin = envoytest.Serve(b, bin, string(boot), "--service-node", "bench-gateway", "--service-cluster", group)
	if err := retry(10*time.Minute, f.loaded); err != nil {
		b.Fatalf("the gateway did not load %d destinations: %v", n, err)
	}
	f.loadTime = time.Since(start)
	// Envoy sets the memory gauges when it flushes stats, every 5 s:
	// wait for a flush after the load.
	time.Sleep(statsFlush + time.Second)
	if f.memory, err = f.gauges(`^server\.memory_(allocated|heap_size)$`); err != nil {
		b.Fatal(err)
	}
	if f.memory["server.memory_allocated"] == 0 {
		b.Fatalf("the gateway reports no server.memory_allocated: %v", f.memory)
	}
	return f
}

// run times b.N edits and reports the fixture's figures.
func (f *editFixture) run(b *testing.B, edit func() (wait func() error, err error)) {
	var took, published, acked []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		f.marks = map[string]time.Time{}
		wait, err := edit()
		if err == nil {
			err = poll(time.Minute, wait)
		}
		if err != nil {
			b.Fatalf("edit %d: %v", f.edits, err)
		}
		took = append(took, time.Since(start))
		published = append(published, f.marks["published"].Sub(start))
		acked = append(acked, f.marks["acked"].Sub(start))
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	pct := func(ds []time.Duration, p int) float64 {
		slices.Sort(ds)
		return ms(ds[min(len(ds)-1, len(ds)*p/100)])
	}
	b.ReportMetric(pct(took, 50), "p50-ms")
	b.ReportMetric(pct(took, 90), "p90-ms")
	// Where the time goes (p50): until the server published the version,
	// and until the gateway ACKed it.
	b.ReportMetric(pct(published, 50), "published-p50-ms")
	b.ReportMetric(pct(acked, 50), "acked-p50-ms")
	b.ReportMetric(float64(f.memory["server.memory_allocated"])/(1<<20), "envoy-alloc-MiB")
	b.ReportMetric(float64(f.memory["server.memory_heap_size"])/(1<<20), "envoy-heap-MiB")
	b.ReportMetric(f.loadTime.Seconds(), "load-s")
}

// editCluster changes one destination's connect timeout; wait succeeds
// once the gateway has that cluster active at the new CDS version.
func (f *editFixture) editCluster() (func() error, error) {
	d, v := f.next()
	f.timeout[d] = 1000 + v
	old := f.version(resourcev3.ClusterType)
	if err := f.write(d / benchPerFile); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("bench/bench-%03d/d%05d/443", d/benchPerFile, d)
	want := time.Duration(f.timeout[d]) * time.Millisecond
	return func() error {
		cur := f.version(resourcev3.ClusterType)
		if cur == old {
			return fmt.Errorf("CDS still at %s on the server", old)
		}
		f.mark("published")
		// Envoy is asked only once it has ACKed: polling its admin
		// (the main thread, which applies xDS too) sooner would slow
		// what is measured.
		if !f.acked(resourcev3.ClusterType, cur) {
			return fmt.Errorf("CDS %s not ACKed yet", cur)
		}
		f.mark("acked")
		var dump struct {
			Configs []struct {
				Version string `json:"version_info"`
				Cluster struct {
					ConnectTimeout string `json:"connect_timeout"`
				} `json:"cluster"`
			} `json:"configs"`
		}
		if err := f.getJSON("/config_dump?resource=dynamic_active_clusters&mask=version_info,cluster.connect_timeout&name_regex="+
			url.QueryEscape("^"+regexpQuote(name)+"$"), &dump); err != nil {
			return err
		}
		if len(dump.Configs) != 1 || dump.Configs[0].Version != cur {
			return fmt.Errorf("cluster %s: %+v, want version %s", name, dump.Configs, cur)
		}
		if got, err := time.ParseDuration(dump.Configs[0].Cluster.ConnectTimeout); err != nil || got != want {
			return fmt.Errorf("cluster %s: %+v, want version %s with connect_timeout %s", name, dump.Configs, cur, want)
		}
		return nil
	}, nil
}

// editListener changes one destination's connection rate limit; wait
// succeeds once the gateway's TLS listener was replaced (its last_updated
// moved; nothing warming) by the LDS version the edit produced. Envoy
// updates only the changed filter chains in place and then keeps the
// listener's version_info as it was: last_updated and
// listener_manager.lds.version_text are what show the new version.
func (f *editFixture) editListener() (func() error, error) {
	d, v := f.next()
	f.limit[d] = 10 + v
	old := f.version(resourcev3.ListenerType)
	name := fmt.Sprintf("tls_%d", f.tlsPort)
	before, _, err := f.listenerState(name)
	if err != nil {
		return nil, err
	}
	if err := f.write(d / benchPerFile); err != nil {
		return nil, err
	}
	return func() error {
		cur := f.version(resourcev3.ListenerType)
		if cur == old {
			return fmt.Errorf("LDS still at %s on the server", old)
		}
		f.mark("published")
		// Envoy is asked only once it has ACKed: polling its admin
		// (the main thread, which applies xDS too) sooner would slow
		// what is measured.
		if !f.acked(resourcev3.ListenerType, cur) {
			return fmt.Errorf("LDS %s not ACKed yet", cur)
		}
		f.mark("acked")
		updated, warming, err := f.listenerState(name)
		if err != nil {
			return err
		}
		if updated == before || warming {
			return fmt.Errorf("listener %s: last updated %s (before the edit %s), warming %v", name, updated, before, warming)
		}
		body, err := f.get("/stats?type=TextReadouts&filter=" + url.QueryEscape(`^listener_manager\.lds\.version_text$`))
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("listener_manager.lds.version_text: %q", cur); strings.TrimSpace(string(body)) != want {
			return fmt.Errorf("the gateway says %q, want %s", body, want)
		}
		return nil
	}, nil
}

// listenerState is when the gateway last replaced a listener, and whether
// a new one is warming.
func (f *editFixture) listenerState(name string) (updated string, warming bool, err error) {
	var dump struct {
		Configs []struct {
			Active *struct {
				Updated string `json:"last_updated"`
			} `json:"active_state"`
			Warming *struct {
				Updated string `json:"last_updated"`
			} `json:"warming_state"`
		} `json:"configs"`
	}
	if err := f.getJSON("/config_dump?resource=dynamic_listeners&mask=active_state.last_updated,warming_state.last_updated&name_regex="+
		url.QueryEscape("^"+name+"$"), &dump); err != nil {
		return "", false, err
	}
	if len(dump.Configs) != 1 || dump.Configs[0].Active == nil {
		return "", false, fmt.Errorf("listener %s is not active: %+v", name, dump.Configs)
	}
	return dump.Configs[0].Active.Updated, dump.Configs[0].Warming != nil, nil
}

// poll retries f every 5 ms (retry's 100 ms would blur the figures),
// until timeout.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// benchPorts returns n ports free on 127.0.0.1, distinct.
func benchPorts(n int) ([]uint32, error) {
	var out []uint32
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, uint32(l.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}

// next picks the destination of the next edit and a value no earlier edit used.
func (f *editFixture) next() (dest, value int) {
	f.edits++
	return (f.edits * 37) % f.n, f.edits
}

// acked reports whether the gateway ACKed version of a type, as the
// server saw it.
func (f *editFixture) acked(typeURL, version string) bool {
	for _, p := range f.srv.XDS.Proxies.List() {
		if ts := p.Types[typeURL]; p.NodeID == "bench-gateway" && ts != nil && ts.Acked == version {
			return true
		}
	}
	return false
}

func (f *editFixture) version(typeURL string) string {
	return f.srv.Cache.Snapshot(group).Type(typeURL).Version
}

// write renders one ConfigMap file with its destinations' edits, atomically.
func (f *editFixture) write(file int) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bench-%03d, namespace: bench, labels: {egress-xds.io/intent: \"true\"}}\ndata:\n  egress.yaml: |\n    gateways: [%s]\n    destinations:\n", file, group)
	for d := file * benchPerFile; d < (file+1)*benchPerFile; d++ {
		fmt.Fprintf(&sb, "      - {name: d%05d, host: d%05d.bench.example, ports: [{number: 443, protocol: TLS}], endpoints: [{address: 127.0.0.1, port: 9}]", d, d)
		if ms, ok := f.timeout[d]; ok {
			fmt.Fprintf(&sb, ", connectionPool: {connectTimeout: %dms}", ms)
		}
		if n, ok := f.limit[d]; ok {
			fmt.Fprintf(&sb, ", rateLimit: {maxTokens: %d, fillInterval: 1s}", n)
		}
		sb.WriteString("}\n")
	}
	path := filepath.Join(f.dir, fmt.Sprintf("bench-%03d.yaml", file))
	tmp := filepath.Join(f.dir, fmt.Sprintf(".bench-%03d.tmp", file))
	if err := os.WriteFile(tmp, []byte(sb.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// loaded: every destination's cluster active, both listeners active,
// nothing warming.
func (f *editFixture) loaded() error {
	g, err := f.gauges(`^(listener_manager\.total_listeners_(active|warming)|cluster_manager\.(active|warming)_clusters)$`)
	if err != nil {
		return err
	}
	// Plus the bootstrap's xds_cluster.
	if g["cluster_manager.active_clusters"] < f.n+1 || g["cluster_manager.warming_clusters"] > 0 ||
		g["listener_manager.total_listeners_active"] < 2 || g["listener_manager.total_listeners_warming"] > 0 {
		return fmt.Errorf("not loaded: %v", g)
	}
	return nil
}

// gauges reads the gateway's gauges matching filter (type=Gauges: without
// it Envoy walks every counter of 10,000 clusters too).
func (f *editFixture) gauges(filter string) (map[string]int, error) {
	body, err := f.get("/stats?type=Gauges&filter=" + url.QueryEscape(filter))
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(body), "\n") {
		if name, v, ok := strings.Cut(line, ": "); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				out[name] = n
			}
		}
	}
	return out, nil
}

func (f *editFixture) get(path string) ([]byte, error) {
	resp, err := (&http.Client{Timeout: requestTimeout}).Get("http://" + f.admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, body)
	}
	return body, err
}

func (f *editFixture) getJSON(path string, v any) error {
	body, err := f.get(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}
