package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
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

// TypeSnapshot holds one xDS type of a group.
type TypeSnapshot struct {
	// Version is a hash of the names and content of every resource of the
	// type: identical on every replica and after every restart, and moved
	// only by a change of this type.
	Version string
	Names   []string // sorted
	Items   map[string]*Item
	// all is the full SotW resource list, shared by every response that
	// carries the whole type.
	all []*anypb.Any
	// deltaAll is the full delta resource list, shared by every first
	// response of a stream that holds nothing yet.
	deltaAll []*discovery.Resource
	// diff is what changed since the snapshot this one replaced, for delta
	// streams that hold that one.
	diff *typeDiff
}

type typeDiff struct {
	from    string // version of the replaced snapshot
	changed []*discovery.Resource
	removed []string
}

// diffFrom records, per type, what changed since prev.
func (gs *GroupSnapshot) diffFrom(prev *GroupSnapshot) {
	for typ, ts := range gs.types {
		old := prev.Type(typ)
		if old.Version == ts.Version {
			continue
		}
		d := &typeDiff{from: old.Version}
		for _, name := range ts.Names {
			if it, ok := old.Items[name]; !ok || it.Version != ts.Items[name].Version {
				d.changed = append(d.changed, ts.Items[name].delta)
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
		registerList(ts.all)
		registerList(ts.deltaAll)
	}
}

func (gs *GroupSnapshot) release() {
	for _, ts := range gs.types {
		unregisterList(ts.all)
		unregisterList(ts.deltaAll)
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
}

// NewGroupSnapshot proves resources consistent by go-control-plane's rule
// (Snapshot.Consistent, on the references its GetResourceReferences reads
// in each resource) and marshals them once. They must come from compile.Group, which has
// run translate.Check on them (validation is not repeated here).
func NewGroupSnapshot(res *translate.Resources) (*GroupSnapshot, error) {
	return NewEncoder().NewGroupSnapshot(res)
}

// NewGroupSnapshot is NewGroupSnapshot, reusing what the encoder's last
// snapshot encoded.
func (e *Encoder) NewGroupSnapshot(res *translate.Resources) (*GroupSnapshot, error) {
	byType := ByType(res)
	gs := &GroupSnapshot{typeURLs: typesOf(res), types: map[string]*TypeSnapshot{}, sources: res.Sources}
	for _, typ := range gs.typeURLs {
		// Clusters come before endpoints in Types: each endpoint set's
		// version covers its cluster's (see newTypeSnapshot).
		ts, err := e.newTypeSnapshot(typ, byType[typ], gs.types[coveredBy[typ]])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		gs.types[typ] = ts
	}
	if err := consistent(gs); err != nil {
		return nil, err
	}
	e.items = map[string]map[string]*Item{}
	for typ, ts := range gs.types {
		e.items[typ] = ts.Items
	}
	return gs, nil
}

// coveredBy names, per type, the type whose resource of the same name its
// versions cover.
var coveredBy = map[string]string{resourcev3.EndpointType: resourcev3.ClusterType}

// newTypeSnapshot marshals the resources of one type and versions them.
// With cover, a resource's version also covers the version of cover's
// resource of the same name: an endpoint set (ClusterLoadAssignment) moves
// with its EDS cluster. Envoy re-creates a cluster it is sent and the new
// one waits, warming, for its endpoints, which Envoy does not ask for
// again (envoyproxy/envoy#13009): were they unchanged, nothing would be
// sent and the cluster would be applied only after the 15 s initial fetch
// timeout. A moved version sends them again, after the cluster (Types
// order, kept by SetSnapshot), over SotW and delta.
func (e *Encoder) newTypeSnapshot(typeURL string, items []types.Resource, cover *TypeSnapshot) (*TypeSnapshot, error) {
	ts := &TypeSnapshot{Items: make(map[string]*Item, len(items)), Names: make([]string, 0, len(items))}
	for _, r := range items {
		name := cachev3.GetResourceName(r)
		if _, dup := ts.Items[name]; dup {
			return nil, fmt.Errorf("resource %q is defined twice", name)
		}
		it, err := e.item(typeURL, name, r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		version := it.sum
		if c := cover.item(name); c != nil {
			version = sha256.Sum256(append(it.sum[:], c.Version...))
		}
		it.Version = hex.EncodeToString(version[:8])
		it.delta = &discovery.Resource{Name: name, Version: it.Version, Resource: it.any}
		ts.Items[name] = it
		ts.Names = append(ts.Names, name)
	}
	if !sort.StringsAreSorted(ts.Names) {
		sort.Strings(ts.Names)
	}
	ts.all = make([]*anypb.Any, 0, len(ts.Names))
	ts.deltaAll = make([]*discovery.Resource, 0, len(ts.Names))
	// The type's version is a hash of its resources' names and versions.
	h := sha256.New()
	for _, n := range ts.Names {
		it := ts.Items[n]
		ts.all = append(ts.all, it.any)
		ts.deltaAll = append(ts.deltaAll, it.delta)
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(it.Version))
		h.Write([]byte{0})
	}
	ts.Version = hex.EncodeToString(h.Sum(nil))[:16]
	return ts, nil
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

var emptyType = func() *TypeSnapshot {
	ts, _ := NewEncoder().newTypeSnapshot("", nil, nil)
	return ts
}()
