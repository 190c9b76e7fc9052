package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/state"
)

const waitTimeout = 5 * time.Second

func cmYAML(name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  intent.yaml: %q\n", name, value)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// values maps "path:name" to the intent.yaml value of every ConfigMap.
func values(s State) map[string]string {
	m := map[string]string{}
	for _, f := range s.Files {
		for _, cm := range f.ConfigMaps {
			m[f.Path+":"+cm.Name] = cm.Data["intent.yaml"]
		}
	}
	return m
}

func file(s State, path string) (FileState, bool) {
	for _, f := range s.Files {
		if f.Path == path {
			return f, true
		}
	}
	return FileState{}, false
}

type run struct {
	states chan State
	calls  atomic.Int32
	cancel context.CancelFunc
	done   chan error
}

// start runs a Folder on dir until the test ends and returns its updates.
func start(t *testing.T, dir string, tune func(*Folder)) *run {
	t.Helper()
	f := NewFolder(dir, nil)
	if tune != nil {
		tune(f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{states: make(chan State, 1000), cancel: cancel, done: make(chan error, 1)}
	var inCall atomic.Bool
	go func() {
		r.done <- f.Run(ctx, func(s State) {
			if !inCall.CompareAndSwap(false, true) {
				t.Error("onChange called concurrently")
			}
			r.calls.Add(1)
			r.states <- s
			inCall.Store(false)
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

// next returns the next update, failing the test after a timeout.
func (r *run) next(t *testing.T) State {
	t.Helper()
	select {
	case s := <-r.states:
		return s
	case err := <-r.done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("no update")
	}
	return State{}
}

// until returns the first update that satisfies ok.
func (r *run) until(t *testing.T, what string, ok func(State) bool) State {
	t.Helper()
	deadline := time.After(waitTimeout)
	var last State
	for {
		select {
		case s := <-r.states:
			if ok(s) {
				return s
			}
			last = s
		case err := <-r.done:
			t.Fatalf("Run returned early: %v", err)
		case <-deadline:
			t.Fatalf("timed out waiting for %s; last state: %+v", what, last)
		}
	}
}

func TestFolderEditsAdditionsDeletions(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), cmYAML("a", "v1"))
	r := start(t, dir, nil)

	s := r.next(t)
	if got := values(s); len(got) != 1 || got["a.yaml:a"] != "v1" {
		t.Fatalf("initial state: %v", got)
	}

	write(t, filepath.Join(dir, "a.yaml"), cmYAML("a", "v2"))
	r.until(t, "edit", func(s State) bool { return values(s)["a.yaml:a"] == "v2" })

	// New nested subfolders, written to right after they are made.
	write(t, filepath.Join(dir, "sub", "deep", "b.yml"), cmYAML("b", "v1"))
	s = r.until(t, "file in new subfolder", func(s State) bool { return values(s)["sub/deep/b.yml:b"] == "v1" })
	if len(s.Files) != 2 || s.Files[0].Path != "a.yaml" || s.Files[1].Path != "sub/deep/b.yml" {
		t.Fatalf("files: %+v", s.Files)
	}
	// The new subfolder is watched: edits in it are seen.
	write(t, filepath.Join(dir, "sub", "deep", "b.yml"), cmYAML("b", "v2"))
	r.until(t, "edit in new subfolder", func(s State) bool { return values(s)["sub/deep/b.yml:b"] == "v2" })

	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	r.until(t, "deletion", func(s State) bool { _, ok := file(s, "a.yaml"); return !ok })

	if err := os.RemoveAll(filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	r.until(t, "subfolder deletion", func(s State) bool { return len(s.Files) == 0 && s.Err == nil })

	// A subfolder made again under the same name is watched again.
	write(t, filepath.Join(dir, "sub", "c.json"), `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"intent.yaml":"j"}}`)
	r.until(t, "recreated subfolder", func(s State) bool { return values(s)["sub/c.json:c"] == "j" })
	write(t, filepath.Join(dir, "sub", "c.json"), `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"intent.yaml":"k"}}`)
	r.until(t, "edit in recreated subfolder", func(s State) bool { return values(s)["sub/c.json:c"] == "k" })
}

func TestFolderInvalidEditKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, cmYAML("a", "good"))
	r := start(t, dir, nil)
	s := r.next(t)
	good, _ := file(s, "a.yaml")
	if good.Err != nil || good.Hash == "" {
		t.Fatalf("initial: %+v", good)
	}

	// Truncated, half written, then a strict-decoding error.
	for _, bad := range []string{
		"",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n",
		cmYAML("a", "new") + "extra: field\n",
	} {
		write(t, path, bad)
		prev := ""
		if f, _ := file(s, "a.yaml"); f.Err != nil {
			prev = f.Err.Error()
		}
		s = r.until(t, "error", func(s State) bool { f, _ := file(s, "a.yaml"); return f.Err != nil && f.Err.Error() != prev })
		f, _ := file(s, "a.yaml")
		if values(s)["a.yaml:a"] != "good" || f.Hash != good.Hash {
			t.Fatalf("last good content lost: %v, hash %q", values(s), f.Hash)
		}
	}
	f, _ := file(s, "a.yaml")
	if !strings.Contains(f.Err.Error(), `unknown field "extra"`) {
		t.Errorf("err: %v", f.Err)
	}

	write(t, path, cmYAML("a", "fixed"))
	s = r.until(t, "fix", func(s State) bool { return values(s)["a.yaml:a"] == "fixed" })
	if f, _ := file(s, "a.yaml"); f.Err != nil || f.Hash == good.Hash {
		t.Fatalf("after fix: %+v", f)
	}
}

func TestFolderFileThatNeverParsed(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.yaml"), "kind: [\n")
	r := start(t, dir, nil)
	s := r.next(t)
	f, ok := file(s, "bad.yaml")
	if !ok || f.Err == nil || len(f.ConfigMaps)+len(f.Secrets) != 0 || f.Hash != "" {
		t.Fatalf("%+v", f)
	}
}

func TestFolderAtomicWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, cmYAML("a", "v0"))
	r := start(t, dir, nil)
	r.next(t)

	// Write to a temporary file, then rename it over the target.
	for i := 1; i <= 3; i++ {
		tmp := filepath.Join(dir, fmt.Sprintf(".a.yaml.tmp%d", i))
		write(t, tmp, cmYAML("a", fmt.Sprint("v", i)))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint("v", i)
		r.until(t, "renamed "+want, func(s State) bool { return values(s)["a.yaml:a"] == want })
	}

	// Move the old file aside as a backup, write a new one, drop the backup
	// (vim's default way).
	if err := os.Rename(path, path+"~"); err != nil {
		t.Fatal(err)
	}
	write(t, path, cmYAML("a", "replaced"))
	if err := os.Remove(path + "~"); err != nil {
		t.Fatal(err)
	}
	s := r.until(t, "replaced", func(s State) bool { return values(s)["a.yaml:a"] == "replaced" })
	if len(s.Files) != 1 {
		t.Fatalf("files: %+v", s.Files)
	}

	// A file moved in from outside the folder.
	outside := filepath.Join(t.TempDir(), "b.yaml")
	write(t, outside, cmYAML("b", "moved"))
	if err := os.Rename(outside, filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	r.until(t, "moved in", func(s State) bool { return values(s)["b.yaml:b"] == "moved" })
}

func TestFolderIgnoresHiddenAndTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, nil)
	if s := r.next(t); len(s.Files) != 0 {
		t.Fatalf("%+v", s)
	}
	for _, name := range []string{".hidden.yaml", "a.yaml~", "#a.yaml#", ".a.yaml.swp", "notes.txt", ".git/x.yaml"} {
		write(t, filepath.Join(dir, name), cmYAML("x", "x"))
	}
	write(t, filepath.Join(dir, "real.yaml"), cmYAML("real", "r"))
	// The first update after the ignored writes holds the real file only.
	s := r.next(t)
	if len(s.Files) != 1 || s.Files[0].Path != "real.yaml" {
		t.Fatalf("files: %+v", s.Files)
	}
}

func TestFolderNoChangeNoUpdate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, cmYAML("a", "v"))
	r := start(t, dir, func(f *Folder) { f.rescan = 20 * time.Millisecond })
	r.next(t)
	// Same content, then a comment only: the objects do not change.
	write(t, path, cmYAML("a", "v"))
	write(t, path, "# a comment\n"+cmYAML("a", "v"))
	write(t, filepath.Join(dir, "b.yaml"), cmYAML("b", "v"))
	s := r.next(t)
	if len(s.Files) != 2 {
		t.Fatalf("first update after no-op writes: %+v", s.Files)
	}
}

func TestFolderDebounceBurst(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, cmYAML("a", "v0"))
	r := start(t, dir, nil)
	r.next(t)
	before := r.calls.Load()
	for i := 1; i <= 50; i++ {
		write(t, path, cmYAML("a", fmt.Sprint("v", i)))
	}
	r.until(t, "last write", func(s State) bool { return values(s)["a.yaml:a"] == "v50" })
	if n := r.calls.Load() - before; n > 5 {
		t.Errorf("50 writes gave %d updates", n)
	}
}

func TestFolderMaxDelay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, cmYAML("a", "v0"))
	r := start(t, dir, func(f *Folder) {
		f.quiet = 300 * time.Millisecond
		f.maxDelay = 200 * time.Millisecond
		f.rescan = time.Hour
	})
	r.next(t)
	// Writes closer together than the quiet period: only the max delay lets
	// updates through while they go on.
	updates := 0
	for i := 1; updates < 2; i++ {
		if i > 500 {
			t.Fatalf("only %d updates during %d writes", updates, i)
		}
		write(t, path, cmYAML("a", fmt.Sprint("v", i)))
		select {
		case <-r.states:
			updates++
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestFolderPeriodicRescanOnly(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, func(f *Folder) {
		f.noNotify = true
		f.rescan = 20 * time.Millisecond
	})
	r.next(t)
	write(t, filepath.Join(dir, "x", "a.yaml"), cmYAML("a", "polled"))
	r.until(t, "rescan", func(s State) bool { return values(s)["x/a.yaml:a"] == "polled" })
}

func TestScannerRescan(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, cmYAML("a", "v1"))
	s := newScanner(dir)
	if !s.scan() {
		t.Fatal("first scan: no change")
	}
	if s.scan() {
		t.Fatal("unchanged rescan reported a change")
	}
	write(t, path, cmYAML("a", "v1")) // rewritten, same content
	if s.scan() {
		t.Fatal("same content reported as a change")
	}
	oldHash := s.state().Files[0].Hash
	write(t, path, "# comment\n"+cmYAML("a", "v1"))
	if s.scan() {
		t.Fatal("comment-only edit reported as a change")
	}
	if h := s.state().Files[0].Hash; h == oldHash {
		t.Error("hash not updated")
	}
	write(t, path, cmYAML("a", "v2"))
	if !s.scan() || values(s.state())["a.yaml:a"] != "v2" {
		t.Fatal("edit missed")
	}
	write(t, path, "kind: [")
	if !s.scan() {
		t.Fatal("error missed")
	}
	if f := s.state().Files[0]; f.Err == nil || values(s.state())["a.yaml:a"] != "v2" {
		t.Fatalf("%+v", f)
	}
	if s.scan() {
		t.Fatal("same error reported again")
	}
	write(t, path, "")
	if !s.scan() {
		t.Fatal("emptied file missed")
	}
	if f := s.state().Files[0]; !errors.Is(f.Err, errEmpty) || values(s.state())["a.yaml:a"] != "v2" {
		t.Fatalf("emptied file: %+v", f)
	}
	write(t, path, "# all gone\n")
	if !s.scan() {
		t.Fatal("commented-out file missed")
	}
	if f := s.state().Files[0]; f.Err != nil || len(f.ConfigMaps) != 0 {
		t.Fatalf("commented-out file: %+v", f)
	}
	write(t, filepath.Join(dir, "new.yaml"), "") // a new empty file is no error
	if !s.scan() {
		t.Fatal("new file missed")
	}
	if f, _ := file(s.state(), "new.yaml"); f.Err != nil {
		t.Fatalf("new empty file: %v", f.Err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if !s.scan() || len(s.state().Files) != 1 {
		t.Fatal("deletion missed")
	}
}

func TestScannerStateIsACopy(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), cmYAML("a", "v1"))
	s := newScanner(dir)
	s.scan()
	st := s.state()
	st.Files[0].ConfigMaps[0].Data["intent.yaml"] = "mutated"
	if values(s.state())["a.yaml:a"] != "v1" {
		t.Fatal("state shares objects with the scanner")
	}
}

func TestFolderDirRemovedAndRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	write(t, filepath.Join(dir, "a.yaml"), cmYAML("a", "v1"))
	r := start(t, dir, func(f *Folder) { f.rescan = 50 * time.Millisecond })
	r.next(t)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r.until(t, "folder error", func(s State) bool { return s.Err != nil })
	write(t, filepath.Join(dir, "b.yaml"), cmYAML("b", "v1"))
	// a.yaml, gone with the folder, is kept for the deletion grace.
	r.until(t, "recovery", func(s State) bool { return s.Err == nil && values(s)["b.yaml:b"] == "v1" && len(s.Files) == 1 })
	write(t, filepath.Join(dir, "b.yaml"), cmYAML("b", "v2"))
	r.until(t, "edit after recovery", func(s State) bool { return values(s)["b.yaml:b"] == "v2" })
}

func TestFolderRunMissingDir(t *testing.T) {
	f := NewFolder(filepath.Join(t.TempDir(), "nope"), nil)
	called := false
	err := f.Run(context.Background(), func(State) { called = true })
	if err == nil || !errors.Is(err, os.ErrNotExist) || called {
		t.Fatalf("err %v, called %v", err, called)
	}
}

func TestFolderCancelEndsRunWithoutLeak(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "sub", "a.yaml"), cmYAML("a", "v"))
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	first := make(chan struct{}, 1)
	go func() {
		done <- NewFolder(dir, nil).Run(ctx, func(State) {
			select {
			case first <- struct{}{}:
			default:
			}
		})
	}()
	select {
	case <-first:
	case <-time.After(waitTimeout):
		t.Fatal("no initial state")
	}
	write(t, filepath.Join(dir, "b.yaml"), cmYAML("b", "v")) // something pending
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "z.yaml"), cmYAML("z", "z"))
	write(t, filepath.Join(dir, "a", "b.yml"), cmYAML("b", "b"))
	write(t, filepath.Join(dir, "a", "c.JSON"), `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"c"},"stringData":{"k":"v"}}`)
	write(t, filepath.Join(dir, "bad.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
	for _, name := range []string{".h.yaml", "x.yaml~", "#x.yaml#", "x.yaml.swp", "readme.md", ".hidden/y.yaml"} {
		write(t, filepath.Join(dir, name), cmYAML("ignored", "x"))
	}
	outside := filepath.Join(t.TempDir(), "linked.yaml")
	write(t, outside, cmYAML("linked", "l"))
	if err := os.Symlink(outside, filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "missing.yaml"), filepath.Join(dir, "dangling.yaml")); err != nil {
		t.Fatal(err)
	}

	s, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range s.Files {
		paths = append(paths, f.Path)
	}
	if got, want := strings.Join(paths, " "), "a/b.yml a/c.JSON bad.yaml dangling.yaml link.yaml z.yaml"; got != want { // dangling.yaml: reported, see TestLinksReported
		t.Fatalf("paths %q, want %q", got, want)
	}
	if f, _ := file(s, "bad.yaml"); f.Err == nil || !strings.Contains(f.Err.Error(), "metadata.name is required") {
		t.Errorf("bad.yaml: %+v", f)
	}
	if secs := s.Secrets(); len(secs) != 1 || string(secs[0].Data["k"]) != "v" {
		t.Errorf("secrets: %+v", secs)
	}
	if got := values(s); len(got) != 3 || got["link.yaml:linked"] != "l" {
		t.Errorf("values: %v", got)
	}
	if s.Err != nil {
		t.Errorf("State.Err: %v", s.Err)
	}

	if _, err := LoadDir(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
	if _, err := LoadDir(filepath.Join(dir, "z.yaml")); err == nil {
		t.Error("a file as the dir: no error")
	}
}

// A file deleted and written again within the deletion grace (a git
// checkout) never leaves the state; one that stays deleted goes once the
// grace is over.
func TestFolderDeleteAndRewriteDoesNotFlap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, cmYAML("a", "v1"))
	r := start(t, dir, func(f *Folder) { f.deleteGrace = time.Second })
	r.next(t)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	write(t, path, cmYAML("a", "v1"))
	deadline := time.After(1500 * time.Millisecond)
	for done := false; !done; {
		select {
		case s := <-r.states:
			if values(s)["a.yaml:a"] != "v1" {
				t.Fatalf("the file's ConfigMap left the state: %+v", s.Files)
			}
		case <-deadline:
			done = true
		}
	}
	start := time.Now()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s := r.until(t, "kept while deleted", func(s State) bool { f, ok := file(s, "a.yaml"); return ok && f.Deleted })
	if values(s)["a.yaml:a"] != "v1" {
		t.Fatalf("deleted file's objects not kept during the grace: %+v", s.Files)
	}
	r.until(t, "deletion after the grace", func(s State) bool { _, ok := file(s, "a.yaml"); return !ok })
	if d := time.Since(start); d < time.Second {
		t.Fatalf("removed after %v, before the grace", d)
	}
}

// A file renamed is no duplicate: the ConfigMap is listed once, from its
// new file, while the old path is kept for the grace.
func TestFolderRenameIsNoDuplicate(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), cmYAML("a", "v1"))
	r := start(t, dir, nil)
	r.next(t)
	if err := os.Rename(filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	s := r.until(t, "the renamed file", func(s State) bool { return values(s)["b.yaml:a"] == "v1" })
	if got := values(s); len(got) != 1 {
		t.Fatalf("ConfigMap listed %d times: %v", len(got), got)
	}
}

// With a state folder, a file that is broken when the folder is watched
// again (a restart) still yields its last good content, and a file
// deleted meanwhile is gone.
func TestFolderStateSurvivesRestart(t *testing.T) {
	dir, stateDir := t.TempDir(), t.TempDir()
	st, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "a.yaml"), cmYAML("a", "good"))
	write(t, filepath.Join(dir, "gone.yaml"), cmYAML("gone", "x"))
	r := start(t, dir, func(f *Folder) { f.SaveState(st) })
	r.next(t)
	r.cancel()
	<-r.done
	r.done <- nil // for the cleanup

	write(t, filepath.Join(dir, "a.yaml"), "kind: [")
	if err := os.Remove(filepath.Join(dir, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	r2 := start(t, dir, func(f *Folder) { f.SaveState(st) })
	s := r2.next(t)
	f, _ := file(s, "a.yaml")
	if f.Err == nil || values(s)["a.yaml:a"] != "good" {
		t.Fatalf("broken file after restart: err %v, values %v", f.Err, values(s))
	}
	if _, ok := file(s, "gone.yaml"); ok {
		t.Fatalf("a file deleted while stopped is still listed: %+v", s.Files)
	}
	// Without the state the broken file yields nothing: the state is what
	// kept it.
	s = start(t, dir, nil).next(t)
	if len(values(s)) != 0 {
		t.Fatalf("without state: %v", values(s))
	}
	// Saved state of another folder is not used.
	other := t.TempDir()
	write(t, filepath.Join(other, "a.yaml"), "kind: [")
	s = start(t, other, func(f *Folder) { f.SaveState(st) }).next(t)
	if len(values(s)) != 0 {
		t.Fatalf("state of another folder restored: %v", values(s))
	}
}

// The single-file record of earlier versions is read once: its content
// is restored, the Set replaces it at the first save, and a restart after
// that restores from the Set; a torn entry file is skipped, not fatal.
func TestFolderStateUpgradesSingleFileRecord(t *testing.T) {
	dir, stateDir := t.TempDir(), t.TempDir()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	good := cmYAML("a", "good")
	if err := st.Save(filesRecordName, filesRecord{Dir: abs, Files: map[string][]byte{"a.yaml": []byte(good)}}); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "a.yaml"), "kind: [")
	write(t, filepath.Join(dir, "b.yaml"), cmYAML("b", "bee"))
	r := start(t, dir, func(f *Folder) { f.SaveState(st) })
	if s := r.next(t); values(s)["a.yaml:a"] != "good" || values(s)["b.yaml:b"] != "bee" {
		t.Fatalf("after the upgrade: %v", values(s))
	}
	r.cancel()
	<-r.done
	r.done <- nil // for the cleanup
	if _, err := os.Stat(filepath.Join(stateDir, filesRecordName)); !os.IsNotExist(err) {
		t.Fatalf("the single-file record is still there: %v", err)
	}
	r = start(t, dir, func(f *Folder) { f.SaveState(st) })
	if s := r.next(t); values(s)["a.yaml:a"] != "good" || values(s)["b.yaml:b"] != "bee" {
		t.Fatalf("restored from the set: %v", values(s))
	}
	r.cancel()
	<-r.done
	r.done <- nil
	// Tear every entry file: b.yaml is read from the folder, a.yaml's
	// last good content is lost, and the watch goes on.
	entries, err := os.ReadDir(filepath.Join(stateDir, filesSetName))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "index.json" {
			if err := os.WriteFile(filepath.Join(stateDir, filesSetName, e.Name()), []byte("torn"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if s := start(t, dir, func(f *Folder) { f.SaveState(st) }).next(t); values(s)["a.yaml:a"] != "" || values(s)["b.yaml:b"] != "bee" {
		t.Fatalf("with torn entries: %v", values(s))
	}
}
