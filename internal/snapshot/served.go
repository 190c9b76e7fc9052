package snapshot

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/state"
)

// servedRecord is the record of the served ConfigMap versions.
type servedRecord struct {
	// Source names the source they came from: a record of another
	// source is not restored.
	Source     string
	ConfigMaps []savedConfigMap
}

type savedConfigMap struct {
	File      string `json:",omitempty"`
	ConfigMap *corev1.ConfigMap
}

// servedSetName is the state Set of the served versions: an entry per
// ConfigMap (by namespace/name), its savedConfigMap as JSON, and
// servedMeta. A save after an edit writes the edited ConfigMap's entry and
// the index alone.
const servedSetName = "served"

// servedRecordName is the single-file record of earlier versions (the
// whole servedRecord as JSON), read once on upgrade and removed after the
// Set is written.
const servedRecordName = "served.json"

type servedMeta struct{ Source string }

// loadServed reads the served versions: the Set, or else the single-file
// record of an earlier version (legacy). Entries that cannot be read back
// are in problems, and skipped.
func loadServed(d *state.Dir, set *state.Set) (rec servedRecord, found, legacy bool, problems []error, err error) {
	l, found, err := set.Load()
	if err != nil || !found {
		if err != nil {
			return servedRecord{}, false, false, nil, err
		}
		found, err = d.Load(servedRecordName, &rec)
		return rec, found, found, nil, err
	}
	var meta servedMeta
	if err := json.Unmarshal(l.Meta, &meta); err != nil {
		return servedRecord{}, false, false, nil, fmt.Errorf("state record %s: %w", set.Path(), err)
	}
	rec.Source = meta.Source
	problems = l.Problems
	for _, e := range l.Entries {
		var c savedConfigMap
		err := json.Unmarshal(e.Data, &c)
		if err == nil && c.ConfigMap == nil {
			err = fmt.Errorf("no ConfigMap")
		}
		if err == nil && servedKey(c) != e.Key {
			err = fmt.Errorf("holds ConfigMap %s", servedKey(c))
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("state record %s: entry %q not loaded: %w", set.Path(), e.Key, err))
			continue
		}
		rec.ConfigMaps = append(rec.ConfigMaps, c)
	}
	return rec, true, false, problems, nil
}

// servedKey is a ConfigMap's entry key: its namespace/name, as the store
// keys what it serves.
func servedKey(c savedConfigMap) string {
	return compile.ConfigMap{File: c.File, ConfigMap: c.ConfigMap}.Origin().ConfigMap()
}

// servedEncoder encodes the served versions as Set entries, keeping the
// encoding of each ConfigMap: after an edit only the edited ConfigMap is
// encoded again, not the megabytes of every other one, and its entry is
// the same memory as before (the Set recognises it unchanged at once).
// An encoding is reused only for the same object holding what it held
// when encoded (a source that changed one in place gets it encoded
// again), or for the same stored Kubernetes object (UID and
// resourceVersion), which the API server never changes.
type servedEncoder struct {
	items map[*corev1.ConfigMap]encodedServed
}

type encodedServed struct {
	file string
	seen *corev1.ConfigMap // a copy of the object as encoded
	json []byte
}

func (e *servedEncoder) encode(cms []savedConfigMap) ([]state.Entry, error) {
	next := make(map[*corev1.ConfigMap]encodedServed, len(cms))
	out := make([]state.Entry, 0, len(cms))
	for _, c := range cms {
		it, ok := e.items[c.ConfigMap]
		if !ok || it.file != c.File || !holdsWhatItHeld(it.seen, c.ConfigMap) {
			b, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			it = encodedServed{file: c.File, seen: c.ConfigMap.DeepCopy(), json: b}
		}
		next[c.ConfigMap] = it
		out = append(out, state.Entry{Key: servedKey(c), Data: it.json})
	}
	e.items = next
	return out, nil
}

// holdsWhatItHeld reports whether cm holds what seen (a copy taken when it
// was encoded) held: decided by UID and resourceVersion when both are set
// (a stored Kubernetes object: a change is a new resourceVersion), else
// by comparing every field (folder manifests carry neither).
func holdsWhatItHeld(seen, cm *corev1.ConfigMap) bool {
	if seen.UID != cm.UID || seen.ResourceVersion != cm.ResourceVersion {
		return false
	}
	if cm.UID != "" && cm.ResourceVersion != "" {
		return true
	}
	return equality.Semantic.DeepEqual(seen, cm)
}
