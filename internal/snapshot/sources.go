package snapshot

import (
	"sort"
	"time"
)

// Sources returns the ConfigMaps (namespace/name, sorted) a resource of the
// snapshot comes from, as the translator recorded them (translate.Sources).
// Resources no ConfigMap declares (the forward proxy of a group without
// intent) have none.
func (gs *GroupSnapshot) Sources(typeURL, name string) []string {
	if gs == nil {
		return nil
	}
	return gs.sources[typeURL][name]
}

// SourcesOf returns the union of the ConfigMaps of the named resources of
// one type, sorted.
func (gs *GroupSnapshot) SourcesOf(typeURL string, names []string) []string {
	set := map[string]bool{}
	for _, n := range names {
		for _, s := range gs.Sources(typeURL, n) {
			set[s] = true
		}
	}
	return sortedSet(set)
}

func sortedSet(set map[string]bool) []string {
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Changed is when the change that produced a type's current version was
// observed by a source (Builder.Update), and when that version was first
// published; both zero when unknown (a snapshot built for a new group, or
// outside the builder).
func (gs *GroupSnapshot) Changed(typeURL string) (observed, published time.Time) {
	if gs == nil || gs.times == nil {
		return time.Time{}, time.Time{}
	}
	t := gs.times[typeURL]
	return t.observed, t.published
}

type typeTimes struct{ observed, published time.Time }

// stampTimes records, per type, when its version's change was observed and
// published: a type whose version prev already had keeps prev's times.
func (gs *GroupSnapshot) stampTimes(prev *GroupSnapshot, observed, now time.Time) {
	gs.times = map[string]typeTimes{}
	for _, typ := range gs.TypeURLs() {
		if prev != nil && prev.Type(typ).Version == gs.Type(typ).Version && prev.times != nil {
			gs.times[typ] = prev.times[typ]
			continue
		}
		gs.times[typ] = typeTimes{observed: observed, published: now}
	}
}
