package compile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// Links the folder source cannot read reach the operator as diagnostics of
// their file: a dangling link is an error, a link to a folder (not
// followed, by design) a warning; an oversized file is an error naming
// the size and the limit.
func TestFromFolderReportsLinksAndBounds(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "common"), 0o755); err != nil {
		t.Fatal(err)
	}
	for target, link := range map[string]string{"gone.yaml": "a.yaml", "common": "shared"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "big.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "big.yaml"), watch.MaxFileBytes+1); err != nil {
		t.Fatal(err)
	}
	state, err := watch.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, diags := compile.FromFolder(state)
	diags.Sort()
	var got []string
	for _, d := range diags {
		got = append(got, string(d.Severity)+" "+d.Error())
	}
	want := []string{
		`error a.yaml: symbolic link to "gone.yaml", which does not exist (a dangling link): not read`,
		`error big.yaml: file is 4194305 bytes, over the 4194304 bytes (4 MiB) a manifest file may have: not read`,
		`warning shared: warning: symbolic link to the folder "common": not followed`,
	}
	if len(got) != len(want) {
		t.Fatalf("got:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("got %q, want %q...", got[i], want[i])
		}
	}
	if diags[2].Severity != intent.SeverityWarning {
		t.Error("folder link not a warning")
	}
}
