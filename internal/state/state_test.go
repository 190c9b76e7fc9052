package state

import (
	"os"
	"path/filepath"
	"testing"
)

// Records round-trip, are private to the server (they may hold keys), and
// a missing, corrupt or foreign file is told apart from a record.
func TestSaveLoad(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if found, err := d.Load("r.json", &v); found || err != nil {
		t.Fatalf("missing record: %v %v", found, err)
	}
	if err := d.Save("r.json", map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if found, err := d.Load("r.json", &v); !found || err != nil || v["k"] != "v" {
		t.Fatalf("round trip: %v %v %v", found, err, v)
	}
	for path, want := range map[string]os.FileMode{d.Path(): 0o700, filepath.Join(d.Path(), "r.json"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(d.Path())
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := os.WriteFile(filepath.Join(d.Path(), "bad.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Load("bad.json", &v); err == nil {
		t.Error("a corrupt record loaded")
	}
}

func TestOpenFailsWhereNoFolderCanBe(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "state")); err == nil {
		t.Fatal("opened a state folder under a file")
	}
}
