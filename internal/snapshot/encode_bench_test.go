package snapshot

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// encodeProfileEnv names a file for a CPU profile of the encoding of the
// edits alone (not of the translations prepared for them).
const encodeProfileEnv = "EGRESS_XDS_ENCODE_PROFILE"

// BenchmarkEncodeEdit is the encoding phase of BenchmarkEditPhases
// (internal/compile) alone: at 10,000 destinations in 100 ConfigMaps, one
// TCP destination's connect timeout edited per iteration, translated
// beforehand (with a translate.Cache, as the builder does), then every
// edit's snapshot built by one encoder: its CPU time (of the process,
// garbage collection included) and what it allocates. With
// input=translation, the resources are what translation gives (it builds
// again what the edited ConfigMap declares); with input=one-cluster, they
// are the first translation's with one cluster changed per edit, all
// else the same pointers: the encoder's own cost, what an edit costs at
// the least.
//
//	go test ./internal/snapshot -run '^$' -bench BenchmarkEncodeEdit -benchtime 100x
func BenchmarkEncodeEdit(b *testing.B) {
	b.Run("input=translation", func(b *testing.B) { benchEncodeEdit(b, false) })
	b.Run("input=one-cluster", func(b *testing.B) { benchEncodeEdit(b, true) })
}

func benchEncodeEdit(b *testing.B, oneCluster bool) {
	var cms []compile.ConfigMap
	for start := 0; start < 10000; start += benchinput.PerConfigMap {
		cms = append(cms, compile.ConfigMap{ConfigMap: &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: benchinput.Name(start), Labels: map[string]string{intent.LabelKey: "true"}},
			Data:       map[string]string{"egress.yaml": benchinput.Document(start, 10000)},
		}})
	}
	o := translate.Options{ForwardProxyPort: 3128}
	st, tc := compile.NewStore(), translate.NewCache()
	translateAll := func() *translate.Resources {
		intents, diags := st.Update(cms, o.ResolveOptions())
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		res, _, err := compile.GroupCached(tc, intents, "egress-gateway", nil, o)
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	first := translateAll()
	edits := make([]*translate.Resources, b.N)
	for n := range edits {
		if oneCluster {
			res := *first
			res.Clusters = slices.Clone(first.Clusters)
			i := (n * 97) % len(res.Clusters)
			c := proto.Clone(res.Clusters[i]).(*clusterv3.Cluster)
			c.ConnectTimeout = durationpb.New(time.Duration(5001+n) * time.Millisecond)
			res.Clusters[i] = c
			edits[n] = &res
			continue
		}
		i := n % len(cms)
		cm := cms[i].ConfigMap.DeepCopy()
		cm.Data["egress.yaml"] = strings.Replace(cm.Data["egress.yaml"], "connectTimeout: 5s", fmt.Sprintf("connectTimeout: %dms", 5001+n), 1)
		cms[i] = compile.ConfigMap{ConfigMap: cm}
		edits[n] = translateAll()
	}
	enc := NewEncoder()
	if _, err := enc.NewGroupSnapshot(first); err != nil {
		b.Fatal(err)
	}
	first = nil
	benchinput.Profile(b, os.Getenv(encodeProfileEnv))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := benchinput.CPUTime()
	b.ResetTimer()
	for n := range edits {
		if _, err := enc.NewGroupSnapshot(edits[n]); err != nil {
			b.Fatal(err)
		}
		edits[n] = nil
	}
	b.StopTimer()
	cpu = benchinput.CPUTime() - cpu
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "encode-cpu-ms/edit")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20)/float64(b.N), "MiB-allocated/edit")
}
