// Package benchinput is the intent the benchmarks translate and serve: n
// destinations in ConfigMaps of 100 each, mostly TLS passthrough, a
// quarter HTTP with TLS origination, rate limit, retries and an allow
// list, and some TCP with static endpoints.
package benchinput

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PerConfigMap is how many destinations each ConfigMap declares.
const PerConfigMap = 100

// Document is the egress.yaml of the ConfigMap holding destinations
// start to start+PerConfigMap (or n).
func Document(start, n int) string {
	var b strings.Builder
	b.WriteString("destinations:\n")
	for i := start; i < start+PerConfigMap && i < n; i++ {
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
	return b.String()
}

// Name is the name of the ConfigMap whose first destination is start.
func Name(start int) string { return fmt.Sprintf("egress-%05d", start) }

// CPUTime is the CPU time (user and system) the process has used, garbage
// collection included: what an edit costs the server, whatever goroutine
// does the work.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Profile writes a CPU profile to path until the benchmark ends, when
// path is not empty: the benchmarks name it by an environment variable
// (EGRESS_XDS_EDIT_PROFILE and the like), to profile their edits alone.
func Profile(b testing.TB, path string) {
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		pprof.StopCPUProfile()
		f.Close()
	})
}
