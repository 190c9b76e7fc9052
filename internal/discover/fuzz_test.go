package discover

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// FuzzDiscover feeds arbitrary bytes as log lines: discover never panics,
// and whatever it proposes is accepted by the server's rules (it parses
// as a manifest and intent, conflicts with nothing, names nothing an
// intent may not).
func FuzzDiscover(f *testing.F) {
	lines, err := os.ReadFile("testdata/audit.log")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(lines)
	for _, l := range bytes.Split(lines, []byte("\n")) {
		f.Add(l)
		if len(l) > 10 {
			f.Add(l[:len(l)/2]) // truncated
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewCollector(testOptions())
		if err := c.Read(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		accepted(t, c.Propose(nil, resolveOptions), nil)
	})
}

// FuzzAuditLine builds well-formed audit lines of hostile field values,
// which random bytes rarely reach: the same guarantees.
func FuzzAuditLine(f *testing.F) {
	f.Add("tls_443", "not_declared", "egress-gateway", "443", "a.example.com", "", "", "", "10.0.0.1:1", "")
	f.Add("forward_proxy_3128", "not_declared", "g", "", "", "db.example.com:5432", "CONNECT", "", "[2001:db8::1]:1", "2026-12-01T10:00:00Z")
	f.Add("mesh_15443", "not_declared", "g", "", "", "x.example.com:443", "CONNECT", "spiffe://cluster.local/ns/a/sa/b", "10.0.0.1:1", "")
	f.Add("http_80", "source_not_allowed", "g", "80", "", "web.example.com", "GET", "", "10.0.0.1:1", "")
	f.Add("http_80", "not_declared", "g\n- x", "80", "", "a.example.com:80\n  x: y", "GET", "", "10.0.0.1:1", "")
	f.Fuzz(func(t *testing.T, listener, audit, group, port, sni, authority, method, peer, addr, at string) {
		line, err := json.Marshal(map[string]string{
			"listener": listener, "audit": audit, "group": group, "port": port, "sni": sni, "authority": authority,
			"method": method, "peer_identity": peer, "downstream_address": addr, "time": at, "destination": authority,
		})
		if err != nil {
			return
		}
		c := NewCollector(testOptions())
		c.Add(line)
		c.Add(line)
		accepted(t, c.Propose(nil, resolveOptions), nil)
	})
}
