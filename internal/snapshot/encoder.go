package snapshot

import (
	"crypto/sha256"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// Encoder marshals, hashes and cross-checks the resources of one group's
// snapshots, redoing only what changed since its last snapshot: a resource
// or part (a listener's filter chain, a route configuration's virtual
// host; translate.Split) is recognised by identity, which translation
// fragments keep while their inputs are unchanged (translate.Cache), and
// is never modified. A listener's or route configuration's content hash
// is a hash of its other fields' encoding and of its parts' hashes, and
// its encoding, needed only when that hash moves, is assembled from its
// parts' encodings: exactly what proto.Marshal writes. It keeps what its
// last snapshot holds, and nothing more. Not safe for concurrent use.
type Encoder struct {
	// items are the last snapshot's, by type and name.
	items map[string]map[string]*Item
}

// NewEncoder returns an encoder that has encoded nothing.
func NewEncoder() *Encoder { return &Encoder{} }

// encoded is what the encoder keeps of an item: its parts' encodings and
// hashes, by identity, and the resources it references by
// go-control-plane's rules (Consistent).
type encoded struct {
	parts map[proto.Message]*encodedPart
	refs  map[string]map[string]bool
}

type encodedPart struct {
	enc  []byte
	sum  [32]byte
	refs map[string]map[string]bool
}

var marshal = proto.MarshalOptions{Deterministic: true}

// references are what go-control-plane's Consistent reads in a resource
// or part: a filter chain is read as a listener of that one chain.
func references(m proto.Message) map[string]map[string]bool {
	var r types.Resource
	switch v := m.(type) {
	case *listenerv3.FilterChain:
		r = &listenerv3.Listener{FilterChains: []*listenerv3.FilterChain{v}}
	case *listenerv3.Listener, *clusterv3.Cluster:
		r = v
	default:
		return nil
	}
	refs := cachev3.GetResourceReferences(map[string]types.ResourceWithTTL{"": {Resource: r}})
	if len(refs) == 0 {
		return nil
	}
	return refs
}

func mergeRefs(dst *map[string]map[string]bool, src map[string]map[string]bool) {
	for t, names := range src {
		if *dst == nil {
			*dst = map[string]map[string]bool{}
		}
		if (*dst)[t] == nil {
			(*dst)[t] = map[string]bool{}
		}
		for n := range names {
			(*dst)[t][n] = true
		}
	}
}

// item is the resource r of the snapshot being built: its encoding and
// content hash, reused from the last snapshot when r, or every part of it,
// is unchanged. Its version is set by the caller.
func (e *Encoder) item(typeURL, name string, r types.Resource) (*Item, error) {
	prev := e.items[typeURL][name]
	it := &Item{Name: name, Resource: r}
	if prev != nil && prev.Resource == r {
		it.sum, it.enc = prev.sum, prev.enc
		it.any = &anypb.Any{TypeUrl: typeURL, Value: prev.any.Value}
		return it, nil
	}
	split := translate.Split(r)
	if split.Field == 0 {
		b, err := marshal.Marshal(r)
		if err != nil {
			return nil, err
		}
		it.sum, it.enc = sha256.Sum256(b), &encoded{refs: references(r)}
		it.any = &anypb.Any{TypeUrl: typeURL, Value: b}
		return it, nil
	}
	header, err := marshal.Marshal(split.Header)
	if err != nil {
		return nil, err
	}
	it.enc = &encoded{parts: make(map[proto.Message]*encodedPart, len(split.Parts)), refs: references(split.Header)}
	parts := make([]*encodedPart, len(split.Parts))
	h := sha256.New()
	h.Write(header)
	for i, m := range split.Parts {
		p := prev.part(m)
		if p == nil {
			b, err := marshal.Marshal(m)
			if err != nil {
				return nil, fmt.Errorf("part %d: %w", i, err)
			}
			p = &encodedPart{enc: b, sum: sha256.Sum256(b), refs: references(m)}
		}
		parts[i], it.enc.parts[m] = p, p
		mergeRefs(&it.enc.refs, p.refs)
		h.Write(p.sum[:])
	}
	h.Sum(it.sum[:0])
	if prev != nil && prev.sum == it.sum {
		it.any = &anypb.Any{TypeUrl: typeURL, Value: prev.any.Value}
		return it, nil
	}
	it.any = &anypb.Any{TypeUrl: typeURL, Value: assemble(header, split.Field, parts)}
	return it, nil
}

// part is the encoding of a part of the item, nil if none.
func (it *Item) part(m proto.Message) *encodedPart {
	if it == nil || it.enc == nil {
		return nil
	}
	return it.enc.parts[m]
}

// assemble inserts the parts' encodings, as repeated field num, into the
// header's before its first field of a higher number (proto.Marshal
// writes fields in number order). Each part's encoding then points into
// the result, so that one copy of the bytes is kept.
func assemble(header []byte, num protowire.Number, parts []*encodedPart) []byte {
	at := len(header)
	for off := 0; off < len(header); {
		f, _, l := protowire.ConsumeField(header[off:])
		if l < 0 {
			break
		}
		if f > num {
			at = off
			break
		}
		off += l
	}
	size := len(header)
	for _, p := range parts {
		size += protowire.SizeTag(num) + protowire.SizeBytes(len(p.enc))
	}
	out := make([]byte, 0, size)
	out = append(out, header[:at]...)
	for _, p := range parts {
		out = protowire.AppendTag(out, num, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(len(p.enc)))
		start := len(out)
		out = append(out, p.enc...)
		p.enc = out[start:len(out):len(out)]
	}
	return append(out, header[at:]...)
}

// consistent is go-control-plane's Snapshot.Consistent, from the recorded
// references of each resource and part: every endpoint set and route
// configuration is referenced, and every reference is served.
func consistent(gs *GroupSnapshot) error {
	var refs map[string]map[string]bool
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		for _, it := range gs.Type(typ).Items {
			if it.enc != nil {
				mergeRefs(&refs, it.enc.refs)
			}
		}
	}
	for _, typ := range []string{resourcev3.EndpointType, resourcev3.RouteType} {
		ts := gs.Type(typ)
		if len(refs[typ]) != len(ts.Names) {
			return fmt.Errorf("mismatched %q reference and resource lengths: %d references, %d resources", typ, len(refs[typ]), len(ts.Names))
		}
		for n := range refs[typ] {
			if _, ok := ts.Items[n]; !ok {
				return fmt.Errorf("inconsistent %q reference: %q not listed", typ, n)
			}
		}
	}
	return nil
}
