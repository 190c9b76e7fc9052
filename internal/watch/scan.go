package watch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// FileState is what one manifest file contributes.
type FileState struct {
	Path       string             // relative to the dir, slash separated
	ConfigMaps []corev1.ConfigMap // in file order; namespace defaulted to "default" when empty
	Secrets    []corev1.Secret    // stringData merged into Data as Kubernetes does
	// Err is non-nil when the file's latest content failed to be read or
	// parsed; ConfigMaps and Secrets are then the LAST GOOD content of that
	// file (empty if it never parsed), so a half-written or broken file
	// never takes objects away.
	Err  error
	Hash string // hex sha256 of the last good content; empty if it never parsed
	// Notes tell about documents of the last good content that were skipped
	// on purpose (objects of other kinds).
	Notes []string
	// KeyLines are the file lines of the ConfigMaps' data values, by
	// namespace/name, so that problems name the line an editor shows. Not
	// modified once set: copies share them.
	KeyLines map[string]KeyLines
	// Deleted is set while a file that went away is kept for the deletion
	// grace, so that a delete-and-write-again (a git checkout, config
	// management) does not flap the gateways. Its objects are listed
	// unless a present file defines them (a file renamed).
	Deleted bool
}

// State is the content of a manifest folder.
type State struct {
	Files []FileState // sorted by Path
	// Err is non-nil when the folder, or one of its subfolders, could not be
	// listed on the last scan. The files it held are kept as they were.
	Err error
}

// ConfigMaps returns the ConfigMaps of all files, in path then file order.
func (s State) ConfigMaps() []corev1.ConfigMap {
	var out []corev1.ConfigMap
	for _, f := range s.Files {
		out = append(out, f.ConfigMaps...)
	}
	return out
}

// Secrets returns the Secrets of all files, in path then file order.
func (s State) Secrets() []corev1.Secret {
	var out []corev1.Secret
	for _, f := range s.Files {
		out = append(out, f.Secrets...)
	}
	return out
}

// LoadDir reads every manifest under dir once: files named *.yaml, *.yml or
// *.json, recursively, skipping hidden files and folders (name starting with
// a dot) and editor temporary files. Symbolic links to files are followed,
// those to folders are not. The error is non-nil only when dir itself cannot
// be read; problems with single files are in their FileState.Err and those
// with subfolders in State.Err.
func LoadDir(dir string) (State, error) {
	s := newScanner(dir)
	s.scan()
	if s.rootErr != nil {
		return State{}, s.rootErr
	}
	return s.state(), nil
}

// ignoredName reports whether a file or folder name is skipped: hidden
// names and editor temporary files (vim's *.swp, emacs' #name# and name~).
func ignoredName(name string) bool {
	switch {
	case name == "" || strings.HasPrefix(name, "."):
		return true
	case strings.HasSuffix(name, "~"):
		return true
	case strings.HasSuffix(name, ".swp"), strings.HasSuffix(name, ".swo"), strings.HasSuffix(name, ".swx"):
		return true
	case strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"):
		return true
	}
	return false
}

// isManifestName reports whether a file name is read as a manifest.
func isManifestName(name string) bool {
	if ignoredName(name) {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// errEmpty is the error of a file that became empty: a writer truncating it
// before writing it again looks just the same, so its objects are kept.
var errEmpty = errors.New("file is empty (still being written?): keeping its last good content; to remove its objects, delete the file or leave a comment in it")

type fileEntry struct {
	// contentHash is the hash of the content last read, good or bad; empty
	// when reading failed, so that the next scan parses again.
	contentHash string
	st          FileState
	// good is the last good content, as read: what a restart needs.
	good []byte
	// seeded: restored from saved state and not seen by a scan yet.
	seeded bool
	// goneSince is when a scan first missed the file (zero: present).
	goneSince time.Time
}

// scanner keeps the last known state of a folder and updates it by full
// rescans. Unchanged files (same content hash) are not parsed again.
type scanner struct {
	dir   string
	files map[string]*fileEntry
	// dirErr is the joined error of the folders that could not be listed.
	dirErr error
	// rootErr is non-nil when dir itself could not be listed.
	rootErr error
	// onDir, when set, is called for each folder before it is listed, so a
	// watch on it is in place before its entries are read.
	onDir func(abs string)
	log   *slog.Logger // nil: no logs
	// deleteGrace is how long a file that went away is kept (0: none).
	deleteGrace time.Duration
	now         func() time.Time
}

func newScanner(dir string) *scanner {
	return &scanner{dir: filepath.Clean(dir), files: map[string]*fileEntry{}, now: time.Now}
}

// seed restores the last good content of files saved by an earlier run,
// before the first scan: a file that is broken now then keeps serving
// what it held, as within one run. Content that no longer parses is
// skipped.
func (s *scanner) seed(saved map[string][]byte) {
	for rel, data := range saved {
		p := parseFile(rel, data)
		if p.err != nil {
			s.logf(slog.LevelWarn, "saved content of a manifest file no longer parses, not restored", rel, p.err)
			continue
		}
		sum := sha256.Sum256(data)
		s.files[rel] = &fileEntry{good: data, seeded: true, st: FileState{
			Path: rel, ConfigMaps: p.configMaps, Secrets: p.secrets, Notes: p.notes, KeyLines: p.keyLines, Hash: hex.EncodeToString(sum[:]),
		}}
	}
}

// goodContent is the last good content of every file, for saving.
func (s *scanner) goodContent() map[string][]byte {
	out := make(map[string][]byte, len(s.files))
	for rel, e := range s.files {
		if e.good != nil {
			out[rel] = e.good
		}
	}
	return out
}

// nextExpiry is when the earliest kept deleted file is to be dropped;
// zero when none is kept.
func (s *scanner) nextExpiry() time.Time {
	var next time.Time
	for _, e := range s.files {
		if !e.goneSince.IsZero() {
			if at := e.goneSince.Add(s.deleteGrace); next.IsZero() || at.Before(next) {
				next = at
			}
		}
	}
	return next
}

// scan reads the folder again and reports whether the state changed: a file
// appeared or went away, or the objects, notes or error of one did, or the
// folder errors did.
func (s *scanner) scan() bool {
	changed := false
	seen := map[string]bool{}
	var dirErrs []error
	s.rootErr = nil
	s.walk(s.dir, "", seen, &dirErrs, &changed)
	now := s.now()
	for p, e := range s.files {
		switch {
		case seen[p]:
			if !e.goneSince.IsZero() {
				e.goneSince, e.st.Deleted, changed = time.Time{}, false, true
				s.logf(slog.LevelInfo, "manifest file back within the deletion grace", p, nil)
			}
		case !e.seeded && s.deleteGrace > 0 && e.goneSince.IsZero():
			e.goneSince, e.st.Deleted, changed = now, true, true
			s.logf(slog.LevelInfo, "manifest file removed; its objects are kept for the deletion grace", p, nil, "grace", s.deleteGrace)
		case e.seeded || s.deleteGrace == 0 || !now.Before(e.goneSince.Add(s.deleteGrace)):
			delete(s.files, p)
			changed = true
			s.logf(slog.LevelInfo, "manifest file removed", p, nil)
		}
	}
	dirErr := errors.Join(dirErrs...)
	if errString(dirErr) != errString(s.dirErr) {
		changed = true
		if dirErr != nil {
			s.logf(slog.LevelWarn, "manifest folder unreadable, keeping the files it held", "", dirErr)
		}
	}
	s.dirErr = dirErr
	return changed
}

func (s *scanner) walk(abs, rel string, seen map[string]bool, dirErrs *[]error, changed *bool) {
	if s.onDir != nil {
		s.onDir(abs)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		if rel == "" {
			s.rootErr = err
		}
		*dirErrs = append(*dirErrs, err)
		// Keep what was known under this folder rather than dropping it.
		for p := range s.files {
			if rel == "" || strings.HasPrefix(p, rel+"/") {
				seen[p] = true
			}
		}
		return
	}
	for _, e := range entries {
		name := e.Name()
		if ignoredName(name) {
			continue
		}
		a, r := filepath.Join(abs, name), path.Join(rel, name)
		if e.IsDir() {
			s.walk(a, r, seen, dirErrs, changed)
			continue
		}
		switch t := e.Type(); {
		case t&fs.ModeSymlink != 0:
			// A link is followed to a file; readFile reports one it cannot
			// read (dangling, a loop, to a folder: not followed) instead of
			// skipping it unseen. A link to a folder is reported whatever
			// its name, as it may have been meant to be read.
			if !isManifestName(name) && !linksToFolder(a) {
				continue
			}
		case !t.IsRegular() || !isManifestName(name):
			continue
		}
		ch, present := s.readFile(a, r)
		if ch {
			*changed = true
		}
		if present {
			seen[r] = true
		}
	}
}

// readFile reads and parses one file if its content changed. It reports
// whether the file's state changed and whether the file is there at all.
func (s *scanner) readFile(abs, rel string) (changed, present bool) {
	data, err := readManifest(abs) // at most MaxFileBytes
	e, known := s.files[rel]
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, false // went away since it was listed
		}
		if !known {
			e = &fileEntry{st: FileState{Path: rel}}
			s.files[rel] = e
		}
		old := errString(e.st.Err)
		e.contentHash = ""
		e.st.Err = err
		if !known || old != errString(err) {
			s.logf(slog.LevelWarn, "manifest file unreadable, keeping its last good content", rel, err)
			return true, true
		}
		return false, true
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	if known && e.contentHash == h {
		return false, true
	}
	if !known {
		e = &fileEntry{st: FileState{Path: rel}}
		s.files[rel] = e
	}
	seeded := e.seeded
	e.contentHash, e.seeded = h, false
	p := parseFile(rel, data)
	if len(data) == 0 && len(e.st.ConfigMaps)+len(e.st.Secrets) > 0 {
		// Most likely truncated by a writer that has not written yet.
		p.err = errEmpty
	}
	old := e.st
	if p.err != nil {
		e.st.Err = p.err
	} else {
		e.good = data
		e.st = FileState{
			Path:       rel,
			ConfigMaps: p.configMaps,
			Secrets:    p.secrets,
			Notes:      p.notes,
			KeyLines:   p.keyLines,
			Hash:       h,
		}
	}
	if known && !seeded && sameResult(old, e.st) {
		return false, true
	}
	switch {
	case p.err != nil:
		s.logf(slog.LevelWarn, "manifest file invalid, keeping its last good content", rel, p.err,
			"kept", e.st.describe())
	default:
		s.logf(slog.LevelInfo, "manifest file loaded", rel, nil,
			"configmaps", len(e.st.ConfigMaps), "secrets", len(e.st.Secrets))
		for _, n := range e.st.Notes {
			s.logf(slog.LevelInfo, "manifest document skipped", rel, nil, "note", n)
		}
	}
	return true, true
}

func (s *scanner) logf(level slog.Level, msg, rel string, err error, args ...any) {
	if s.log == nil {
		return
	}
	args = append([]any{"dir", s.dir, "file", rel}, args...)
	if err != nil {
		args = append(args, "err", err)
	}
	s.log.Log(context.Background(), level, msg, args...)
}

// sameResult compares what a file yields, ignoring its content hash: an edit
// of comments or layout alone is no change, unless it moves the lines
// problems are reported at.
func sameResult(a, b FileState) bool {
	return errString(a.Err) == errString(b.Err) &&
		reflect.DeepEqual(a.KeyLines, b.KeyLines) &&
		reflect.DeepEqual(a.ConfigMaps, b.ConfigMaps) &&
		reflect.DeepEqual(a.Secrets, b.Secrets) &&
		slices.Equal(a.Notes, b.Notes)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// state returns a deep copy of the current state, sorted by path.
func (s *scanner) state() State {
	st := State{Files: make([]FileState, 0, len(s.files)), Err: s.dirErr}
	for _, e := range s.files {
		f := e.st
		if f.ConfigMaps != nil {
			f.ConfigMaps = make([]corev1.ConfigMap, len(e.st.ConfigMaps))
			for i := range e.st.ConfigMaps {
				e.st.ConfigMaps[i].DeepCopyInto(&f.ConfigMaps[i])
			}
		}
		if f.Secrets != nil {
			f.Secrets = make([]corev1.Secret, len(e.st.Secrets))
			for i := range e.st.Secrets {
				e.st.Secrets[i].DeepCopyInto(&f.Secrets[i])
			}
		}
		f.Notes = slices.Clone(f.Notes)
		st.Files = append(st.Files, f)
	}
	slices.SortFunc(st.Files, func(a, b FileState) int { return strings.Compare(a.Path, b.Path) })
	dropMoved(st.Files)
	return st
}

// dropMoved removes from the files kept for the deletion grace the
// objects a present file defines: a file renamed, or its objects moved to
// another file, is not a duplicate definition.
func dropMoved(files []FileState) {
	present := map[string]bool{}
	for _, f := range files {
		if f.Deleted {
			continue
		}
		for _, cm := range f.ConfigMaps {
			present["cm/"+cm.Namespace+"/"+cm.Name] = true
		}
		for _, sec := range f.Secrets {
			present["secret/"+sec.Namespace+"/"+sec.Name] = true
		}
	}
	for i := range files {
		f := &files[i]
		if !f.Deleted {
			continue
		}
		f.ConfigMaps = slices.DeleteFunc(f.ConfigMaps, func(cm corev1.ConfigMap) bool { return present["cm/"+cm.Namespace+"/"+cm.Name] })
		f.Secrets = slices.DeleteFunc(f.Secrets, func(sec corev1.Secret) bool { return present["secret/"+sec.Namespace+"/"+sec.Name] })
	}
}

// describe is a short summary of a file state for logs.
func (f FileState) describe() string {
	return fmt.Sprintf("%d ConfigMaps, %d Secrets", len(f.ConfigMaps), len(f.Secrets))
}
