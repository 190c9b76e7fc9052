package snapshot

import (
	"sort"
	"sync"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// sourceIndex maps every resource of a group snapshot to the ConfigMaps
// (namespace/name) it comes from. It is computed on first use (a NACK, a
// config dump), not on every build.
type sourceIndex struct {
	once    sync.Once
	cluster map[string]string              // translate.Resources.Sources: cluster -> ConfigMap
	byType  map[string]map[string][]string // type URL -> resource name -> sorted ConfigMaps
}

// Sources returns the ConfigMaps (namespace/name, sorted) a resource of the
// snapshot comes from: a cluster and its endpoints come from the ConfigMap
// declaring the destination; a listener or route configuration from every
// ConfigMap with a destination on it; a secret from the ConfigMaps whose
// clusters use it. Resources no ConfigMap declares (the forward proxy of a
// group without intent) have none.
func (gs *GroupSnapshot) Sources(typeURL, name string) []string {
	if gs == nil || gs.sources == nil {
		return nil
	}
	gs.sources.once.Do(func() { gs.sources.byType = gs.indexSources() })
	return gs.sources.byType[typeURL][name]
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

// indexSources walks every resource, typed configs included, for the names
// of clusters, routes and secrets it references.
func (gs *GroupSnapshot) indexSources() map[string]map[string][]string {
	clusterSrc := gs.sources.cluster
	out := map[string]map[string][]string{}
	refs := func(typeURL string, keep func(ref string) []string) {
		ts := gs.Type(typeURL)
		m := map[string][]string{}
		for _, name := range ts.Names {
			set := map[string]bool{}
			for _, s := range keep(name) {
				set[s] = true
			}
			walkStrings(ts.Items[name].Resource, func(v string) {
				for _, s := range keep(v) {
					set[s] = true
				}
			})
			m[name] = sortedSet(set)
		}
		out[typeURL] = m
	}
	cluster := func(ref string) []string {
		if s, ok := clusterSrc[ref]; ok {
			return []string{s}
		}
		return nil
	}
	refs(resourcev3.ClusterType, cluster)
	refs(resourcev3.EndpointType, cluster)
	refs(resourcev3.RouteType, cluster)
	routes := out[resourcev3.RouteType]
	refs(resourcev3.ListenerType, func(ref string) []string {
		if s := cluster(ref); s != nil {
			return s
		}
		return routes[ref]
	})
	// A secret's sources are those of the clusters referencing it.
	secrets := map[string]map[string]bool{}
	for _, name := range gs.Type(resourcev3.ClusterType).Names {
		src := out[resourcev3.ClusterType][name]
		walkStrings(gs.Type(resourcev3.ClusterType).Items[name].Resource, func(v string) {
			if _, ok := gs.Type(resourcev3.SecretType).Items[v]; ok {
				if secrets[v] == nil {
					secrets[v] = map[string]bool{}
				}
				for _, s := range src {
					secrets[v][s] = true
				}
			}
		})
	}
	sm := map[string][]string{}
	for name, set := range secrets {
		sm[name] = sortedSet(set)
	}
	out[resourcev3.SecretType] = sm
	return out
}

// walkStrings calls f with every string field value of m, including map
// values and the content of Any fields whose type is known.
func walkStrings(m proto.Message, f func(string)) {
	if m == nil {
		return
	}
	walkMessage(m.ProtoReflect(), f, 0)
}

func walkMessage(m protoreflect.Message, f func(string), depth int) {
	if depth > 64 || !m.IsValid() {
		return
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		if inner, err := a.UnmarshalNew(); err == nil {
			walkMessage(inner.ProtoReflect(), f, depth+1)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkValue(fd, l.Get(i), f, depth)
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkValue(fd.MapValue(), mv, f, depth)
				return true
			})
		default:
			walkValue(fd, v, f, depth)
		}
		return true
	})
}

func walkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, f func(string), depth int) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		f(v.String())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		walkMessage(v.Message(), f, depth+1)
	}
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
	for _, typ := range Types {
		if prev != nil && prev.Type(typ).Version == gs.Type(typ).Version && prev.times != nil {
			gs.times[typ] = prev.times[typ]
			continue
		}
		gs.times[typ] = typeTimes{observed: observed, published: now}
	}
}
