package compile_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// benchConfigMaps declares n destinations in ConfigMaps of 100 each: mostly
// TLS passthrough, a quarter HTTP with TLS origination, rate limit, retries
// and an allowlist, and some TCP with static endpoints.
func benchConfigMaps(n int) []compile.ConfigMap {
	var cms []compile.ConfigMap
	for start := 0; start < n; start += 100 {
		var b strings.Builder
		b.WriteString("destinations:\n")
		for i := start; i < start+100 && i < n; i++ {
			switch {
			case i%20 == 0:
				fmt.Fprintf(&b, `  - name: db-%d
    host: db-%d.example.com
    ports: [{number: %d, protocol: TCP}]
    endpoints: [{address: 192.0.2.%d}, {address: 198.51.100.%d}]
    connectionPool: {maxConnections: 50, connectTimeout: 5s}
    outlierDetection: {consecutive5xxErrors: 5, interval: 30s, baseEjectionTime: 60s}
`, i, i, 10000+i, i%250+1, i%250+1)
			case i%4 == 1:
				fmt.Fprintf(&b, `  - name: api-%d
    host: api-%d.example.com
    ports: [{number: 80, protocol: HTTP}]
    tls: {mode: SIMPLE}
    rateLimit: {maxTokens: 100, tokensPerFill: 10, fillInterval: 1s}
    timeout: 10s
    retries: {attempts: 3, perTryTimeout: 2s}
    allow: [{cidr: 10.0.0.0/8}]
`, i, i)
			default:
				fmt.Fprintf(&b, `  - name: tls-%d
    host: svc-%d.example.com
    ports: [{number: 443, protocol: TLS}]
    allow: [{cidr: 10.0.0.0/8}]
`, i, i)
			}
		}
		cms = append(cms, intentCM("bench", fmt.Sprintf("egress-%05d", start), b.String()))
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
