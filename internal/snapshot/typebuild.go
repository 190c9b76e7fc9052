package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// typeBuild is one type of the snapshot being built, and how it differs
// from the encoder's last snapshot's (prev).
type typeBuild struct {
	ts, prev *TypeSnapshot
	// fresh are the items not taken whole from prev, with their index in
	// ts.list and prev's item of the same name (nil: added).
	fresh []freshItem
	// removed are prev's items whose name is gone.
	removed []*Item
	// moved are the names (sorted) whose version moved, added or removed
	// included: what a covered type's versions must follow.
	moved []string
}

type freshItem struct {
	at       int
	it, prev *Item
	parts    partChange
}

// buildType builds one type of res, reusing prev's items (see merge).
func (e *Encoder) buildType(typeURL string, res *translate.Resources, cover *typeBuild) (*typeBuild, error) {
	switch typeURL {
	case resourcev3.ClusterType:
		return buildType(e, typeURL, res.Clusters, cover)
	case resourcev3.EndpointType:
		return buildType(e, typeURL, res.Endpoints, cover)
	case resourcev3.ListenerType:
		return buildType(e, typeURL, res.Listeners, cover)
	case resourcev3.RouteType:
		return buildType(e, typeURL, res.Routes, cover)
	case resourcev3.SecretType:
		return buildType(e, typeURL, res.Secrets, cover)
	case resourcev3.RateLimitConfigType:
		return buildType(e, typeURL, res.RateLimitConfigs, cover)
	}
	return nil, fmt.Errorf("unknown type %q", typeURL)
}

// buildType marshals and versions the resources of one type, which
// translation lists in name order (others are sorted first).
//
// With cover, a resource's version also covers the version of cover's
// resource of the same name: an endpoint set (ClusterLoadAssignment) moves
// with its EDS cluster. Envoy re-creates a cluster it is sent and the new
// one waits, warming, for its endpoints, which Envoy does not ask for
// again (envoyproxy/envoy#13009): were they unchanged, nothing would be
// sent and the cluster would be applied only after the 15 s initial fetch
// timeout. A moved version sends them again, after the cluster (Types
// order, kept by SetSnapshot), over SotW and delta.
func buildType[T types.Resource](e *Encoder, typeURL string, rs []T, cover *typeBuild) (*typeBuild, error) {
	prev := e.last(typeURL)
	b, err := merge(e, typeURL, rs, prev, cover)
	if err != nil || b != nil {
		return b, err
	}
	// Not in name order, or a name twice.
	sorted := slices.Clone(rs)
	slices.SortStableFunc(sorted, func(x, y T) int {
		return strings.Compare(cachev3.GetResourceName(x), cachev3.GetResourceName(y))
	})
	for i := 1; i < len(sorted); i++ {
		if name := cachev3.GetResourceName(sorted[i]); name == cachev3.GetResourceName(sorted[i-1]) {
			return nil, fmt.Errorf("resource %q is defined twice", name)
		}
	}
	return merge(e, typeURL, sorted, prev, cover)
}

// merge walks rs and prev's items, both in name order, side by side: an
// item whose resource is the same pointer, at the same place, is taken
// whole (unless cover's item of its name moved), which costs a comparison
// of pointers; others are looked up by name and built. It returns nil if
// rs is not strictly in name order.
func merge[T types.Resource](e *Encoder, typeURL string, rs []T, prev *TypeSnapshot, cover *typeBuild) (*typeBuild, error) {
	b := &typeBuild{prev: prev}
	pl := prev.list
	out := make([]*Item, 0, len(rs))
	var moved []string
	if cover != nil {
		moved = cover.moved
	}
	j, k := 0, 0
	last := ""
	for _, r := range rs {
		if j < len(pl) && pl[j].Resource == types.Resource(r) {
			p := pl[j]
			for k < len(moved) && moved[k] < p.Name {
				k++
			}
			if k == len(moved) || moved[k] != p.Name {
				out, last = append(out, p), p.Name
				j++
				continue
			}
		}
		name := cachev3.GetResourceName(r)
		if len(out) > 0 && name <= last {
			return nil, nil
		}
		for j < len(pl) && pl[j].Name < name {
			b.removed = append(b.removed, pl[j])
			j++
		}
		var p *Item
		if j < len(pl) && pl[j].Name == name {
			p = pl[j]
			j++
		}
		it, parts, err := e.item(typeURL, name, r, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		version := it.sum
		if cover != nil {
			if c := cover.ts.Items[name]; c != nil {
				version = sha256.Sum256(append(it.sum[:], c.Version...))
			}
		}
		it.Version = hex.EncodeToString(version[:versionBytes])
		it.key = itemKey(name, it.Version)
		if p != nil && p.Version == it.Version && p.any == it.any {
			it.delta = p.delta
		} else {
			it.delta = &discovery.Resource{Name: name, Version: it.Version, Resource: it.any}
		}
		b.fresh = append(b.fresh, freshItem{at: len(out), it: it, prev: p, parts: parts})
		out, last = append(out, it), name
	}
	b.removed = append(b.removed, pl[j:]...)
	b.finish(out)
	return b, nil
}

// finish puts the type together from the merged items out: prev's own
// when nothing changed, else prev's lists copied and patched where no
// name came or went, and its version a hash of its items' keys.
func (b *typeBuild) finish(out []*Item) {
	prev := b.prev
	if len(b.fresh) == 0 && len(b.removed) == 0 {
		ts := *prev
		ts.diff, ts.built = nil, nil
		b.ts = &ts
		return
	}
	ts := &TypeSnapshot{list: out, Version: typeVersion(out)}
	d := &typeDiff{from: prev.Version}
	sameNames := len(b.removed) == 0
	for _, f := range b.fresh {
		if f.prev == nil {
			sameNames = false
		}
		if f.prev == nil || f.prev.Version != f.it.Version {
			d.changed = append(d.changed, f.it.delta)
			b.moved = append(b.moved, f.it.Name)
		}
	}
	for _, it := range b.removed {
		d.removed = append(d.removed, it.Name)
	}
	if len(b.removed) > 0 {
		b.moved = append(b.moved, d.removed...)
		slices.Sort(b.moved)
	}
	if len(d.changed) > 0 || len(d.removed) > 0 {
		ts.built = d
	}
	if sameNames {
		ts.Names = prev.Names
		ts.all, ts.deltaAll = slices.Clone(prev.all), slices.Clone(prev.deltaAll)
		for _, f := range b.fresh {
			ts.all[f.at], ts.deltaAll[f.at] = f.it.any, f.it.delta
		}
	} else {
		ts.Names = make([]string, len(out))
		ts.all = make([]*anypb.Any, len(out))
		ts.deltaAll = make([]*discovery.Resource, len(out))
		for i, it := range out {
			ts.Names[i], ts.all[i], ts.deltaAll[i] = it.Name, it.any, it.delta
		}
	}
	if len(prev.Items) == 0 || len(b.fresh) > len(out)/2 {
		ts.Items = make(map[string]*Item, len(out))
		for _, it := range out {
			ts.Items[it.Name] = it
		}
	} else {
		ts.Items = maps.Clone(prev.Items)
		for _, it := range b.removed {
			delete(ts.Items, it.Name)
		}
		for _, f := range b.fresh {
			ts.Items[f.it.Name] = f.it
		}
	}
	if sameNames {
		ts.allList, ts.deltaList = newSharedList(ts.all, prev.allList), newSharedList(ts.deltaAll, prev.deltaList)
	} else {
		ts.allList, ts.deltaList = newSharedList(ts.all, nil), newSharedList(ts.deltaAll, nil)
	}
	b.ts = ts
}

// Versions keep 128 bits of a hash (versionBytes): a search for two
// contents under one version, which a tenant could run on its own
// resources, then costs about 2^64 hashes (64 bits: 2^32, within reach).
//
// A type's version hashes its items' keys (a SHA-256 of the name and
// version of each) in name order, and their count: a function of the
// names and versions alone, whatever the order or history of the changes
// that made them (identical on every replica and after every restart).
// It is not a sum of the keys, which a build could update by what
// changed: a sum is a function of the sum alone, and a tenant controlling
// a few thousand items could find two sets of its own items with the same
// sum, whatever the others' items, by Wagner's generalized birthday
// search in about 2^32 work. Hashing the keys costs 32 bytes per item, a
// pass over the list as the build makes anyway (about half a millisecond
// at 10,000 items: BenchmarkTypeVersion).
const versionBytes = 16

func itemKey(name, version string) [32]byte {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(version))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func typeVersion(items []*Item) string {
	h := hashOf(items, func(it *Item) *[32]byte { return &it.key })
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(items)))
	h.Write(n[:])
	return hex.EncodeToString(h.Sum(nil)[:versionBytes])
}
