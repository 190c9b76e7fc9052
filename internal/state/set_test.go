package state

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func openSet(t *testing.T) (*Dir, *Set) {
	t.Helper()
	d, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return d, d.Set("things")
}

func load(t *testing.T, s *Set) Loaded {
	t.Helper()
	l, found, err := s.Load()
	if err != nil || !found {
		t.Fatalf("load: found %v, %v", found, err)
	}
	return l
}

func entries(kv ...string) []Entry {
	var out []Entry
	for i := 0; i < len(kv); i += 2 {
		out = append(out, Entry{Key: kv[i], Data: []byte(kv[i+1])})
	}
	return out
}

func sorted(es []Entry) []Entry {
	out := append([]Entry(nil), es...)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// files lists the set's folder.
func files(t *testing.T, s *Set) []string {
	t.Helper()
	des, err := os.ReadDir(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func stat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// Entries round-trip whatever their keys hold (keys that would collide or
// escape as file names are only ever written in the index), the files are
// private, and a set not saved yet is told apart.
func TestSetRoundTrip(t *testing.T) {
	d, s := openSet(t)
	if _, found, err := s.Load(); found || err != nil {
		t.Fatalf("no set yet: %v %v", found, err)
	}
	want := entries("a/b-c", "one", "a-b/c", "two", "../../etc/passwd", "three", "ns/ü\x00/..", "", "same", "one")
	if err := s.Save([]byte(`{"Source":"x"}`), want); err != nil {
		t.Fatal(err)
	}
	l := load(t, d.Set("things"))
	if string(l.Meta) != `{"Source":"x"}` || len(l.Problems) > 0 {
		t.Fatalf("meta %s, problems %v", l.Meta, l.Problems)
	}
	if !reflect.DeepEqual(l.Entries, sorted(want)) {
		t.Fatalf("loaded %q, want %q", l.Entries, sorted(want))
	}
	// index + one file per distinct content ("one" twice, "" once).
	if got := files(t, s); len(got) != 5 {
		t.Errorf("files %v, want the index and 4 entry files", got)
	}
	for _, n := range files(t, s) {
		if n != indexName && !isSum(n) {
			t.Errorf("file %q is neither the index nor an entry", n)
		}
		if m := stat(t, filepath.Join(s.Path(), n)).Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %v", n, m)
		}
	}
	if m := stat(t, s.Path()).Mode().Perm(); m != 0o700 {
		t.Errorf("set folder mode %v", m)
	}
	if entries, _ := os.ReadDir(filepath.Dir(filepath.Dir(s.Path()))); len(entries) != 1 {
		t.Errorf("something was written outside the state folder: %v", entries)
	}
}

// A save writes what changed: an unchanged entry's file and an unchanged
// set's index are not written again; a replaced entry's file is removed.
func TestSetSaveWritesWhatChanged(t *testing.T) {
	_, s := openSet(t)
	es := entries("a", "alpha", "b", "beta", "c", "gamma")
	if err := s.Save(nil, es); err != nil {
		t.Fatal(err)
	}
	index := stat(t, filepath.Join(s.Path(), indexName))
	alpha := stat(t, filepath.Join(s.Path(), sumOf([]byte("alpha"))))
	if err := s.Save(nil, es); err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(index, stat(t, filepath.Join(s.Path(), indexName))) {
		t.Error("the index was written again although nothing changed")
	}
	// Same content in new memory: recognised by its sum.
	es[1].Data = []byte("beta")
	if err := s.Save(nil, es); err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(index, stat(t, filepath.Join(s.Path(), indexName))) {
		t.Error("the index was written again although no content changed")
	}
	es[1].Data = []byte("BETA")
	es = es[:2] // c deleted
	if err := s.Save(nil, es); err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(alpha, stat(t, filepath.Join(s.Path(), sumOf([]byte("alpha"))))) {
		t.Error("an unchanged entry's file was written again")
	}
	want := []string{indexName, sumOf([]byte("alpha")), sumOf([]byte("BETA"))}
	got := files(t, s)
	sort.Strings(want)
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("files %v, want %v (replaced and deleted entries removed)", got, want)
	}
	// Meta alone changed: the index is written.
	if err := s.Save([]byte(`"m"`), es); err != nil {
		t.Fatal(err)
	}
	if l := load(t, s); string(l.Meta) != `"m"` || !reflect.DeepEqual(l.Entries, es) {
		t.Errorf("loaded %s %q", l.Meta, l.Entries)
	}
}

// A crash mid-save leaves the previous set or the next one, whole: entry
// files written without the index that names them, temporary files, or
// the replaced files still there after the new index are ignored and
// removed.
func TestSetCrashMidSave(t *testing.T) {
	d, s := openSet(t)
	old := entries("a", "alpha", "b", "beta")
	if err := s.Save(nil, old); err != nil {
		t.Fatal(err)
	}
	// Crashed before the index: a new entry file, one torn while written,
	// and a torn temporary index.
	for name, data := range map[string]string{sumOf([]byte("BETA")): "BETA", sumOf([]byte("GAMMA")): "GAM", tempPrefix + indexName + ".123": `{"Format":1,"Entr`} {
		if err := os.WriteFile(filepath.Join(s.Path(), name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if l := load(t, d.Set("things")); !reflect.DeepEqual(l.Entries, old) || len(l.Problems) > 0 {
		t.Fatalf("after a crash before the index: %q %v", l.Entries, l.Problems)
	}
	if got := files(t, s); len(got) != 3 {
		t.Errorf("files left by the crash not removed: %v", got)
	}
	// Crashed after the index, before the replaced file was removed.
	s = d.Set("things")
	load(t, s)
	betaFile := filepath.Join(s.Path(), sumOf([]byte("beta")))
	beta, err := os.ReadFile(betaFile)
	if err != nil {
		t.Fatal(err)
	}
	next := entries("a", "alpha", "b", "BETA")
	if err := s.Save(nil, next); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(betaFile, beta, 0o600); err != nil {
		t.Fatal(err)
	}
	if l := load(t, d.Set("things")); !reflect.DeepEqual(l.Entries, next) {
		t.Fatalf("after a crash after the index: %q", l.Entries)
	}
	if _, err := os.Stat(betaFile); !os.IsNotExist(err) {
		t.Errorf("the replaced file is still there: %v", err)
	}
}

// A torn, altered or missing entry file is reported and skipped, the rest
// loads, and the next save holding that content writes it again; an index
// that is not ours (torn, foreign, naming files outside the folder) is an
// error, never a panic.
func TestSetCorruption(t *testing.T) {
	d, s := openSet(t)
	es := entries("a", "alpha", "b", "beta", "c", "gamma")
	if err := s.Save(nil, es); err != nil {
		t.Fatal(err)
	}
	alpha := filepath.Join(s.Path(), sumOf([]byte("alpha")))
	if err := os.WriteFile(alpha, []byte("alp"), 0o600); err != nil { // torn
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Path(), sumOf([]byte("beta"))), []byte("bet!"), 0o600); err != nil { // altered
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Path(), sumOf([]byte("gamma")))); err != nil {
		t.Fatal(err)
	}
	s = d.Set("things")
	l := load(t, s)
	if len(l.Entries) != 0 || len(l.Problems) != 3 {
		t.Fatalf("entries %q, problems %v", l.Entries, l.Problems)
	}
	for _, p := range l.Problems {
		if !strings.Contains(p.Error(), "not loaded") {
			t.Errorf("problem %v", p)
		}
	}
	if err := s.Save(nil, es); err != nil {
		t.Fatal(err)
	}
	if l := load(t, d.Set("things")); !reflect.DeepEqual(l.Entries, es) || len(l.Problems) > 0 {
		t.Fatalf("after saving again: %q %v", l.Entries, l.Problems)
	}
	for what, index := range map[string]string{
		"torn":            `{"Format":1,"Entries":[{"Key":"a","Su`,
		"another format":  `{"Format":2,"Entries":[]}`,
		"outside":         `{"Format":1,"Entries":[{"Key":"a","Sum":"../../../etc/passwd","Size":3}]}`,
		"repeated key":    fmt.Sprintf(`{"Format":1,"Entries":[{"Key":"a","Sum":%q,"Size":5},{"Key":"a","Sum":%q,"Size":5}]}`, sumOf([]byte("alpha")), sumOf([]byte("alpha"))),
		"size":            fmt.Sprintf(`{"Format":1,"Entries":[{"Key":"a","Sum":%q,"Size":-1}]}`, sumOf([]byte("alpha"))),
		"not json at all": "\x00\x01",
	} {
		if err := os.WriteFile(filepath.Join(s.Path(), indexName), []byte(index), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Set("things").Load(); err == nil {
			t.Errorf("%s index loaded", what)
		}
	}
	// Saving over an index that is not ours replaces it.
	if err := d.Set("things").Save(nil, es[:1]); err != nil {
		t.Fatal(err)
	}
	if l := load(t, d.Set("things")); !reflect.DeepEqual(l.Entries, es[:1]) {
		t.Fatalf("after saving over a bad index: %q", l.Entries)
	}
	if got := files(t, s); len(got) != 2 {
		t.Errorf("files %v, want the index and one entry", got)
	}
}

// A save beyond the bounds is refused, leaving the saved set as it was.
func TestSetBounds(t *testing.T) {
	d, s := openSet(t)
	es := entries("a", "alpha")
	if err := s.Save(nil, es); err != nil {
		t.Fatal(err)
	}
	for what, bad := range map[string][]Entry{
		"too many":  make([]Entry, MaxEntries+1),
		"too large": {{Key: "big", Data: make([]byte, MaxEntrySize+1)}},
		"no key":    {{Data: []byte("x")}},
		"twice":     entries("a", "x", "a", "y"),
	} {
		if err := s.Save(nil, bad); err == nil {
			t.Errorf("%s: saved", what)
		}
	}
	if l := load(t, d.Set("things")); !reflect.DeepEqual(l.Entries, es) {
		t.Fatalf("after refused saves: %q", l.Entries)
	}
	if got := files(t, s); len(got) != 2 {
		t.Errorf("files %v left by refused saves", got)
	}
	if !bytes.Equal(es[0].Data, []byte("alpha")) {
		t.Error("entry changed")
	}
}
