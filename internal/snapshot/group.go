package snapshot

import (
	"bytes"
	"fmt"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// GroupSnapshot is what every proxy of one gateway group is served. Each
// resource is marshalled once, when the snapshot is built, and shared by
// every stream of the group: the work of a push grows with groups, not
// with proxies.
type GroupSnapshot struct {
	// typeURLs are the types its proxies are served, in ADS order: Types
	// for gateways and sidecars, RateLimitTypes for the rate limit service.
	typeURLs []string
	types    map[string]*TypeSnapshot
	sources  translate.Sources    // resource -> ConfigMaps (sources.go)
	times    map[string]typeTimes // per type: change observed, published (sources.go)
}

// TypeSnapshot holds one xDS type of a group. It is never modified once
// built (but for diff, set when it is published), and its lists, map and
// items may be shared with the snapshots before and after it.
type TypeSnapshot struct {
	// Version is a hash of the names and versions of every resource of
	// the type (typeVersion): identical on every replica and after every
	// restart, and moved only by a change of this type.
	Version string
	Names   []string // sorted
	Items   map[string]*Item
	// list is Items in Names order.
	list []*Item
	// all is the full SotW resource list, shared by every response that
	// carries the whole type; deltaAll the full delta resource list,
	// shared by every first response of a stream that holds nothing yet.
	// allList and deltaList are their encodings for the codec, shared by
	// the snapshots whose type is unchanged.
	all       []*anypb.Any
	deltaAll  []*discovery.Resource
	allList   *sharedList[*anypb.Any]
	deltaList *sharedList[*discovery.Resource]
	// diff is what changed since the snapshot this one replaced, for delta
	// streams that hold that one; built is what changed since the
	// encoder's last snapshot, the usual replaced one (nil if nothing).
	diff, built *typeDiff
}

type typeDiff struct {
	from    string // version of the replaced snapshot
	changed []*discovery.Resource
	removed []string
}

// diffFrom records, per type, what changed since prev: what the encoder
// found, when prev has the version it built from (the same resources at
// the same versions), or else by comparing every resource.
func (gs *GroupSnapshot) diffFrom(prev *GroupSnapshot) {
	for typ, ts := range gs.types {
		old := prev.Type(typ)
		if old.Version == ts.Version {
			continue
		}
		if ts.built != nil && ts.built.from == old.Version {
			ts.diff = ts.built
			continue
		}
		d := &typeDiff{from: old.Version}
		for _, it := range ts.list {
			if o, ok := old.Items[it.Name]; !ok || o.Version != it.Version {
				d.changed = append(d.changed, it.delta)
			}
		}
		for _, name := range old.Names {
			if _, ok := ts.Items[name]; !ok {
				d.removed = append(d.removed, name)
			}
		}
		ts.diff = d
	}
}

// publish shares the snapshot's full lists with the gRPC codec; release
// stops sharing when the snapshot is replaced.
func (gs *GroupSnapshot) publish() {
	for _, ts := range gs.types {
		registerList(ts.allList)
		registerList(ts.deltaList)
	}
}

func (gs *GroupSnapshot) release() {
	for _, ts := range gs.types {
		unregisterList(ts.allList)
		unregisterList(ts.deltaList)
	}
}

// Item is one marshalled resource with its own content version (delta xDS).
type Item struct {
	Name     string
	Version  string
	Resource types.Resource
	any      *anypb.Any
	delta    *discovery.Resource
	// sum is the hash of the content (Version also covers the covering
	// resource's version); enc what the encoder keeps of it.
	sum [32]byte
	enc *encoded
	// key is the hash of its name and version that its type's version
	// hashes (typeVersion).
	key [32]byte
}

// NewGroupSnapshot proves resources consistent by go-control-plane's rule
// (Snapshot.Consistent, on the references its GetResourceReferences reads
// in each resource) and marshals them once. They must come from compile.Group, which has
// run translate.Check on them (validation is not repeated here).
func NewGroupSnapshot(res *translate.Resources) (*GroupSnapshot, error) {
	return NewEncoder().NewGroupSnapshot(res)
}

// NewGroupSnapshot is NewGroupSnapshot, reusing what the encoder's last
// snapshot encoded. A snapshot that fails leaves the encoder as it was.
func (e *Encoder) NewGroupSnapshot(res *translate.Resources) (*GroupSnapshot, error) {
	gs := &GroupSnapshot{typeURLs: typesOf(res), types: map[string]*TypeSnapshot{}, sources: res.Sources}
	if !slices.Equal(e.typeURLs, gs.typeURLs) {
		// Another set of types (a rate limit group's): nothing to reuse.
		*e = Encoder{}
	}
	builds := map[string]*typeBuild{}
	for _, typ := range gs.typeURLs {
		// Clusters come before endpoints in Types: each endpoint set's
		// version covers its cluster's (see buildType).
		b, err := e.buildType(typ, res, builds[coveredBy[typ]])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		builds[typ], gs.types[typ] = b, b.ts
	}
	counts, err := e.consistent(builds)
	if err != nil {
		return nil, err
	}
	e.typeURLs, e.types = gs.typeURLs, gs.types
	e.commitRefs(counts)
	return gs, nil
}

// coveredBy names, per type, the type whose resource of the same name its
// versions cover.
var coveredBy = map[string]string{resourcev3.EndpointType: resourcev3.ClusterType}

// last is the encoder's last snapshot's type, empty if none.
func (e *Encoder) last(typeURL string) *TypeSnapshot {
	if ts, ok := e.types[typeURL]; ok {
		return ts
	}
	return emptyType
}

// Bytes is the resource's encoding, as served.
func (it *Item) Bytes() []byte { return it.any.GetValue() }

// SameContent reports whether two items are the same resource, byte for
// byte. Versions may differ for the same content (an endpoint set's
// version covers its cluster's).
func (it *Item) SameContent(o *Item) bool {
	return it != nil && o != nil && it.Name == o.Name && bytes.Equal(it.any.GetValue(), o.any.GetValue())
}

// item is the named resource, nil if none (or ts is nil).
func (ts *TypeSnapshot) item(name string) *Item {
	if ts == nil {
		return nil
	}
	return ts.Items[name]
}

// Type returns one type of the snapshot; an unknown type is empty.
func (gs *GroupSnapshot) Type(typeURL string) *TypeSnapshot {
	if ts, ok := gs.types[typeURL]; ok {
		return ts
	}
	return emptyType
}

// TypeURLs lists the types the snapshot's proxies are served, in ADS
// order; a nil snapshot has Types.
func (gs *GroupSnapshot) TypeURLs() []string {
	if gs == nil || gs.typeURLs == nil {
		return Types
	}
	return gs.typeURLs
}

// Versions lists the version of every type.
func (gs *GroupSnapshot) Versions() map[string]string {
	out := map[string]string{}
	for typ, ts := range gs.types {
		out[typ] = ts.Version
	}
	return out
}

var emptyType = &TypeSnapshot{Version: typeVersion(nil), Items: map[string]*Item{}, Names: []string{}}
