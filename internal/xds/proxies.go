package xds

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
)

// Proxies tracks connected proxies and what they accepted or rejected; it
// is the server's go-control-plane Callbacks.
type Proxies struct {
	m     *metrics.Metrics
	log   *slog.Logger
	cache *snapshot.Cache // nil in tests without a cache

	hookMu sync.Mutex
	onNACK func(NACK)

	mu      sync.Mutex
	streams map[streamKey]*Proxy

	// sizes are the payload sizes of recent whole-type SotW lists, by
	// type and version (a content hash: the same version is the same
	// list, whichever group sends it; a new version's list may begin with
	// the same resource, kept from the last one): a push to a thousand
	// streams sums each once.
	sizeMu sync.Mutex
	sizes  map[sizeKey]int
}

type sizeKey struct {
	typeURL, version string
	n                int
}

// maxSizes bounds Proxies.sizes (cleared when full).
const maxSizes = 64

// streamKey identifies a stream. go-control-plane numbers SotW and delta
// streams with two counters that both start at 1, so an ID alone names two
// streams: per-stream state keyed by the ID alone would be shared between
// them (one stream's authorization passing for the other).
type streamKey struct {
	delta bool
	id    int64
}

func sotwStream(id int64) streamKey  { return streamKey{id: id} }
func deltaStream(id int64) streamKey { return streamKey{delta: true, id: id} }

func (k streamKey) protocol() string {
	if k.delta {
		return "delta"
	}
	return "sotw"
}

// Proxy is one xDS stream and its sync state.
type Proxy struct {
	StreamID  int64
	NodeID    string
	Group     string
	Address   string
	Protocol  string // sotw or delta
	Connected time.Time
	Types     map[string]*TypeStatus // by type URL
	counted   bool
}

// TypeStatus is the sync state of one resource type of a proxy.
type TypeStatus struct {
	Sent      string // version last sent
	Acked     string // version last accepted (or held on connection)
	LastNACK  string // Envoy's error text of the last rejection
	NACKedVer string // version that was rejected
	// NACKSources are the ConfigMaps (namespace/name) whose resources were
	// in the rejected response.
	NACKSources []string

	// What the last response carried, to trace a NACK to its sources:
	// the resource names when not the whole type. Not the snapshot it
	// came from: a proxy's status would keep a replaced snapshot alive
	// (a whole one per type and proxy that nothing updated since); a NACK
	// is traced with the group's current snapshot when it still has the
	// rejected version, as it has unless a change came meanwhile.
	sentNames []string
	sentAll   bool
	// When the sent version's change was observed and published, for the
	// convergence of its ACK (zero: not to be measured).
	sentObserved, sentPublished time.Time
	// metrics are the stream's series of the type, looked up once.
	metrics *typeMetrics
}

// typeMetrics are the series of one group and type that every request and
// response of a stream counts in.
type typeMetrics struct {
	acks, responses, pushed prometheus.Counter
	size                    prometheus.Observer
}

func newTypeMetrics(m *metrics.Metrics, group, label string) *typeMetrics {
	return &typeMetrics{
		acks:      m.ACKs.WithLabelValues(group, label),
		responses: m.Responses.WithLabelValues(group, label),
		pushed:    m.PushedResources.WithLabelValues(group, label),
		size:      m.PushSize.WithLabelValues(group, label),
	}
}

// seriesLocked are ts's series for group (caller holds p.mu), looked up
// on first use: a stream's group does not change.
func (p *Proxies) seriesLocked(ts *TypeStatus, group, typeURL string) *typeMetrics {
	if ts.metrics == nil {
		ts.metrics = newTypeMetrics(p.m, group, metrics.TypeLabel(typeURL))
	}
	return ts.metrics
}

// NACK is a rejection traced to its sources, for hooks such as Kubernetes
// Events.
type NACK struct {
	ConfigMaps []string // namespace/name, sorted
	Node       string
	Group      string
	TypeURL    string
	Version    string // the rejected version
	Error      string // Envoy's error text
}

func newProxies(m *metrics.Metrics, log *slog.Logger, cache *snapshot.Cache) *Proxies {
	return &Proxies{m: m, log: log, cache: cache, streams: map[streamKey]*Proxy{}}
}

// OnNACK sets a function called (from the stream's goroutine) for every
// rejection, with the ConfigMaps whose resources were in the rejected
// response.
func (p *Proxies) OnNACK(f func(NACK)) {
	p.hookMu.Lock()
	p.onNACK = f
	p.hookMu.Unlock()
}

// List returns a copy of every connected proxy, sorted by group and node.
func (p *Proxies) List() []Proxy {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Proxy, 0, len(p.streams))
	for _, s := range p.streams {
		c := *s
		c.Types = map[string]*TypeStatus{}
		for k, v := range s.Types {
			t := *v
			c.Types[k] = &t
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		if out[i].NodeID != out[j].NodeID {
			return out[i].NodeID < out[j].NodeID
		}
		if out[i].Protocol != out[j].Protocol {
			return out[i].Protocol < out[j].Protocol
		}
		return out[i].StreamID < out[j].StreamID
	})
	return out
}

func (p *Proxies) open(ctx context.Context, k streamKey) {
	addr := ""
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		addr = pr.Addr.String()
	}
	p.mu.Lock()
	p.streams[k] = &Proxy{StreamID: k.id, Address: addr, Protocol: k.protocol(), Connected: time.Now(), Types: map[string]*TypeStatus{}}
	p.mu.Unlock()
}

func (p *Proxies) closed(k streamKey) {
	p.mu.Lock()
	s := p.streams[k]
	delete(p.streams, k)
	p.mu.Unlock()
	if s != nil && s.counted {
		p.m.ConnectedProxies.WithLabelValues(s.Group, s.Protocol).Dec()
		p.log.Info("proxy disconnected", "node", s.NodeID, "group", s.Group, "protocol", s.Protocol, "address", s.Address)
	}
}

// request records a request: the node on the first one, then ACKs and
// NACKs. Without a nonce, version is what the proxy already holds (a
// reconnection), if anything.
func (p *Proxies) request(k streamKey, node *core.Node, typeURL, version, nonce string, errDetail string, nacked bool) {
	errDetail = boundedDetail(errDetail)
	p.mu.Lock()
	s := p.streams[k]
	if s == nil {
		p.mu.Unlock()
		return
	}
	first := false
	if !s.counted && node != nil {
		s.NodeID, s.Group, s.counted, first = node.GetId(), snapshot.GroupOf(node), true, true
	}
	ts := s.Types[typeURL]
	if ts == nil {
		ts = &TypeStatus{}
		s.Types[typeURL] = ts
	}
	rejected := ""
	var sentNames []string
	sentAll := false
	var observed, published time.Time
	newAck := false
	switch {
	case nonce == "" && version != "" && ts.Acked == "":
		ts.Acked = version // held from before: nothing will be sent
	case nonce != "" && nacked:
		// Recorded below, once traced to its sources.
		rejected, sentNames, sentAll = ts.Sent, ts.sentNames, ts.sentAll
	case nonce != "":
		if version == "" { // delta requests carry no version: the ACK is of what was sent
			version = ts.Sent
		}
		newAck = ts.Acked != version
		ts.Acked = version
		if version == ts.Sent {
			observed, published = ts.sentObserved, ts.sentPublished
		}
	}
	group, nodeID, protocol, addr, connected := s.Group, s.NodeID, s.Protocol, s.Address, s.Connected
	var series *typeMetrics
	if s.counted {
		series = p.seriesLocked(ts, group, typeURL)
	}
	p.mu.Unlock()

	label := metrics.TypeLabel(typeURL)
	if first {
		p.m.ConnectedProxies.WithLabelValues(group, protocol).Inc()
		p.log.Info("proxy connected", "node", nodeID, "group", group, "protocol", protocol, "address", addr)
		if group == "" {
			p.log.Warn("proxy has no node cluster: it gets the intents that name no gateway group; start Envoy with --service-cluster GROUP", "node", nodeID)
		}
	}
	if nonce == "" {
		return
	}
	if nacked {
		var sources []string
		if gs := p.snapshot(group); gs != nil && rejected != "" && gs.Type(typeURL).Version == rejected {
			if sentAll {
				sentNames = gs.Type(typeURL).Names
			}
			sources = gs.SourcesOf(typeURL, sentNames)
		}
		p.mu.Lock()
		ts.LastNACK, ts.NACKedVer, ts.NACKSources = errDetail, rejected, sources
		p.mu.Unlock()
		p.log.Warn("proxy rejected configuration (NACK)", "node", nodeID, "group", group, "type", label,
			"rejected_version", rejected, "kept_version", version, "error", errDetail, "configmaps", sources)
		p.m.NACKs.WithLabelValues(group, label).Inc()
		p.hookMu.Lock()
		hook := p.onNACK
		p.hookMu.Unlock()
		if hook != nil {
			hook(NACK{ConfigMaps: sources, Node: nodeID, Group: group, TypeURL: typeURL, Version: rejected, Error: errDetail})
		}
		return
	}
	if series != nil {
		series.acks.Inc()
	} else {
		p.m.ACKs.WithLabelValues(group, label).Inc()
	}
	// Convergence: once per proxy and type version, for proxies that were
	// connected when the version was published (a proxy connecting later
	// measures its own connection, not the change).
	if newAck && !observed.IsZero() && connected.Before(published) {
		p.m.Convergence.WithLabelValues(group).Observe(time.Since(observed).Seconds())
	}
}

// MaxNACKDetail bounds the error text of a NACK kept and logged: a proxy
// may send megabytes, and the text is held per proxy and type.
const MaxNACKDetail = 4 << 10

func boundedDetail(s string) string {
	if len(s) <= MaxNACKDetail {
		return s
	}
	cut := MaxNACKDetail
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%d more bytes not kept)", len(s)-cut)
}

// response records a response: its version, and what it carried (names is
// nil when all is set: the type's whole resource list).
func (p *Proxies) response(k streamKey, typeURL, version string, resources, bytes int, names []string, all bool) {
	p.mu.Lock()
	group := ""
	s := p.streams[k]
	if s != nil {
		group = s.Group
	}
	p.mu.Unlock()
	// The snapshot outside the lock: every stream of a push gets here at
	// once, and no stream's request should wait on another's response.
	var observed, published time.Time
	if gs := p.snapshot(group); s != nil && gs != nil && gs.Type(typeURL).Version == version {
		observed, published = gs.Changed(typeURL)
		// A delta response of every resource of the type: the names
		// are the snapshot's, not to be kept per proxy.
		if !all && len(names) == len(gs.Type(typeURL).Names) {
			names, all = nil, true
		}
	}
	var series *typeMetrics
	if s != nil {
		p.mu.Lock()
		ts := s.Types[typeURL]
		if ts == nil {
			ts = &TypeStatus{}
			s.Types[typeURL] = ts
		}
		ts.Sent, ts.sentNames, ts.sentAll = version, names, all
		ts.sentObserved, ts.sentPublished = observed, published
		if s.counted {
			series = p.seriesLocked(ts, group, typeURL)
		}
		p.mu.Unlock()
	}
	if series == nil {
		series = newTypeMetrics(p.m, group, metrics.TypeLabel(typeURL))
	}
	series.responses.Inc()
	series.pushed.Add(float64(resources))
	series.size.Observe(float64(bytes))
}

// payloadSize is the bytes of a response's resources. A whole-type list
// (wildcard) is the group's shared one: its size is summed once.
func (p *Proxies) payloadSize(typeURL, version string, resources []*anypb.Any, whole bool) int {
	if whole && len(resources) > 0 {
		k := sizeKey{typeURL, version, len(resources)}
		p.sizeMu.Lock()
		size, ok := p.sizes[k]
		p.sizeMu.Unlock()
		if ok {
			return size
		}
		size = sumSizes(resources)
		p.sizeMu.Lock()
		if p.sizes == nil || len(p.sizes) >= maxSizes {
			p.sizes = map[sizeKey]int{}
		}
		p.sizes[k] = size
		p.sizeMu.Unlock()
		return size
	}
	return sumSizes(resources)
}

func sumSizes(resources []*anypb.Any) int {
	size := 0
	for _, a := range resources {
		size += len(a.GetValue())
	}
	return size
}

// snapshot is the group's current snapshot, nil if none (or no cache).
func (p *Proxies) snapshot(group string) *snapshot.GroupSnapshot {
	if p.cache == nil {
		return nil
	}
	return p.cache.Snapshot(group)
}

// heldVersion is the version of the group's current snapshot of a type
// when a delta proxy reconnects holding exactly its resources; "" if not.
func (p *Proxies) heldVersion(k streamKey, node *core.Node, typeURL string, initial map[string]string) string {
	if p.cache == nil || len(initial) == 0 {
		return ""
	}
	group := snapshot.GroupOf(node)
	if node == nil {
		p.mu.Lock()
		if s := p.streams[k]; s != nil {
			group = s.Group
		}
		p.mu.Unlock()
	}
	gs := p.cache.Snapshot(group)
	if gs == nil {
		return ""
	}
	ts := gs.Type(typeURL)
	if len(initial) != len(ts.Names) {
		return ""
	}
	for name, v := range initial {
		if it, ok := ts.Items[name]; !ok || it.Version != v {
			return ""
		}
	}
	return ts.Version
}

// go-control-plane callbacks.

func (p *Proxies) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	p.open(ctx, sotwStream(id))
	return nil
}
func (p *Proxies) OnStreamClosed(id int64, _ *core.Node) { p.closed(sotwStream(id)) }
func (p *Proxies) OnStreamRequest(id int64, r *discovery.DiscoveryRequest) error {
	p.request(sotwStream(id), r.GetNode(), r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil)
	return nil
}
func (p *Proxies) OnStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, r *discovery.DiscoveryResponse) {
	// A SotW response carries the whole type, or the subscribed names.
	var names []string
	all := true
	if subscribed := req.GetResourceNames(); len(subscribed) > 0 && !slices.Contains(subscribed, "*") {
		names, all = subscribed, false
	}
	size := p.payloadSize(r.GetTypeUrl(), r.GetVersionInfo(), r.GetResources(), all)
	p.response(sotwStream(id), r.GetTypeUrl(), r.GetVersionInfo(), len(r.GetResources()), size, names, all)
}
func (p *Proxies) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	p.open(ctx, deltaStream(id))
	return nil
}
func (p *Proxies) OnDeltaStreamClosed(id int64, _ *core.Node) { p.closed(deltaStream(id)) }
func (p *Proxies) OnStreamDeltaRequest(id int64, r *discovery.DeltaDiscoveryRequest) error {
	held := ""
	if r.GetResponseNonce() == "" {
		held = p.heldVersion(deltaStream(id), r.GetNode(), r.GetTypeUrl(), r.GetInitialResourceVersions())
	}
	p.request(deltaStream(id), r.GetNode(), r.GetTypeUrl(), held, r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil)
	return nil
}
func (p *Proxies) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, r *discovery.DeltaDiscoveryResponse) {
	size := 0
	names := make([]string, 0, len(r.GetResources()))
	for _, res := range r.GetResources() {
		size += len(res.GetResource().GetValue())
		names = append(names, res.GetName())
	}
	p.response(deltaStream(id), r.GetTypeUrl(), r.GetSystemVersionInfo(), len(r.GetResources()), size, names, false)
}
func (p *Proxies) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error         { return nil }
func (p *Proxies) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}
