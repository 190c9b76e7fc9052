package compile_test

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// benchConfigMaps declares n destinations in ConfigMaps of 100 each
// (internal/benchinput).
func benchConfigMaps(n int) []compile.ConfigMap {
	var cms []compile.ConfigMap
	for start := 0; start < n; start += benchinput.PerConfigMap {
		cms = append(cms, intentCM("bench", benchinput.Name(start), benchinput.Document(start, n)))
	}
	return cms
}

// BenchmarkTranslate measures the whole path from ConfigMaps to checked
// resources: parse, validate, resolve, translate, ValidateAll on every
// resource and typed config, and the reference check.
// Target on 2 cores: 10,000 destinations in under 200 ms and 200 MiB.
//
// Absolute times depend on the machine and on what else runs on it, so it
// also reports x-yaml-parse: its time over the time yaml.v3 takes to parse
// the same ConfigMaps into node trees (the floor of any parser that
// reports field paths), measured in the same iterations, so that a busy
// machine slows both alike.
func BenchmarkTranslate(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		cms := benchConfigMaps(n)
		b.Run(fmt.Sprintf("destinations=%d", n), func(b *testing.B) {
			o := translate.Options{ForwardProxyPort: 3128}
			b.ReportAllocs()
			var baseline time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				start := time.Now()
				parseOnly(b, cms)
				baseline += time.Since(start)
				b.StartTimer()
				intents, diags := compile.NewStore().Update(cms, o.ResolveOptions())
				if diags.HasErrors() {
					b.Fatal(diags)
				}
				res, _, err := compile.Group(intents, "egress-gateway", nil, o)
				if err != nil {
					b.Fatal(err)
				}
				// One per destination, and the one refused sources go to.
				if len(res.Clusters) != n+1 {
					b.Fatalf("%d clusters for %d destinations", len(res.Clusters), n)
				}
			}
			b.ReportMetric(float64(b.Elapsed())/float64(baseline), "x-yaml-parse")
		})
	}
}

// parseOnly is the baseline: yaml.v3 node trees of every document.
func parseOnly(b *testing.B, cms []compile.ConfigMap) {
	for _, cm := range cms {
		for _, doc := range cm.Data {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEditPhases is BenchmarkEdit's build alone, by phase: at
// 10,000 destinations, one TCP destination's connect timeout edited per
// iteration, the CPU time (of the process: garbage collection included)
// of parsing and resolving (Store.Update), translating and checking
// (compile.GroupCached), and encoding (snapshot.Encoder), and what each
// edit allocates.
//
//	go test ./internal/compile -run '^$' -bench BenchmarkEditPhases -benchtime 20x
func BenchmarkEditPhases(b *testing.B) {
	cms := benchConfigMaps(10000)
	o := translate.Options{ForwardProxyPort: 3128}
	st, tc, enc := compile.NewStore(), translate.NewCache(), snapshot.NewEncoder()
	var phases [3]time.Duration
	var resolveAlloc uint64
	build := func() {
		a0 := allocated()
		t0 := benchinput.CPUTime()
		intents, diags := st.Update(cms, o.ResolveOptions())
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		t1 := benchinput.CPUTime()
		resolveAlloc += allocated() - a0
		res, _, err := compile.GroupCached(tc, intents, "egress-gateway", nil, o)
		if err != nil {
			b.Fatal(err)
		}
		t2 := benchinput.CPUTime()
		if _, err := enc.NewGroupSnapshot(res); err != nil {
			b.Fatal(err)
		}
		t3 := benchinput.CPUTime()
		phases[0], phases[1], phases[2] = phases[0]+t1-t0, phases[1]+t2-t1, phases[2]+t3-t2
	}
	build()
	phases, resolveAlloc = [3]time.Duration{}, 0
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		i := n % len(cms)
		cm := cms[i].ConfigMap.DeepCopy()
		cm.Data["egress.yaml"] = strings.Replace(cm.Data["egress.yaml"], "connectTimeout: 5s", fmt.Sprintf("connectTimeout: %dms", 5001+n), 1)
		cms[i] = compile.ConfigMap{ConfigMap: cm}
		build()
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(phases[0]), "resolve-cpu-ms/edit")
	b.ReportMetric(ms(phases[1]), "translate+check-cpu-ms/edit")
	b.ReportMetric(ms(phases[2]), "encode-cpu-ms/edit")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20)/float64(b.N), "MiB-allocated/edit")
	b.ReportMetric(float64(resolveAlloc)/(1<<20)/float64(b.N), "resolve-MiB-allocated/edit")
	alloc, cpu := parseCost(b, cms[0])
	b.ReportMetric(float64(alloc)/(1<<20), "parse-MiB-allocated/configmap")
	b.ReportMetric(float64(cpu.Microseconds())/1000, "parse-cpu-ms/configmap")
}

// allocated is how many bytes the process has allocated on the heap.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// parseCost is what parsing one ConfigMap alone allocates and its CPU
// time (of the process, garbage collection included; the mean of 10):
// the floor of an Update that parses it again.
func parseCost(b *testing.B, cm compile.ConfigMap) (uint64, time.Duration) {
	const n = 10
	a0, t0 := allocated(), benchinput.CPUTime()
	for range n {
		if _, diags := intent.ParseConfigMap(cm.Origin(), cm.CreationTimestamp.Time, cm.Data); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
	return (allocated() - a0) / n, (benchinput.CPUTime() - t0) / n
}

// BenchmarkReview is the admission webhook's judgement of an edit at
// 10,000 destinations in 100 ConfigMaps (compile.Store.Review): the
// edited ConfigMap parsed, and its claims checked against what is
// served.
//
//	go test ./internal/compile -run '^$' -bench BenchmarkReview -benchtime 20x
func BenchmarkReview(b *testing.B) {
	cms := benchConfigMaps(10000)
	ro := translate.Options{ForwardProxyPort: 3128}.ResolveOptions()
	st := compile.NewStore()
	if _, diags := st.Update(cms, ro); diags.HasErrors() {
		b.Fatal(diags)
	}
	var cpu time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		cm := cms[n%len(cms)].ConfigMap.DeepCopy()
		cm.Data["egress.yaml"] = strings.Replace(cm.Data["egress.yaml"], "connectTimeout: 5s", fmt.Sprintf("connectTimeout: %dms", 5001+n), 1)
		t0 := benchinput.CPUTime()
		if diags := st.Review(compile.ConfigMap{ConfigMap: cm}, ro); diags.HasErrors() {
			b.Fatal(diags)
		}
		cpu += benchinput.CPUTime() - t0
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/review")
}
