package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

func copyExamples(t *testing.T) string { return xdstest.CopyFiles(t, "../../examples/*.yaml") }

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// diff lists, per group and type, what a proposed folder adds, removes and
// changes; an invalid ConfigMap in it keeps its current version, as in the
// server.
func TestDiffGolden(t *testing.T) {
	current, proposed := copyExamples(t), copyExamples(t)
	editFile(t, filepath.Join(proposed, "database.yaml"), "connectTimeout: 5s", "connectTimeout: 3s")
	editFile(t, filepath.Join(proposed, "tls-origination.yaml"), "number: 80", "number: 70000") // invalid: kept as is
	if err := os.Remove(filepath.Join(proposed, "passthrough.yaml")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd("diff", "--xds-client-auth", "--config-dir", current, proposed)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	out = strings.ReplaceAll(out, proposed, "PROPOSED")
	golden(t, "diff.golden", out)

	code, out, _ = runCmd("diff", "--xds-client-auth", "--config-dir", current, current)
	if code != 0 || !strings.Contains(out, "no change") {
		t.Fatalf("same folder: exit %d\n%s", code, out)
	}
	if code, _, _ := runCmd("diff", current); code != 2 {
		t.Fatalf("without --config-dir: exit %d", code)
	}
}

// config prints what a running server serves a group: YAML documents, each
// with its type, name and source ConfigMaps.
func TestConfigCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Config{ConfigDir: copyExamples(t), XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
		Translate: translate.Options{ForwardProxyPort: 3128}, ShutdownGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = srv.Wait()
	}()
	select {
	case <-srv.Builder.Ready():
	case <-ctx.Done():
		t.Fatal("no snapshot")
	}
	// Ready comes just before the first publish: ask until it is there.
	code, out, errOut := runCmd("config", "--admin-address", srv.AdminAddr, "--group", "egress-gateway")
	for code != 0 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		code, out, errOut = runCmd("config", "--admin-address", srv.AdminAddr, "--group", "egress-gateway")
	}
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"# Cluster apps/github/github/443 (type version ",
		") from ConfigMaps apps/github\n",
		"# Secret apps/partner-client-cert (",
		"# Listener http_80 (",
		"name: apps/github/github/443\n",
		"'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
		"connect_timeout: 5s\n", // Envoy's proto names, as in its docs and config dump
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "connectTimeout") || strings.Contains(out, "clusterName") {
		t.Error("camelCase JSON names in the Envoy YAML")
	}
	docs := strings.Split(out, "\n---\n")
	if len(docs) != 1+10+4+2+2+2 { // clusters: 9 destinations and source_not_allowed
		t.Errorf("%d documents", len(docs))
	}
	for _, d := range docs[1:] {
		var v map[string]any
		if err := yaml.Unmarshal([]byte(d), &v); err != nil || v["name"] == nil && v["cluster_name"] == nil {
			t.Errorf("document does not parse as a named resource (%v):\n%s", err, d)
		}
	}
	served := "; the server at " + srv.AdminAddr + " serves: egress-gateway\n"
	if code, _, errOut := runCmd("config", "--admin-address", srv.AdminAddr, "--group", "nobody"); code != 1 || !strings.Contains(errOut, "no snapshot") || !strings.HasSuffix(errOut, served) {
		t.Errorf("unknown group: exit %d: %s", code, errOut)
	}
	// Without --group: what is wrong, and the groups to choose from.
	if code, _, errOut := runCmd("config", "--admin-address", srv.AdminAddr); code != 2 ||
		!strings.Contains(errOut, "xds-server config: --group is required: the gateway group (Envoy's node.cluster) to print"+served) {
		t.Errorf("no group: exit %d: %s", code, errOut)
	}
}
