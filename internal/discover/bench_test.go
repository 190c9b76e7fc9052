package discover

import (
	"fmt"
	"io"
	"runtime"
	"testing"
)

// lineSource yields n audit lines as the gateways write them (every field
// of the access log), over hosts distinct destinations and sources
// addresses: what a day of a busy gateway's log looks like to discover.
// The lines come from a ring made once, so that the benchmark measures
// discover, not fmt.
type lineSource struct {
	n, i           int
	hosts, sources int
	ring           [][]byte
	buf            []byte
}

const ringSize = 30_000

func (s *lineSource) Read(p []byte) (int, error) {
	if s.ring == nil {
		for i := range min(ringSize, s.n) {
			s.ring = append(s.ring, auditLine(i, s.hosts, s.sources))
		}
	}
	for len(s.buf) == 0 {
		if s.i == s.n {
			return 0, io.EOF
		}
		s.buf = s.ring[s.i%len(s.ring)]
		s.i++
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

func auditLine(i, hosts, sources int) []byte {
	h, src := i%hosts, (i*7919)%sources
	if i%3 == 0 {
		return fmt.Appendf(nil, `{"audit":"not_declared","authority":null,"bytes_received":517,"bytes_sent":3921,"connection_termination_details":null,"destination":"egress_not_declared","downstream_address":"10.%d.%d.%d:%d","duration_ms":42,"group":"egress-gateway","listener":"tls_443","method":null,"path":null,"peer_identity":null,"port":"443","protocol":null,"request_id":null,"response_code":0,"response_code_details":null,"response_flags":"-","sni":"api-%d.service-%d.example.com","time":"2026-12-01T10:%02d:%02d.123Z","upstream_cluster":"audit_not_declared","upstream_failure":null,"upstream_host":"203.0.113.%d:443","user_agent":null}`+"\n",
			src/65536%256, src/256%256, src%256, 30000+i%30000, h, h%50, i/60%60, i%60, h%250)
	}
	return fmt.Appendf(nil, `{"audit":"not_declared","authority":"web-%d.service-%d.example.com","bytes_received":0,"bytes_sent":1524,"destination":"egress_not_declared","downstream_address":"10.%d.%d.%d:%d","duration_ms":12,"group":"egress-gateway","listener":"http_80","method":"GET","path":"/v1/items/%d","port":"80","protocol":"HTTP/1.1","request_id":"4f0c2a7e-9d1b-4c55-8c1e-%012d","response_code":200,"response_code_details":"via_upstream","response_flags":"-","time":"2026-12-01T10:%02d:%02d.123Z","upstream_cluster":"audit_not_declared","upstream_host":"203.0.113.%d:80","user_agent":"curl/8.5.0"}`+"\n",
		h, h%50, src/65536%256, src/256%256, src%256, 30000+i%30000, i, i, i/60%60, i%60, h%250)
}

// BenchmarkDiscover reads one million audit lines per iteration (1,000
// destinations, 5,000 source addresses) and proposes their intents:
// ns/op is the time for the million (the target: under 10 s on the 2-core
// development machines). go test ./internal/discover -run '^$' -bench
// BenchmarkDiscover -benchtime 1x.
func BenchmarkDiscover(b *testing.B) {
	const lines = 1_000_000
	b.ReportAllocs()
	src := &lineSource{n: lines, hosts: 1000, sources: 5000}
	for b.Loop() {
		src.i, src.buf = 0, nil
		c := NewCollector(Options{})
		if err := c.Read(src); err != nil {
			b.Fatal(err)
		}
		res := c.Propose(nil, resolveOptions)
		// Each of the 1,000 host numbers is seen by SNI and by Host.
		if c.Stats.Audited != lines || len(res.Proposals) != 2000 {
			b.Fatalf("%d audited, %d proposals", c.Stats.Audited, len(res.Proposals))
		}
	}
	b.ReportMetric(float64(lines), "lines/op")
}

// Memory grows with the distinct destinations and sources, not with the
// lines: ten times the lines over the same destinations and sources hold
// the same memory once read (the heap measured with only that collector
// alive).
func TestMemoryBoundedByDestinations(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 330,000 lines")
	}
	held := func(n int) int64 {
		c := NewCollector(Options{})
		if err := c.Read(&lineSource{n: n, hosts: 300, sources: 2000}); err != nil {
			t.Fatal(err)
		}
		if c.Stats.Audited != n {
			t.Fatalf("%d of %d lines audited", c.Stats.Audited, n)
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		runtime.KeepAlive(c)
		return int64(m.HeapAlloc)
	}
	base := held(0)
	small := held(30_000) - base
	large := held(300_000) - base
	t.Logf("heap held: %d KiB for 30,000 lines, %d KiB for 300,000 (the same 600 destinations and 2,000 sources)", small/1024, large/1024)
	if large-small > 256<<10 || large > 2*small+256<<10 {
		t.Fatalf("ten times the lines held %d KiB more", (large-small)/1024)
	}
}
