package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Bounds of a Set, on save and on load: a set holds at most what the
// sources hold (a ConfigMap is at most 1 MiB of data, a manifest file
// 4 MiB), so anything beyond is not a record of ours.
const (
	MaxEntries   = 200_000
	MaxEntrySize = 64 << 20
	// MaxIndexSize bounds the index: a line per entry, its key and sum.
	MaxIndexSize = 64 << 20
)

// setFormat is the version of the index layout.
const setFormat = 1

const indexName = "index.json"

// Entry is one entry of a Set: its key (a ConfigMap's namespace/name, a
// file's path; only ever written inside the index, never a file name) and
// its content. Content passed to Save must not change afterwards: the set
// keeps it to recognise it unchanged at the next save without reading it.
type Entry struct {
	Key  string
	Data []byte
}

// A Set is a record of many entries kept in its own folder as one file
// per entry, named by the SHA-256 of its content, and an index of every
// entry's key and sum. A save writes the entries whose content changed and
// the index (a line per entry), not the content of every entry: four
// fsyncs (the new entry files, the folder, the index, the folder) however
// many entries there are. The index is the commit point: written to a
// temporary file, fsynced and renamed after the entry files it names are
// durable, so that a crash leaves the previous set or the new one, whole. Files named by content cannot
// collide or escape the folder, whatever the keys hold; those no index
// names (replaced, or left by a crash) are removed. Not safe for
// concurrent use.
type Set struct {
	dir  string
	meta []byte
	// saved is what the index on disk holds, by key; data is the content
	// last saved (nil after Load), compared by address first.
	saved map[string]savedEntry
}

type savedEntry struct {
	sum   string
	data  []byte
	known bool // data is the content (not after Load)
}

type setIndex struct {
	Format  int
	Meta    json.RawMessage `json:",omitempty"`
	Entries []indexEntry
}

type indexEntry struct {
	Key  string
	Sum  string
	Size int
}

// Set returns the set called name (a folder in d).
func (d *Dir) Set(name string) *Set {
	return &Set{dir: filepath.Join(d.path, name)}
}

// Path returns the set's folder.
func (s *Set) Path() string { return s.dir }

// Loaded is what Load read: the caller's metadata, the entries sorted by
// key, and the entries it skipped (a file missing, torn or altered: its
// content does not match the sum the index holds).
type Loaded struct {
	Meta     json.RawMessage
	Entries  []Entry
	Problems []error
}

// Load reads the set; false when there is none yet. An unreadable or
// invalid index is an error (nothing is loaded); an entry that cannot be
// read back exactly is skipped and listed in Problems. Files no index
// names are removed.
func (s *Set) Load() (Loaded, bool, error) {
	raw, err := readBounded(filepath.Join(s.dir, indexName), MaxIndexSize)
	if errors.Is(err, fs.ErrNotExist) {
		return Loaded{}, false, nil
	}
	if err != nil {
		return Loaded{}, false, err
	}
	var idx setIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		return Loaded{}, false, fmt.Errorf("state record %s: %w", s.dir, err)
	}
	if err := idx.check(); err != nil {
		return Loaded{}, false, fmt.Errorf("state record %s: %w", s.dir, err)
	}
	out := Loaded{Meta: idx.Meta}
	saved := make(map[string]savedEntry, len(idx.Entries))
	total := 0
	for _, e := range idx.Entries {
		total += e.Size
		if total > MaxRecordSize {
			out.Problems = append(out.Problems, fmt.Errorf("state record %s: entry %q not loaded: the entries are larger than %d bytes", s.dir, e.Key, MaxRecordSize))
			continue
		}
		data, err := readBounded(filepath.Join(s.dir, e.Sum), e.Size)
		if err == nil && (len(data) != e.Size || sumOf(data) != e.Sum) {
			err = fmt.Errorf("content does not match its sum (%d bytes, %d in the index)", len(data), e.Size)
		}
		if err != nil {
			out.Problems = append(out.Problems, fmt.Errorf("state record %s: entry %q not loaded: %w", s.dir, e.Key, err))
			continue
		}
		// Only a file read back exactly counts as on disk: another is
		// written again by the next save that holds its content.
		saved[e.Key] = savedEntry{sum: e.Sum}
		out.Entries = append(out.Entries, Entry{Key: e.Key, Data: data})
	}
	s.meta, s.saved = idx.Meta, saved
	s.removeUnnamed()
	return out, true, nil
}

// check is the index's own validity: its format, bounds, keys unique and
// sums that name files of this folder.
func (idx *setIndex) check() error {
	if idx.Format != setFormat {
		return fmt.Errorf("index format %d, not %d", idx.Format, setFormat)
	}
	if len(idx.Entries) > MaxEntries {
		return fmt.Errorf("%d entries, more than %d", len(idx.Entries), MaxEntries)
	}
	keys := make(map[string]bool, len(idx.Entries))
	for i, e := range idx.Entries {
		switch {
		case e.Key == "" || keys[e.Key]:
			return fmt.Errorf("Entries[%d]: key %q empty or repeated", i, e.Key)
		case !isSum(e.Sum):
			return fmt.Errorf("Entries[%d]: sum %q is not a SHA-256", i, e.Sum)
		case e.Size < 0 || e.Size > MaxEntrySize:
			return fmt.Errorf("Entries[%d]: size %d out of bounds (at most %d)", i, e.Size, MaxEntrySize)
		}
		keys[e.Key] = true
	}
	return nil
}

// Save replaces the set with meta and entries (keys unique). Entries whose
// content is the one saved last under their key are not read again, nor
// written; when nothing changed, nothing is written.
func (s *Set) Save(meta []byte, entries []Entry) error {
	if len(entries) > MaxEntries {
		return fmt.Errorf("state record %s: %d entries, more than %d", s.dir, len(entries), MaxEntries)
	}
	if s.saved == nil {
		// The first save of this run without a set loaded: the folder
		// may hold one, and files no index names.
		if err := s.create(); err != nil {
			return fmt.Errorf("state record %s: %w", s.dir, err)
		}
		if _, _, err := s.Load(); err != nil || s.saved == nil {
			s.saved = map[string]savedEntry{}
			s.removeUnnamed()
		}
	}
	next := make(map[string]savedEntry, len(entries))
	idx := setIndex{Format: setFormat, Meta: meta, Entries: make([]indexEntry, 0, len(entries))}
	onDisk := map[string]bool{} // sums whose file exists
	for _, e := range s.saved {
		onDisk[e.sum] = true
	}
	var written []string
	fail := func(err error) error {
		for _, sum := range written {
			_ = os.Remove(filepath.Join(s.dir, sum))
		}
		return fmt.Errorf("state record %s: %w", s.dir, err)
	}
	changed := !bytes.Equal(meta, s.meta) || len(entries) != len(s.saved)
	for _, e := range entries {
		if e.Key == "" {
			return fail(errors.New("an entry without a key"))
		}
		if _, dup := next[e.Key]; dup {
			return fail(fmt.Errorf("entry %q given twice", e.Key))
		}
		if len(e.Data) > MaxEntrySize {
			return fail(fmt.Errorf("entry %q is %d bytes, more than %d", e.Key, len(e.Data), MaxEntrySize))
		}
		prev, ok := s.saved[e.Key]
		sum := prev.sum
		if !ok || !prev.known || !sameBytes(prev.data, e.Data) {
			sum = sumOf(e.Data)
		}
		if !ok || sum != prev.sum {
			changed = true
		}
		if !onDisk[sum] {
			if err := writeEntry(s.dir, sum, e.Data); err != nil {
				return fail(err)
			}
			onDisk[sum] = true
			written = append(written, sum)
		}
		next[e.Key] = savedEntry{sum: sum, data: e.Data, known: true}
		idx.Entries = append(idx.Entries, indexEntry{Key: e.Key, Sum: sum, Size: len(e.Data)})
	}
	if !changed {
		s.saved = next
		return nil
	}
	sort.Slice(idx.Entries, func(i, j int) bool { return idx.Entries[i].Key < idx.Entries[j].Key })
	raw, err := json.Marshal(idx)
	if err != nil {
		return fail(err)
	}
	// The entry files are durable before the index that names them.
	if len(written) > 0 {
		if err := syncDir(s.dir); err != nil {
			return fail(err)
		}
	}
	if err := writeSynced(s.dir, indexName, raw); err != nil {
		return fail(err)
	}
	if err := syncDir(s.dir); err != nil {
		// The index may or may not be the new one after a crash: keep
		// every file either names.
		return fmt.Errorf("state record %s: %w", s.dir, err)
	}
	named := make(map[string]bool, len(next))
	for _, e := range next {
		named[e.sum] = true
	}
	for _, e := range s.saved {
		if !named[e.sum] {
			_ = os.Remove(filepath.Join(s.dir, e.sum))
		}
	}
	s.meta, s.saved = append([]byte(nil), meta...), next
	return nil
}

// create makes the set's folder, durably.
func (s *Set) create() error {
	if _, err := os.Stat(s.dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	return syncDir(filepath.Dir(s.dir))
}

// removeUnnamed removes the entry and temporary files no index names.
func (s *Set) removeUnnamed() {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	named := make(map[string]bool, len(s.saved))
	for _, e := range s.saved {
		named[e.sum] = true
	}
	for _, de := range des {
		n := de.Name()
		if (isSum(n) && !named[n]) || strings.HasPrefix(n, tempPrefix) {
			_ = os.Remove(filepath.Join(s.dir, n))
		}
	}
}

// sameBytes reports whether a and b are the same memory: content kept
// unchanged since the last save (see Entry), known without reading it.
// Other content is hashed, and written only if its sum changed.
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	return len(a) == 0 || &a[0] == &b[0]
}

func sumOf(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func isSum(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	for _, c := range name {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// tempPrefix starts the names of files being written.
const tempPrefix = ".tmp-"

// writeEntry writes an entry's file under its final name, fsynced: no
// index names it before it is durable (Save fsyncs the folder before
// writing the index), and one torn by a crash is named by none, so the
// next Load removes it.
func writeEntry(dir, sum string, data []byte) error {
	path := filepath.Join(dir, sum)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// writeSynced writes dir/name atomically: a temporary file, fsynced, then
// renamed (the caller fsyncs dir to make the rename durable).
func writeSynced(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, tempPrefix+name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
