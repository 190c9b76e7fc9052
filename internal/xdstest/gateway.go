package xdstest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// Gateway is a simulated Envoy gateway cheap enough to run a thousand of
// in one process next to the server it measures. On the wire it is Client
// (and Envoy): one ADS stream per gateway, wildcard CDS and LDS, EDS, RDS
// and SDS subscribed by name as the clusters and listeners held reference
// them (or as GatewayOptions.Named declares), every response ACKed with
// its version_info and nonce (delta: its nonce), and NACKed, with the last
// accepted version, when Client would reject it (wrong type URL, resource
// without a name or twice, a reference that does not decode). But it
// never unmarshals a response: gRPC hands it the bytes (rawCodec), it
// reads them with protowire and keeps, per type, the version, nonce and
// counts, and of the last accepted response its size and Digest, never a
// resource. A benchmark compares the digests of its gateways with one
// Client's that decoded everything (Client.State().Type(t).Digest), so
// that a server that sends a gateway a wrong or missing update fails it.
type Gateway struct {
	opts GatewayOptions
	node *corev3.Node

	mu      sync.Mutex
	state   GatewayState
	changed chan struct{}
	stopped bool
	err     error
	cancel  context.CancelFunc
	done    chan struct{}

	// Owned by the run goroutine.
	stream grpc.ClientStream
	// refs are, for clusters and listeners, the references of each
	// resource that has any (SotW: shared with the verdict, not modified).
	refs map[string]map[string]refs
}

// GatewayOptions configure a Gateway.
type GatewayOptions struct {
	// Conn carries the stream (one per gateway, as each Envoy has its
	// own connection); Close does not close it.
	Conn grpc.ClientConnInterface
	// NodeID and NodeCluster identify the gateway (node.id, node.cluster);
	// the node is sent on every request, as Envoy does by default.
	NodeID, NodeCluster string
	Mode                Mode
	// Named, when not nil, declares the named subscriptions (type URL ->
	// names) instead of deriving them from the clusters and listeners.
	Named map[string][]string
	// Notify, if set, is called after each response the gateway handled
	// (its ACK or NACK sent) and when it stops, outside its lock; it must
	// be quick and not block. One goroutine can then follow a thousand
	// gateways, instead of a thousand waiting in WaitFor.
	Notify func()
}

// GatewayState is what a Gateway knows, per type URL.
type GatewayState struct {
	Types map[string]*GatewayType
}

// Type is the state of typeURL, a zero one if unknown.
func (s *GatewayState) Type(typeURL string) GatewayType {
	if t := s.Types[typeURL]; t != nil {
		return *t
	}
	return GatewayType{}
}

// GatewayType is a Gateway's view of one type on its stream.
type GatewayType struct {
	Subscribed, Wildcard bool
	Names                []string // named types: the subscription, sorted
	// Version is that of the last accepted response (version_info, or
	// system_version_info in delta); Nonce that of the last received.
	Version, Nonce string

	Responses, ACKs, NACKs, Ignored    int
	ResourcesReceived, RemovedReceived int
	// Last* describe the last accepted response: its resources, removed
	// names (delta) and Digest.
	LastResources, LastRemoved int
	LastDigest                 Digest
	// AcceptedDigest sums the digests of every accepted response: with
	// ACKs, it tells apart gateways whose last responses are the same but
	// not what came before (a delta update sent to one and not another).
	AcceptedDigest Digest
	LastError      string // of the last NACK
	// ACKed is when the ACK of the last accepted response was sent.
	ACKed time.Time
}

// DialGateway starts a gateway's stream; it runs until ctx is done, the
// stream fails or Close.
func DialGateway(ctx context.Context, opts GatewayOptions) (*Gateway, error) {
	if opts.NodeID == "" || opts.Conn == nil {
		return nil, errors.New("xdstest: a gateway needs a NodeID and a Conn")
	}
	g := &Gateway{
		opts:  opts,
		node:  &corev3.Node{Id: opts.NodeID, Cluster: opts.NodeCluster, UserAgentName: "xdstest"},
		state: GatewayState{Types: map[string]*GatewayType{}},
		done:  make(chan struct{}),
		refs:  map[string]map[string]refs{},
	}
	runCtx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	ads := discoverypb.NewAggregatedDiscoveryServiceClient(opts.Conn)
	var err error
	if opts.Mode == Delta {
		g.stream, err = ads.DeltaAggregatedResources(runCtx, grpc.ForceCodecV2(rawCodec{}))
	} else {
		g.stream, err = ads.StreamAggregatedResources(runCtx, grpc.ForceCodecV2(rawCodec{}))
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("xdstest: open %s stream: %w", opts.Mode, err)
	}
	go func() {
		err := g.run()
		if runCtx.Err() != nil {
			err = runCtx.Err()
		}
		cancel()
		g.mu.Lock()
		g.err, g.stopped = err, true
		g.notifyLocked()
		g.mu.Unlock()
		if opts.Notify != nil {
			opts.Notify()
		}
		close(g.done)
	}()
	return g, nil
}

// Close ends the stream and waits for the gateway to stop.
func (g *Gateway) Close() {
	g.cancel()
	<-g.done
}

// Err is why the gateway stopped, nil while it runs.
func (g *Gateway) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Type is a copy of the state of typeURL.
func (g *Gateway) Type(typeURL string) GatewayType {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.state.Type(typeURL)
	t.Names = slices.Clone(t.Names)
	return t
}

// Holds tells whether pred holds on the state now (run with the gateway
// locked: quick, and not retaining it), or why it never will: the gateway
// stopped (see GatewayOptions.Notify).
func (g *Gateway) Holds(pred func(*GatewayState) bool) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holdsLocked(pred)
}

func (g *Gateway) holdsLocked(pred func(*GatewayState) bool) (bool, error) {
	if pred(&g.state) {
		return true, nil
	}
	if g.stopped {
		return false, fmt.Errorf("xdstest: gateway %s stopped (%v) before the condition held: %s", g.opts.NodeID, g.err, g.summaryLocked())
	}
	return false, nil
}

// WaitFor blocks until pred holds on the state (run with the gateway
// locked: quick, and not retaining it), ctx is done or the gateway stops.
func (g *Gateway) WaitFor(ctx context.Context, pred func(*GatewayState) bool) error {
	for {
		g.mu.Lock()
		if ok, err := g.holdsLocked(pred); ok || err != nil {
			g.mu.Unlock()
			return err
		}
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			g.mu.Lock()
			summary := g.summaryLocked()
			g.mu.Unlock()
			return fmt.Errorf("xdstest: gateway %s waiting: %w: %s", g.opts.NodeID, ctx.Err(), summary)
		}
	}
}

// GatewayHasVersions holds when every type in versions has that accepted
// version.
func GatewayHasVersions(versions map[string]string) func(*GatewayState) bool {
	return func(s *GatewayState) bool {
		for typ, v := range versions {
			if t := s.Types[typ]; t == nil || t.Version != v {
				return false
			}
		}
		return true
	}
}

func (g *Gateway) summaryLocked() string {
	out := ""
	for _, typ := range slices.Sorted(maps.Keys(g.state.Types)) {
		t := g.state.Types[typ]
		out += fmt.Sprintf("%s version=%q nonce=%q responses=%d acks=%d nacks=%d last_error=%q; ",
			ShortType(typ), t.Version, t.Nonce, t.Responses, t.ACKs, t.NACKs, t.LastError)
	}
	return out
}

func (g *Gateway) notifyLocked() {
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

// update applies fn to the state under the lock and wakes waiters.
func (g *Gateway) update(fn func()) {
	g.mu.Lock()
	fn()
	g.notifyLocked()
	g.mu.Unlock()
}

// typeState is the state of typ, created (run goroutine, lock held or
// nobody else reading it yet).
func (g *Gateway) typeState(typ string) *GatewayType {
	t := g.state.Types[typ]
	if t == nil {
		t = &GatewayType{}
		g.state.Types[typ] = t
	}
	return t
}

func (g *Gateway) run() error {
	for _, typ := range []string{ClusterType, ListenerType} {
		if err := g.send(typ, "", "", nil, nil, nil); err != nil {
			return err
		}
		g.update(func() { t := g.typeState(typ); t.Subscribed, t.Wildcard = true, true })
	}
	if err := g.subscribeNamed(); err != nil {
		return err
	}
	for {
		r := wireResponse{delta: g.opts.Mode == Delta, refs: g.opts.Named == nil}
		if err := g.stream.RecvMsg(&r); err != nil {
			return err
		}
		if err := g.handle(&r); err != nil {
			return err
		}
		if g.opts.Notify != nil {
			g.opts.Notify()
		}
	}
}

// handle answers one response as Client does: dropped for a type never
// subscribed, answered with the old version when unwatched (SotW), else
// NACKed or applied, then the named subscriptions it changes, then ACKed.
func (g *Gateway) handle(r *wireResponse) error {
	typ := r.typeURL
	g.mu.Lock()
	t := g.state.Types[typ]
	g.mu.Unlock()
	received := func(t *GatewayType) {
		t.Responses++
		t.ResourcesReceived += r.resources
		t.RemovedReceived += r.removed
		t.Nonce = r.nonce
	}
	if t == nil || !t.Subscribed {
		g.update(func() { t := g.typeState(typ); received(t); t.Ignored++ })
		return nil
	}
	if !r.delta && !t.Wildcard && len(t.Names) == 0 {
		// SotW with no watch left: not applied; a non-empty response is
		// answered with the old version (see Client).
		if r.resources > 0 {
			if err := g.send(typ, t.Version, r.nonce, nil, nil, nil); err != nil {
				return err
			}
		}
		g.update(func() {
			received(t)
			t.Ignored++
			if r.resources == 0 {
				t.Version = r.version
			}
		})
		return nil
	}
	if err := r.verdict.err; err != nil {
		detail := nackDetail(err)
		if err := g.send(typ, t.Version, r.nonce, g.names(t), nil, detail); err != nil {
			return err
		}
		g.update(func() { received(t); t.NACKs++; t.LastError = err.Error() })
		return nil
	}
	if r.refs && (typ == ClusterType || typ == ListenerType) {
		// As Envoy, the named subscriptions are looked at again only when
		// the references held changed.
		if g.applyRefs(typ, r) {
			if err := g.subscribeNamed(); err != nil {
				return err
			}
		}
	}
	if err := g.send(typ, r.version, r.nonce, g.names(t), nil, nil); err != nil {
		return err
	}
	acked := time.Now()
	g.update(func() {
		received(t)
		t.ACKs++
		t.Version = r.version
		t.LastResources, t.LastRemoved, t.LastDigest = r.resources, r.removed, r.digest
		t.AcceptedDigest += r.digest
		t.ACKed = acked
	})
	return nil
}

// applyRefs records the references of an accepted cluster or listener
// response: the whole set in SotW, the changes in delta. It tells whether
// they may have changed: false when the response neither carries
// references nor replaces or removes a resource that had some.
func (g *Gateway) applyRefs(typ string, r *wireResponse) bool {
	v := r.verdict
	src := g.refs[typ]
	if !r.delta {
		g.refs[typ] = v.refs // shared, read only
		return len(src) > 0 || len(v.refs) > 0
	}
	if len(src) == 0 && len(v.refs) == 0 {
		return false
	}
	if src == nil {
		src = map[string]refs{}
		g.refs[typ] = src
	}
	changed := len(v.refs) > 0
	for _, names := range [][]string{v.names, v.removed} {
		for _, n := range names {
			if _, ok := src[n]; ok {
				delete(src, n)
				changed = true
			}
		}
	}
	maps.Copy(src, v.refs)
	return changed
}

// subscribeNamed sends, for EDS, RDS and SDS, the subscription the
// references (or the declared names) make, where it changed, as Client's
// namedChanges and sendNamed.
func (g *Gateway) subscribeNamed() error {
	want := wantedNames(g.refs)
	for typ, names := range g.opts.Named {
		if w := want[typ]; w != nil {
			for _, n := range names {
				w[n] = struct{}{}
			}
		}
	}
	for _, typ := range []string{EndpointType, RouteType, SecretType} {
		g.mu.Lock()
		t := g.state.Types[typ]
		g.mu.Unlock()
		var cur []string
		if t != nil {
			cur = t.Names
		}
		names, sub, unsub, changed := subscription(want[typ], cur, t != nil && t.Subscribed)
		if !changed {
			continue
		}
		var err error
		if g.opts.Mode == Delta {
			err = g.send(typ, "", "", nil, &deltaChange{sub: sub, unsub: unsub}, nil)
		} else {
			version, nonce := "", ""
			if t != nil {
				version, nonce = t.Version, t.Nonce
			}
			err = g.send(typ, version, nonce, names, nil, nil)
		}
		if err != nil {
			return err
		}
		g.update(func() { t := g.typeState(typ); t.Subscribed, t.Names = true, names })
	}
	return nil
}

type deltaChange struct{ sub, unsub []string }

// names is the resource_names of a SotW request of t.
func (g *Gateway) names(t *GatewayType) []string {
	if t.Wildcard {
		return nil
	}
	return t.Names
}

// send sends a request: SotW with version, nonce and the names; delta with
// the nonce (an ACK or NACK) or a subscription change.
func (g *Gateway) send(typ, version, nonce string, names []string, change *deltaChange, detail *rpcstatus.Status) error {
	if g.opts.Mode == Delta {
		req := &discoverypb.DeltaDiscoveryRequest{Node: g.node, TypeUrl: typ, ResponseNonce: nonce, ErrorDetail: detail}
		if change != nil {
			req.ResourceNamesSubscribe, req.ResourceNamesUnsubscribe = change.sub, change.unsub
		}
		return g.stream.SendMsg(req)
	}
	return g.stream.SendMsg(&discoverypb.DiscoveryRequest{
		VersionInfo: version, Node: g.node, ResourceNames: names, TypeUrl: typ, ResponseNonce: nonce, ErrorDetail: detail,
	})
}

// SameLast tells whether a gateway's last accepted response of typeURL is
// the one a Client accepted last (the same version, counts and Digest),
// and whether it accepted as many responses before it, with the same
// resources (ACKs, AcceptedDigest): a delta gateway holds what every
// response it accepted gave it, not only the last one. It tells how they
// differ otherwise.
func SameLast(typeURL string, client *TypeState, gw GatewayType) error {
	if gw.Version != client.Version || gw.LastResources != client.LastResources ||
		gw.LastRemoved != client.LastRemoved || gw.LastDigest != client.LastDigest {
		return fmt.Errorf("%s: the gateway accepted version %q with %d resources and %d removed (digest %x), the client %q with %d and %d (digest %x)",
			ShortType(typeURL), gw.Version, gw.LastResources, gw.LastRemoved, uint64(gw.LastDigest),
			client.Version, client.LastResources, client.LastRemoved, uint64(client.LastDigest))
	}
	if gw.ACKs != client.ACKs || gw.AcceptedDigest != client.AcceptedDigest {
		return fmt.Errorf("%s: the gateway accepted %d responses (digest of all %x), the client %d (%x): the same last response, not the same updates before it",
			ShortType(typeURL), gw.ACKs, uint64(gw.AcceptedDigest), client.ACKs, uint64(client.AcceptedDigest))
	}
	return nil
}
