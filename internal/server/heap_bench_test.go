package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// heapProfileEnv names a file to write the heap profile to after the edits
// of BenchmarkHeap (go tool pprof -sample_index=inuse_space FILE).
const heapProfileEnv = "EGRESS_XDS_HEAP_PROFILE"

// BenchmarkHeap measures what the server keeps as the configuration is
// edited: the live heap once the first snapshot is published, and again
// after 100 edits of one destination each (a file written, seen by the
// folder watcher, rebuilt and published), with no proxy connected. The
// heap is HeapAlloc after two garbage collections; x-startup is the second
// over the first. Target: x-startup at most 1.25 at 10,000 destinations.
// Each iteration is a fresh server. The 10,000 case takes minutes on 2
// cores (100 rebuilds of 10,000 destinations): it is skipped with -short
// and in CI (CI=true), which run the 1,000 case.
//
//	go test ./internal/server -run '^$' -bench BenchmarkHeap -benchtime 1x
func BenchmarkHeap(b *testing.B) {
	const edits = 100
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("destinations=%d", n), func(b *testing.B) {
			skipLarge(b, n)
			var startup, edited, rss float64
			for i := 0; i < b.N; i++ {
				s, e, r := heapAfterEdits(b, n, edits)
				startup, edited, rss = startup+s, edited+e, rss+r
			}
			N := float64(b.N)
			b.ReportMetric(startup/N, "heap-startup-MiB")
			b.ReportMetric(edited/N, "heap-edited-MiB")
			b.ReportMetric(edited/startup, "x-startup")
			b.ReportMetric(rss/N, "rss-MiB")
		})
	}
}

// skipLarge skips the cases of 10,000 destinations and more with -short
// and in CI: each takes minutes on 2 cores.
func skipLarge(b *testing.B, destinations int) {
	if destinations < 10000 {
		return
	}
	if testing.Short() || os.Getenv("CI") == "true" {
		b.Skip("10,000 destinations take minutes on 2 cores: run without -short, outside CI")
	}
}

// heapAfterEdits runs a server on a fresh folder of n destinations and
// returns the live heap (MiB) after startup and after the edits, and the
// process RSS at the end.
func heapAfterEdits(b *testing.B, n, edits int) (startup, edited, rss float64) {
	dir := b.TempDir()
	files := writeMixedDestinations(b, dir, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srvCtx, stop := context.WithCancel(ctx)
	// No log sink of the tests' own: what the server keeps, not the test.
	srv, err := server.Start(srvCtx, server.Config{
		ConfigDir: dir, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
		ShutdownGrace: time.Second, Log: slog.New(slog.DiscardHandler),
		Translate: translate.Options{ForwardProxyPort: 3128},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		stop()
		if err := srv.Wait(); err != nil {
			b.Error(err)
		}
	}()
	select {
	case <-srv.Builder.Ready():
	case <-ctx.Done():
		b.Fatal("no snapshot")
	}
	startup = liveHeapMiB()
	for e := 0; e < edits; e++ {
		prev := srv.Cache.Snapshot(group).Type(resourcev3.ClusterType).Version
		f := files[e%len(files)]
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		// One destination's connect timeout: one cluster changes.
		edit := strings.Replace(string(data), "connectTimeout: 5s", fmt.Sprintf("connectTimeout: %dms", 5001+e), 1)
		if edit == string(data) {
			b.Fatalf("%s: no destination left to edit", f)
		}
		write(b, f, edit)
		for srv.Cache.Snapshot(group).Type(resourcev3.ClusterType).Version == prev {
			if ctx.Err() != nil {
				b.Fatalf("edit %d: no new version", e)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Let the rebuild that published the last version finish (its
	// diagnostics, metrics and state) before measuring.
	time.Sleep(200 * time.Millisecond)
	edited = liveHeapMiB()
	if path := os.Getenv(heapProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	return startup, edited, rssMiB()
}

// liveHeapMiB is the heap in use by reachable objects, after collecting.
func liveHeapMiB() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// writeMixedDestinations declares n destinations in files of 100 each, in
// the mix of the translation benchmark (internal/compile): mostly TLS
// passthrough, a quarter HTTP with TLS origination, rate limit, retries and
// an allowlist, some TCP with static endpoints; every one has a connect
// timeout to edit. They name their gateway group, so that its snapshot is
// built with no proxy connected. It returns the files.
func writeMixedDestinations(b *testing.B, dir string, n int) []string {
	b.Helper()
	var files []string
	for start := 0; start < n; start += perConfigMap {
		var sb strings.Builder
		fmt.Fprintf(&sb, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: egress-%05d, namespace: bench, labels: {egress-xds.io/intent: \"true\"}}\ndata:\n  egress.yaml: |\n    gateways: [%s]\n    destinations:\n", start, group)
		for i := start; i < start+perConfigMap && i < n; i++ {
			switch {
			case i%20 == 0:
				fmt.Fprintf(&sb, "      - {name: db-%d, host: db-%d.example.com, ports: [{number: %d, protocol: TCP}], endpoints: [{address: 192.0.2.%d}, {address: 198.51.100.%d}], connectionPool: {maxConnections: 50, connectTimeout: 5s}, outlierDetection: {consecutive5xxErrors: 5, interval: 30s, baseEjectionTime: 60s}}\n",
					i, i, 10000+i, i%250+1, i%250+1)
			case i%4 == 1:
				fmt.Fprintf(&sb, "      - {name: api-%d, host: api-%d.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE}, rateLimit: {maxTokens: 100, tokensPerFill: 10, fillInterval: 1s}, timeout: 10s, retries: {attempts: 3, perTryTimeout: 2s}, allow: [{cidr: 10.0.0.0/8}], connectionPool: {connectTimeout: 5s}}\n", i, i)
			default:
				fmt.Fprintf(&sb, "      - {name: tls-%d, host: svc-%d.example.com, ports: [{number: 443, protocol: TLS}], allow: [{cidr: 10.0.0.0/8}], connectionPool: {connectTimeout: 5s}}\n", i, i)
			}
		}
		path := filepath.Join(dir, fmt.Sprintf("egress-%05d.yaml", start))
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, path)
	}
	return files
}
