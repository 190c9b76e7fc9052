package xdstest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// Type URLs of the resources an Envoy gateway fetches over ADS.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// ShortType returns CDS, EDS, LDS, RDS or SDS for the known type URLs and
// the URL itself otherwise.
func ShortType(typeURL string) string {
	switch typeURL {
	case ClusterType:
		return "CDS"
	case EndpointType:
		return "EDS"
	case ListenerType:
		return "LDS"
	case RouteType:
		return "RDS"
	case SecretType:
		return "SDS"
	}
	return typeURL
}

// State is what the client holds, per type URL. Values returned by
// Client.State are copies (maps and slices); the proto messages are shared
// and must be treated as read-only.
type State struct {
	Types map[string]*TypeState
}

// TypeState is the client's view of one resource type on the stream.
type TypeState struct {
	TypeURL string
	// Subscribed is set once a request for the type has been sent on the
	// stream. Wildcard types (CDS, LDS) have Wildcard set and no Names;
	// named types list their subscription in Names (sorted). A type that
	// was subscribed and is no longer referenced keeps Subscribed with
	// empty Names (Envoy then treats it as unwatched).
	Subscribed bool
	Wildcard   bool
	Names      []string

	// Resources are the accepted resources by name, decoded with
	// anypb.UnmarshalNew. Versions are their versions: per resource in
	// delta, the response version_info in SotW.
	Resources map[string]proto.Message
	Versions  map[string]string

	// Version is the version of the last accepted (ACKed) response:
	// version_info in SotW, system_version_info in delta. It is what a
	// NACK reports back in SotW.
	Version string
	// Nonce is the nonce of the last response received for the type.
	Nonce string

	Responses         int // responses received
	ResourcesReceived int // resources carried by those responses
	RemovedReceived   int // delta removed_resources carried by those responses
	Requests          int // requests sent (subscriptions, ACKs, NACKs)
	ACKs              int
	NACKs             int
	// Ignored counts responses for types with no watch: Envoy does not
	// apply them (see Client docs).
	Ignored int
	// Rejected is true when the latest response was NACKed; LastError is
	// the error_detail message of the latest NACK.
	Rejected  bool
	LastError string
	// LastResources, LastRemoved and LastDigest describe the last accepted
	// response: its resources, removed names (delta) and Digest, which a
	// Gateway sent the same response holds too.
	LastResources, LastRemoved int
	LastDigest                 Digest
	// AcceptedDigest sums the digests of every accepted response (see
	// GatewayType.AcceptedDigest).
	AcceptedDigest Digest
}

func newTypeState(typeURL string) *TypeState {
	return &TypeState{TypeURL: typeURL, Resources: map[string]proto.Message{}, Versions: map[string]string{}}
}

// watched reports whether the type currently has an interest Envoy would
// act on (wildcard or at least one name).
func (t *TypeState) watched() bool {
	return t != nil && t.Subscribed && (t.Wildcard || len(t.Names) > 0)
}

func (t *TypeState) clone() *TypeState {
	c := *t
	c.Names = slices.Clone(t.Names)
	c.Resources = maps.Clone(t.Resources)
	c.Versions = maps.Clone(t.Versions)
	return &c
}

// Type returns the state of typeURL; never nil (an empty state when the
// type is unknown).
func (s *State) Type(typeURL string) *TypeState {
	if t := s.Types[typeURL]; t != nil {
		return t
	}
	return newTypeState(typeURL)
}

// Clone returns a copy of s (sharing the proto messages).
func (s *State) Clone() *State {
	c := &State{Types: make(map[string]*TypeState, len(s.Types))}
	for k, t := range s.Types {
		c.Types[k] = t.clone()
	}
	return c
}

// ResourceVersions returns per type the name -> version map of what the
// client holds: the initial_resource_versions a reconnecting delta client
// sends so the server only sends what changed.
func (s *State) ResourceVersions() map[string]map[string]string {
	out := map[string]map[string]string{}
	for k, t := range s.Types {
		if len(t.Versions) > 0 {
			out[k] = maps.Clone(t.Versions)
		}
	}
	return out
}

// TotalResourcesReceived sums ResourcesReceived over all types.
func (s *State) TotalResourcesReceived() int {
	n := 0
	for _, t := range s.Types {
		n += t.ResourcesReceived
	}
	return n
}

// String summarises the state, one type per line, for test failures.
func (s *State) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s.Types)) {
		t := s.Types[k]
		sub := "-"
		switch {
		case t.Wildcard:
			sub = "*"
		case t.Subscribed:
			sub = fmt.Sprint(t.Names)
		}
		missing := 0
		for _, n := range t.Names {
			if _, ok := t.Resources[n]; !ok {
				missing++
			}
		}
		fmt.Fprintf(&b, "%s sub=%s version=%q nonce=%q held=%d missing=%d responses=%d resources=%d removed=%d acks=%d nacks=%d ignored=%d",
			ShortType(k), sub, t.Version, t.Nonce, len(t.Resources), missing, t.Responses, t.ResourcesReceived, t.RemovedReceived, t.ACKs, t.NACKs, t.Ignored)
		if t.LastError != "" {
			fmt.Fprintf(&b, " last_error=%q", t.LastError)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Predicate is a condition on the client state, for Client.WaitFor.
type Predicate func(*State) bool

// Synced holds when Envoy would consider itself initialised: CDS and LDS
// have received a response, every named subscription (EDS, RDS, SDS
// derived from the clusters and listeners held) has all its names
// present, and the latest response of every subscribed type was accepted.
func Synced(s *State) bool {
	for _, typ := range []string{ClusterType, ListenerType} {
		if t := s.Types[typ]; t == nil || t.Responses == 0 {
			return false
		}
	}
	for _, t := range s.Types {
		if !t.Subscribed {
			continue
		}
		if t.Rejected {
			return false
		}
		for _, n := range t.Names {
			if _, ok := t.Resources[n]; !ok {
				return false
			}
		}
	}
	return true
}

// HasVersion holds when the last accepted response of typeURL had version.
func HasVersion(typeURL, version string) Predicate {
	return func(s *State) bool { return s.Type(typeURL).Version == version }
}

// HasVersions holds when every type in versions has the given accepted
// version.
func HasVersions(versions map[string]string) Predicate {
	return func(s *State) bool {
		for typ, v := range versions {
			if s.Type(typ).Version != v {
				return false
			}
		}
		return true
	}
}

// HasResource holds when the client holds the named resource.
func HasResource(typeURL, name string) Predicate {
	return func(s *State) bool { _, ok := s.Type(typeURL).Resources[name]; return ok }
}

// All holds when every predicate holds.
func All(preds ...Predicate) Predicate {
	return func(s *State) bool {
		for _, p := range preds {
			if !p(s) {
				return false
			}
		}
		return true
	}
}

// typed returns the resources of typeURL that are T, sorted by name.
func typed[T proto.Message](s *State, typeURL string) []T {
	t := s.Types[typeURL]
	if t == nil {
		return nil
	}
	out := make([]T, 0, len(t.Resources))
	for _, n := range slices.Sorted(maps.Keys(t.Resources)) {
		if m, ok := t.Resources[n].(T); ok {
			out = append(out, m)
		}
	}
	return out
}

// Clusters returns the clusters held, sorted by name.
func (s *State) Clusters() []*clusterv3.Cluster { return typed[*clusterv3.Cluster](s, ClusterType) }

// Endpoints returns the ClusterLoadAssignments held, sorted by name.
func (s *State) Endpoints() []*endpointv3.ClusterLoadAssignment {
	return typed[*endpointv3.ClusterLoadAssignment](s, EndpointType)
}

// Listeners returns the listeners held, sorted by name.
func (s *State) Listeners() []*listenerv3.Listener {
	return typed[*listenerv3.Listener](s, ListenerType)
}

// Routes returns the route configurations held, sorted by name.
func (s *State) Routes() []*routev3.RouteConfiguration {
	return typed[*routev3.RouteConfiguration](s, RouteType)
}

// Secrets returns the secrets held, sorted by name.
func (s *State) Secrets() []*tlsv3.Secret { return typed[*tlsv3.Secret](s, SecretType) }

// EventKind says what an Event records.
type EventKind uint8

const (
	// EventResponse is a response received.
	EventResponse EventKind = iota + 1
	// EventSubscribe is a request changing the subscription (the initial
	// request of a type, or new resource names).
	EventSubscribe
	// EventACK is a request accepting a response.
	EventACK
	// EventNACK is a request rejecting a response (with error_detail).
	EventNACK
	// EventIgnored is a response for a type without a watch, which Envoy
	// neither applies nor ACKs (see Client).
	EventIgnored
)

func (k EventKind) String() string {
	switch k {
	case EventResponse:
		return "response"
	case EventSubscribe:
		return "subscribe"
	case EventACK:
		return "ack"
	case EventNACK:
		return "nack"
	case EventIgnored:
		return "ignored"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one entry of the client's bounded log of the stream.
type Event struct {
	Seq     uint64 // increasing per client
	Kind    EventKind
	TypeURL string
	// Version is version_info (SotW) or system_version_info (delta
	// responses); for requests, the version_info sent (SotW).
	Version string
	// Nonce is the response nonce, or the response_nonce sent.
	Nonce string
	// Resources counts resources in a response, resource_names in a SotW
	// request, resource_names_subscribe in a delta request.
	Resources int
	// Removed counts removed_resources in a delta response or
	// resource_names_unsubscribe in a delta request.
	Removed int
	// Error is the error_detail message of a NACK.
	Error string
}

func (e Event) String() string {
	s := fmt.Sprintf("#%d %s %s version=%q nonce=%q resources=%d", e.Seq, e.Kind, ShortType(e.TypeURL), e.Version, e.Nonce, e.Resources)
	if e.Removed > 0 {
		s += fmt.Sprintf(" removed=%d", e.Removed)
	}
	if e.Error != "" {
		s += fmt.Sprintf(" error=%q", e.Error)
	}
	return s
}

// eventRing keeps the last len(buf) events.
type eventRing struct {
	buf  []Event
	next int
	seq  uint64
}

func (r *eventRing) add(e Event) {
	r.seq++
	if len(r.buf) == 0 {
		return
	}
	e.Seq = r.seq
	r.buf[r.next%len(r.buf)] = e
	r.next++
}

func (r *eventRing) list() []Event {
	n := min(r.next, len(r.buf))
	out := make([]Event, 0, n)
	for i := r.next - n; i < r.next; i++ {
		out = append(out, r.buf[i%len(r.buf)])
	}
	return out
}
