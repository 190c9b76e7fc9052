package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validate lists the first problems of a ConfigMap and one line counting
// the rest, with totals that count every problem; a broken .json file is
// "invalid JSON" with its line and column; a dangling link is reported.
func TestValidateBoundedOutput(t *testing.T) {
	dir := t.TempDir()
	cm := `apiVersion: v1
kind: ConfigMap
metadata: {name: egress, namespace: payments, labels: {egress-xds.io/intent: "true"}}
data:
  egress.yaml: |
    destinations:
` + strings.Repeat("      - {}\n", 200) // 3 errors each
	files := map[string]string{
		"cm.yaml":     cm,
		"broken.json": "{\"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\"\n  \"metadata\": {}}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("nowhere.yaml", filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd("validate", dir)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range []string{
		dir + `/broken.json: document 1 (line 1): invalid JSON: line 3, column 3: invalid character '"' after object key:value pair`,
		dir + `/cm.yaml: payments/egress: … and 550 more problems in this ConfigMap (550 errors, 0 warnings), not listed: only the first 50 are`,
		dir + `/link.yaml: symbolic link to "nowhere.yaml", which does not exist (a dangling link): not read`,
		"602 error(s), 0 warning(s); 0 of 1 intent ConfigMap(s) accepted, 0 destination port(s)",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if len(lines) != 50+1+2+1 {
		t.Errorf("%d lines:\n%s", len(lines), out)
	}
}
