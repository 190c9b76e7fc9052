package xds

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/peer"

	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
)

// Proxies tracks connected proxies and what they accepted or rejected; it
// is the server's go-control-plane Callbacks.
type Proxies struct {
	m   *metrics.Metrics
	log *slog.Logger

	mu      sync.Mutex
	streams map[int64]*Proxy
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
	Acked     string // version last accepted
	LastNACK  string // Envoy's error text of the last rejection
	NACKedVer string // version that was rejected
}

func newProxies(m *metrics.Metrics, log *slog.Logger) *Proxies {
	return &Proxies{m: m, log: log, streams: map[int64]*Proxy{}}
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
		return out[i].StreamID < out[j].StreamID
	})
	return out
}

func (p *Proxies) open(ctx context.Context, id int64, protocol string) {
	addr := ""
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		addr = pr.Addr.String()
	}
	p.mu.Lock()
	p.streams[id] = &Proxy{StreamID: id, Address: addr, Protocol: protocol, Connected: time.Now(), Types: map[string]*TypeStatus{}}
	p.mu.Unlock()
}

func (p *Proxies) closed(id int64) {
	p.mu.Lock()
	s := p.streams[id]
	delete(p.streams, id)
	p.mu.Unlock()
	if s != nil && s.counted {
		p.m.ConnectedProxies.WithLabelValues(s.Group, s.Protocol).Dec()
		p.log.Info("proxy disconnected", "node", s.NodeID, "group", s.Group, "protocol", s.Protocol, "address", s.Address)
	}
}

// request records a request: the node on the first one, then ACKs and NACKs.
func (p *Proxies) request(id int64, node *core.Node, typeURL, version, nonce string, errDetail string, nacked bool) {
	p.mu.Lock()
	s := p.streams[id]
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
	if nonce != "" {
		if nacked {
			ts.LastNACK, ts.NACKedVer = errDetail, ts.Sent
			rejected = ts.Sent
		} else {
			if version == "" { // delta requests carry no version: the ACK is of what was sent
				version = ts.Sent
			}
			ts.Acked = version
		}
	}
	group, nodeID, protocol, addr := s.Group, s.NodeID, s.Protocol, s.Address
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
		p.m.NACKs.WithLabelValues(group, label).Inc()
		p.log.Warn("proxy rejected configuration (NACK)", "node", nodeID, "group", group, "type", label,
			"rejected_version", rejected, "kept_version", version, "error", errDetail)
		return
	}
	p.m.ACKs.WithLabelValues(group, label).Inc()
}

func (p *Proxies) response(id int64, typeURL, version string, resources int) {
	p.mu.Lock()
	s := p.streams[id]
	group := ""
	if s != nil {
		group = s.Group
		ts := s.Types[typeURL]
		if ts == nil {
			ts = &TypeStatus{}
			s.Types[typeURL] = ts
		}
		ts.Sent = version
	}
	p.mu.Unlock()
	label := metrics.TypeLabel(typeURL)
	p.m.Responses.WithLabelValues(group, label).Inc()
	p.m.PushedResources.WithLabelValues(group, label).Add(float64(resources))
}

// go-control-plane callbacks.

func (p *Proxies) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	p.open(ctx, id, "sotw")
	return nil
}
func (p *Proxies) OnStreamClosed(id int64, _ *core.Node) { p.closed(id) }
func (p *Proxies) OnStreamRequest(id int64, r *discovery.DiscoveryRequest) error {
	p.request(id, r.GetNode(), r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil)
	return nil
}
func (p *Proxies) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, r *discovery.DiscoveryResponse) {
	p.response(id, r.GetTypeUrl(), r.GetVersionInfo(), len(r.GetResources()))
}
func (p *Proxies) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	p.open(ctx, id, "delta")
	return nil
}
func (p *Proxies) OnDeltaStreamClosed(id int64, _ *core.Node) { p.closed(id) }
func (p *Proxies) OnStreamDeltaRequest(id int64, r *discovery.DeltaDiscoveryRequest) error {
	p.request(id, r.GetNode(), r.GetTypeUrl(), "", r.GetResponseNonce(), r.GetErrorDetail().GetMessage(), r.GetErrorDetail() != nil)
	return nil
}
func (p *Proxies) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, r *discovery.DeltaDiscoveryResponse) {
	p.response(id, r.GetTypeUrl(), r.GetSystemVersionInfo(), len(r.GetResources()))
}
func (p *Proxies) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error         { return nil }
func (p *Proxies) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}
