package watch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	corev1 "k8s.io/api/core/v1"
)

// MaxFileBytes bounds a manifest file. A file may hold several ConfigMaps
// (each at most 1 MiB, as in Kubernetes) and their Secrets; a bigger one is
// refused before it is read, so a stray dump or a runaway generator cannot
// take the server's memory: its last good content keeps being served.
const MaxFileBytes = 4 << 20

// ParseFile reads and parses one manifest file as the folder source does:
// at most MaxFileBytes, a .json file as JSON, anything else as YAML.
func ParseFile(name string) ([]corev1.ConfigMap, []corev1.Secret, error) {
	data, err := readManifest(name)
	if err != nil {
		return nil, nil, err
	}
	p := parseFile(name, data)
	if p.err != nil {
		return nil, nil, p.err
	}
	return p.configMaps, p.secrets, nil
}

// LoadFile reads and parses one manifest file as the folder source does,
// as the state of a folder holding that file alone: Path is name, and a
// problem is in Err (with no objects).
func LoadFile(name string) FileState {
	data, err := readManifest(name)
	if err != nil {
		return FileState{Path: name, Err: err}
	}
	p := parseFile(name, data)
	if p.err != nil {
		return FileState{Path: name, Err: p.err}
	}
	return FileState{Path: name, ConfigMaps: p.configMaps, Secrets: p.secrets, Notes: p.notes, KeyLines: p.keyLines}
}

// readManifest reads a manifest file, refusing one over MaxFileBytes from
// its size, without reading it, and one that grows past it while read. A
// symbolic link that cannot be read is a *LinkError.
func readManifest(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		if lfi, lerr := os.Lstat(name); lerr == nil && lfi.Mode()&fs.ModeSymlink != 0 {
			return nil, linkError(name, err)
		}
		return nil, err
	}
	switch {
	case fi.IsDir():
		return nil, linkError(name, nil)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("not a regular file (%s): not read", fi.Mode().Type())
	case fi.Size() > MaxFileBytes:
		return nil, tooBig(fi.Size())
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(f, fi.Size(), MaxFileBytes)
}

// readBounded reads r, expected to hold size bytes, and fails as soon as it
// holds more than limit: at most limit+1 bytes are read.
func readBounded(r io.Reader, size, limit int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(size, limit)+1))
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, tooBig(-1)
	}
	return buf.Bytes(), nil
}

func tooBig(size int64) error {
	is := "grew while read to more than the"
	if size >= 0 {
		is = fmt.Sprintf("is %d bytes, over the", size)
	}
	return fmt.Errorf("file %s %d bytes (%d MiB) a manifest file may have: not read; split it into several files (a ConfigMap holds at most 1 MiB, as in Kubernetes)", is, MaxFileBytes, MaxFileBytes>>20)
}

// LinkError is a symbolic link that was not read: its target does not
// exist, it loops, or it is a folder (links to folders are not followed, by
// design). It does not unwrap to fs.ErrNotExist: the link is there, and is
// reported, where a file that went away is not.
type LinkError struct {
	Target string // what the link points to, as it says
	Folder bool   // a link to a folder
	Err    error  // why the target could not be reached; nil for a folder
}

func (e *LinkError) Error() string {
	switch {
	case e.Folder:
		return fmt.Sprintf("symbolic link to the folder %q: not followed (links to folders never are, so a link cannot loop or bring in a tree from elsewhere); link the files, or give that folder to --config-dir", e.Target)
	case errors.Is(e.Err, syscall.ELOOP):
		return fmt.Sprintf("symbolic link to %q: a loop of links: not read", e.Target)
	case errors.Is(e.Err, fs.ErrNotExist):
		return fmt.Sprintf("symbolic link to %q, which does not exist (a dangling link): not read", e.Target)
	}
	return fmt.Sprintf("symbolic link to %q: %v: not read", e.Target, e.Err)
}

func linkError(name string, err error) error {
	target, rerr := os.Readlink(name)
	if rerr != nil {
		if err == nil {
			return fmt.Errorf("a folder: not read as a manifest file")
		}
		return err // not a link after all, or gone
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &LinkError{Target: target, Folder: err == nil, Err: err}
}

// linksToFolder reports whether a symbolic link leads to a folder.
func linksToFolder(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.IsDir()
}

// ReadManifest reads one manifest file within the folder source's bounds
// (MaxFileBytes, refused from its size), for commands that read manifests
// of their own (xds-server import).
func ReadManifest(name string) ([]byte, error) { return readManifest(name) }

// ReadManifestFrom reads a stream (standard input) within MaxFileBytes.
func ReadManifestFrom(r io.Reader) ([]byte, error) { return readBounded(r, 0, MaxFileBytes) }
