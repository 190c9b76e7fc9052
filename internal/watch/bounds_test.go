package watch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func mustWrite(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustLink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func fileState(s State, p string) (FileState, bool) {
	for _, f := range s.Files {
		if f.Path == p {
			return f, true
		}
	}
	return FileState{}, false
}

// Links that cannot be read are reported on their file, not skipped
// unseen: dangling, loops, and links to folders (not followed, by design,
// whatever their name). Links to files are read; other links not named as
// manifests are skipped like such files.
func TestLinksReported(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "sub", "in.yaml"), intentCM)
	mustWrite(t, filepath.Join(dir, "notes.txt"), "x")
	mustLink(t, "missing.yaml", filepath.Join(dir, "dangling.yaml"))
	mustLink(t, "loop2.yaml", filepath.Join(dir, "loop1.yaml"))
	mustLink(t, "loop1.yaml", filepath.Join(dir, "loop2.yaml"))
	mustLink(t, "sub", filepath.Join(dir, "shared"))
	mustLink(t, "notes.txt", filepath.Join(dir, "notes-link"))
	mustLink(t, "sub/in.yaml", filepath.Join(dir, "ok.yaml"))

	s, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"dangling.yaml": `symbolic link to "missing.yaml", which does not exist (a dangling link): not read`,
		"loop1.yaml":    `symbolic link to "loop2.yaml": a loop of links: not read`,
		"loop2.yaml":    `symbolic link to "loop1.yaml": a loop of links: not read`,
		"shared":        `symbolic link to the folder "sub": not followed (links to folders never are`,
	}
	for p, w := range want {
		f, ok := fileState(s, p)
		var le *LinkError
		if !ok || f.Err == nil || !strings.HasPrefix(f.Err.Error(), w) || !errors.As(f.Err, &le) || le.Folder != (p == "shared") {
			t.Errorf("%s: %+v, want %q", p, f, w)
		}
	}
	if f, ok := fileState(s, "ok.yaml"); !ok || f.Err != nil || len(f.ConfigMaps) != 1 {
		t.Errorf("ok.yaml: %+v", f)
	}
	if _, ok := fileState(s, "notes-link"); ok {
		t.Error("a link to a non-manifest file is listed")
	}
	if len(s.Files) != 6 { // the four above, ok.yaml, sub/in.yaml
		t.Errorf("%d files: %+v", len(s.Files), s.Files)
	}
}

// A link whose target goes away is reported, and its last good content
// is kept, as for any file that cannot be read.
func TestLinkTargetGoneKeepsLastGood(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	target := filepath.Join(other, "cm.yaml")
	mustWrite(t, target, intentCM)
	mustLink(t, target, filepath.Join(dir, "cm.yaml"))
	s := newScanner(dir)
	s.scan()
	if f, _ := fileState(s.state(), "cm.yaml"); f.Err != nil || len(f.ConfigMaps) != 1 {
		t.Fatalf("before: %+v", f)
	}
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	if !s.scan() {
		t.Fatal("no change seen")
	}
	f, _ := fileState(s.state(), "cm.yaml")
	if f.Err == nil || !strings.Contains(f.Err.Error(), "dangling link") || len(f.ConfigMaps) != 1 || f.Hash == "" {
		t.Fatalf("after: %+v", f)
	}
	if s.scan() {
		t.Fatal("reported again on the next scan")
	}
}

// A file over MaxFileBytes is refused from its size, without being read:
// a 50 MB file costs no memory, and the error names the size and the limit.
func TestFileSizeBound(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s, err := LoadDir(dir)
	runtime.ReadMemStats(&m1)
	if err != nil {
		t.Fatal(err)
	}
	fs, _ := fileState(s, "big.yaml")
	want := "file is 52428800 bytes, over the 4194304 bytes (4 MiB) a manifest file may have: not read"
	if fs.Err == nil || !strings.HasPrefix(fs.Err.Error(), want) {
		t.Fatalf("big.yaml: %v, want %q", fs.Err, want)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes: the big file was read", alloc)
	}
	// Exactly at the limit is read.
	edge := filepath.Join(t.TempDir(), "edge.yaml")
	mustWrite(t, edge, intentCM+"#"+strings.Repeat("x", MaxFileBytes-len(intentCM)-1))
	if cms, _, err := ParseFile(edge); err != nil || len(cms) != 1 {
		t.Errorf("edge.yaml (%d bytes): %v", MaxFileBytes, err)
	}
	if _, _, err := ParseFile(big); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("ParseFile: %v", err)
	}
}

// endless is a file that keeps growing: it counts what is read from it.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.read += int64(len(p))
	return len(p), nil
}

// A file that grows past the bound while it is read is refused after
// limit+1 bytes, never read whole.
func TestReadBoundedStopsPastLimit(t *testing.T) {
	r := &endless{}
	_, err := readBounded(r, 10, 1000)
	if err == nil || !strings.Contains(err.Error(), "grew while read to more than the 4194304 bytes") {
		t.Fatalf("err %v", err)
	}
	if r.read > 1001 {
		t.Fatalf("read %d bytes past a limit of 1000", r.read)
	}
	data, err := readBounded(io.LimitReader(&endless{}, 1000), 1000, 1000)
	if err != nil || len(data) != 1000 {
		t.Fatalf("at the limit: %d bytes, %v", len(data), err)
	}
}

// A broken .json file says "invalid JSON" with the line and column of the
// problem; a key given twice is found as in YAML; a stream of objects is
// read as kubectl reads it.
func TestJSONFiles(t *testing.T) {
	cm := func(name string) string {
		return fmt.Sprintf(`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": %q}, "data": {"a": "b"}}`, name)
	}
	cases := []struct{ name, in, want string }{
		{"syntax", "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\",\n  \"metadata\": {\"name\": \"a\"},,\n}\n",
			`document 1 (line 1): invalid JSON: line 4, column 29: invalid character ',' looking for beginning of object key string`},
		{"second value", cm("a") + "\n\n  {\"apiVersion\": \"v1\" \"kind\": 1}\n",
			`document 2 (line 3): invalid JSON: line 3, column 23: invalid character '"' after object key:value pair`},
		{"truncated", "{\"apiVersion\": \"v1\",\n \"kind\": [", `document 1 (line 1): invalid JSON: line 2, column 11: the file ends inside a value`},
		{"duplicate key", "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\",\n \"metadata\": {\"name\": \"a\"},\n \"data\": {},\n   \"data\": {\"x\": \"y\"}}",
			`document 1 (line 1): line 4, column 4: key "data" is given twice in one object`},
		{"nested duplicate", `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1", "x": "2"}}}`,
			`document 1 (line 1): line 1, column 90: key "x" is given twice in one object`},
		{"strict fields", `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "extra": 1}`,
			`document 1 (line 1), ConfigMap default/a: unknown field "extra"`},
	}
	for _, c := range cases {
		p := parseFile("dir/x.JSON", []byte(c.in))
		if p.err == nil || !strings.Contains(p.err.Error(), c.want) || strings.Contains(p.err.Error(), "YAML") {
			t.Errorf("%s: %v\nwant %q", c.name, p.err, c.want)
		}
	}
	p := parseFile("x.json", []byte("\xef\xbb\xbf"+cm("a")+"\n"+cm("b")+"null\t\n{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Secret\",\n\t\"metadata\": {\"name\": \"s\"}\n}\n"))
	if p.err != nil || len(p.configMaps) != 2 || p.configMaps[1].Name != "b" || len(p.secrets) != 1 {
		t.Fatalf("stream: %v %+v", p.err, p)
	}
	if p := parseFile("x.json", []byte(" \n")); p.err != nil || len(p.configMaps) != 0 {
		t.Fatalf("empty: %v", p.err)
	}
}

// A file of many broken or ignored documents lists the first problems
// and counts the rest.
func TestFileProblemsCapped(t *testing.T) {
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c%d}\nbogus: 1\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d%d}\n", i, i)
	}
	p := parseManifests([]byte(b.String()))
	lines := strings.Split(p.err.Error(), "\n")
	if len(lines) != maxFileProblems+1 || lines[len(lines)-1] != "… and 950 more problems in this file, not listed: only the first 50 are" {
		t.Fatalf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if len(p.notes) != maxFileProblems+1 || p.notes[len(p.notes)-1] != "… and 950 more documents ignored" {
		t.Fatalf("%d notes, last %q", len(p.notes), p.notes[len(p.notes)-1])
	}
}

// A file of more than MaxDocumentsPerFile documents is refused whole,
// before any is parsed; empty documents do not count.
func TestDocumentsPerFileBound(t *testing.T) {
	want := "the file holds more than 10000 documents: not read; split it into several files"
	for name, in := range map[string]string{
		"x.yaml": strings.Repeat("a: 1\n---\n# empty\n---\n", MaxDocumentsPerFile+1),
		"x.json": strings.Repeat("{}\nnull\n", MaxDocumentsPerFile+1),
	} {
		p := parseFile(name, []byte(in))
		if p.err == nil || p.err.Error() != want {
			t.Errorf("%s: %v", name, p.err)
		}
	}
	p := parseFile("x.yaml", []byte(strings.Repeat("# empty\n---\n", 3*MaxDocumentsPerFile)+intentCM))
	if p.err != nil || len(p.configMaps) != 1 {
		t.Errorf("empty documents counted: %v", p.err)
	}
}
