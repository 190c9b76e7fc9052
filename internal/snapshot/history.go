package snapshot

import (
	"sort"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// A delta stream in sync is recorded by the version it holds, not by the
// version of every resource (versionMarker). To answer it after a change,
// the cache must know what changed since that version. Keeping the
// replaced snapshots for that would keep every resource of each (130 MB
// at 10,000 destinations); the cache keeps instead, per type, the names
// each change touched, which is what the difference needs: a resource
// none of the later changes touched is as the stream holds it.

// step is one change of a type: the names changed (or added) and removed
// between two versions.
type step struct {
	from             string
	changed, removed []string
}

// History bounds: the steps kept per type, and the names they hold
// together. A stream whose version is older than the oldest step kept is
// ended (see lostBasis).
const (
	maxSteps = 1024
	// maxStepNames bounds the names all steps of a type hold, beyond the
	// type's own size: a change of everything (a new CA) costs as many
	// names as the type has, so that one such change still fits.
	maxStepNames = 4096
)

// record appends the change of a type that diffFrom found, dropping the
// oldest steps beyond the bounds.
func (st *groupState) record(typeURL string, ts *TypeSnapshot, limitSteps, limitNames int) {
	if ts.diff == nil {
		return
	}
	s := step{from: ts.diff.from, changed: make([]string, len(ts.diff.changed)), removed: ts.diff.removed}
	for i, r := range ts.diff.changed {
		s.changed[i] = r.Name
	}
	steps := append(st.steps[typeURL], s)
	budget := limitNames + len(ts.Names)
	total := 0
	for _, s := range steps {
		total += len(s.changed) + len(s.removed)
	}
	drop := 0
	for len(steps)-drop > limitSteps || (total > budget && len(steps)-drop > 1) {
		total -= len(steps[drop].changed) + len(steps[drop].removed)
		drop++
	}
	// A fresh array when dropping, so the dropped steps are not kept.
	if drop > 0 {
		steps = append([]step(nil), steps[drop:]...)
	}
	st.steps[typeURL] = steps
}

// since is what changed in a type from a version the stream holds to the
// current snapshot, computed once per snapshot for every stream that holds
// the same version.
type since struct {
	// changed and removed are every name a later step touched; a name in
	// changed may hold a new version, or be new; one in removed was
	// removed at some point and may be gone.
	changed, removed map[string]struct{}
	// resources are the current resources of changed (name order), gone
	// the names of removed that are not current: the whole difference.
	resources []*discovery.Resource
	gone      []string
}

// sinceVersion returns what changed since version, nil if no step kept
// starts there (the version is unknown or older than the history).
func (st *groupState) sinceVersion(typeURL, version string) *since {
	ts := st.snap.Type(typeURL)
	key := typeURL + "\x00" + version
	if d, ok := st.memo[key]; ok {
		return d
	}
	var d *since
	if version == ts.Version {
		d = &since{}
	} else {
		steps := st.steps[typeURL]
		first := -1
		for i := len(steps) - 1; i >= 0; i-- {
			if steps[i].from == version {
				first = i
				break
			}
		}
		if first < 0 {
			return nil
		}
		d = &since{changed: map[string]struct{}{}, removed: map[string]struct{}{}}
		for _, s := range steps[first:] {
			for _, n := range s.changed {
				d.changed[n] = struct{}{}
			}
			for _, n := range s.removed {
				d.removed[n] = struct{}{}
			}
		}
		for _, n := range ts.Names {
			if _, ok := d.changed[n]; ok {
				d.resources = append(d.resources, ts.Items[n].delta)
			}
		}
		for n := range d.removed {
			if _, ok := ts.Items[n]; !ok {
				d.gone = append(d.gone, n)
			}
		}
		sort.Strings(d.gone)
	}
	if st.memo == nil {
		st.memo = map[string]*since{}
	}
	st.memo[key] = d
	return d
}

// held reports whether a stream that held the basis version holds name,
// and at which version ("" when it may hold an older one: send it again).
func (d *since) held(ts *TypeSnapshot, name string) (string, bool) {
	if _, ok := d.changed[name]; ok {
		return "", true
	}
	if it, ok := ts.Items[name]; ok {
		return it.Version, true
	}
	_, ok := d.removed[name]
	return "", ok
}
