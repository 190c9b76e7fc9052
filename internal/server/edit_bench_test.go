package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

const (
	editDestinations = 10000
	editGateways     = 100
	// editProfileEnv names a file for a CPU profile of the server during
	// the edits alone, not the setup (the gateways run in another process).
	editProfileEnv = "EGRESS_XDS_EDIT_PROFILE"
)

// editKinds are the edits BenchmarkEdit makes, each to one destination of
// one ConfigMap (the ConfigMap is parsed again whole): what each changes
// on the gateways.
var editKinds = []struct {
	name     string
	old, new string // replaced in the ConfigMap, the new value numbered 1 to 250
}{
	// A TCP destination's connect timeout: its cluster (and its endpoints,
	// whose version covers it).
	{"cluster", "connectTimeout: 5s", "connectTimeout: %dms"},
	// An HTTP destination's timeout: its route, on the HTTP listener's
	// route configuration and the forward proxy's (every destination's
	// virtual host: sent whole).
	{"route", "timeout: 10s", "timeout: %dms"},
	// A TLS destination's allow list: its filter chains, on the TLS
	// listener of 7,000 destinations (sent whole).
	{"listener", "allow: [{cidr: 10.0.0.0/8}]\n  - name: api", "allow: [{cidr: 10.%d.0.0/16}]\n  - name: api"},
}

// BenchmarkEdit measures what one edit costs at 10,000 destinations (in
// 100 ConfigMaps, internal/benchinput) with 100 delta gateways (real ADS
// streams on loopback, one connection each, in a second process): the
// server's CPU time per edit (user and system, of the server process: the
// gateways run in the other), the time from the change reaching the
// builder until the snapshot is published (a settled change, as the folder
// source hands over: the builder's 20 ms quiet period, for Kubernetes
// events, is not waited), and until every gateway has ACKed every type that moved (of
// those it subscribes: see versions).
// x-full-build is the CPU per edit over the CPU of building the same
// snapshot from scratch (parse, translation, checks, encoding), measured
// in the same run.
// Targets on 2 cores: CPU per edit and publication under 30 ms, every
// ACK under 100 ms p99.
//
// EGRESS_XDS_EDIT_PROFILE=file writes a CPU profile of the edits alone.
//
//	go test ./internal/server -run '^$' -bench BenchmarkEdit -benchtime 20x
func BenchmarkEdit(b *testing.B) {
	for _, kind := range editKinds {
		b.Run("edit="+kind.name, func(b *testing.B) { benchEdit(b, kind.old, kind.new) })
	}
}

func benchEdit(b *testing.B, old, new string) {
	dir := b.TempDir()
	for start := 0; start < editDestinations; start += benchinput.PerConfigMap {
		name := benchinput.Name(start)
		doc := "gateways: [" + group + "]\n" + benchinput.Document(start, editDestinations)
		manifest := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: bench, labels: {egress-xds.io/intent: \"true\"}}\ndata:\n  egress.yaml: |\n%s",
			name, indent(doc))
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(manifest), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := startWith(b, ctx, dir)
	select {
	case <-r.Builder.Ready():
	case <-ctx.Done():
		b.Fatal("no snapshot")
	}
	for r.Cache.Snapshot(group) == nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	gw := startGateways(b, ctx, r.XDSAddr, editGateways, xdstest.Delta, 10*time.Minute)
	gw.wait(b, 0, versions(nil, r.Cache.Snapshot(group))...)

	state, err := watch.LoadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	cms, secrets, diags := compile.FromFolder(state)
	full := fullBuildCPU(b, cms)

	var published, acked []time.Duration
	var cpu time.Duration
	benchinput.Profile(b, os.Getenv(editProfileEnv))
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		i := n % len(cms)
		cm := cms[i].ConfigMap.DeepCopy()
		edited := strings.Replace(cm.Data["egress.yaml"], old, fmt.Sprintf(new, 1+n%250), 1)
		if edited == cm.Data["egress.yaml"] {
			b.Fatalf("%s: nothing to edit", cm.Name)
		}
		cm.Data["egress.yaml"] = edited
		cms[i] = compile.ConfigMap{File: cms[i].File, ConfigMap: cm}
		prev := r.Cache.Snapshot(group)
		before := benchinput.CPUTime()
		start := time.Now()
		r.Builder.Update(snapshot.Input{ConfigMaps: cms, Secrets: secrets, Diagnostics: diags, Settled: true})
		next := prev
		for next == prev {
			if ctx.Err() != nil || time.Since(start) > time.Minute {
				b.Fatalf("no new snapshot after the edit: %v", r.Builder.Diagnostics())
			}
			time.Sleep(200 * time.Microsecond)
			next = r.Cache.Snapshot(group)
		}
		published = append(published, time.Since(start))
		acked = append(acked, gw.wait(b, start.UnixNano(), versions(prev, next)...)...)
		cpu += benchinput.CPUTime() - before
	}
	b.StopTimer()
	perEdit := float64(cpu.Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(perEdit, "cpu-ms/edit")
	b.ReportMetric(perEdit/(float64(full.Microseconds())/1000), "x-full-build")
	b.ReportMetric(percentile(published, 0.5), "published-p50-ms")
	b.ReportMetric(percentile(published, 0.99), "published-p99-ms")
	b.ReportMetric(percentile(acked, 0.5), "ack-p50-ms")
	b.ReportMetric(percentile(acked, 0.99), "ack-p99-ms")
}

// versions lists the types of a snapshot that moved since prev (nil:
// those it has resources of) and their versions, for gateways.wait: of
// the types the simulated gateways subscribe (every cluster and listener,
// and the forward proxy's routes, which every edit of a route moves).
func versions(prev, gs *snapshot.GroupSnapshot) []string {
	var out []string
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType, resourcev3.RouteType} {
		ts := gs.Type(typ)
		if prev == nil && len(ts.Names) > 0 || prev != nil && prev.Type(typ).Version != ts.Version {
			out = append(out, typ, ts.Version)
		}
	}
	return out
}

// fullBuildCPU is the CPU time of building the group's snapshot from
// scratch: every ConfigMap parsed, translated, checked and encoded.
func fullBuildCPU(b *testing.B, cms []compile.ConfigMap) time.Duration {
	b.Helper()
	o := translate.Options{ForwardProxyPort: 3128}
	before := benchinput.CPUTime()
	intents, _ := compile.NewStore().Update(cms, o.ResolveOptions())
	res, _, err := compile.Group(intents, group, nil, o)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := snapshot.NewGroupSnapshot(res); err != nil {
		b.Fatal(err)
	}
	return benchinput.CPUTime() - before
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}
