package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// discover reads log files (and stdin), writes one manifest per proposal
// into --out, says what it read on stderr, and what it writes passes
// validate beside the current intents.
func TestDiscoverCommand(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "gateway.log")
	lines := `{"listener":"tls_443","destination":"egress_not_declared","audit":"not_declared","group":"egress-gateway","port":"443","sni":"api.new.example","downstream_address":"10.0.0.5:1","time":"2026-12-01T10:00:00.000Z"}
{"listener":"tls_443","destination":"apps/github/github/443","audit":"source_not_allowed","group":"egress-gateway","policy":"allow: cidr 10.0.0.0/8, cidr 127.0.0.1","sni":"api.github.com","downstream_address":"192.168.7.3:1"}
not a log line
`
	if err := os.WriteFile(log, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "proposed")
	code, stdout, stderr := runCmd("discover", "--config-dir", "../../examples", "--out", out, log)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := filepath.Join(out, "egress-discovered.api.new.example.yaml") + "\n"
	if !strings.HasPrefix(stdout, want) {
		t.Errorf("stdout %q, want it to start with %q", stdout, want)
	}
	if !strings.Contains(stderr, "discover: 3 line(s), 2 audited") {
		t.Errorf("stderr: %s", stderr)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.yaml"))
	if len(files) != 2 || filepath.Base(files[1]) != "widen.apps.github.yaml" {
		t.Fatalf("wrote %v", files)
	}
	if b, _ := os.ReadFile(files[1]); !strings.Contains(string(b), "- {cidr: 192.168.7.3/32} # added by discover: seen once") {
		t.Errorf("the widening:\n%s", b)
	}
	// Applied beside the examples (a widening replaces its ConfigMap's
	// file), the proposals pass validate as the server of the examples
	// would judge them.
	applied := filepath.Join(dir, "applied")
	if err := os.CopyFS(applied, os.DirFS("../../examples")); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		name := filepath.Base(f)
		if strings.HasPrefix(name, "widen.") {
			name = "passthrough.yaml"
		}
		if err := os.WriteFile(filepath.Join(applied, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, vout, _ := runCmd("validate", "--xds-address", "127.0.0.1:18000", applied)
	if code != 0 || !strings.Contains(vout, "0 error(s)") {
		t.Fatalf("validate of the applied proposals: exit %d\n%s", code, vout)
	}
}
