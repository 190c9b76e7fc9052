package compile_test

import (
	"fmt"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/compile"
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
