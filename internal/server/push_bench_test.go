package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

const (
	perConfigMap = 100
	// largeGatewaysEnv sets the gateways of the 10,000-destination case
	// (1,000 by default).
	largeGatewaysEnv = "EGRESS_XDS_BENCH_GATEWAYS"
	clientsEnv       = "EGRESS_XDS_BENCH_CLIENTS" // address|gateways|mode|timeout, set for the gateway process
	// envoyWindow is Envoy's default HTTP/2 initial stream and connection
	// window (Http2ProtocolOptions), which the gateway bootstrap keeps.
	envoyWindow = 256 << 20
	// pushProfileEnv names a file prefix for a CPU profile of the server
	// during the edits alone (PREFIX.sotw, PREFIX.delta), not the setup,
	// and of the gateway process (PREFIX.gateways.sotw, ...).
	pushProfileEnv = "EGRESS_XDS_PUSH_PROFILE"
	// startBatch gateways connect at a time, each batch once the one
	// before has its configuration.
	startBatch = 100
	// largeKeepalive is the xDS keepalive timeout of the 10,000-destination
	// case (see BenchmarkPush).
	largeKeepalive = 2 * time.Minute
)

// BenchmarkPush measures what an operator waits for: after one destination
// is edited, the time until every one of 1,000 gateways (real ADS streams
// on loopback, one connection each, as Envoys have) has ACKed the new
// version, with 1,000 SNI destinations; and the same with 10,000
// destinations (EGRESS_XDS_BENCH_GATEWAYS sets how many gateways; skipped
// with -short and in CI: its setup alone takes minutes). One gateway is a
// Client that decodes and validates everything, as Envoy; the others are
// xdstest.Gateways, which behave as Envoy on the wire but keep only a
// digest of each response, and must have accepted the same responses as
// that sample after every edit (checkGateways), which must hold the edited
// cluster as edited. Each iteration is one edit; the
// p50/p99/max are over gateways and iterations. The clock starts when the
// change reaches the builder, handed over settled as the folder source
// hands its changes (its watcher debounced them already), as in
// BenchmarkEdit: the builder's 20 ms quiet period, for Kubernetes events,
// is not waited. It stops, per gateway, when the gateway sent its ACK of
// the new version (the sample: when it was seen to hold it). The edits
// start from a collected heap (the setup's garbage is not theirs). The
// gateways run in a second process (this test binary, re-executed), so the
// heap and RSS reported are the server's alone.
// The 10,000-destination case runs the server with a keepalive timeout of
// 2 minutes (--xds-keepalive-timeout) instead of 10 s: gRPC-Go makes it the
// sockets' TCP_USER_TIMEOUT, and simulated gateways starved of CPU by
// 10,000-cluster SotW pushes to a thousand of them on 2 cores leave sent
// data unread for longer than 10 s, which cut their connections in 3 of 6
// runs: the benchmark measures the push, not how long a peer may stall.
// Targets on 2 cores at 1,000 destinations: p99 under 0.5 s for SotW and
// 100 ms for delta; RSS under 300 MiB.
//
//	go test ./internal/server -run '^$' -bench 'BenchmarkPush/destinations=1000$/' -benchtime 5x
func BenchmarkPush(b *testing.B) {
	large := 1000
	if v := os.Getenv(largeGatewaysEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a number of gateways", largeGatewaysEnv, v)
		}
		large = n
	}
	for _, c := range []struct{ destinations, gateways int }{{1000, 1000}, {10000, large}} {
		b.Run(fmt.Sprintf("destinations=%d/gateways=%d", c.destinations, c.gateways), func(b *testing.B) {
			skipLarge(b, c.destinations)
			for _, mode := range []xdstest.Mode{xdstest.SotW, xdstest.Delta} {
				b.Run(mode.String(), func(b *testing.B) { benchPush(b, c.destinations, c.gateways, mode) })
			}
		})
	}
}

func benchPush(b *testing.B, destinations, gateways int, mode xdstest.Mode) {
	dir := b.TempDir()
	for f := 0; f < destinations/perConfigMap; f++ {
		var sb strings.Builder
		fmt.Fprintf(&sb, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: egress-%03d, namespace: bench, labels: {egress-xds.io/intent: \"true\"}}\ndata:\n  egress.yaml: |\n    destinations:\n", f)
		for i := 0; i < perConfigMap; i++ {
			fmt.Fprintf(&sb, "      - {name: d%03d, host: svc-%d-%d.example.com, ports: [{number: 443, protocol: TLS}], allow: [{cidr: 10.0.0.0/8}], connectionPool: {connectTimeout: 5s}}\n", i, f, i)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("egress-%03d.yaml", f)), []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// Bounded: 1,000 gateways take their initial 10,000 destinations in
	// minutes here, 1,000 in seconds.
	timeout := 3 * time.Minute
	if destinations > 1000 {
		timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg := server.Config{ConfigDir: dir}
	if destinations > 1000 {
		cfg.XDSKeepaliveTimeout = largeKeepalive
	}
	r := startConfig(b, ctx, cfg)
	select {
	case <-r.Builder.Ready():
	case <-ctx.Done():
		b.Fatal("no snapshot")
	}

	gw := startGateways(b, ctx, r.XDSAddr, gateways, mode, timeout)
	gw.problems = func() string {
		var out []string
		for _, l := range strings.Split(r.log.String(), "\n") {
			if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
				out = append(out, l)
			}
		}
		return strings.Join(out[max(0, len(out)-20):], "\n")
	}
	for r.Cache.Snapshot(group) == nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	snap := r.Cache.Snapshot(group)
	v := snap.Versions()
	// Every type that has resources: each is subscribed here (clusters and
	// listeners by wildcard, the forward proxy's routes by name), and the
	// checks compare every type.
	var initial []string
	for _, typ := range snap.TypeURLs() {
		if len(snap.Type(typ).Names) > 0 {
			initial = append(initial, typ, v[typ])
		}
	}
	gw.wait(b, 0, initial...)
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		gw.check(b, typ, len(snap.Type(typ).Names), "", 0, expected(snap.Type(typ), typ, snap.Type(typ).Names, mode))
	}

	state, err := watch.LoadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	cms, secrets, diags := compile.FromFolder(state)
	var lat, publish []time.Duration
	before := gw.received(b) // the initial configuration, not counted
	serverCPU, gatewayCPU, serverCalls := cpuTime(), gw.cpu(b), ioCalls()
	if path := os.Getenv(pushProfileEnv); path != "" {
		benchinput.Profile(b, fmt.Sprintf("%s.%s", path, mode))
	}
	// The edits start from a collected heap: the garbage of the setup (a
	// thousand streams taking their first configuration) is not theirs to
	// collect. Later cycles land in the edits whose allocations call them.
	runtime.GC()
	var allocs0 runtime.MemStats
	runtime.ReadMemStats(&allocs0)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		// Edit one destination: its connect timeout, so one cluster changes.
		i := n % len(cms)
		cm := cms[i].ConfigMap.DeepCopy()
		cm.Data["egress.yaml"] = strings.Replace(cm.Data["egress.yaml"], "connectTimeout: 5s", fmt.Sprintf("connectTimeout: %dms", 5001+n), 1)
		cms[i] = compile.ConfigMap{File: cms[i].File, ConfigMap: cm}
		prevSnap := r.Cache.Snapshot(group)
		prev := prevSnap.Type(resourcev3.ClusterType).Version
		start := time.Now()
		r.Builder.Update(snapshot.Input{ConfigMaps: cms, Secrets: secrets, Diagnostics: diags, Settled: true})
		next := prev
		for next == prev {
			if ctx.Err() != nil {
				b.Fatal("no new version")
			}
			time.Sleep(time.Millisecond)
			next = r.Cache.Snapshot(group).Type(resourcev3.ClusterType).Version
		}
		if _, published := r.Cache.Snapshot(group).Changed(resourcev3.ClusterType); !published.IsZero() {
			publish = append(publish, published.Sub(start))
		}
		lat = append(lat, gw.wait(b, start.UnixNano(), resourcev3.ClusterType, next)...)
		// Every gateway got the new version, and what it got is what the
		// sample gateway decoded: the edited cluster, with its new timeout.
		nextSnap := r.Cache.Snapshot(group)
		changed := changedNames(prevSnap.Type(resourcev3.ClusterType), nextSnap.Type(resourcev3.ClusterType))
		if len(changed) != 1 {
			b.Fatalf("edit %d changed clusters %v, want one", n, changed)
		}
		count := len(nextSnap.Type(resourcev3.ClusterType).Names)
		if mode == xdstest.Delta {
			count = 1
		}
		sent := nextSnap.Type(resourcev3.ClusterType).Names
		if mode == xdstest.Delta {
			sent = changed
		}
		gw.check(b, resourcev3.ClusterType, count, changed[0], 5001+n, expected(nextSnap.Type(resourcev3.ClusterType), resourcev3.ClusterType, sent, mode))
	}
	b.StopTimer()
	var allocs1 runtime.MemStats
	runtime.ReadMemStats(&allocs1)
	// Bytes the server allocated per edit: what its garbage collector
	// must reclaim, whose cycles (marking a live heap of some 60 MB here)
	// land in some edits and not others.
	b.ReportMetric(float64(allocs1.TotalAlloc-allocs0.TotalAlloc)/(1<<20)/float64(b.N), "server-alloc-MiB/edit")
	// CPU time per edit, of the server and of the gateway process: what a
	// busy machine does not change, unlike the latencies.
	b.ReportMetric(float64((cpuTime()-serverCPU).Microseconds())/1000/float64(b.N), "server-cpu-ms/edit")
	b.ReportMetric(float64((gw.cpu(b)-gatewayCPU).Microseconds())/1000/float64(b.N), "gateways-cpu-ms/edit")
	// Read and write system calls of the server per edit: a count, which
	// the machine's load does not change.
	b.ReportMetric(float64(ioCalls()-serverCalls)/float64(b.N), "server-syscalls/edit")
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(lat, 1), "max-ms")
	// The part of the latency before the first response: debounce and
	// rebuild, until the snapshot is published.
	b.ReportMetric(percentile(publish, 0.50), "published-p50-ms")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "server-heap-MiB")
	b.ReportMetric(rssMiB(), "server-rss-MiB")
	b.ReportMetric(procMiB("VmHWM"), "server-peak-rss-MiB")
	b.ReportMetric(gw.peakRSS(b), "gateways-peak-rss-MiB")
	// What one edit costs the wire: clusters each gateway received per
	// edit (SotW resends the whole type, delta the changed cluster).
	b.ReportMetric((gw.received(b)-before)/float64(b.N), "clusters-sent/gateway/edit")
}

// changedNames are the resources of next that are new or of another
// version than in prev.
func changedNames(prev, next *snapshot.TypeSnapshot) []string {
	var out []string
	for _, name := range next.Names {
		if it, ok := prev.Items[name]; !ok || it.Version != next.Items[name].Version {
			out = append(out, name)
		}
	}
	return out
}

// percentile of durations, in milliseconds (0 when there are none).
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
}

// gateways drives the gateway process over its stdin and stdout.
type gateways struct {
	in  io.Writer
	out *bufio.Scanner
	dir string // of the files check writes
	// problems are the server's error and warning log lines, told when
	// the gateways fail.
	problems func() string
}

func startGateways(b *testing.B, ctx context.Context, addr string, n int, mode xdstest.Mode, timeout time.Duration) *gateways {
	b.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestGatewayProcess$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%s|%s", clientsEnv, addr, n, mode, timeout))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	return &gateways{in: in, out: sc}
}

// wait asks every gateway to hold the given type versions and returns, if
// start (unix ns) is set, how long after start each one ACKed them.
func (g *gateways) wait(b *testing.B, start int64, typeVersions ...string) []time.Duration {
	b.Helper()
	fmt.Fprintf(g.in, "wait %d %s\n", start, strings.Join(typeVersions, " "))
	line := g.reply(b)
	var out []time.Duration
	for _, f := range strings.Fields(line)[1:] {
		ns, _ := strconv.ParseInt(f, 10, 64)
		out = append(out, time.Duration(ns))
	}
	return out
}

// check asks the gateway process to verify the last response of a type:
// the sample gateway, which decodes everything, accepted count resources
// (and holds cluster with a connect timeout of timeoutMS, when named),
// exactly those of want, the response the server's own snapshot says it
// sends (written to a file for the other process), and every other
// gateway accepted the same responses (version, counts, digests).
func (g *gateways) check(b *testing.B, typeURL string, count int, cluster string, timeoutMS int, want proto.Message) {
	b.Helper()
	if cluster == "" {
		cluster = "-"
	}
	data, err := proto.Marshal(want)
	if err != nil {
		b.Fatal(err)
	}
	if g.dir == "" {
		g.dir = b.TempDir()
	}
	path := filepath.Join(g.dir, "want.pb")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(g.in, "check %s %d %s %d %s\n", typeURL, count, cluster, timeoutMS, path)
	g.reply(b)
}

// expected is the response of the named resources of ts that the server
// sends a stream that lacks them: a DiscoveryResponse (SotW) or a
// DeltaDiscoveryResponse, rebuilt from the snapshot's items as the
// encoder builds them.
func expected(ts *snapshot.TypeSnapshot, typeURL string, names []string, mode xdstest.Mode) proto.Message {
	if mode == xdstest.Delta {
		out := &discovery.DeltaDiscoveryResponse{}
		for _, n := range names {
			it := ts.Items[n]
			out.Resources = append(out.Resources, &discovery.Resource{Name: it.Name, Version: it.Version, Resource: &anypb.Any{TypeUrl: typeURL, Value: it.Bytes()}})
		}
		return out
	}
	out := &discovery.DiscoveryResponse{}
	for _, n := range names {
		out.Resources = append(out.Resources, &anypb.Any{TypeUrl: typeURL, Value: ts.Items[n].Bytes()})
	}
	return out
}

func (g *gateways) received(b *testing.B) float64 {
	fmt.Fprintln(g.in, "received")
	f, _ := strconv.ParseFloat(strings.Fields(g.reply(b))[1], 64)
	return f
}

// peakRSS is the gateway process's peak resident memory, in MiB.
func (g *gateways) peakRSS(b *testing.B) float64 {
	fmt.Fprintln(g.in, "rss")
	f, _ := strconv.ParseFloat(strings.Fields(g.reply(b))[1], 64)
	return f
}

// cpu is the CPU time the gateway process used so far.
func (g *gateways) cpu(b *testing.B) time.Duration {
	fmt.Fprintln(g.in, "cpu")
	ns, _ := strconv.ParseInt(strings.Fields(g.reply(b))[1], 10, 64)
	return time.Duration(ns)
}

// ioCalls is the read and write system calls this process made so far
// (/proc/self/io syscr and syscw).
func ioCalls() int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && (k == "syscr" || k == "syscw") {
			c, _ := strconv.ParseInt(v, 10, 64)
			n += c
		}
	}
	return n
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (g *gateways) reply(b *testing.B) string {
	b.Helper()
	for g.out.Scan() {
		if line := g.out.Text(); strings.HasPrefix(line, "ok") {
			return line
		} else if strings.HasPrefix(line, "error") {
			b.Fatalf("%s\nserver problems:\n%s", line, g.problems())
		}
	}
	b.Fatalf("gateway process ended: %v", g.out.Err())
	return ""
}

// TestGatewayProcess is the gateway side of BenchmarkPush, run in its own
// process; it skips in a normal test run.
func TestGatewayProcess(t *testing.T) {
	spec := os.Getenv(clientsEnv)
	if spec == "" {
		t.Skip("the gateway process of BenchmarkPush")
	}
	parts := strings.Split(spec, "|")
	n, _ := strconv.Atoi(parts[1])
	mode := xdstest.SotW
	if parts[2] == "delta" {
		mode = xdstest.Delta
	}
	timeout, err := time.ParseDuration(parts[3])
	if err != nil {
		fmt.Println("error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Envoy collects no garbage: this process's collector is work no
	// gateway does, and a cycle during a push delays every gateway here
	// (it made the slowest edits at 1,000 gateways). It runs at a fifth of
	// the usual frequency, within 4 GiB.
	debug.SetGCPercent(500)
	debug.SetMemoryLimit(4 << 30)
	// Gateway 0 is the sample: a Client that decodes, validates and holds
	// everything it is sent, as Envoy does. The others are Gateways, as
	// Envoy on the wire but keeping of each response only a digest, which
	// must be the sample's: the process then costs far less than the
	// server it measures, and a wrong or missing update still fails.
	var sample *xdstest.Client
	gws := make([]*xdstest.Gateway, 0, n-1)
	news := newNotices()
	for i := 0; i < n; i++ {
		// One connection per gateway, as each Envoy has its own, with
		// Envoy's HTTP/2 flow-control windows (256 MiB, its default for
		// the xDS cluster): gRPC-Go's own start at 64 KiB, and a SotW
		// response waits for window updates from a busy client process.
		// No limit on a response's size either, as Envoy has none (the
		// listener of 10,000 destinations is larger than gRPC-Go's 4 MiB).
		cc, err := grpc.NewClient(parts[0], grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(envoyWindow), grpc.WithInitialConnWindowSize(envoyWindow),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
		if err != nil {
			fmt.Println("error", err)
			return
		}
		defer cc.Close()
		id := "gw-" + strconv.Itoa(i)
		if i == 0 {
			sample, err = xdstest.Dial(ctx, xdstest.Options{
				Conn: cc, NodeID: id, NodeCluster: group, Mode: mode, Validator: xdstest.ProtoValidate, EventLogSize: -1,
			})
			if err != nil {
				fmt.Println("error", err)
				return
			}
			defer sample.Close()
			continue
		}
		g, err := xdstest.DialGateway(ctx, xdstest.GatewayOptions{Conn: cc, NodeID: id, NodeCluster: group, Mode: mode, Notify: news.hook(len(gws))})
		if err != nil {
			fmt.Println("error", err)
			return
		}
		defer g.Close()
		gws = append(gws, g)
		if len(gws)%startBatch == 0 || i == n-1 {
			// Let this batch take its configuration before the next one
			// connects: a thousand gateways asking for 10,000
			// destinations at once make this process read so far behind
			// that the server's keepalive (a ping behind megabytes of
			// data, answered after more than 10 s) closes connections.
			for _, g := range gws[max(0, len(gws)-startBatch):] {
				if err := g.WaitFor(ctx, func(s *xdstest.GatewayState) bool {
					return s.Type(resourcev3.ClusterType).Responses > 0 && s.Type(resourcev3.ListenerType).Responses > 0
				}); err != nil {
					fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
					return
				}
			}
		}
	}
	var profile *os.File
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch f[0] {
		case "wait":
			start, _ := strconv.ParseInt(f[1], 10, 64)
			want := map[string]string{}
			for i := 2; i+1 < len(f); i += 2 {
				want[f[i]] = f[i+1]
			}
			lat, err := waitGateways(ctx, sample, gws, news, want, start)
			if err != nil {
				fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
				return
			}
			var sb strings.Builder
			sb.WriteString("ok")
			if start != 0 {
				for _, l := range lat {
					sb.WriteString(" " + strconv.FormatInt(l, 10))
				}
			}
			fmt.Println(sb.String())
		case "check":
			if err := checkGateways(sample, gws, mode, f[1:]); err != nil {
				fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
				return
			}
			fmt.Println("ok")
		case "received":
			total := sample.State().Type(resourcev3.ClusterType).ResourcesReceived
			for _, g := range gws {
				total += g.Type(resourcev3.ClusterType).ResourcesReceived
			}
			fmt.Println("ok", float64(total)/float64(n))
		case "rss":
			fmt.Println("ok", procMiB("VmHWM"))
		case "cpu":
			// Called before and after the edits: the profile, if asked
			// for, covers them alone.
			if path := os.Getenv(pushProfileEnv); path != "" {
				if profile == nil {
					if profile, err = os.Create(fmt.Sprintf("%s.gateways.%s", path, mode)); err == nil {
						err = pprof.StartCPUProfile(profile)
					}
				} else {
					pprof.StopCPUProfile()
					err = profile.Close()
				}
				if err != nil {
					fmt.Println("error", err)
					return
				}
			}
			fmt.Println("ok", int64(cpuTime()))
		}
	}
}

// notices are the gateways (by index) that handled a response or stopped
// since they were last taken (xdstest.GatewayOptions.Notify).
type notices struct {
	mu    sync.Mutex
	list  []int
	ready chan struct{} // holds a token while list is not empty
}

func newNotices() *notices { return &notices{ready: make(chan struct{}, 1)} }

func (ns *notices) hook(i int) func() {
	return func() {
		ns.mu.Lock()
		ns.list = append(ns.list, i)
		ns.mu.Unlock()
		select {
		case ns.ready <- struct{}{}:
		default:
		}
	}
}

func (ns *notices) take() []int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	out := ns.list
	ns.list = nil
	return out
}

// waitGateways waits until the sample and every gateway accepted the
// given type versions and returns, when start (unix ns) is set, how long
// after start each one sent its ACK of them (the sample: when it was seen
// to hold them). The first that stops or rejects something ends the wait:
// it would not get the versions. One goroutine follows the gateways,
// looking at each when it notifies that it handled a response or stopped
// (a gateway that did neither since the last look has not changed; all
// are looked at every second regardless): a thousand waiters woken at
// every response cost this process's CPU, which the server it measures
// needs. The latencies are the ACKs' own times, which the waiting does
// not delay.
func waitGateways(ctx context.Context, sample *xdstest.Client, gws []*xdstest.Gateway, news *notices, want map[string]string, start int64) ([]int64, error) {
	lat := make([]int64, len(gws)+1)
	sampleDone := make(chan error, 1)
	go func() {
		err := sample.WaitFor(ctx, func(s *xdstest.State) bool {
			return xdstest.HasVersions(want)(s) || rejected(s.Type(resourcev3.ClusterType).NACKs, s.Type(resourcev3.ListenerType).NACKs)
		})
		if err == nil && !xdstest.HasVersions(want)(sample.State()) {
			err = fmt.Errorf("sample gateway rejected a response: %s", sample.State())
		}
		lat[0] = time.Now().UnixNano() - start
		sampleDone <- err
	}()
	holds := xdstest.GatewayHasVersions(want)
	pending := make(map[int]bool, len(gws))
	for i := range gws {
		pending[i] = true
	}
	// look settles gateway i if it holds the versions, or fails.
	look := func(i int) error {
		g := gws[i]
		ok, err := g.Holds(func(s *xdstest.GatewayState) bool { return holds(s) || gatewayRejected(s) })
		if err == nil && ok {
			if t := g.Type(resourcev3.ClusterType); t.NACKs > 0 {
				err = fmt.Errorf("gateway rejected clusters: %s", t.LastError)
			} else if t := g.Type(resourcev3.ListenerType); t.NACKs > 0 {
				err = fmt.Errorf("gateway rejected listeners: %s", t.LastError)
			}
		}
		if err != nil {
			return err
		}
		if ok {
			// The latest ACK of the types waited for.
			var acked time.Time
			for typ := range want {
				if t := g.Type(typ).ACKed; t.After(acked) {
					acked = t
				}
			}
			lat[i+1] = acked.UnixNano() - start
			delete(pending, i)
		}
		return nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	all := false
	for len(pending) > 0 {
		var looked []int
		if all {
			looked = slices.Collect(maps.Keys(pending))
		} else {
			looked = news.take()
		}
		for _, i := range looked {
			if !pending[i] {
				continue
			}
			if err := look(i); err != nil {
				return nil, fmt.Errorf("gateway %d of %d: %w", i+2, len(gws)+1, err)
			}
		}
		if len(pending) == 0 {
			break
		}
		all = false
		select {
		case <-news.ready:
		case <-tick.C:
			all = true
		case err := <-sampleDone:
			if err != nil {
				return nil, err
			}
			sampleDone = nil // done: a nil channel is never ready
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d gateways waiting: %w", len(pending), len(gws)+1, ctx.Err())
		}
	}
	if sampleDone != nil {
		if err := <-sampleDone; err != nil {
			return nil, err
		}
	}
	return lat, nil
}

// gatewayRejected tells whether a gateway NACKed clusters or listeners.
func gatewayRejected(s *xdstest.GatewayState) bool {
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if t := s.Types[typ]; t != nil && t.NACKs > 0 {
			return true
		}
	}
	return false
}

// rejected tells whether a gateway NACKed clusters or listeners.
func rejected(nacks ...int) bool {
	for _, n := range nacks {
		if n > 0 {
			return true
		}
	}
	return false
}

// checkGateways verifies the last accepted response of a type (args: type
// URL, resource count, cluster name or "-", its connect timeout in ms, the
// file of the response the server's snapshot says the sample was sent):
// the sample's count and cluster, and every gateway's sameness with it.
func checkGateways(sample *xdstest.Client, gws []*xdstest.Gateway, mode xdstest.Mode, args []string) error {
	typ := args[0]
	count, _ := strconv.Atoi(args[1])
	st := sample.State()
	ts := st.Type(typ)
	if ts.LastResources != count || ts.NACKs > 0 {
		return fmt.Errorf("sample gateway: last %s response of %d resources (want %d), %d NACKs (%s)", xdstest.ShortType(typ), ts.LastResources, count, ts.NACKs, ts.LastError)
	}
	// The sample's last response is what the server's snapshot holds.
	data, err := os.ReadFile(args[4])
	if err != nil {
		return err
	}
	var want xdstest.Digest
	if mode == xdstest.Delta {
		var r discovery.DeltaDiscoveryResponse
		if err := proto.Unmarshal(data, &r); err != nil {
			return err
		}
		want = xdstest.DeltaDigest(r.Resources, r.RemovedResources)
	} else {
		var r discovery.DiscoveryResponse
		if err := proto.Unmarshal(data, &r); err != nil {
			return err
		}
		want = xdstest.SotwDigest(r.Resources)
	}
	if ts.LastDigest != want {
		return fmt.Errorf("sample gateway: the last %s response is not what the server's snapshot holds (digest %x, want %x)", xdstest.ShortType(typ), uint64(ts.LastDigest), uint64(want))
	}
	if name := args[2]; name != "-" {
		want, _ := strconv.Atoi(args[3])
		c, ok := ts.Resources[name].(*clusterv3.Cluster)
		if !ok {
			return fmt.Errorf("sample gateway holds no cluster %s", name)
		}
		if got := c.GetConnectTimeout().AsDuration(); got != time.Duration(want)*time.Millisecond {
			return fmt.Errorf("sample gateway: cluster %s has connect timeout %v, want %dms", name, got, want)
		}
	}
	// Every gateway accepted what the sample accepted, of every type (not
	// only the one edited: a server could send the others something
	// wrong), in as many responses, with the same resources in all of
	// them (a delta gateway holds what each gave it).
	bad := 0
	var first error
	for _, g := range gws {
		for _, t := range snapshot.Types {
			if err := xdstest.SameLast(t, st.Type(t), g.Type(t)); err != nil {
				if bad++; first == nil {
					first = err
				}
				break
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d gateways differ from the sample, e.g. %w", bad, len(gws), first)
	}
	return nil
}

// rssMiB is this process's resident memory now, in MiB.
func rssMiB() float64 { return procMiB("VmRSS") }

// procMiB is a memory figure of this process from /proc/self/status
// (VmRSS: resident now, VmHWM: at its peak), in MiB.
func procMiB(field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
