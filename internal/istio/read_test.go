package istio

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egress-xds/egress-xds/internal/watch"
)

// Input is bounded as the folder source bounds manifests: a file over
// MaxFileBytes is refused from its size, one of more than
// MaxDocumentsPerFile documents (or List items) is not read, and both
// are errors of the report (exit 1), never a crash or a partial import.
func TestInputBounds(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), watch.MaxFileBytes/2+1), 0o644); err != nil {
		t.Fatal(err)
	}
	many := "apiVersion: v1\nkind: List\nitems:\n" + strings.Repeat("- {apiVersion: v1, kind: Service, metadata: {name: s}}\n", watch.MaxDocumentsPerFile+1)
	docs := strings.Repeat("---\nkind: x\n", watch.MaxDocumentsPerFile+1)
	for name, content := range map[string]string{"many-items.yaml": many, "many-docs.yaml": docs} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := importFiles(t, Options{}, dir)
	report := string(res.Report())
	for _, want := range []string{
		big + ": error: file is 4194306 bytes, over the 4194304 bytes (4 MiB) a manifest file may have",
		filepath.Join(dir, "many-docs.yaml") + ": error: the file holds more than 10000 documents",
		filepath.Join(dir, "many-items.yaml") + ": error: the file holds more than 10000 objects",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%.2000s", want, report)
		}
	}
	if res.Exit() != 1 || len(res.ConfigMaps) != 0 {
		t.Errorf("exit %d, %d ConfigMaps", res.Exit(), len(res.ConfigMaps))
	}
}

// A policy of many operations (each source once per operation) is joined
// in time linear in them, not pairwise: the import stays valid and
// admits each source for what the operations say.
func TestManyOperations(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web, namespace: ext}\nspec:\n  hosts: [web.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: egressgateway}}\n  rules:\n  - from: [{source: {namespaces: [a, b, c]}}]\n    to:\n")
	ms := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
	const n = 1000
	for i := range n {
		fmt.Fprintf(&b, "    - operation: {methods: [%s, %s], paths: [/p%d/*, /q%d]}\n", ms[i%7], ms[(i/7)%7], i, i/3)
	}
	_, opts := caseOptions(t, "testdata/none")
	res := Import([]Input{{Name: "many.yaml", Data: []byte(b.String())}}, nil, opts)
	validOutput(t, res, opts)
	out := string(res.YAML())
	if res.Exit() != 0 || !strings.Contains(out, "prefix: /p999/") || !strings.Contains(out, "exact: /q333") || strings.Count(out, "- namespace: c") < 7 {
		t.Errorf("exit %d; the import lacks some operations:\n%.3000s", res.Exit(), out)
	}
}
