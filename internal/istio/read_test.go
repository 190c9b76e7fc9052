package istio

import (
	"bytes"
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
