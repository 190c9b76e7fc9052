package istio

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// destinationRulesApply works out each slot's upstream: resolution and
// endpoints from the ServiceEntry of its cluster, and the settings of the
// DestinationRule for that host, port and subset.
func (im *importer) destinationRulesApply() {
	im.gatewayServiceRules()
	// Held slots too: the report says what their fields became.
	for _, s := range im.slotList {
		if s.cluster.se == nil {
			continue
		}
		im.upstream(s)
		if dr := im.ruleFor(s); dr != nil {
			im.applyRule(s, dr)
		}
	}
	im.unusedRules()
}

// gatewayServiceRules reports the DestinationRules of the egress
// gateway's Service: how sidecars reached it, which the mesh port does.
func (im *importer) gatewayServiceRules() {
	for _, o := range im.destinationRules {
		if o.broken {
			continue
		}
		dr := o.spec.(*DestinationRule)
		if !im.isGatewayService(dr.Host) {
			continue
		}
		im.rep.add(o, "spec.host", StatusCarried, "the egress gateway's Service: how sidecars reach the gateways, which here is the mesh port (--mesh-port), or DNS and the explicit proxy without sidecars")
		tp := dr.TrafficPolicy
		walkPolicies(tp, "spec.trafficPolicy", func(p *TrafficPolicy, path string) {
			if p.TLS != nil {
				if strings.ToUpper(p.TLS.Mode) == "ISTIO_MUTUAL" {
					im.rep.add(o, path+".tls", StatusDefault, "ISTIO_MUTUAL from sidecars to the gateway: the mesh port's mutual TLS (--mesh-port), which proves each workload's SPIFFE ID")
				} else {
					im.rep.add(o, path+".tls", StatusNotCarried, "mode "+p.TLS.Mode+" between sidecars and the gateway: here sidecars use the mesh port's mutual TLS")
				}
			}
			for _, f := range []field{{"loadBalancer", p.LoadBalancer != nil}, {"connectionPool", p.ConnectionPool != nil}, {"outlierDetection", p.OutlierDetection != nil},
				{"tunnel", p.Tunnel.Set()}, {"proxyProtocol", p.ProxyProtocol.Set()}, {"retryBudget", p.RetryBudget.Set()}} {
				if f.set {
					im.rep.add(o, path+"."+f.name, StatusNotCarried, "settings of the sidecars' connections to the gateway: the sidecar bootstrap and mesh settings decide those")
				}
			}
			if p.Port != nil {
				im.rep.add(o, path+".port", StatusCarried, "the port these settings are for")
			}
		})
		for i, sub := range dr.Subsets {
			p := fmt.Sprintf("spec.subsets[%d]", i)
			im.rep.add(o, p+".name", StatusCarried, "a subset of the gateway's pods for the sidecars' routes: every gateway of the group serves the same configuration")
			if len(sub.Labels) > 0 {
				im.rep.add(o, p+".labels", StatusNotCarried, "the gateways of a group are not told apart")
			}
			walkPolicies(sub.TrafficPolicy, p+".trafficPolicy", func(tp *TrafficPolicy, path string) {
				if tp.TLS != nil && strings.ToUpper(tp.TLS.Mode) == "ISTIO_MUTUAL" {
					im.rep.add(o, path+".tls", StatusDefault, "ISTIO_MUTUAL from sidecars to the gateway: the mesh port's mutual TLS (--mesh-port)")
				}
				im.rep.add(o, path, StatusNotCarried, "settings of the sidecars' connections to the gateway")
			})
		}
		if dr.WorkloadSelector != nil {
			im.rep.add(o, "spec.workloadSelector", StatusNotCarried, "the sidecars it applies to: every sidecar uses the mesh port")
		}
		if len(dr.ExportTo) > 0 {
			im.rep.add(o, "spec.exportTo", StatusNotCarried, "which sidecars see it")
		}
	}
}

// walkPolicies calls f on a traffic policy and each of its port-level
// settings.
func walkPolicies(tp *TrafficPolicy, path string, f func(*TrafficPolicy, string)) {
	if tp == nil {
		return
	}
	f(tp, path)
	for i := range tp.PortLevelSettings {
		f(&tp.PortLevelSettings[i], fmt.Sprintf("%s.portLevelSettings[%d]", path, i))
	}
}

// upstream sets resolution, endpoints and the upstream port from the
// slot's cluster's ServiceEntry.
func (im *importer) upstream(s *slot) {
	o, se, sp := s.cluster.se, s.cluster.se.spec.(*ServiceEntry), s.cluster.sePort
	wildcard := strings.HasPrefix(s.key.host, "*.")
	other := s.cluster.host != s.key.host
	up := sp.Number
	if sp.TargetPort != 0 {
		up = sp.TargetPort
	}
	s.target = up
	res := strings.ToUpper(se.Resolution)
	rp := "spec.resolution"
	labels := im.subsetLabels(s)
	switch {
	case res == "STATIC":
		s.d.Resolution = intent.ResolutionStatic
		im.rep.add(o, rp, StatusCarried, "STATIC: the endpoints listed", s)
	case (res == "DNS" || res == "DNS_ROUND_ROBIN") && wildcard:
		s.d.Resolution = intent.ResolutionDynamic
		im.rep.add(o, rp, StatusCarried, fmt.Sprintf("%s: the wildcard %s is resolved per name asked for (DYNAMIC); Istio connected every name to the addresses of %s, here each name to its own", res, s.key.host, s.cluster.host), s)
		return
	case res == "DNS" || res == "DNS_ROUND_ROBIN":
		s.d.Resolution = intent.Resolution(res)
		im.rep.add(o, rp, StatusCarried, res, s)
	case wildcard:
		s.d.Resolution = intent.ResolutionDynamic
		im.rep.add(o, rp, StatusCarried, "NONE (the default) for a wildcard: each name asked for is resolved by the gateway (DYNAMIC)", s)
		return
	default:
		s.d.Resolution = intent.ResolutionDNS
		im.rep.add(o, rp, StatusCarried, "NONE (the default): Istio's sidecars connected to the address the workload resolved; the gateway resolves the name itself (DNS)", s)
	}
	var eps []intent.Endpoint
	for i, ep := range se.Endpoints {
		p := fmt.Sprintf("spec.endpoints[%d]", i)
		if !labelsMatch(labels, ep.Labels) {
			im.rep.add(o, p, StatusCarried, "not in subset "+strings.Join(s.cluster.subsets, ", ")+" of the route: left out", s)
			continue
		}
		out := intent.Endpoint{Address: ep.Address, Labels: ep.Labels, Weight: ep.Weight}
		if n, ok := ep.Ports[sp.Name]; ok && sp.Name != "" && n != up {
			out.Port = n
		}
		if strings.HasPrefix(ep.Address, "unix://") {
			im.rep.add(o, p+".address", StatusNotCarried, "a Unix socket is not an upstream a gateway can reach", s)
			continue
		}
		eps = append(eps, out)
		text := "endpoint " + ep.Address
		if out.Port != 0 {
			text += fmt.Sprintf(" port %d", out.Port)
		}
		im.rep.add(o, p, StatusCarried, text, s)
		for _, f := range []field{{"network", ep.Network != ""}, {"locality", ep.Locality != ""}, {"serviceAccount", ep.ServiceAccount != ""}} {
			if f.set {
				im.rep.add(o, p+"."+f.name, StatusNotCarried, "Istio's mesh topology: not used by a gateway", s)
			}
		}
	}
	if len(eps) == 0 && len(se.Endpoints) > 0 {
		s.hold("no endpoint of its ServiceEntry is in the route's subset")
		return
	}
	if len(eps) == 0 && other {
		// Sent to another declared host: the gateway connects to that
		// host's addresses, as Istio did.
		eps = []intent.Endpoint{{Address: s.cluster.host}}
		if s.d.Resolution == intent.ResolutionStatic {
			s.hold("its ServiceEntry is STATIC without endpoints")
			return
		}
		im.rep.add(o, rp, StatusCarried, "the gateway connects to the addresses of "+s.cluster.host, s)
	}
	if s.d.Resolution == intent.ResolutionDNSRoundRobin && len(eps) > 1 {
		s.d.Resolution = intent.ResolutionDNS
		im.rep.add(o, rp, StatusCarried, "DNS_ROUND_ROBIN with several endpoints: DNS (every address of every endpoint)", s)
	}
	if s.d.Resolution == intent.ResolutionStatic {
		for _, ep := range eps {
			if _, err := netip.ParseAddr(ep.Address); err != nil {
				s.d.Resolution = intent.ResolutionDNS
				im.rep.add(o, rp, StatusCarried, "STATIC with names among its endpoints: DNS", s)
				break
			}
		}
	}
	s.d.Endpoints = eps
}

// subsetLabels are the endpoint labels the route's subsets select (nil:
// every endpoint).
func (im *importer) subsetLabels(s *slot) []map[string]string {
	if len(s.cluster.subsets) == 0 {
		return nil
	}
	dr := im.ruleFor(s)
	var out []map[string]string
	for _, name := range s.cluster.subsets {
		found := false
		if dr != nil {
			for _, sub := range dr.spec.(*DestinationRule).Subsets {
				if sub.Name == name {
					found = true
					out = append(out, sub.Labels)
				}
			}
		}
		if !found {
			s.hold("the route names subset " + name + ", which no DestinationRule of " + s.cluster.host + " defines")
			return []map[string]string{{"\x00": "none"}}
		}
	}
	return out
}

func labelsMatch(sel []map[string]string, labels map[string]string) bool {
	if sel == nil {
		return true
	}
	for _, m := range sel {
		ok := true
		for k, v := range m {
			ok = ok && labels[k] == v
		}
		if ok {
			return true
		}
	}
	return false
}

// ruleFor is the DestinationRule for the slot's cluster host: an exact
// host before a wildcard, then the egress gateway's namespace, the
// ServiceEntry's, and any other, by namespace/name.
func (im *importer) ruleFor(s *slot) *object {
	var best *object
	bestRank := 99
	for _, o := range im.destinationRules {
		if o.broken {
			continue
		}
		dr := o.spec.(*DestinationRule)
		h := strings.ToLower(dr.Host)
		if im.isGatewayService(h) || !hostCovers(h, s.cluster.host) {
			continue
		}
		if dr.WorkloadSelector != nil && !im.selects(dr.WorkloadSelector.MatchLabels) && s.viaGateway {
			continue // a rule for some sidecars; the gateway did not use it
		}
		rank := 2
		switch o.meta.Namespace {
		case im.opts.GatewayNamespace:
			rank = 0
		case s.cluster.se.meta.Namespace:
			rank = 1
		}
		if h != s.cluster.host {
			rank += 3
		}
		if rank < bestRank {
			best, bestRank = o, rank
		}
	}
	return best
}

// rulePolicy is the effective policy of a rule for a port and subsets:
// each part of the most specific level that sets it (subset over port
// over destination), as Istio merges them.
type rulePolicy struct {
	lb                 *LoadBalancer
	cp                 *ConnectionPool
	od                 *OutlierDetection
	tls                *ClientTLS
	lbP, cpP, odP, tlP string
	extra              []string // paths of parts not carried (tunnel, proxyProtocol...)
}

func (rp *rulePolicy) merge(tp *TrafficPolicy, path string, port uint32, used map[string]bool) {
	if tp == nil {
		return
	}
	set := func(tp *TrafficPolicy, path string) {
		used[path] = true
		if tp.LoadBalancer != nil {
			rp.lb, rp.lbP = tp.LoadBalancer, path+".loadBalancer"
		}
		if tp.ConnectionPool != nil {
			rp.cp, rp.cpP = tp.ConnectionPool, path+".connectionPool"
		}
		if tp.OutlierDetection != nil {
			rp.od, rp.odP = tp.OutlierDetection, path+".outlierDetection"
		}
		if tp.TLS != nil {
			rp.tls, rp.tlP = tp.TLS, path+".tls"
		}
		for _, f := range []field{{"tunnel", tp.Tunnel.Set()}, {"proxyProtocol", tp.ProxyProtocol.Set()}, {"retryBudget", tp.RetryBudget.Set()}} {
			if f.set {
				rp.extra = append(rp.extra, path+"."+f.name)
			}
		}
	}
	set(tp, path)
	for i := range tp.PortLevelSettings {
		pl := &tp.PortLevelSettings[i]
		if pl.Port != nil && pl.Port.Number == port {
			set(pl, fmt.Sprintf("%s.portLevelSettings[%d]", path, i))
		}
	}
}
