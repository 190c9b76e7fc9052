package istio

import (
	"fmt"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// A VirtualService route, any of http, tls and tcp, as the importer reads
// it: which traffic it matches (per match, at which stage: the sidecars,
// "mesh", or an egress Gateway) and where it sends it.
type route struct {
	vs      *object
	kind    string // http, tls, tcp
	path    string // spec.http[0]
	hosts   []string
	matches []match
	dests   []RouteDestination
	http    *HTTPRoute
	// refuses names what makes it answer without forwarding (redirect,
	// direct response, abort): traffic it takes never left.
	refuses string

	used  []*slot // slots it routes
	pairs []*slot // slots whose sidecar half it is (to the gateway)
	cond  []*slot // slots its conditional matches took some traffic of
}

type match struct {
	path   string
	stages []string // "mesh", or an egress Gateway "ns/name"
	port   uint32
	sni    []string
	conds  []string // conditions egress-xds cannot express
}

const meshStage = "mesh"

// collectRoutes reads every VirtualService's routes.
func (im *importer) collectRoutes() []*route {
	var out []*route
	for _, o := range im.virtualServices {
		if o.broken {
			im.holdHosts(o, o.spec.(*VirtualService).Hosts, "its VirtualService "+o.id()+" could not be read")
			continue
		}
		vs := o.spec.(*VirtualService)
		var hosts []string
		for _, h := range vs.Hosts {
			hosts = append(hosts, strings.ToLower(h))
		}
		stages := im.stages(o, vs.Gateways, "spec.gateways")
		for i := range vs.HTTP {
			r := &vs.HTTP[i]
			rt := &route{vs: o, kind: "http", path: fmt.Sprintf("spec.http[%d]", i), hosts: hosts, dests: r.Route, http: r}
			switch {
			case r.Redirect.Set():
				rt.refuses = "redirect"
			case r.DirectResponse.Set():
				rt.refuses = "directResponse"
			case r.Delegate.Set():
				rt.refuses = "delegate (routes of another VirtualService, not read)"
			case r.Fault != nil && r.Fault.Abort.Set():
				rt.refuses = "fault.abort"
			}
			for j, m := range r.Match {
				mt := match{path: fmt.Sprintf("%s.match[%d]", rt.path, j), port: m.Port, stages: stages}
				if len(m.Gateways) > 0 {
					mt.stages = im.stages(o, m.Gateways, mt.path+".gateways")
				}
				mt.conds = setNames([]field{{"uri", m.URI.Set()}, {"scheme", m.Scheme.Set()}, {"method", m.Method.Set()},
					{"authority", m.Authority.Set()}, {"headers", m.Headers.Set()}, {"queryParams", m.QueryParams.Set()},
					{"withoutHeaders", m.WithoutHeaders.Set()}, {"sourceLabels", len(m.SourceLabels) > 0}, {"sourceNamespace", m.SourceNamespace != ""}})
				rt.matches = append(rt.matches, mt)
			}
			out = append(out, rt.withDefaultMatch(stages))
		}
		for i, r := range vs.TLS {
			rt := &route{vs: o, kind: "tls", path: fmt.Sprintf("spec.tls[%d]", i), hosts: hosts, dests: r.Route}
			for j, m := range r.Match {
				mt := match{path: fmt.Sprintf("%s.match[%d]", rt.path, j), port: m.Port, stages: stages}
				if len(m.Gateways) > 0 {
					mt.stages = im.stages(o, m.Gateways, mt.path+".gateways")
				}
				for _, h := range m.SniHosts {
					mt.sni = append(mt.sni, strings.ToLower(h))
				}
				mt.conds = setNames([]field{{"destinationSubnets", len(m.DestinationSubnets) > 0},
					{"sourceLabels", len(m.SourceLabels) > 0}, {"sourceNamespace", m.SourceNamespace != ""}})
				rt.matches = append(rt.matches, mt)
			}
			out = append(out, rt.withDefaultMatch(stages))
		}
		for i, r := range vs.TCP {
			rt := &route{vs: o, kind: "tcp", path: fmt.Sprintf("spec.tcp[%d]", i), hosts: hosts, dests: r.Route}
			for j, m := range r.Match {
				mt := match{path: fmt.Sprintf("%s.match[%d]", rt.path, j), port: m.Port, stages: stages}
				if len(m.Gateways) > 0 {
					mt.stages = im.stages(o, m.Gateways, mt.path+".gateways")
				}
				mt.conds = setNames([]field{{"destinationSubnets", len(m.DestinationSubnets) > 0}, {"sourceSubnet", m.SourceSubnet != ""},
					{"sourceLabels", len(m.SourceLabels) > 0}, {"sourceNamespace", m.SourceNamespace != ""}})
				rt.matches = append(rt.matches, mt)
			}
			out = append(out, rt.withDefaultMatch(stages))
		}
		if len(vs.ExportTo) > 0 {
			im.rep.add(o, "spec.exportTo", StatusNotCarried, "which sidecars see these routes: here workloads reach the gateway by DNS, the explicit proxy or a sidecar, and allow lists say who may pass")
		}
		if len(vs.Hosts) > 0 {
			im.rep.add(o, "spec.hosts", StatusCarried, "the hosts its routes apply to (see each route)")
		}
	}
	return out
}

// withDefaultMatch gives a route without match one that matches all.
func (r *route) withDefaultMatch(stages []string) *route {
	if len(r.matches) == 0 {
		r.matches = []match{{path: r.path, stages: stages}}
	}
	return r
}

// stages resolves VirtualService gateway names: "mesh" (the sidecars),
// or Gateways "ns/name"; those that are not the egress gateway's are
// dropped, with a line saying so.
func (im *importer) stages(o *object, names []string, path string) []string {
	if len(names) == 0 {
		return []string{meshStage}
	}
	var out []string
	for i, n := range names {
		p := fmt.Sprintf("%s[%d]", path, i)
		if n == meshStage {
			out = append(out, meshStage)
			im.rep.add(o, p, StatusCarried, "mesh: the sidecars' half of the route (see each route)")
			continue
		}
		key := n
		if !strings.Contains(n, "/") {
			key = o.meta.Namespace + "/" + n
		}
		switch _, egress := im.servers[key]; {
		case egress:
			out = append(out, key)
			im.rep.add(o, p, StatusCarried, "the egress Gateway "+key+" (see each route)")
		case im.otherGateways[key]:
			im.rep.add(o, p, StatusNotCarried, "Gateway "+key+" is not the egress gateway: routes bound to it are not read")
		default:
			// Not among the inputs: taken as the egress gateway, so its
			// routes (and their restrictions) are not lost.
			im.servers[key] = nil
			im.assumed[key] = true
			out = append(out, key)
			im.rep.add(o, p, StatusNote, "Gateway "+key+" is not among the inputs: taken as the egress gateway, accepting what its routes name")
		}
	}
	return out
}

// holdHosts holds back the slots of hosts an unreadable object governs.
func (im *importer) holdHosts(o *object, hosts []string, why string) {
	for _, s := range im.slotList {
		for _, h := range hosts {
			if hostCovers(strings.ToLower(h), s.key.host) || hostOverlaps(strings.ToLower(h), s.key.host) {
				s.hold(why)
				im.rep.add(o, "spec", StatusAccess, "could not be read, and governs these destinations: held back", s)
			}
		}
	}
}

// applies reports whether a match takes host on port at stage; the port
// of a match without one is any.
func (r *route) applies(m match, stage, host string, port uint32) bool {
	if m.port != 0 && m.port != port {
		return false
	}
	found := false
	for _, st := range m.stages {
		found = found || st == stage
	}
	if !found {
		return false
	}
	pats := r.hosts
	if len(m.sni) > 0 {
		pats = m.sni
	}
	for _, p := range pats {
		if hostCovers(p, host) {
			return true
		}
	}
	return false
}

// routeKinds are the route lists that apply to traffic of a protocol.
func routeKinds(p intent.Protocol) []string {
	switch p {
	case intent.ProtocolHTTP:
		return []string{"http"}
	case intent.ProtocolTCP:
		return []string{"tcp"}
	}
	return []string{"tls", "tcp"}
}

// chosen is the route that takes a slot's traffic at a stage: the first
// that applies without conditions; conditional ones before it only split
// traffic egress-xds sends one way.
type chosen struct {
	r           *route
	m           match
	conditional []match // of earlier routes
	condRoutes  []*route
	any         bool // some route applies at this stage
}

func pick(rts []*route, p intent.Protocol, stage, host string, port uint32) chosen {
	var c chosen
	for _, kind := range routeKinds(p) {
		for _, r := range rts {
			if r.kind != kind {
				continue
			}
			for _, m := range r.matches {
				if !r.applies(m, stage, host, port) {
					continue
				}
				c.any = true
				if len(m.conds) > 0 {
					c.conditional = append(c.conditional, m)
					c.condRoutes = append(c.condRoutes, r)
					continue
				}
				c.r, c.m = r, m
				return c
			}
		}
		if c.any {
			return c // tcp routes do not apply to TLS traffic some tls route took
		}
	}
	return c
}
