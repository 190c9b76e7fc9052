package translate_test

import (
	"fmt"
	"regexp"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// BenchmarkCacheEdit is the translate and check phase of an edit alone
// (compile.GroupCached with a translate.Cache), at 10,000 destinations in
// 100 ConfigMaps, for each edit internal/server's BenchmarkEdit makes: a
// TCP destination's connect timeout (its cluster), an HTTP destination's
// timeout (its virtual hosts), a TLS destination's allow list (its filter
// chains). It reports the CPU time of the process (garbage collection
// included) and what the phase allocates, per edit; parsing and conflict
// resolution are done between the measured phases.
//
//	go test ./internal/translate -run '^$' -bench BenchmarkCacheEdit -benchtime 100x
func BenchmarkCacheEdit(b *testing.B) {
	for _, kind := range []struct{ name, old, new string }{
		{"cluster", `connectTimeout: \w+`, "connectTimeout: %dms"},
		{"route", `\btimeout: \w+`, "timeout: %dms"},
		{"listener", `allow: \[\{cidr: [0-9./]+\}\]\n  - name: api`, "allow: [{cidr: 10.%d.0.0/16}]\n  - name: api"},
	} {
		b.Run("edit="+kind.name, func(b *testing.B) { benchCacheEdit(b, regexp.MustCompile(kind.old), kind.new) })
	}
}

// benchCacheEdit edits, in one ConfigMap after the other, the first
// match of old, with a new value each time.
func benchCacheEdit(b *testing.B, old *regexp.Regexp, new string) {
	const n = 10000
	var cms []compile.ConfigMap
	for start := 0; start < n; start += benchinput.PerConfigMap {
		cms = append(cms, compile.ConfigMap{ConfigMap: &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: benchinput.Name(start), Labels: map[string]string{intent.LabelKey: "true"}},
			Data:       map[string]string{"egress.yaml": benchinput.Document(start, n)},
		}})
	}
	o := translate.Options{ForwardProxyPort: 3128}
	st, tc := compile.NewStore(), translate.NewCache()
	var cpu time.Duration
	var allocated uint64
	build := func() {
		intents, diags := st.Update(cms, o.ResolveOptions())
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		t0 := benchinput.CPUTime()
		if _, _, err := compile.GroupCached(tc, intents, "egress-gateway", nil, o); err != nil {
			b.Fatal(err)
		}
		cpu += benchinput.CPUTime() - t0
		runtime.ReadMemStats(&after)
		allocated += after.TotalAlloc - before.TotalAlloc
	}
	build()
	cpu, allocated = 0, 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := cms[i%len(cms)].ConfigMap.DeepCopy()
		doc := c.Data["egress.yaml"]
		at := old.FindStringIndex(doc)
		if at == nil {
			b.Fatalf("%s is not in the ConfigMap", old)
		}
		c.Data["egress.yaml"] = doc[:at[0]] + fmt.Sprintf(new, 1+i%250) + doc[at[1]:]
		cms[i%len(cms)] = compile.ConfigMap{ConfigMap: c}
		build()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "translate+check-cpu-ms/edit")
	b.ReportMetric(float64(allocated)/(1<<20)/float64(b.N), "MiB-allocated/edit")
}
