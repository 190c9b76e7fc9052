package xdstest

import (
	"os"
	"path/filepath"
	"testing"
)

// CopyFiles copies the files matching pattern (e.g. ../../examples/*.yaml)
// into a new temporary folder, so a test can edit a server's input.
func CopyFiles(t testing.TB, pattern string) string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s: %v", pattern, err)
	}
	dir := t.TempDir()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
