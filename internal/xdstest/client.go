// Package xdstest is an Aggregated Discovery Service (ADS) client that
// behaves on the wire like Envoy, for integration tests and benchmarks of
// the xDS server: Client decodes and holds what it is sent; Gateway
// (gateway.go) is the same on the wire but reads responses without
// decoding them and keeps only a digest, cheap enough to run a thousand
// of them beside the server a benchmark measures.
//
// What the protocol expects, and what the client does:
//
//   - One bidirectional stream multiplexes every type. The client first
//     subscribes wildcard CDS and LDS. Clusters of type EDS make it
//     subscribe EDS by name (eds_cluster_config.service_name, or the
//     cluster name), listeners make it subscribe RDS (HttpConnectionManager
//     rds.route_config_name), and TLS transport sockets of both make it
//     subscribe SDS (SdsSecretConfig names that have an sds_config). The
//     named subscriptions follow the clusters and listeners held.
//   - State of the world (SotW): every request carries the full set of
//     resource_names. A response is ACKed with its version_info and nonce;
//     it is NACKed with the last accepted version_info, its nonce and an
//     error_detail, and then not applied. Requests must carry the latest
//     nonce of their type (the server ignores stale ones), which is why an
//     ACK repeats the current resource_names. CDS and LDS responses are the
//     whole state (absent resources are deleted); EDS, RDS and SDS
//     responses only add or update.
//   - Delta (incremental): subscriptions change with
//     resource_names_subscribe / resource_names_unsubscribe, responses
//     carry changed resources (each with its own version) and
//     removed_resources, and the ACK or NACK is response_nonce (plus
//     error_detail). On reconnect, initial_resource_versions tells the
//     server what the client already holds, so only changes are sent.
//
// go-control-plane (v0.14) does not act on error_detail. In SotW its
// SnapshotCache answers a NACK at once with the same response (the NACK's
// version_info differs from the snapshot's), so a validator that keeps
// rejecting makes a tight NACK loop, as it would with Envoy. In delta it
// considers NACKed resources delivered and re-sends them only when they
// change.
//
// The client does not reconnect: a test reconnects by starting a new
// client with Options.Resume set to the old client's State.
package xdstest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Mode selects the xDS protocol variant.
type Mode int

const (
	// SotW is state of the world over StreamAggregatedResources.
	SotW Mode = iota
	// Delta is incremental xDS over DeltaAggregatedResources.
	Delta
)

func (m Mode) String() string {
	switch m {
	case SotW:
		return "sotw"
	case Delta:
		return "delta"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Validator decides whether a response is acceptable. A non-nil error
// NACKs the response (error_detail INVALID_ARGUMENT with the error text)
// and the resources are not applied. resources are the decoded resources
// of the response (in delta, only the added or changed ones).
type Validator func(typeURL string, resources []proto.Message) error

// DefaultEventLogSize is the number of events kept when
// Options.EventLogSize is 0.
const DefaultEventLogSize = 64

// Options configure a Client.
type Options struct {
	// Address of the xDS server (host:port), dialled without TLS, unless
	// Conn is set.
	Address string
	// Conn, when set, carries the stream instead of a connection of the
	// client's own; Close does not close it. Sharing one connection among
	// many clients keeps benchmarks lean.
	Conn grpc.ClientConnInterface

	// NodeID and NodeCluster identify the gateway (node.id, node.cluster);
	// NodeMetadata is optional node.metadata.
	NodeID       string
	NodeCluster  string
	NodeMetadata *structpb.Struct
	// NodeOnFirstRequestOnly sends the node only on the first request of
	// the stream (Envoy's set_node_on_first_message_only); by default it
	// is on every request, as Envoy does by default.
	NodeOnFirstRequestOnly bool

	Mode Mode

	// Validator, if set, can NACK responses (see ProtoValidate).
	Validator Validator

	// ExplicitWildcard subscribes CDS and LDS with the name "*" instead of
	// an empty name list. Envoy sends empty lists ("legacy wildcard"),
	// which go-control-plane treats as wildcard unless the server was
	// built with DeactivateLegacyWildcard. In delta, "*" works in both
	// cases. In SotW, go-control-plane v0.14's SnapshotCache in ADS mode
	// never answers "*" (it filters resources by the literal name and
	// holds the response because the snapshot has resources not named in
	// the request), so leave it off for SotW against that cache.
	ExplicitWildcard bool

	// InitialResourceVersions (delta) are sent as initial_resource_versions
	// in the first request of each type: type URL -> name -> version.
	// Names given for EDS, RDS or SDS are also subscribed from the start.
	InitialResourceVersions map[string]map[string]string
	// Resume seeds the client with the resources and versions of a
	// previous client's State, as a reconnecting Envoy holds them: delta
	// sends their versions as initial_resource_versions, SotW sends each
	// type's version_info; named subscriptions derived from the resumed
	// clusters and listeners are requested right away.
	Resume *State

	// EventLogSize bounds the event log (DefaultEventLogSize when 0,
	// disabled when negative).
	EventLogSize int
	// Logger, if set, gets debug records for NACKs and stream errors.
	Logger *slog.Logger
}

// Client is an ADS client. Its methods are safe for concurrent use.
//
// Like Envoy, it drops a response for a type it never subscribed to
// (no request is sent). In SotW, a response for a type whose names were
// all unsubscribed is accepted silently when empty and otherwise answered
// with the previous version_info (not applied, no error_detail). Such
// responses count as Ignored.
type Client struct {
	opts    Options
	node    *corev3.Node
	conn    grpc.ClientConnInterface
	ownConn *grpc.ClientConn

	mu      sync.Mutex
	state   State
	events  eventRing
	changed chan struct{} // closed on state change; nil when nobody waits
	started bool
	stopped bool
	err     error
	cancel  context.CancelFunc
	done    chan struct{}

	closeOnce sync.Once

	// Owned by the run goroutine (and by Start before it runs).
	sotw       grpc.BidiStreamingClient[discoverypb.DiscoveryRequest, discoverypb.DiscoveryResponse]
	delta      grpc.BidiStreamingClient[discoverypb.DeltaDiscoveryRequest, discoverypb.DeltaDiscoveryResponse]
	nodeSent   bool
	refs       map[string]map[string]refs // source type -> resource name -> references
	initial    map[string]map[string]string
	sentFirst  map[string]bool // delta: a request of the type was sent (initial versions go once)
	pendingEvt []Event         // events to log at the next commit
	pendingReq []string        // type of each request sent since the last commit
}

// Dial creates a client and starts its stream.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// New creates a client without connecting.
func New(opts Options) (*Client, error) {
	if opts.NodeID == "" {
		return nil, errors.New("xdstest: NodeID is required")
	}
	if opts.Mode != SotW && opts.Mode != Delta {
		return nil, fmt.Errorf("xdstest: unknown mode %v", opts.Mode)
	}
	c := &Client{
		opts: opts,
		node: &corev3.Node{
			Id:            opts.NodeID,
			Cluster:       opts.NodeCluster,
			Metadata:      opts.NodeMetadata,
			UserAgentName: "xdstest",
		},
		state:     State{Types: map[string]*TypeState{}},
		done:      make(chan struct{}),
		refs:      map[string]map[string]refs{ClusterType: {}, ListenerType: {}},
		initial:   map[string]map[string]string{},
		sentFirst: map[string]bool{},
	}
	size := opts.EventLogSize
	if size == 0 {
		size = DefaultEventLogSize
	}
	if size > 0 {
		c.events.buf = make([]Event, size)
	}
	if err := c.seed(); err != nil {
		return nil, err
	}
	switch {
	case opts.Conn != nil:
		c.conn = opts.Conn
	case opts.Address != "":
		cc, err := grpc.NewClient(opts.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("xdstest: dial %s: %w", opts.Address, err)
		}
		c.conn, c.ownConn = cc, cc
	default:
		return nil, errors.New("xdstest: Address or Conn is required")
	}
	return c, nil
}

// seed loads Resume and InitialResourceVersions.
func (c *Client) seed() error {
	if r := c.opts.Resume; r != nil {
		for typ, t := range r.Types {
			ts := newTypeState(typ)
			maps.Copy(ts.Resources, t.Resources)
			maps.Copy(ts.Versions, t.Versions)
			ts.Version = t.Version
			c.state.Types[typ] = ts
			if len(t.Versions) > 0 {
				c.initial[typ] = maps.Clone(t.Versions)
			}
			if m := c.refs[typ]; m != nil {
				for name, msg := range t.Resources {
					r, err := resourceRefs(msg)
					if err != nil {
						return fmt.Errorf("xdstest: resume: %w", err)
					}
					m[name] = r
				}
			}
		}
	}
	for typ, vs := range c.opts.InitialResourceVersions {
		if c.initial[typ] == nil {
			c.initial[typ] = map[string]string{}
		}
		maps.Copy(c.initial[typ], vs)
		ts := c.state.Types[typ]
		if ts == nil {
			ts = newTypeState(typ)
			c.state.Types[typ] = ts
		}
		maps.Copy(ts.Versions, vs)
	}
	return nil
}

// Start opens the ADS stream and sends the initial subscriptions from a
// goroutine of its own, which stops when ctx is cancelled, the stream
// fails, or Close is called.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started || c.stopped {
		c.mu.Unlock()
		return errors.New("xdstest: client already started or closed")
	}
	c.started = true
	runCtx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	c.mu.Unlock()

	ads := discoverypb.NewAggregatedDiscoveryServiceClient(c.conn)
	var err error
	if c.opts.Mode == Delta {
		c.delta, err = ads.DeltaAggregatedResources(runCtx)
	} else {
		c.sotw, err = ads.StreamAggregatedResources(runCtx)
	}
	if err != nil {
		cancel()
		c.finish(err)
		return fmt.Errorf("xdstest: open %s stream: %w", c.opts.Mode, err)
	}
	go func() {
		err := c.run(runCtx)
		if runCtx.Err() != nil {
			err = runCtx.Err()
		}
		cancel()
		c.finish(err)
	}()
	return nil
}

// finish records the terminal error and wakes waiters.
func (c *Client) finish(err error) {
	if err != nil && c.opts.Logger != nil && !errors.Is(err, context.Canceled) {
		c.opts.Logger.Debug("xdstest: stream ended", "node", c.opts.NodeID, "err", err)
	}
	c.mu.Lock()
	c.err = err
	c.stopped = true
	c.notifyLocked()
	c.mu.Unlock()
	close(c.done)
}

// Close stops the stream, waits for the client goroutine to exit and
// closes the client's own connection. It is idempotent.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		started, cancel := c.started, c.cancel
		if !started {
			c.stopped = true
			c.err = context.Canceled
			close(c.done)
		}
		c.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		<-c.done
		if c.ownConn != nil {
			err = c.ownConn.Close()
		}
	})
	return err
}

// Done is closed when the client has stopped.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped (context.Canceled after Close), or
// nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// State returns a copy of what the client holds.
func (c *Client) State() *State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.Clone()
}

// Events returns the bounded log of responses received and requests sent,
// oldest first.
func (c *Client) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events.list()
}

// WaitFor blocks until pred holds, ctx is done or the client stops. pred
// runs with the client locked on the live state: it must be quick, must
// not retain the state and must not call the client.
func (c *Client) WaitFor(ctx context.Context, pred Predicate) error {
	for {
		c.mu.Lock()
		if pred(&c.state) {
			c.mu.Unlock()
			return nil
		}
		if c.stopped {
			err, summary := c.err, c.state.String()
			c.mu.Unlock()
			return fmt.Errorf("xdstest: client stopped (%v) before condition held; state:\n%s", err, summary)
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			summary := c.state.String()
			c.mu.Unlock()
			return fmt.Errorf("xdstest: waiting: %w; state:\n%s", ctx.Err(), summary)
		}
	}
}

// WaitSynced waits for Synced.
func (c *Client) WaitSynced(ctx context.Context) error { return c.WaitFor(ctx, Synced) }

// WaitForVersions waits until the client is Synced and every type in
// versions has that accepted version.
func (c *Client) WaitForVersions(ctx context.Context, versions map[string]string) error {
	return c.WaitFor(ctx, All(Synced, HasVersions(versions)))
}

// Clusters returns the clusters held, sorted by name.
func (c *Client) Clusters() []*clusterv3.Cluster { return c.State().Clusters() }

// Endpoints returns the ClusterLoadAssignments held, sorted by name.
func (c *Client) Endpoints() []*endpointv3.ClusterLoadAssignment { return c.State().Endpoints() }

// Listeners returns the listeners held, sorted by name.
func (c *Client) Listeners() []*listenerv3.Listener { return c.State().Listeners() }

// Routes returns the route configurations held, sorted by name.
func (c *Client) Routes() []*routev3.RouteConfiguration { return c.State().Routes() }

// Secrets returns the secrets held, sorted by name.
func (c *Client) Secrets() []*tlsv3.Secret { return c.State().Secrets() }

// notifyLocked wakes WaitFor callers.
func (c *Client) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// logEvent queues an event; commit writes queued events to the log.
func (c *Client) logEvent(e Event) { c.pendingEvt = append(c.pendingEvt, e) }

// commit applies fn to the state under the lock, flushes queued events and
// wakes waiters. Only the run goroutine mutates the state, so it may read
// the state without the lock.
func (c *Client) commit(fn func()) {
	c.mu.Lock()
	if fn != nil {
		fn()
	}
	for _, e := range c.pendingEvt {
		c.events.add(e)
	}
	for _, typ := range c.pendingReq {
		c.typeState(typ).Requests++
	}
	c.notifyLocked()
	c.mu.Unlock()
	clear(c.pendingEvt)
	c.pendingEvt = c.pendingEvt[:0]
	c.pendingReq = c.pendingReq[:0]
}

// typeState returns the state of typ, creating it (caller holds the lock
// or is before Start).
func (c *Client) typeState(typ string) *TypeState {
	ts := c.state.Types[typ]
	if ts == nil {
		ts = newTypeState(typ)
		c.state.Types[typ] = ts
	}
	return ts
}

func (c *Client) requestNode() *corev3.Node {
	if c.opts.NodeOnFirstRequestOnly && c.nodeSent {
		return nil
	}
	c.nodeSent = true
	return c.node
}

func (c *Client) wildcardNames() []string {
	if c.opts.ExplicitWildcard {
		return []string{"*"}
	}
	return nil
}

// run sends the initial subscriptions and processes responses until the
// stream ends.
func (c *Client) run(ctx context.Context) error {
	// Wildcard types first, as Envoy: CDS then LDS.
	for _, typ := range []string{ClusterType, ListenerType} {
		if err := c.subscribeWildcard(typ); err != nil {
			return err
		}
	}
	// Named subscriptions already known (resume).
	changes := c.namedChanges()
	if err := c.sendNamed(changes); err != nil {
		return err
	}
	c.commit(func() { c.applyNamed(changes) })
	for {
		if c.opts.Mode == Delta {
			resp, err := c.delta.Recv()
			if err != nil {
				return err
			}
			if err := c.handleDelta(resp); err != nil {
				return err
			}
		} else {
			resp, err := c.sotw.Recv()
			if err != nil {
				return err
			}
			if err := c.handleSotW(resp); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (c *Client) subscribeWildcard(typ string) error {
	names := c.wildcardNames()
	ts := c.state.Types[typ]
	if c.opts.Mode == Delta {
		if err := c.sendDelta(typ, names, nil, "", nil); err != nil {
			return err
		}
	} else {
		version := ""
		if ts != nil {
			version = ts.Version
		}
		if err := c.sendSotW(EventSubscribe, typ, version, "", names, nil); err != nil {
			return err
		}
	}
	c.commit(func() {
		ts := c.typeState(typ)
		ts.Subscribed, ts.Wildcard, ts.Names = true, true, nil
	})
	return nil
}

// namedChange is a new subscription for a named type.
type namedChange struct {
	typ        string
	names      []string // the whole new subscription, sorted
	sub, unsub []string // the difference, for delta
	keep       map[string]struct{}
}

// namedChanges computes, for EDS, RDS and SDS, the subscriptions implied
// by the clusters and listeners held, and returns those that differ from
// the current ones. An empty set is only returned to unsubscribe a type
// that had names, as Envoy does. Before any cluster or listener is known
// (a reconnect with InitialResourceVersions only), the names given there
// stay subscribed.
func (c *Client) namedChanges() []namedChange {
	want := wantedNames(c.refs)
	if len(c.refs[ClusterType]) == 0 && len(c.refs[ListenerType]) == 0 {
		for typ, w := range want {
			for n := range c.initial[typ] {
				w[n] = struct{}{}
			}
		}
	}
	var out []namedChange
	for _, typ := range []string{EndpointType, RouteType, SecretType} {
		ts := c.state.Types[typ]
		var cur []string
		if ts != nil {
			cur = ts.Names
		}
		names, sub, unsub, changed := subscription(want[typ], cur, ts != nil && ts.Subscribed)
		if changed {
			out = append(out, namedChange{typ: typ, names: names, sub: sub, unsub: unsub, keep: want[typ]})
		}
	}
	return out
}

// sendNamed sends the requests of changes (SotW: the whole name list with
// the type's current version and nonce; delta: the difference).
func (c *Client) sendNamed(changes []namedChange) error {
	for _, ch := range changes {
		var err error
		if c.opts.Mode == Delta {
			err = c.sendDelta(ch.typ, ch.sub, ch.unsub, "", nil)
		} else {
			ts := c.state.Types[ch.typ]
			version, nonce := "", ""
			if ts != nil {
				version, nonce = ts.Version, ts.Nonce
			}
			err = c.sendSotW(EventSubscribe, ch.typ, version, nonce, ch.names, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// applyNamed records changes in the state and drops the resources no
// longer subscribed (caller holds the lock).
func (c *Client) applyNamed(changes []namedChange) {
	for _, ch := range changes {
		ts := c.typeState(ch.typ)
		ts.Subscribed, ts.Names = true, ch.names
		for n := range ts.Resources {
			if _, ok := ch.keep[n]; !ok {
				delete(ts.Resources, n)
				delete(ts.Versions, n)
			}
		}
	}
}

func (c *Client) sendSotW(kind EventKind, typ, version, nonce string, names []string, detail *rpcstatus.Status) error {
	req := &discoverypb.DiscoveryRequest{
		VersionInfo:   version,
		Node:          c.requestNode(),
		ResourceNames: names,
		TypeUrl:       typ,
		ResponseNonce: nonce,
		ErrorDetail:   detail,
	}
	if err := c.sotw.Send(req); err != nil {
		return err
	}
	c.logEvent(Event{Kind: kind, TypeURL: typ, Version: version, Nonce: nonce, Resources: len(names), Error: detail.GetMessage()})
	c.pendingReq = append(c.pendingReq, typ)
	return nil
}

func (c *Client) sendDelta(typ string, sub, unsub []string, nonce string, detail *rpcstatus.Status) error {
	req := &discoverypb.DeltaDiscoveryRequest{
		Node:                     c.requestNode(),
		TypeUrl:                  typ,
		ResourceNamesSubscribe:   sub,
		ResourceNamesUnsubscribe: unsub,
		ResponseNonce:            nonce,
		ErrorDetail:              detail,
	}
	if !c.sentFirst[typ] {
		c.sentFirst[typ] = true
		req.InitialResourceVersions = c.initial[typ]
	}
	if err := c.delta.Send(req); err != nil {
		return err
	}
	kind := EventSubscribe
	switch {
	case detail != nil:
		kind = EventNACK
	case nonce != "":
		kind = EventACK
	}
	c.logEvent(Event{Kind: kind, TypeURL: typ, Nonce: nonce, Resources: len(sub), Removed: len(unsub), Error: detail.GetMessage()})
	c.pendingReq = append(c.pendingReq, typ)
	return nil
}

// decoded is one resource of a response; a nil msg is a SotW TTL
// heartbeat (the resource is kept as held).
type decoded struct {
	name    string
	version string
	msg     proto.Message
}

// decodeAny unmarshals a resource of a response of type typ, unwrapping
// the envoy.service.discovery.v3.Resource wrapper SotW uses for TTLs.
// A nil message (wrapper without a body, a TTL heartbeat) is not an
// error.
func decodeAny(typ string, a *anypb.Any) (string, proto.Message, error) {
	if a.GetTypeUrl() == resourceWrapperType {
		var w discoverypb.Resource
		if err := a.UnmarshalTo(&w); err != nil {
			return "", nil, err
		}
		if w.GetResource() == nil {
			return w.GetName(), nil, nil
		}
		a = w.GetResource()
	}
	if a.GetTypeUrl() != typ {
		return "", nil, fmt.Errorf("type URL %s embedded in an individual Any does not match the message-wide type URL %s", a.GetTypeUrl(), typ)
	}
	msg, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("decoding %s: %w", typ, err)
	}
	return resourceName(msg), msg, nil
}

const resourceWrapperType = "type.googleapis.com/envoy.service.discovery.v3.Resource"

// resourceName returns the xDS name of a resource.
func resourceName(msg proto.Message) string {
	if cla, ok := msg.(*endpointv3.ClusterLoadAssignment); ok {
		return cla.GetClusterName()
	}
	if m, ok := msg.(interface{ GetName() string }); ok {
		return m.GetName()
	}
	return ""
}

// check validates decoded resources: duplicate names (Envoy rejects
// them), references of clusters and listeners, then the Validator.
// It returns the references of source types by resource name.
func (c *Client) check(typ string, res []decoded) (map[string]refs, error) {
	seen := make(map[string]struct{}, len(res))
	msgs := make([]proto.Message, 0, len(res))
	var rs map[string]refs
	if c.refs[typ] != nil {
		rs = make(map[string]refs, len(res))
	}
	for _, r := range res {
		if r.name == "" {
			return nil, fmt.Errorf("%s resource without a name", ShortType(typ))
		}
		if _, dup := seen[r.name]; dup {
			return nil, fmt.Errorf("duplicate %s resource %q", ShortType(typ), r.name)
		}
		seen[r.name] = struct{}{}
		if r.msg == nil { // SotW TTL heartbeat of a resource held
			if rs != nil {
				rs[r.name] = c.refs[typ][r.name]
			}
			continue
		}
		msgs = append(msgs, r.msg)
		if rs != nil {
			ref, err := resourceRefs(r.msg)
			if err != nil {
				return nil, err
			}
			rs[r.name] = ref
		}
	}
	if c.opts.Validator != nil {
		if err := c.opts.Validator(typ, msgs); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

func nackDetail(err error) *rpcstatus.Status {
	return &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

func (c *Client) debug(msg string, args ...any) {
	if c.opts.Logger != nil {
		c.opts.Logger.Debug(msg, append([]any{"node", c.opts.NodeID}, args...)...)
	}
}

// handleSotW processes one SotW response: validate, NACK or apply, update
// the named subscriptions it implies (before the ACK, as Envoy requests
// EDS for new clusters before acknowledging CDS), then ACK.
func (c *Client) handleSotW(resp *discoverypb.DiscoveryResponse) error {
	typ, version, nonce := resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce()
	n := len(resp.GetResources())
	c.logEvent(Event{Kind: EventResponse, TypeURL: typ, Version: version, Nonce: nonce, Resources: n})
	received := func(ts *TypeState) {
		ts.Responses++
		ts.ResourcesReceived += n
		ts.Nonce = nonce
	}

	ts := c.state.Types[typ]
	if ts == nil || !ts.Subscribed {
		// Envoy drops responses for types it never subscribed to.
		c.logEvent(Event{Kind: EventIgnored, TypeURL: typ, Version: version, Nonce: nonce, Resources: n})
		c.commit(func() { ts := c.typeState(typ); received(ts); ts.Ignored++ })
		return nil
	}
	if !ts.watched() {
		// Envoy with no watch for the type: an empty response is accepted
		// silently; resources are not applied and the request is repeated
		// with the old version (which go-control-plane may answer again).
		if n > 0 {
			if err := c.sendSotW(EventIgnored, typ, ts.Version, nonce, nil, nil); err != nil {
				return err
			}
		} else {
			c.logEvent(Event{Kind: EventIgnored, TypeURL: typ, Version: version, Nonce: nonce})
		}
		c.commit(func() {
			received(ts)
			ts.Ignored++
			if n == 0 {
				ts.Version = version
			}
		})
		return nil
	}

	res := make([]decoded, 0, n)
	var err error
	for _, a := range resp.GetResources() {
		name, msg, derr := decodeAny(typ, a)
		if derr != nil {
			err = derr
			break
		}
		// A nil msg is a TTL heartbeat: keep what is held.
		res = append(res, decoded{name: name, version: version, msg: msg})
	}
	var rs map[string]refs
	if err == nil {
		rs, err = c.check(typ, res)
	}
	if err != nil {
		c.debug("xdstest: NACK", "type", typ, "version", version, "err", err)
		if err := c.sendSotW(EventNACK, typ, ts.Version, nonce, c.currentNames(ts), nackDetail(err)); err != nil {
			return err
		}
		c.commit(func() { received(ts); ts.NACKs++; ts.Rejected = true; ts.LastError = err.Error() })
		return nil
	}

	var changes []namedChange
	if rs != nil {
		c.refs[typ] = rs
		changes = c.namedChanges()
		if err := c.sendNamed(changes); err != nil {
			return err
		}
	}
	if err := c.sendSotW(EventACK, typ, version, nonce, c.currentNames(ts), nil); err != nil {
		return err
	}
	fullState := typ == ClusterType || typ == ListenerType
	c.commit(func() {
		prev := ts.Resources
		if fullState {
			ts.Resources = make(map[string]proto.Message, len(res))
			clear(ts.Versions)
		}
		for _, r := range res {
			msg := r.msg
			if msg == nil {
				if msg = prev[r.name]; msg == nil {
					continue
				}
			}
			ts.Resources[r.name] = msg
			ts.Versions[r.name] = version
		}
		c.applyNamed(changes)
		received(ts)
		ts.ACKs++
		ts.Rejected = false
		ts.Version = version
		ts.LastResources, ts.LastRemoved, ts.LastDigest = n, 0, SotwDigest(resp.GetResources())
		ts.AcceptedDigest += ts.LastDigest
	})
	return nil
}

// currentNames is the resource_names of a SotW request for ts.
func (c *Client) currentNames(ts *TypeState) []string {
	if ts.Wildcard {
		return c.wildcardNames()
	}
	return ts.Names
}

// handleDelta processes one delta response: validate, NACK or apply
// (resources and removed_resources), update named subscriptions, ACK.
func (c *Client) handleDelta(resp *discoverypb.DeltaDiscoveryResponse) error {
	typ, version, nonce := resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce()
	n, removed := len(resp.GetResources()), resp.GetRemovedResources()
	c.logEvent(Event{Kind: EventResponse, TypeURL: typ, Version: version, Nonce: nonce, Resources: n, Removed: len(removed)})
	received := func(ts *TypeState) {
		ts.Responses++
		ts.ResourcesReceived += n
		ts.RemovedReceived += len(removed)
		ts.Nonce = nonce
	}

	ts := c.state.Types[typ]
	if ts == nil || !ts.Subscribed {
		// Envoy drops delta responses for a subscription it does not have.
		c.logEvent(Event{Kind: EventIgnored, TypeURL: typ, Version: version, Nonce: nonce, Resources: n})
		c.commit(func() { ts := c.typeState(typ); received(ts); ts.Ignored++ })
		return nil
	}

	res := make([]decoded, 0, n)
	var err error
	for _, r := range resp.GetResources() {
		if r.GetResource() == nil {
			continue // TTL heartbeat: nothing to apply
		}
		name, msg, derr := decodeAny(typ, r.GetResource())
		if derr != nil {
			err = derr
			break
		}
		if msg == nil {
			continue
		}
		if r.GetName() != "" {
			name = r.GetName()
		}
		res = append(res, decoded{name: name, version: r.GetVersion(), msg: msg})
	}
	var rs map[string]refs
	if err == nil {
		rs, err = c.check(typ, res)
	}
	if err != nil {
		c.debug("xdstest: NACK", "type", typ, "version", version, "err", err)
		if err := c.sendDelta(typ, nil, nil, nonce, nackDetail(err)); err != nil {
			return err
		}
		c.commit(func() { received(ts); ts.NACKs++; ts.Rejected = true; ts.LastError = err.Error() })
		return nil
	}

	var changes []namedChange
	if src := c.refs[typ]; src != nil && (len(res) > 0 || len(removed) > 0) {
		maps.Copy(src, rs)
		for _, name := range removed {
			delete(src, name)
		}
		changes = c.namedChanges()
		if err := c.sendNamed(changes); err != nil {
			return err
		}
	}
	if err := c.sendDelta(typ, nil, nil, nonce, nil); err != nil {
		return err
	}
	c.commit(func() {
		for _, r := range res {
			ts.Resources[r.name] = r.msg
			ts.Versions[r.name] = r.version
		}
		for _, name := range removed {
			delete(ts.Resources, name)
			delete(ts.Versions, name)
		}
		c.applyNamed(changes)
		received(ts)
		ts.ACKs++
		ts.Rejected = false
		ts.Version = version
		ts.LastResources, ts.LastRemoved, ts.LastDigest = n, len(removed), DeltaDigest(resp.GetResources(), removed)
		ts.AcceptedDigest += ts.LastDigest
	})
	return nil
}
