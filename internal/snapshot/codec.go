package snapshot

import (
	"sync"
	"sync/atomic"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A SotW push sends the same resource list to every proxy of a group: a
// thousand gateways, a thousand identical copies of every cluster. The
// codec below encodes such a list once per snapshot and shares the bytes
// among all streams; only the small per-stream part (version, type, nonce)
// is encoded per response. Protobuf fields may come in any order and a
// repeated field may be split, so head + shared list is exactly the message.

// sharedList is the wire form of a snapshot's full resource list, as
// repeated field 2 (resources) of a DiscoveryResponse (items are Anys) or
// a DeltaDiscoveryResponse (items are Resources), encoded on first use.
// A list patched from the last snapshot's (the same names, some items
// changed) copies the encoding of the items it shares with that one's,
// when that one was encoded already: an edit's list costs a copy of the
// bytes and the encoding of what changed.
type sharedList[T proto.Message] struct {
	items []T
	// first and last are items' ends as registered: published lists are
	// never written to, and a list found written at its ends anyway is
	// encoded afresh rather than served from the encoding of what it held.
	first, last T
	// base is the list this one was patched from, encoded; dropped once
	// this one is encoded, so that lists never form a chain.
	base *sharedList[T]
	once sync.Once
	done atomic.Bool
	wire []byte
	ends []int // where each item's field ends in wire
	err  error
}

// newSharedList is the list of items, patched from prev's when prev holds
// as many (nil: none).
func newSharedList[T proto.Message](items []T, prev *sharedList[T]) *sharedList[T] {
	l := &sharedList[T]{items: items}
	if len(items) > 0 {
		l.first, l.last = items[0], items[len(items)-1]
	}
	if prev != nil && len(prev.items) == len(items) && prev.done.Load() && prev.err == nil {
		l.base = prev
	}
	return l
}

func (s *sharedList[T]) bytes() ([]byte, error) {
	s.once.Do(func() {
		const resourcesField = 2
		opts := proto.MarshalOptions{Deterministic: true}
		base := s.base
		s.base = nil
		size := 0
		if base != nil {
			size = len(base.wire)
		}
		s.wire, s.ends = make([]byte, 0, size), make([]int, len(s.items))
		for i, it := range s.items {
			if base != nil && any(base.items[i]) == any(it) {
				start := 0
				if i > 0 {
					start = base.ends[i-1]
				}
				s.wire = append(s.wire, base.wire[start:base.ends[i]]...)
			} else {
				b, err := opts.Marshal(it)
				if err != nil {
					s.wire, s.ends, s.err = nil, nil, err
					return
				}
				s.wire = protowire.AppendTag(s.wire, resourcesField, protowire.BytesType)
				s.wire = protowire.AppendBytes(s.wire, b)
			}
			s.ends[i] = len(s.wire)
		}
		s.done.Store(true)
	})
	return s.wire, s.err
}

// sharedLists maps the first element's address of a registered list (its
// backing array: unique to the list while it is registered, which keeps
// it alive) to the list. Items are shared by the snapshots that serve
// them, so the first item alone would not tell two snapshots' lists apart.
var sharedLists sync.Map // **anypb.Any or **discovery.Resource -> *sharedList

func listKey[T proto.Message](items []T) any { return &items[0] }

func registerList[T proto.Message](l *sharedList[T]) {
	if l != nil && len(l.items) > 0 {
		sharedLists.Store(listKey(l.items), l)
	}
}

// unregisterList stops sharing l, unless another list took its key.
func unregisterList[T proto.Message](l *sharedList[T]) {
	if l != nil && len(l.items) > 0 {
		sharedLists.CompareAndDelete(listKey(l.items), l)
	}
}

// sharedBytes returns the shared encoding of items when they are exactly a
// registered list.
func sharedBytes[T proto.Message](items []T) ([]byte, bool) {
	if len(items) == 0 {
		return nil, false
	}
	e, ok := sharedLists.Load(listKey(items))
	if !ok {
		return nil, false
	}
	l, ok := e.(*sharedList[T])
	// The same backing array and length is the same list while it is
	// registered; its ends are compared too (see sharedList).
	if !ok || len(l.items) != len(items) || any(l.first) != any(items[0]) || any(l.last) != any(items[len(items)-1]) {
		return nil, false
	}
	b, err := l.bytes()
	return b, err == nil
}

// Codec is gRPC's proto codec, except for DiscoveryResponses that carry a
// registered full list: those reuse its shared encoding. Install it on
// the xDS server with grpc.ForceServerCodecV2.
type Codec struct{}

var base = encoding.GetCodecV2(grpcproto.Name)

// Name is "proto": the codec replaces the default one for the same
// content subtype.
func (Codec) Name() string { return grpcproto.Name }

// Marshal encodes v, sharing the encoding of registered resource lists:
// the head (everything but the resources) is encoded per response.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	var head proto.Message
	var body []byte
	var ok bool
	switch r := v.(type) {
	case *discovery.DiscoveryResponse:
		if body, ok = sharedBytes(r.Resources); ok {
			head = &discovery.DiscoveryResponse{
				VersionInfo: r.VersionInfo, Canary: r.Canary, TypeUrl: r.TypeUrl,
				Nonce: r.Nonce, ControlPlane: r.ControlPlane, ResourceErrors: r.ResourceErrors,
			}
		}
	case *discovery.DeltaDiscoveryResponse:
		if body, ok = sharedBytes(r.Resources); ok {
			head = &discovery.DeltaDiscoveryResponse{
				SystemVersionInfo: r.SystemVersionInfo, TypeUrl: r.TypeUrl, RemovedResources: r.RemovedResources,
				RemovedResourceNames: r.RemovedResourceNames, Nonce: r.Nonce, ControlPlane: r.ControlPlane,
				ResourceErrors: r.ResourceErrors,
			}
		}
	}
	if !ok {
		return base.Marshal(v)
	}
	hb, err := proto.Marshal(head)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(hb), mem.SliceBuffer(body)}, nil
}

// Unmarshal is the default proto codec's.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error { return base.Unmarshal(data, v) }
