package xdstest

import (
	"fmt"
	"hash/maphash"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// What a Gateway reads of a response, straight off the wire (protowire):
// the version, type, nonce and, per resource, its type URL and name, and a
// digest of the bodies; no resource is unmarshalled or kept. A response
// is checked as Client checks it (type URLs, names, duplicates, the
// references of clusters and listeners, which must decode) only the first
// time its content is seen in the process: a thousand gateways are sent
// the same bytes, and the verdict on the same bytes is the same (verdicts).

// field is the number of a field, read from the generated descriptor so
// that it cannot drift from the API.
func field(m proto.Message, name string) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	if f == nil {
		panic(fmt.Sprintf("xdstest: %T has no field %s", m, name))
	}
	return f.Number()
}

var (
	fRespVersion   = field(&discoverypb.DiscoveryResponse{}, "version_info")
	fRespResources = field(&discoverypb.DiscoveryResponse{}, "resources")
	fRespType      = field(&discoverypb.DiscoveryResponse{}, "type_url")
	fRespNonce     = field(&discoverypb.DiscoveryResponse{}, "nonce")

	fDeltaVersion   = field(&discoverypb.DeltaDiscoveryResponse{}, "system_version_info")
	fDeltaResources = field(&discoverypb.DeltaDiscoveryResponse{}, "resources")
	fDeltaType      = field(&discoverypb.DeltaDiscoveryResponse{}, "type_url")
	fDeltaRemoved   = field(&discoverypb.DeltaDiscoveryResponse{}, "removed_resources")
	fDeltaNonce     = field(&discoverypb.DeltaDiscoveryResponse{}, "nonce")

	fResName     = field(&discoverypb.Resource{}, "name")
	fResVersion  = field(&discoverypb.Resource{}, "version")
	fResResource = field(&discoverypb.Resource{}, "resource")

	fAnyType  = field(&anypb.Any{}, "type_url")
	fAnyValue = field(&anypb.Any{}, "value")

	fClusterName      = field(&clusterv3.Cluster{}, "name")
	fClusterType      = field(&clusterv3.Cluster{}, "type")
	fClusterEDS       = field(&clusterv3.Cluster{}, "eds_cluster_config")
	fClusterSocket    = field(&clusterv3.Cluster{}, "transport_socket")
	fClusterMatches   = field(&clusterv3.Cluster{}, "transport_socket_matches")
	fEDSServiceName   = field(&clusterv3.Cluster_EdsClusterConfig{}, "service_name")
	fMatchSocket      = field(&clusterv3.Cluster_TransportSocketMatch{}, "transport_socket")
	fSocketTypedCfg   = field(&corev3.TransportSocket{}, "typed_config")
	fListenerChains   = field(&listenerv3.Listener{}, "filter_chains")
	fListenerDefault  = field(&listenerv3.Listener{}, "default_filter_chain")
	fChainFilters     = field(&listenerv3.FilterChain{}, "filters")
	fChainSocket      = field(&listenerv3.FilterChain{}, "transport_socket")
	fFilterTypedCfg   = field(&listenerv3.Filter{}, "typed_config")
	fHCMRds           = field(&hcmv3.HttpConnectionManager{}, "rds")
	fRdsName          = field(&hcmv3.Rds{}, "route_config_name")
	fUpCommon         = field(&tlsv3.UpstreamTlsContext{}, "common_tls_context")
	fDownCommon       = field(&tlsv3.DownstreamTlsContext{}, "common_tls_context")
	fDownTickets      = field(&tlsv3.DownstreamTlsContext{}, "session_ticket_keys_sds_secret_config")
	fCommonCertSDS    = field(&tlsv3.CommonTlsContext{}, "tls_certificate_sds_secret_configs")
	fCommonCASDS      = field(&tlsv3.CommonTlsContext{}, "validation_context_sds_secret_config")
	fCommonCombined   = field(&tlsv3.CommonTlsContext{}, "combined_validation_context")
	fCombinedCASDS    = field(&tlsv3.CommonTlsContext_CombinedCertificateValidationContext{}, "validation_context_sds_secret_config")
	fSDSName          = field(&tlsv3.SdsSecretConfig{}, "name")
	fSDSConfig        = field(&tlsv3.SdsSecretConfig{}, "sds_config")
	clusterTypeEDS    = uint64(clusterv3.Cluster_EDS)
	resourceNameField = protowire.Number(1) // name, or cluster_name of a ClusterLoadAssignment
)

// fields iterates over the fields of an encoded message.
type fields struct {
	b   []byte
	num protowire.Number
	typ protowire.Type
	val []byte // a length-delimited field's content
	u   uint64 // a varint field's value
	err error
}

func (f *fields) next() bool {
	if len(f.b) == 0 || f.err != nil {
		return false
	}
	num, typ, n := protowire.ConsumeTag(f.b)
	if n < 0 {
		f.err = protowire.ParseError(n)
		return false
	}
	f.b = f.b[n:]
	f.num, f.typ, f.val, f.u = num, typ, nil, 0
	switch typ {
	case protowire.BytesType:
		f.val, n = protowire.ConsumeBytes(f.b)
	case protowire.VarintType:
		f.u, n = protowire.ConsumeVarint(f.b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, f.b)
	}
	if n < 0 {
		f.err = protowire.ParseError(n)
		return false
	}
	f.b = f.b[n:]
	return true
}

func (f *fields) bytes(num protowire.Number) bool {
	return f.num == num && f.typ == protowire.BytesType
}

// firstBytes is the last occurrence of a length-delimited field, as proto
// merges a singular field given twice, or nil.
func firstBytes(b []byte, num protowire.Number) ([]byte, bool, error) {
	var out []byte
	found := false
	it := fields{b: b}
	for it.next() {
		if it.bytes(num) {
			out, found = it.val, true
		}
	}
	return out, found, it.err
}

// Digest identifies the content of a response's resources: a hash of each
// resource's encoding (an Any, or a delta Resource with its name and
// version) and of each removed name, in any order. Gateways sent the same update hold the same
// digest; Client computes it too, so that the gateways of a benchmark can
// be compared with one client that decoded everything.
type Digest uint64

var digestSeed = maphash.MakeSeed()

// add adds the hash of one resource or removed name: a sum, since the
// order of a response's resources means nothing (go-control-plane's own
// cache sends them in map order).
func (d *Digest) add(h uint64) {
	// splitmix64's finalizer, so that sums of related hashes do not collide.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	*d += Digest(h)
}

// seedRemoved sets the hash of a removed name apart from a resource's.
const seedRemoved = 0x8cb92ba72f3d8dd7

func hashBytes(b []byte, seed uint64) uint64 { return maphash.Bytes(digestSeed, b) ^ seed }

// SotwDigest is the digest of a SotW response's resources: of each one's
// encoding (Any, as proto.Marshal writes it), as Gateway reads it off the
// wire without looking inside.
func SotwDigest(resources []*anypb.Any) Digest {
	var d Digest
	for _, a := range resources {
		d.add(hashBytes(canonical(a), 0))
	}
	return d
}

// DeltaDigest is the digest of a delta response's resources (each one's
// encoding, a Resource) and removed names.
func DeltaDigest(resources []*discoverypb.Resource, removed []string) Digest {
	var d Digest
	for _, r := range resources {
		d.add(hashBytes(canonical(r), 0))
	}
	for _, n := range removed {
		d.add(hashBytes([]byte(n), seedRemoved))
	}
	return d
}

// canonical is m as proto.Marshal writes it (fields in number order), as
// servers send it; nil if it does not marshal.
func canonical(m proto.Message) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return b
}

// wireResponse is a DiscoveryResponse or DeltaDiscoveryResponse as a
// Gateway reads it: set delta and refs, then let rawCodec fill the rest.
type wireResponse struct {
	delta bool
	refs  bool // derive the references of clusters and listeners

	version, typeURL, nonce string
	resources, removed      int
	digest                  Digest
	verdict                 *verdict
}

// verdict is what checking a response's content found.
type verdict struct {
	err error
	// refs are, for clusters and listeners (when derived), the
	// references of each resource that has any; names every resource of
	// the response (delta: to drop the references of the changed ones).
	refs  map[string]refs
	names []string
	// removed are the removed names (delta).
	removed []string
}

type verdictKey struct {
	delta, refs bool
	typeURL     string
	n, removed  int
	size        int
	digest      Digest
}

// verdicts remembers the verdicts on recent response contents, for every
// gateway of the process; bounded (cleared when full).
var verdicts struct {
	sync.Mutex
	m map[verdictKey]*verdict
}

const maxVerdicts = 256

// rawCodec hands a Gateway the wire bytes of its responses (it reads them
// in wireResponse.parse, then gRPC frees them) and marshals its requests
// as the proto codec does.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("xdstest: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

var scratch = sync.Pool{New: func() any { return new([]byte) }}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*wireResponse)
	if !ok {
		return fmt.Errorf("xdstest: cannot unmarshal into %T", v)
	}
	if len(data) == 1 {
		return r.parse(data[0].ReadOnlyData())
	}
	p := scratch.Get().(*[]byte)
	defer scratch.Put(p)
	n := data.Len()
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	b := (*p)[:n]
	data.CopyTo(b)
	return r.parse(b)
}

// parse reads a response; an error is a response that does not parse
// (the stream fails, as gRPC fails it on a bad message). What Envoy would
// reject is in verdict.err.
func (r *wireResponse) parse(b []byte) error {
	fVersion, fResources, fType, fNonce := fRespVersion, fRespResources, fRespType, fRespNonce
	if r.delta {
		fVersion, fResources, fType, fNonce = fDeltaVersion, fDeltaResources, fDeltaType, fDeltaNonce
	}
	it := fields{b: b}
	for it.next() {
		switch {
		case it.bytes(fVersion):
			r.version = string(it.val)
		case it.bytes(fType):
			r.typeURL = string(it.val)
		case it.bytes(fNonce):
			r.nonce = string(it.val)
		case it.bytes(fResources):
			r.resources++
			r.digest.add(hashBytes(it.val, 0))
		case r.delta && it.bytes(fDeltaRemoved):
			r.removed++
			r.digest.add(hashBytes(it.val, seedRemoved))
		}
	}
	if it.err != nil {
		return it.err
	}
	key := verdictKey{delta: r.delta, refs: r.refs, typeURL: r.typeURL, n: r.resources, removed: r.removed, size: len(b), digest: r.digest}
	verdicts.Lock()
	v := verdicts.m[key]
	verdicts.Unlock()
	if v == nil {
		v = r.check(b)
		verdicts.Lock()
		if len(verdicts.m) >= maxVerdicts || verdicts.m == nil {
			verdicts.m = map[verdictKey]*verdict{}
		}
		verdicts.m[key] = v
		verdicts.Unlock()
	}
	r.verdict = v
	return nil
}

// check is Client.check on the wire: every resource of the response's
// type (or a TTL wrapper of one) with a name, no name twice, and the
// references of clusters and listeners.
func (r *wireResponse) check(b []byte) *verdict {
	v := &verdict{}
	fResources := fRespResources
	if r.delta {
		fResources = fDeltaResources
	}
	source := r.refs && (r.typeURL == ClusterType || r.typeURL == ListenerType)
	seen := make(map[string]struct{}, r.resources)
	fail := func(err error) *verdict { return &verdict{err: err} }
	it := fields{b: b}
	for it.next() {
		if r.delta && it.bytes(fDeltaRemoved) {
			v.removed = append(v.removed, string(it.val))
			continue
		}
		if !it.bytes(fResources) {
			continue
		}
		any := it.val
		var name string
		if r.delta {
			body, found, err := firstBytes(it.val, fResResource)
			if err != nil {
				return fail(err)
			}
			if !found {
				continue // TTL heartbeat: nothing to apply
			}
			n, _, err := firstBytes(it.val, fResName)
			if err != nil {
				return fail(err)
			}
			any, name = body, string(n)
		}
		typ, _, err := firstBytes(any, fAnyType)
		if err != nil {
			return fail(err)
		}
		value, _, err := firstBytes(any, fAnyValue)
		if err != nil {
			return fail(err)
		}
		if string(typ) == resourceWrapperType {
			inner, found, err := firstBytes(value, fResResource)
			if err != nil {
				return fail(err)
			}
			if !found { // TTL heartbeat of a resource held
				n, _, err := firstBytes(value, fResName)
				if err != nil {
					return fail(err)
				}
				v.names = append(v.names, string(n))
				continue
			}
			if typ, _, err = firstBytes(inner, fAnyType); err != nil {
				return fail(err)
			}
			if value, _, err = firstBytes(inner, fAnyValue); err != nil {
				return fail(err)
			}
		}
		if string(typ) != r.typeURL {
			return fail(fmt.Errorf("type URL %s embedded in an individual Any does not match the message-wide type URL %s", typ, r.typeURL))
		}
		if own, _, err := firstBytes(value, resourceNameField); err != nil {
			return fail(fmt.Errorf("decoding %s: %w", r.typeURL, err))
		} else if name == "" {
			name = string(own)
		}
		if name == "" {
			return fail(fmt.Errorf("%s resource without a name", ShortType(r.typeURL)))
		}
		if _, dup := seen[name]; dup {
			return fail(fmt.Errorf("duplicate %s resource %q", ShortType(r.typeURL), name))
		}
		seen[name] = struct{}{}
		v.names = append(v.names, name)
		if !source {
			continue
		}
		var ref refs
		if r.typeURL == ClusterType {
			err = wireClusterRefs(value, &ref)
		} else {
			err = wireListenerRefs(value, &ref)
		}
		if err != nil {
			return fail(fmt.Errorf("%s %q: %w", ShortType(r.typeURL), name, err))
		}
		if len(ref.eds)+len(ref.rds)+len(ref.sds) > 0 {
			if v.refs == nil {
				v.refs = map[string]refs{}
			}
			v.refs[name] = ref
		}
	}
	if it.err != nil {
		return fail(it.err)
	}
	return v
}

// wireClusterRefs is clusterRefs on the wire.
func wireClusterRefs(b []byte, r *refs) error {
	var name, service []byte
	eds := false
	it := fields{b: b}
	for it.next() {
		switch {
		case it.bytes(fClusterName):
			name = it.val
		case it.num == fClusterType && it.typ == protowire.VarintType:
			eds = it.u == clusterTypeEDS
		case it.bytes(fClusterEDS):
			var err error
			if service, _, err = firstBytes(it.val, fEDSServiceName); err != nil {
				return err
			}
		case it.bytes(fClusterSocket):
			if err := wireSocketRefs(it.val, &r.sds); err != nil {
				return err
			}
		case it.bytes(fClusterMatches):
			socket, _, err := firstBytes(it.val, fMatchSocket)
			if err != nil {
				return err
			}
			if err := wireSocketRefs(socket, &r.sds); err != nil {
				return err
			}
		}
	}
	if it.err != nil {
		return it.err
	}
	if eds {
		if len(service) == 0 {
			service = name
		}
		r.eds = append(r.eds, string(service))
	}
	return nil
}

// wireListenerRefs is listenerRefs on the wire.
func wireListenerRefs(b []byte, r *refs) error {
	it := fields{b: b}
	for it.next() {
		if !it.bytes(fListenerChains) && !it.bytes(fListenerDefault) {
			continue
		}
		chain := fields{b: it.val}
		for chain.next() {
			switch {
			case chain.bytes(fChainFilters):
				tc, found, err := firstBytes(chain.val, fFilterTypedCfg)
				if err != nil {
					return err
				}
				if !found {
					continue
				}
				typ, _, err := firstBytes(tc, fAnyType)
				if err != nil || string(typ) != typeHCM {
					if err != nil {
						return err
					}
					continue
				}
				hcm, _, err := firstBytes(tc, fAnyValue)
				if err != nil {
					return err
				}
				rds, found, err := firstBytes(hcm, fHCMRds)
				if err != nil {
					return fmt.Errorf("HttpConnectionManager: %w", err)
				}
				if !found {
					continue
				}
				name, _, err := firstBytes(rds, fRdsName)
				if err != nil {
					return err
				}
				if len(name) > 0 {
					r.rds = append(r.rds, string(name))
				}
			case chain.bytes(fChainSocket):
				if err := wireSocketRefs(chain.val, &r.sds); err != nil {
					return err
				}
			}
		}
		if chain.err != nil {
			return chain.err
		}
	}
	return it.err
}

// wireSocketRefs is transportSocketRefs on the wire.
func wireSocketRefs(socket []byte, out *[]string) error {
	tc, found, err := firstBytes(socket, fSocketTypedCfg)
	if err != nil || !found {
		return err
	}
	typ, _, err := firstBytes(tc, fAnyType)
	if err != nil {
		return err
	}
	if string(typ) != typeUpstreamTLS && string(typ) != typeDownstreamTLS {
		return nil
	}
	ctx, _, err := firstBytes(tc, fAnyValue)
	if err != nil {
		return err
	}
	common := fUpCommon
	if string(typ) == typeDownstreamTLS {
		common = fDownCommon
	}
	it := fields{b: ctx}
	for it.next() {
		switch {
		case it.bytes(common):
			if err := wireCommonRefs(it.val, out); err != nil {
				return err
			}
		case string(typ) == typeDownstreamTLS && it.bytes(fDownTickets):
			if err := wireSDSRef(it.val, out); err != nil {
				return err
			}
		}
	}
	return it.err
}

func wireCommonRefs(b []byte, out *[]string) error {
	it := fields{b: b}
	for it.next() {
		switch {
		case it.bytes(fCommonCertSDS), it.bytes(fCommonCASDS):
			if err := wireSDSRef(it.val, out); err != nil {
				return err
			}
		case it.bytes(fCommonCombined):
			sds, found, err := firstBytes(it.val, fCombinedCASDS)
			if err != nil {
				return err
			}
			if found {
				if err := wireSDSRef(sds, out); err != nil {
					return err
				}
			}
		}
	}
	return it.err
}

// wireSDSRef is sdsRef on the wire: a name with an sds_config.
func wireSDSRef(b []byte, out *[]string) error {
	var name []byte
	config := false
	it := fields{b: b}
	for it.next() {
		switch {
		case it.bytes(fSDSName):
			name = it.val
		case it.bytes(fSDSConfig):
			config = true
		}
	}
	if it.err != nil {
		return it.err
	}
	if len(name) > 0 && config {
		*out = append(*out, string(name))
	}
	return nil
}
