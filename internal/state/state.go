// Package state keeps, in a folder of the server's own, what a restart must
// not lose: the versions of ConfigMaps being served and the last good
// content of manifest files. Without it, a ConfigMap that is broken when
// the server restarts would be served no more. The records may hold
// private keys (Secrets from manifest files), so the folder is 0700 and
// each file 0600, written whole or not at all. Records of many entries are
// Sets (set.go), whose save writes what changed; Load and Save are the
// single-file records of earlier versions, read once on upgrade.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MaxRecordSize bounds one record on load: a record holds at most what the
// sources hold, which their own bounds limit.
const MaxRecordSize = 512 << 20

// Dir is a state folder.
type Dir struct{ path string }

// Open creates the folder if needed and checks that it can be written.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("state folder: %w", err)
	}
	d := &Dir{path: filepath.Clean(path)}
	probe, err := os.CreateTemp(d.path, ".probe-*")
	if err != nil {
		return nil, fmt.Errorf("state folder %s is not writable: %w", d.path, err)
	}
	probe.Close()
	_ = os.Remove(probe.Name())
	return d, nil
}

// Path returns the folder.
func (d *Dir) Path() string { return d.path }

// Load decodes record name into v; false when there is none yet.
func (d *Dir) Load(name string, v any) (bool, error) {
	f, err := os.Open(filepath.Join(d.path, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRecordSize+1))
	if err != nil {
		return false, err
	}
	if len(data) > MaxRecordSize {
		return false, fmt.Errorf("state record %s is larger than %d bytes", name, MaxRecordSize)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("state record %s: %w", name, err)
	}
	return true, nil
}

// Save writes record name atomically: a crash leaves the previous record
// or the new one, never a mix.
func (d *Dir) Save(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := writeSynced(d.path, name, data); err != nil {
		return err
	}
	return syncDir(d.path)
}

// Remove removes record name (a single-file record replaced by a Set),
// durably; none is no error.
func (d *Dir) Remove(name string) error {
	if err := os.Remove(filepath.Join(d.path, name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(d.path)
}
