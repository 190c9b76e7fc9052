package snapshot

import (
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// A SotW push sends the same resource list to every proxy of a group: a
// thousand gateways, a thousand identical copies of every cluster. The
// codec below encodes such a list once per snapshot and shares the bytes
// among all streams; only the small per-stream part (version, type, nonce)
// is encoded per response. Protobuf fields may come in any order and a
// repeated field may be split, so head + shared list is exactly the message.

// sharedList is the wire form of a TypeSnapshot's full resource list, as
// repeated field 2 (resources) of a DiscoveryResponse, encoded on first use.
type sharedList struct {
	n     int
	items []*anypb.Any
	once  sync.Once
	wire  []byte
	err   error
}

func (s *sharedList) bytes() ([]byte, error) {
	s.once.Do(func() {
		const resourcesField = 2
		opts := proto.MarshalOptions{Deterministic: true}
		for _, a := range s.items {
			b, err := opts.Marshal(a)
			if err != nil {
				s.err = err
				return
			}
			s.wire = protowire.AppendTag(s.wire, resourcesField, protowire.BytesType)
			s.wire = protowire.AppendBytes(s.wire, b)
		}
	})
	return s.wire, s.err
}

// deltaLists maps the first Resource of a registered delta list to its
// wire form, as repeated field 2 (resources) of a DeltaDiscoveryResponse.
var deltaLists sync.Map // *discovery.Resource -> *sharedDelta

type sharedDelta struct {
	n     int
	items []*discovery.Resource
	once  sync.Once
	wire  []byte
	err   error
}

func (s *sharedDelta) bytes() ([]byte, error) {
	s.once.Do(func() {
		const resourcesField = 2
		opts := proto.MarshalOptions{Deterministic: true}
		for _, r := range s.items {
			b, err := opts.Marshal(r)
			if err != nil {
				s.err = err
				return
			}
			s.wire = protowire.AppendTag(s.wire, resourcesField, protowire.BytesType)
			s.wire = protowire.AppendBytes(s.wire, b)
		}
	})
	return s.wire, s.err
}

func registerDeltaList(all []*discovery.Resource) {
	if len(all) > 0 {
		deltaLists.Store(all[0], &sharedDelta{n: len(all), items: all})
	}
}

func unregisterDeltaList(all []*discovery.Resource) {
	if len(all) > 0 {
		deltaLists.Delete(all[0])
	}
}

// sharedLists maps the first Any of a registered list to the list.
var sharedLists sync.Map // *anypb.Any -> *sharedList

func registerList(all []*anypb.Any) {
	if len(all) > 0 {
		sharedLists.Store(all[0], &sharedList{n: len(all), items: all})
	}
}

func unregisterList(all []*anypb.Any) {
	if len(all) > 0 {
		sharedLists.Delete(all[0])
	}
}

// Codec is gRPC's proto codec, except for DiscoveryResponses that carry a
// registered full list: those reuse its shared encoding. Install it on
// the xDS server with grpc.ForceServerCodecV2.
type Codec struct{}

var base = encoding.GetCodecV2(grpcproto.Name)

// Name is "proto": the codec replaces the default one for the same
// content subtype.
func (Codec) Name() string { return grpcproto.Name }

// Marshal encodes v, sharing the encoding of registered resource lists.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*discovery.DiscoveryResponse); ok && len(r.Resources) > 0 {
		if e, ok := sharedLists.Load(r.Resources[0]); ok && e.(*sharedList).n == len(r.Resources) {
			body, err := e.(*sharedList).bytes()
			if err == nil {
				head := &discovery.DiscoveryResponse{
					VersionInfo: r.VersionInfo, Canary: r.Canary, TypeUrl: r.TypeUrl,
					Nonce: r.Nonce, ControlPlane: r.ControlPlane, ResourceErrors: r.ResourceErrors,
				}
				hb, err := proto.Marshal(head)
				if err != nil {
					return nil, err
				}
				return mem.BufferSlice{mem.SliceBuffer(hb), mem.SliceBuffer(body)}, nil
			}
		}
	}
	if r, ok := v.(*discovery.DeltaDiscoveryResponse); ok && len(r.Resources) > 0 {
		if e, ok := deltaLists.Load(r.Resources[0]); ok && e.(*sharedDelta).n == len(r.Resources) {
			body, err := e.(*sharedDelta).bytes()
			if err == nil {
				head := &discovery.DeltaDiscoveryResponse{
					SystemVersionInfo: r.SystemVersionInfo, TypeUrl: r.TypeUrl, RemovedResources: r.RemovedResources,
					RemovedResourceNames: r.RemovedResourceNames, Nonce: r.Nonce, ControlPlane: r.ControlPlane,
					ResourceErrors: r.ResourceErrors,
				}
				hb, err := proto.Marshal(head)
				if err != nil {
					return nil, err
				}
				return mem.BufferSlice{mem.SliceBuffer(hb), mem.SliceBuffer(body)}, nil
			}
		}
	}
	return base.Marshal(v)
}

// Unmarshal is the default proto codec's.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error { return base.Unmarshal(data, v) }
