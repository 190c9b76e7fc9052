package snapshot

import (
	"fmt"
	"slices"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Consistency is go-control-plane's Snapshot.Consistent: every endpoint
// set and route configuration is referenced (by a cluster, by a
// listener), and every reference is served. The encoder counts, per
// referenced name, the clusters and listeners that reference it, from the
// references recorded of each resource and part (encoded.refs); a build
// changes the counts by its new and gone items alone, and checks the
// names whose count or presence moved: the others were consistent in the
// last snapshot.

var (
	referencing = []string{resourcev3.ClusterType, resourcev3.ListenerType}
	referenced  = []string{resourcev3.EndpointType, resourcev3.RouteType}
)

// consistent checks the snapshot being built and returns the change of
// the reference counts, to commit once it is published.
func (e *Encoder) consistent(builds map[string]*typeBuild) (map[string]map[string]int, error) {
	delta := map[string]map[string]int{}
	count := func(refs map[string]map[string]bool, by int) {
		for typ, names := range refs {
			if delta[typ] == nil {
				delta[typ] = map[string]int{}
			}
			for n := range names {
				delta[typ][n] += by
			}
		}
	}
	for _, typ := range referencing {
		b := builds[typ]
		if b == nil {
			continue
		}
		for _, f := range b.fresh {
			if f.prev != nil && f.prev.enc == f.it.enc {
				continue
			}
			count(f.it.enc.refs, 1)
			if f.prev != nil {
				count(f.prev.enc.refs, -1)
			}
			for _, p := range f.parts.added {
				count(p.refs, 1)
			}
			for _, p := range f.parts.gone {
				count(p.refs, -1)
			}
		}
		for _, it := range b.removed {
			count(it.enc.refs, -1)
			for _, p := range it.enc.parts {
				count(p.refs, -1)
			}
		}
	}
	for _, typ := range referenced {
		ts, d := emptyType, delta[typ]
		b := builds[typ]
		if b != nil {
			ts = b.ts
		}
		// The names whose count or presence may have moved.
		check := make([]string, 0, len(d))
		for n := range d {
			check = append(check, n)
		}
		if b != nil {
			for _, f := range b.fresh {
				if f.prev == nil {
					check = append(check, f.it.Name)
				}
			}
			for _, it := range b.removed {
				check = append(check, it.Name)
			}
		}
		slices.Sort(check)
		check = slices.Compact(check)
		refs := len(e.refs[typ])
		var missing string
		for _, n := range check {
			was, now := e.refs[typ][n] > 0, e.refs[typ][n]+d[n] > 0
			switch {
			case was && !now:
				refs--
			case !was && now:
				refs++
			}
			if _, ok := ts.Items[n]; now && !ok && missing == "" {
				missing = n
			}
		}
		if refs != len(ts.Names) {
			return nil, fmt.Errorf("mismatched %q reference and resource lengths: %d references, %d resources", typ, refs, len(ts.Names))
		}
		if missing != "" {
			return nil, fmt.Errorf("inconsistent %q reference: %q not listed", typ, missing)
		}
	}
	return delta, nil
}

// commitRefs applies the change of the reference counts of a published
// snapshot.
func (e *Encoder) commitRefs(delta map[string]map[string]int) {
	if e.refs == nil {
		e.refs = map[string]map[string]int{}
	}
	for typ, names := range delta {
		counts := e.refs[typ]
		if counts == nil {
			counts = map[string]int{}
			e.refs[typ] = counts
		}
		for n, by := range names {
			if c := counts[n] + by; c > 0 {
				counts[n] = c
			} else {
				delete(counts, n)
			}
		}
	}
}
