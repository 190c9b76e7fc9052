package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/egress-xds/egress-xds/internal/state"
)

// Defaults of a Folder's timing.
const (
	// DefaultQuiet is how long the folder must be quiet after a change
	// before it is read again, so a burst of writes gives one update.
	DefaultQuiet = 100 * time.Millisecond
	// DefaultMaxDelay bounds the wait after the first change of a burst, so
	// a constant stream of writes cannot hold updates back.
	DefaultMaxDelay = time.Second
	// DefaultRescan is the period of full rescans, a safety net for file
	// system events that were missed (network file systems, overflows).
	DefaultRescan = 5 * time.Second
	// DefaultDeleteGrace is how long the objects of a deleted file are
	// kept: a file deleted and written again within it (a git checkout,
	// config management) never leaves the gateways.
	DefaultDeleteGrace = 2 * time.Second
)

// filesSetName is the state Set of a folder: the last good content of
// each file (an entry by path relative to the folder, the content as it
// is), so that a file broken when the server restarts keeps serving what
// it held; filesMeta names the folder. A save after an edit writes the
// edited file's entry and the index alone.
const filesSetName = "files"

type filesMeta struct {
	Dir string // the folder's absolute path
}

// filesRecord is the single-file record of earlier versions, read once on
// upgrade and removed after the Set is written.
type filesRecord struct {
	Dir   string            // the folder's absolute path
	Files map[string][]byte // by path relative to Dir
}

const filesRecordName = "files.json"

// loadFiles reads the files' last good content: the Set, or else the
// single-file record of an earlier version. Entries that cannot be read
// back are in problems, and skipped.
func loadFiles(d *state.Dir, set *state.Set) (rec filesRecord, found bool, problems []error, err error) {
	l, found, err := set.Load()
	if err != nil {
		return filesRecord{}, false, nil, err
	}
	if !found {
		found, err = d.Load(filesRecordName, &rec)
		return rec, found, nil, err
	}
	var meta filesMeta
	if err := json.Unmarshal(l.Meta, &meta); err != nil {
		return filesRecord{}, false, nil, fmt.Errorf("state record %s: %w", set.Path(), err)
	}
	rec = filesRecord{Dir: meta.Dir, Files: make(map[string][]byte, len(l.Entries))}
	for _, e := range l.Entries {
		rec.Files[e.Key] = e.Data
	}
	return rec, true, l.Problems, nil
}

// Folder watches a folder of manifests; see Run.
type Folder struct {
	dir string
	log *slog.Logger

	quiet, maxDelay, rescan, deleteGrace time.Duration
	// noNotify turns file system notifications off, leaving only the
	// periodic rescans (for tests, and the fallback when they fail).
	noNotify bool
	state    *state.Dir
}

// NewFolder returns a Folder for dir. log may be nil.
func NewFolder(dir string, log *slog.Logger) *Folder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Folder{
		dir:         filepath.Clean(dir),
		log:         log,
		quiet:       DefaultQuiet,
		maxDelay:    DefaultMaxDelay,
		rescan:      DefaultRescan,
		deleteGrace: DefaultDeleteGrace,
	}
}

// SaveState makes Run restore the last good content of the files from d
// at start and save it after every change.
func (f *Folder) SaveState(d *state.Dir) { f.state = d }

// Dir returns the watched folder.
func (f *Folder) Dir() string { return f.dir }

// Run reads the folder, calls onChange with the full State, then watches it
// and calls onChange again after every change that alters some file's
// objects, notes or error, or the set of files, or the folder errors. Calls
// come from the goroutine that called Run, one at a time; each State is a
// copy onChange may keep.
//
// Changes are seen through file system notifications on the folder and its
// subfolders (new subfolders too), debounced: the folder is read again once
// it has been quiet for 100ms, and at most 1s after the first change of a
// burst. A full rescan every 5s catches what notifications missed; content
// hashes keep unchanged files from being parsed again or reported. Should
// notifications be unavailable, Run logs it and goes on with rescans only.
//
// Run returns an error if the folder cannot be read at start, and nil when
// ctx is done. Should the folder be removed later, State.Err says so and the
// last known files are kept until it can be read again.
func (f *Folder) Run(ctx context.Context, onChange func(State)) error {
	s := newScanner(f.dir)
	s.log = f.log
	s.deleteGrace = f.deleteGrace
	abs, err := filepath.Abs(f.dir)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	var set *state.Set
	var meta []byte
	legacyLeft := false
	if f.state != nil {
		set = f.state.Set(filesSetName)
		meta, _ = json.Marshal(filesMeta{Dir: abs}) // a string always encodes
		// Until a save removes it, the single-file record may be there.
		legacyLeft = true
		rec, found, problems, err := loadFiles(f.state, set)
		for _, p := range problems {
			f.log.Warn("a file's saved content is unreadable, not restored", "state_dir", f.state.Path(), "err", p)
		}
		switch {
		case err != nil:
			f.log.Warn("saved file contents unreadable, starting without them", "state_dir", f.state.Path(), "err", err)
		case found && rec.Dir != abs:
			f.log.Warn("saved file contents are of another folder, starting without them", "state_dir", f.state.Path(), "saved_for", rec.Dir)
		case found:
			s.seed(rec.Files)
		}
	}
	save := func() {
		if f.state == nil {
			return
		}
		good := s.goodContent()
		entries := make([]state.Entry, 0, len(good))
		for rel, data := range good {
			entries = append(entries, state.Entry{Key: rel, Data: data})
		}
		err := set.Save(meta, entries)
		if err == nil && legacyLeft {
			if err = f.state.Remove(filesRecordName); err == nil {
				legacyLeft = false
			}
		}
		if err != nil {
			f.log.Error("cannot save the files' last good content: a restart while a file is broken would lose what it serves", "state_dir", f.state.Path(), "err", err)
		}
	}

	var w *fsnotify.Watcher
	if !f.noNotify {
		var err error
		w, err = fsnotify.NewWatcher()
		if err != nil {
			f.log.Warn("file notifications unavailable, relying on periodic rescans",
				"dir", f.dir, "every", f.rescan, "err", err)
		} else {
			defer w.Close()
		}
	}

	// watched holds the folders with a watch; visited those met by the
	// current scan; failed those whose watch could not be set (logged once).
	watched := map[string]bool{}
	failed := map[string]bool{}
	var visited map[string]bool
	if w != nil {
		s.onDir = func(abs string) {
			visited[abs] = true
			if watched[abs] {
				return
			}
			if err := w.Add(abs); err != nil {
				if !failed[abs] {
					failed[abs] = true
					f.log.Warn("cannot watch folder, its changes are seen by periodic rescans only",
						"dir", abs, "err", err)
				}
				return
			}
			delete(failed, abs)
			watched[abs] = true
		}
	}
	scan := func() bool {
		visited = map[string]bool{}
		changed := s.scan()
		for abs := range watched {
			if !visited[abs] || s.rootErr != nil {
				// Gone, moved, or the whole folder is unreadable (perhaps
				// removed and recreated): drop the watch (the backend may
				// have dropped it already) so it is set again once the
				// folder can be read.
				_ = w.Remove(abs)
				delete(watched, abs)
			}
		}
		return changed
	}

	scan()
	if s.rootErr != nil {
		return fmt.Errorf("watch: read manifest folder: %w", s.rootErr)
	}
	save()
	onChange(s.state())

	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	ticker := time.NewTicker(f.rescan)
	defer ticker.Stop()

	// expire fires when a deleted file's grace ends.
	expire := time.NewTimer(time.Hour)
	expire.Stop()
	defer expire.Stop()
	armExpiry := func() {
		if next := s.nextExpiry(); !next.IsZero() {
			expire.Reset(max(time.Until(next), 0))
		}
	}
	armExpiry()

	pending := false
	var first time.Time
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, first = true, now
		}
		d := min(f.quiet, first.Add(f.maxDelay).Sub(now))
		debounce.Reset(max(d, 0))
	}
	update := func() {
		if scan() {
			save()
			onChange(s.state())
		}
		armExpiry()
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				// The backend drops the watch of a removed or moved folder.
				if watched[ev.Name] {
					delete(watched, ev.Name)
					_ = w.Remove(ev.Name)
				}
			}
			if ev.Op == fsnotify.Chmod || ignoredName(filepath.Base(ev.Name)) {
				continue
			}
			schedule()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				f.log.Warn("file notifications overflowed, rescanning", "dir", f.dir)
				// Folder removals may have been lost with the events: set
				// every watch again.
				for abs := range watched {
					_ = w.Remove(abs)
					delete(watched, abs)
				}
			} else {
				f.log.Warn("file notification error, rescanning", "dir", f.dir, "err", err)
			}
			schedule()
		case <-debounce.C:
			pending = false
			update()
		case <-expire.C:
			update()
		case <-ticker.C:
			if !pending {
				update()
			}
		}
	}
}
