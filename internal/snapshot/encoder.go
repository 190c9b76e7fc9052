package snapshot

import (
	"crypto/sha256"
	"fmt"
	"hash"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

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
// parts' encodings: exactly what proto.Marshal writes.
//
// An unchanged resource keeps its Item, shared by the snapshots that
// serve it (an Item is never modified once built), and a snapshot's type
// is put together from the last one's: its lists copied and patched, its
// version a hash of its items' keys (typeVersion), its references
// counted again only for the items that changed (consistent). A build costs what changed
// and a pass over the resource lists. It keeps its last snapshot's types
// and reference counts, and nothing more. Not safe for concurrent use.
type Encoder struct {
	// typeURLs and types are the last snapshot's.
	typeURLs []string
	types    map[string]*TypeSnapshot
	// refs counts, by type and name, the clusters and listeners of the
	// last snapshot that reference each endpoint set and route
	// configuration (go-control-plane's Consistent).
	refs map[string]map[string]int
}

// NewEncoder returns an encoder that has encoded nothing.
func NewEncoder() *Encoder { return &Encoder{} }

// encoded is what the encoder keeps of an item: the resources it
// references by go-control-plane's rules (Consistent), and, for a resource
// of parts (translate.Split), its parts' encodings and hashes in order,
// the hash of its header's encoding and the hash of its parts' hashes. The
// references of a resource of parts are its header's and its parts'.
type encoded struct {
	refs     map[string]map[string]bool
	parts    []*encodedPart
	head     [32]byte
	partsSum [32]byte
}

// encodedPart is one part, recognised by identity (msg).
type encodedPart struct {
	msg  proto.Message
	enc  []byte
	sum  [32]byte
	refs map[string]map[string]bool
}

var marshal = proto.MarshalOptions{Deterministic: true}

// references are what go-control-plane's Consistent reads in a resource
// or part: a filter chain is read as a listener of that one chain, whose
// only references are the route configurations of its HTTP connection
// managers (a chain without one, the usual TLS or TCP chain, is not
// decoded again).
func references(m proto.Message) map[string]map[string]bool {
	var r types.Resource
	switch v := m.(type) {
	case *listenerv3.FilterChain:
		if !hasHCM(v) {
			return nil
		}
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

// hasHCM reports whether a filter of the chain has an HTTP connection
// manager's typed config, the only one go-control-plane reads
// (resourcev3.GetHTTPConnectionManager, which decodes it when its type
// URL names one).
func hasHCM(fc *listenerv3.FilterChain) bool {
	for _, f := range fc.GetFilters() {
		if f.GetTypedConfig().MessageIs((*hcmv3.HttpConnectionManager)(nil)) {
			return true
		}
	}
	return false
}

// partChange is how a resource's parts moved against its last version's:
// added (new, or one more occurrence) and gone, for the reference counts.
type partChange struct {
	added, gone []*encodedPart
}

// item is the resource r of the snapshot being built: its encoding and
// content hash, reused from prev (the last snapshot's item of the same
// name, nil if none) when r, or every part of it, is unchanged. Its
// version and delta resource are set by the caller.
func (e *Encoder) item(typeURL, name string, r types.Resource, prev *Item) (*Item, partChange, error) {
	it := &Item{Name: name, Resource: r}
	if prev != nil && prev.Resource == r {
		it.sum, it.enc, it.any = prev.sum, prev.enc, prev.any
		return it, partChange{}, nil
	}
	split := translate.Split(r)
	if split.Field == 0 {
		b, err := marshal.Marshal(r)
		if err != nil {
			return nil, partChange{}, err
		}
		it.sum = sha256.Sum256(b)
		if prev != nil && prev.sum == it.sum {
			// The same bytes: the same references and encoding.
			it.enc, it.any = prev.enc, prev.any
			return it, partChange{}, nil
		}
		it.enc = &encoded{refs: references(r)}
		it.any = &anypb.Any{TypeUrl: typeURL, Value: b}
		return it, partChange{}, nil
	}
	header, err := marshal.Marshal(split.Header)
	if err != nil {
		return nil, partChange{}, err
	}
	var last *encoded
	if prev != nil {
		last = prev.enc
	}
	enc := &encoded{head: sha256.Sum256(header)}
	if last != nil && last.head == enc.head {
		enc.refs = last.refs
	} else {
		enc.refs = references(split.Header)
	}
	var change partChange
	if last != nil && sameParts(last.parts, split.Parts) {
		enc.parts, enc.partsSum = last.parts, last.partsSum
	} else {
		if enc.parts, change, err = matchParts(lastParts(last), split.Parts); err != nil {
			return nil, partChange{}, err
		}
		enc.partsSum = partsSum(enc.parts)
	}
	it.enc = enc
	it.sum = sha256.Sum256(append(enc.head[:], enc.partsSum[:]...))
	if prev != nil && prev.sum == it.sum {
		it.any = prev.any
		return it, change, nil
	}
	it.any = &anypb.Any{TypeUrl: typeURL, Value: assemble(header, split.Field, enc.parts)}
	return it, change, nil
}

// partsSum is the hash of the parts' hashes.
func partsSum(parts []*encodedPart) [32]byte {
	var sum [32]byte
	hashOf(parts, func(p *encodedPart) *[32]byte { return &p.sum }).Sum(sum[:0])
	return sum
}

// hashOf is a SHA-256 of the hashes key gives of xs, in order, written to
// it in batches.
func hashOf[T any](xs []T, key func(T) *[32]byte) hash.Hash {
	h := sha256.New()
	var buf [64 * sha256.Size]byte
	n := 0
	for _, x := range xs {
		n += copy(buf[n:], key(x)[:])
		if n == len(buf) {
			h.Write(buf[:])
			n = 0
		}
	}
	h.Write(buf[:n])
	return h
}

func lastParts(last *encoded) []*encodedPart {
	if last == nil {
		return nil
	}
	return last.parts
}

// sameParts reports whether the parts are last's, in the same order.
func sameParts(last []*encodedPart, parts []proto.Message) bool {
	if len(last) != len(parts) {
		return false
	}
	for i, m := range parts {
		if last[i].msg != m {
			return false
		}
	}
	return true
}

// matchParts encodes parts, reusing the encodings of last's parts that are
// the same messages. Translation keeps parts in a stable order, so each is
// looked for where the previous match ends: one before (after an
// insertion), and after, as far as the parts not found since (replaced
// ones); past maxRun such parts, by an index of last. A part found
// nowhere is encoded again.
func matchParts(last []*encodedPart, parts []proto.Message) ([]*encodedPart, partChange, error) {
	const maxRun = 256
	out := make([]*encodedPart, len(parts))
	matched := make([]bool, len(last))
	var index map[proto.Message]int
	var change partChange
	next, run := 0, 0
	find := func(m proto.Message) int {
		if run > maxRun {
			if index == nil {
				index = make(map[proto.Message]int, len(last))
				for i := len(last) - 1; i >= 0; i-- {
					index[last[i].msg] = i
				}
			}
			if i, ok := index[m]; ok && !matched[i] {
				return i
			}
			return -1
		}
		for i := max(next-1, 0); i < len(last) && i <= next+run+4; i++ {
			if last[i].msg == m && !matched[i] {
				return i
			}
		}
		return -1
	}
	for i, m := range parts {
		if at := find(m); at >= 0 {
			out[i], next, run, matched[at] = last[at], at+1, 0, true
			continue
		}
		b, err := marshal.Marshal(m)
		if err != nil {
			return nil, partChange{}, fmt.Errorf("part %d: %w", i, err)
		}
		out[i] = &encodedPart{msg: m, enc: b, sum: sha256.Sum256(b), refs: references(m)}
		change.added = append(change.added, out[i])
		run++
	}
	for i, ok := range matched {
		if !ok {
			change.gone = append(change.gone, last[i])
		}
	}
	return out, change, nil
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
