package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/xds"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func statusFixture() []xds.ProxyStatus {
	synced := func(v string) xds.TypeSyncStatus {
		return xds.TypeSyncStatus{State: xds.Synced, Current: v, Sent: v, Acked: v}
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []xds.ProxyStatus{
		{Node: "gw-a", Group: "egress-gateway", Address: "10.0.0.7:41234", Protocol: "sotw", Connected: at, Types: map[string]xds.TypeSyncStatus{
			"Cluster":               synced("0123456789abcdef"),
			"ClusterLoadAssignment": synced("1111111111111111"),
			"Listener": {State: xds.NACKed, Current: "2222222222222222", Sent: "2222222222222222", Acked: "3333333333333333",
				NACKedVersion: "2222222222222222", NACKError: "Proto constraint validation failed: listener tls_443: invalid",
				NACKSources: []string{"apps/docs", "apps/github"}},
			"RouteConfiguration": synced("4444444444444444"),
			"Secret":             synced("5555555555555555"),
		}},
		{Node: "gw-b", Group: "egress-gateway", Address: "10.0.0.8:5000", Protocol: "delta", Connected: at, Types: map[string]xds.TypeSyncStatus{
			"Cluster":               {State: xds.Stale, Current: "0123456789abcdef", Sent: "0123456789abcdef", Acked: "9999999999999999"},
			"ClusterLoadAssignment": synced("1111111111111111"),
			"Listener": {State: xds.Synced, Current: "2222222222222222", Acked: "2222222222222222",
				NACKedVersion: "8888888888888888", NACKError: "older rejection"},
			"RouteConfiguration": synced("4444444444444444"),
			"Secret":             {State: xds.Stale, Current: "5555555555555555"},
		}},
		{Node: "gw-c", Group: "other", Protocol: "sotw", Connected: at, Types: map[string]xds.TypeSyncStatus{}},
	}
}

func TestStatusTableGolden(t *testing.T) {
	var b bytes.Buffer
	renderStatus(&b, statusFixture())
	golden(t, "status.golden", b.String())
}

// The rate limit service has a column of its own, shown with it only.
func TestStatusTableWithRateLimitService(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	proxies := append(statusFixture()[:1], xds.ProxyStatus{Node: "ratelimit-0", Group: "ratelimit/egress-xds", Address: "10.0.0.9:6000",
		Protocol: "sotw", Connected: at, Types: map[string]xds.TypeSyncStatus{
			"RateLimitConfig": {State: xds.Synced, Current: "abcdefabcdefabcd", Sent: "abcdefabcdefabcd", Acked: "abcdefabcdefabcd"},
		}})
	var b bytes.Buffer
	renderStatus(&b, proxies)
	golden(t, "status-ratelimit.golden", b.String())
}

// The command asks /debug/status with the filters and prints the table.
func TestStatusCommand(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/config" {
			_, _ = w.Write([]byte(`{"groups": [{"group": "egress-gateway", "mode": "audit"}, {"group": "other", "mode": "enforce"}]}`))
			return
		}
		if r.URL.Path != "/debug/status" {
			http.NotFound(w, r)
			return
		}
		query = r.URL.RawQuery
		_ = json.NewEncoder(w).Encode(statusFixture()[:1])
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	code, out, errOut := runCmd("status", "--admin-address", addr, "--group", "egress-gateway", "--node", "gw-a")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if query != "group=egress-gateway&node=gw-a" {
		t.Errorf("query %q", query)
	}
	if !strings.Contains(out, "NACKED (22222222)") || !strings.Contains(out, "from ConfigMaps: apps/docs, apps/github") {
		t.Errorf("output:\n%s", out)
	}
	// A group in audit is said first, loudly; one in enforce is not.
	if !strings.HasPrefix(out, "WARNING: gateway group egress-gateway is in audit mode: ") || strings.Contains(out, "group other is in audit") {
		t.Errorf("audit mode not shown:\n%s", out)
	}
	if code, _, errOut := runCmd("status", "--admin-address", "127.0.0.1:1", "--timeout", "1s"); code != 1 || errOut == "" {
		t.Errorf("unreachable server: exit %d: %s", code, errOut)
	}
}
