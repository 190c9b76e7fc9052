package istio

import (
	"fmt"
	"sort"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// routes works out, for every slot, how Istio carried its traffic: the
// sidecars' route (to the egress gateway, or straight to a host), the
// egress gateway's route, and the cluster it ends in.
func (im *importer) routes() {
	im.egressGateways()
	rts := im.collectRoutes()
	im.routeOnlySlots(rts)
	for _, s := range im.slotList {
		im.route(s, rts)
	}
	im.reportRoutes(rts)
	im.reportServers()
}

// egressStages lists the egress Gateways, sorted.
func (im *importer) egressStages() []string {
	var out []string
	for k := range im.servers {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// isGatewayService reports whether a route destination is Istio's egress
// gateway Service (its full or short names).
func (im *importer) isGatewayService(host string) bool {
	h := strings.ToLower(host)
	full := im.opts.GatewayService
	return h == full || strings.HasPrefix(full, h+".") && strings.Count(h, ".") >= 1
}

func (r *route) toGateway(im *importer) bool {
	if len(r.dests) == 0 {
		return false
	}
	for _, d := range r.dests {
		if d.Destination == nil || !im.isGatewayService(d.Destination.Host) {
			return false
		}
	}
	return true
}

// routeOnlySlots makes slots of hosts that egress Gateway routes send to
// a declared host without being declared themselves (Istio's wildcard
// task: *.wikipedia.org routed to www.wikipedia.org).
func (im *importer) routeOnlySlots(rts []*route) {
	for _, r := range rts {
		if r.toGateway(im) || len(r.dests) == 0 || r.dests[0].Destination == nil {
			continue
		}
		dest := strings.ToLower(r.dests[0].Destination.Host)
		se := im.seFor(dest)
		if se == nil {
			continue
		}
		for _, m := range r.matches {
			for _, st := range m.stages {
				if st == meshStage {
					continue
				}
				pats := r.hosts
				if len(m.sni) > 0 {
					pats = m.sni
				}
				for _, h := range pats {
					if h == "*" || im.declared(h) {
						continue
					}
					ports := []uint32{m.port}
					if m.port == 0 {
						ports = nil
						for _, sv := range im.servers[st] {
							if im.serverFor(st, h, sv.port) == sv {
								ports = append(ports, sv.port)
							}
						}
					}
					for _, gp := range ports {
						p := im.workloadPort(rts, h, gp)
						if p == 0 || im.slotFor(slotKey{h, p}) != nil {
							continue
						}
						proto := map[string]intent.Protocol{"http": intent.ProtocolHTTP, "tls": intent.ProtocolTLS, "tcp": intent.ProtocolTCP}[r.kind]
						s := im.newSlot(&slot{key: slotKey{h, p}, protocol: proto, namespace: se.meta.Namespace, base: strings.ReplaceAll(h, "*", "wildcard"),
							origin: r.vs, path: r.path, gatewayPort: gp})
						im.rep.add(r.vs, "spec.hosts", StatusCarried, fmt.Sprintf("%s port %d: no ServiceEntry declares it, but this route takes it through the egress gateway to %s, which one does", h, p, dest), s)
					}
				}
			}
		}
	}
}

// declared reports whether a ServiceEntry declares the host exactly.
func (im *importer) declared(h string) bool { return len(im.byHost[h]) > 0 }

// workloadPort is the port workloads use for host when the egress
// gateway receives it on gp: the sidecar route sending it there says.
func (im *importer) workloadPort(rts []*route, host string, gp uint32) uint32 {
	for _, r := range rts {
		if !r.toGateway(im) {
			continue
		}
		for _, m := range r.matches {
			if !r.applies(m, meshStage, host, m.port) {
				continue
			}
			dp := m.port
			if d := r.dests[0].Destination; d.Port != nil && d.Port.Number != 0 {
				dp = d.Port.Number
			}
			if dp == gp && m.port != 0 {
				return m.port
			}
		}
	}
	return gp
}

// seFor is the ServiceEntry declaring a host: exactly, else by wildcard
// (the first by namespace/name).
func (im *importer) seFor(host string) *object {
	if im.seExact == nil {
		im.seExact = map[string]*object{}
		for _, o := range im.serviceEntries {
			if o.broken {
				continue
			}
			for _, h := range o.spec.(*ServiceEntry).Hosts {
				h = strings.ToLower(h)
				if _, ok := im.seExact[h]; !ok {
					im.seExact[h] = o
					if strings.HasPrefix(h, "*") {
						im.seWild = append(im.seWild, h)
					}
				}
			}
		}
	}
	if o, ok := im.seExact[host]; ok {
		return o
	}
	for _, h := range im.seWild {
		if hostCovers(h, host) {
			return im.seExact[h]
		}
	}
	return nil
}

// route applies the sidecar and gateway routes to one slot.
func (im *importer) route(s *slot, rts []*route) {
	gp := s.key.port
	toGateway := false
	rts = im.routesFor(rts, s.key.host)
	c := pick(rts, s.protocol, meshStage, s.key.host, s.key.port)
	im.conditional(s, c, "the sidecars")
	switch {
	case c.r != nil && c.r.refuses != "":
		s.hold("the sidecars' route answered without forwarding (" + c.r.refuses + ")")
		im.rep.add(c.r.vs, c.r.path, StatusAccess, "answers without forwarding ("+c.r.refuses+"): not expressible; held back", s)
	case c.r != nil && c.r.toGateway(im):
		toGateway = true
		if d := c.r.dests[0].Destination; d.Port != nil && d.Port.Number != 0 {
			gp = d.Port.Number
		}
		c.r.pairs = append(c.r.pairs, s)
		im.matchEntry(c, s, "the sidecars send "+hostPort(s.key)+" to the egress gateway")
		im.httpSettings(s, c.r)
	case c.r != nil:
		im.matchEntry(c, s, "the sidecars take "+hostPort(s.key)+" straight to its host")
		if im.clusterFrom(s, c.r, s.key.port) {
			c.r.used = append(c.r.used, s)
		}
		im.httpSettings(s, c.r)
	case c.any:
		s.hold("every sidecar route for it has conditions egress-xds cannot express")
	}
	s.gatewayPort = gp
	var g chosen
	stage := ""
	for _, st := range im.egressStages() {
		if g = pick(rts, s.protocol, st, s.key.host, gp); g.any {
			stage = st
			break
		}
	}
	im.conditional(s, g, "the egress gateway")
	switch {
	case g.r != nil:
		s.viaGateway = true
		if sv := im.serverFor(stage, s.key.host, gp); sv != nil {
			im.serverEffect(sv, s)
		} else if !im.assumed[stage] {
			s.hold(fmt.Sprintf("no server of Gateway %s accepts %s on port %d: Istio's gateway refused it", stage, s.key.host, gp))
			im.rep.add(g.r.vs, g.r.path, StatusNotCarried, fmt.Sprintf("no server of Gateway %s accepts %s on port %d, so Istio's gateway refused it: held back", stage, s.key.host, gp), s)
		}
		if g.r.refuses != "" {
			s.hold("the egress gateway's route answered without forwarding (" + g.r.refuses + ")")
			im.rep.add(g.r.vs, g.r.path, StatusAccess, "answers without forwarding ("+g.r.refuses+"): not expressible; held back", s)
			return
		}
		im.matchEntry(g, s, fmt.Sprintf("the egress gateway takes %s arriving on port %d", s.key.host, gp))
		if im.clusterFrom(s, g.r, gp) {
			g.r.used = append(g.r.used, s)
		}
		im.httpSettings(s, g.r)
	case g.any:
		s.hold("every egress gateway route for it has conditions egress-xds cannot express")
	case toGateway:
		s.hold("the sidecars sent it to the egress gateway, where no route took it")
		im.rep.add(c.r.vs, c.r.path+".route", StatusNotCarried, "sends "+hostPort(s.key)+" to the egress gateway, where no VirtualService route takes it: Istio refused it there; held back", s)
	}
}

func hostPort(k slotKey) string { return fmt.Sprintf("%s:%d", k.host, k.port) }

// matchEntry reports the match that took the slot.
func (im *importer) matchEntry(c chosen, s *slot, text string) {
	if c.m.path == c.r.path {
		return // a route without match: the route's line says it
	}
	var what []string
	if c.m.port != 0 {
		what = append(what, fmt.Sprintf("port %d", c.m.port))
	}
	if len(c.m.sni) > 0 {
		what = append(what, "sniHosts "+strings.Join(c.m.sni, ", "))
	}
	if len(what) > 0 {
		text += " (" + strings.Join(what, ", ") + ")"
	}
	im.rep.add(c.r.vs, c.m.path, StatusCarried, text, s)
}

// conditional reports routes with conditions ahead of the one chosen:
// they refused traffic (access), or split it (routing, not carried).
func (im *importer) conditional(s *slot, c chosen, where string) {
	for i, m := range c.conditional {
		r := c.condRoutes[i]
		r.cond = appendSlots(r.cond, []*slot{s})
		conds := strings.Join(m.conds, ", ")
		switch {
		case r.refuses != "":
			s.hold(where + " refused some requests (" + r.refuses + " when " + conds + ")")
			im.rep.add(r.vs, m.path, StatusAccess, fmt.Sprintf("at %s, requests matching %s got %s instead of being forwarded: not expressible; held back", where, conds, r.refuses), s)
		case c.r == nil:
			im.rep.add(r.vs, m.path, StatusAccess, fmt.Sprintf("at %s, only traffic matching %s was routed, the rest refused: egress-xds cannot express %s; held back", where, conds, conds), s)
		default:
			im.rep.add(r.vs, m.path, StatusNotCarried, fmt.Sprintf("at %s, traffic matching %s took this route: egress-xds cannot express %s, so that traffic goes the way of %s", where, conds, conds, c.r.path), s)
		}
	}
}

// clusterFrom sets where a route sends the slot's traffic; false (and
// the slot held back) when that cannot be expressed.
func (im *importer) clusterFrom(s *slot, r *route, incoming uint32) bool {
	if len(r.dests) == 0 {
		s.hold("its route has no destination")
		im.rep.add(r.vs, r.path, StatusNotCarried, "no destination: held back", s)
		return false
	}
	var hosts, subsets []string
	var d *Destination
	for _, rd := range r.dests {
		if rd.Destination == nil {
			continue
		}
		if d == nil {
			d = rd.Destination
		}
		h := strings.ToLower(rd.Destination.Host)
		if !contains(hosts, h) {
			hosts = append(hosts, h)
		}
		if sub := rd.Destination.Subset; sub != "" && !contains(subsets, sub) {
			subsets = append(subsets, sub)
		}
	}
	if d == nil {
		s.hold("its route has no destination")
		im.rep.add(r.vs, r.path, StatusNotCarried, "no destination: held back", s)
		return false
	}
	if len(hosts) != 1 {
		s.hold("its route splits traffic across hosts " + strings.Join(hosts, ", "))
		im.rep.add(r.vs, r.path+".route", StatusNotCarried, "splits traffic across hosts "+strings.Join(hosts, ", ")+": egress-xds sends a destination to its own host; held back", s)
		return false
	}
	port := incoming
	if d.Port != nil && d.Port.Number != 0 {
		port = d.Port.Number
	}
	se := im.seFor(hosts[0])
	if se == nil {
		s.hold("its route goes to " + hosts[0] + ", which no ServiceEntry declares")
		im.rep.add(r.vs, r.path+".route", StatusNotCarried, "goes to "+hosts[0]+", which no ServiceEntry declares (Istio had no cluster for it either): held back", s)
		return false
	}
	sp, ok := sePort(se.spec.(*ServiceEntry), port, d.Port == nil)
	if !ok {
		s.hold(fmt.Sprintf("its route goes to %s port %d, which its ServiceEntry does not declare", hosts[0], port))
		im.rep.add(r.vs, r.path+".route", StatusNotCarried, fmt.Sprintf("goes to %s port %d, which %s does not declare: held back", hosts[0], port, se.id()), s)
		return false
	}
	s.cluster = cluster{host: hosts[0], port: sp.Number, subsets: subsets, se: se, sePort: sp}
	if len(r.dests) > 1 {
		im.rep.add(r.vs, r.path+".route", StatusNotCarried, "weights across subsets "+strings.Join(subsets, ", ")+": the endpoints of all of them are balanced by the load balancer", s)
	}
	return true
}

// sePort finds a ServiceEntry port by number; with none asked and one
// declared, that one.
func sePort(se *ServiceEntry, n uint32, unset bool) (ServicePort, bool) {
	for _, p := range se.Ports {
		if p.Number == n {
			return p, true
		}
	}
	if unset && len(se.Ports) == 1 {
		return se.Ports[0], true
	}
	return ServicePort{}, false
}

// reportRoutes says what became of every route.
func (im *importer) reportRoutes(rts []*route) {
	for _, r := range rts {
		if len(r.pairs) > 0 {
			im.rep.add(r.vs, r.path+".route", StatusCarried, "the sidecars' half of the guide's mesh → gateway pair: here workloads reach the gateway by DNS pointing at it, the explicit proxy, or a sidecar over the mesh port", r.pairs...)
		}
		for _, s := range r.used {
			text := "sends it to " + hostPort(slotKey{s.cluster.host, s.cluster.port})
			if s.cluster.host != s.key.host {
				text += ", another host than the one asked for"
			}
			if s.cluster.port != s.key.port {
				text += fmt.Sprintf(" (port %d becomes %d)", s.key.port, s.cluster.port)
			}
			im.rep.add(r.vs, r.path+".route", StatusCarried, text, s)
		}
		if len(r.pairs)+len(r.used) == 0 && len(r.cond) > 0 {
			im.rep.add(r.vs, r.path+".route", StatusNotCarried, "only for the traffic its match takes (see the match)", r.cond...)
			continue
		}
		if len(r.pairs)+len(r.used) == 0 {
			p := r.path
			if contains(r.vs.covered, p) {
				p += ".route"
			}
			im.rep.add(r.vs, p, StatusNotCarried, "takes no declared destination (no ServiceEntry declares its hosts, or another route takes them first)")
		}
	}
}

// httpSettings carries an HTTP route's timeout and retries, and reports
// what of it is not carried.
func (im *importer) httpSettings(s *slot, r *route) {
	h := r.http
	if h == nil {
		return
	}
	o, p := r.vs, r.path
	if h.Timeout != nil {
		if h.Timeout.Duration == 0 {
			im.rep.add(o, p+".timeout", StatusNotCarried, "0s (no timeout): egress-xds keeps its default request timeout", s)
		} else {
			s.timeouts = append(s.timeouts, h.Timeout.Duration)
			im.rep.add(o, p+".timeout", StatusCarried, "timeout "+h.Timeout.Duration.String()+" (the least of the sidecar's and the gateway's)", s)
		}
	}
	if rt := h.Retries; rt != nil {
		im.retries(s, o, p+".retries", rt)
	}
	for _, f := range []field{{"rewrite", h.Rewrite.Set()}, {"headers", h.Headers.Set()}, {"corsPolicy", h.CorsPolicy.Set()},
		{"mirror", h.Mirror.Set()}, {"mirrors", h.Mirrors.Set()}, {"mirrorPercentage", h.MirrorPercentage.Set()}, {"mirrorPercent", h.MirrorPercent.Set()}} {
		if f.set {
			im.rep.add(o, p+"."+f.name, StatusNotCarried, "egress-xds forwards requests as they come: no "+f.name, s)
		}
	}
	if h.Fault != nil && h.Fault.Delay.Set() {
		im.rep.add(o, p+".fault.delay", StatusNotCarried, "fault injection is not carried", s)
	}
	if h.Name != "" {
		im.rep.add(o, p+".name", StatusNotCarried, "names the route only")
	}
	for i, d := range h.Route {
		if d.Headers.Set() {
			im.rep.add(o, fmt.Sprintf("%s.route[%d].headers", p, i), StatusNotCarried, "egress-xds forwards requests as they come: no header changes", s)
		}
	}
}

var retryOn = map[string]bool{"5xx": true, "gateway-error": true, "reset": true, "connect-failure": true, "envoy-ratelimited": true,
	"retriable-4xx": true, "refused-stream": true, "reset-before-request": true, "http3-post-connect-failure": true}

func (im *importer) retries(s *slot, o *object, p string, rt *HTTPRetry) {
	if rt.Attempts <= 0 {
		im.rep.add(o, p, StatusDefault, "no retries: egress-xds retries only when told", s)
		s.d.Retries = nil
		return
	}
	out := &intent.Retries{Attempts: uint32(min(rt.Attempts, 10))}
	text := fmt.Sprintf("%d attempts", out.Attempts)
	if rt.Attempts > 10 {
		text += fmt.Sprintf(" (Istio had %d; egress-xds retries at most 10 times)", rt.Attempts)
	}
	if rt.PerTryTimeout != nil && rt.PerTryTimeout.Duration > 0 {
		out.PerTryTimeout = &intent.Duration{Duration: rt.PerTryTimeout.Duration}
		text += ", " + rt.PerTryTimeout.Duration.String() + " per try"
	}
	var dropped []string
	for _, c := range strings.Split(rt.RetryOn, ",") {
		c = strings.TrimSpace(c)
		switch {
		case c == "":
		case retryOn[c]:
			out.On = append(out.On, c)
		default:
			dropped = append(dropped, c)
		}
	}
	if len(out.On) > 0 {
		text += ", on " + strings.Join(out.On, ",")
	}
	s.d.Retries = out
	im.rep.add(o, p, StatusCarried, "retries: "+text, s)
	if len(dropped) > 0 {
		im.rep.add(o, p+".retryOn", StatusNotCarried, "conditions "+strings.Join(dropped, ", ")+" are not among egress-xds's (gRPC statuses and status codes are not)", s)
	}
	for _, f := range []field{{"retryRemoteLocalities", rt.RetryRemoteLocalities != nil}, {"retryIgnorePreviousHosts", rt.RetryIgnorePreviousHosts != nil}, {"backoff", rt.Backoff != nil}} {
		if f.set {
			im.rep.add(o, p+"."+f.name, StatusNotCarried, "Envoy's defaults apply", s)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// routesFor is the routes whose hosts may take host, in their order: an
// index of exact host patterns, and every route with a wildcard one.
func (im *importer) routesFor(rts []*route, host string) []*route {
	if im.routeIndex == nil {
		im.routeIndex = map[string][]int{}
		for i, r := range rts {
			pats := append([]string(nil), r.hosts...)
			for _, m := range r.matches {
				pats = append(pats, m.sni...)
			}
			seen := map[string]bool{}
			for _, p := range pats {
				k := p
				if strings.Contains(p, "*") {
					k = "*"
				}
				if !seen[k] {
					seen[k] = true
					im.routeIndex[k] = append(im.routeIndex[k], i)
				}
			}
		}
	}
	idx := append(append([]int(nil), im.routeIndex[host]...), im.routeIndex["*"]...)
	sort.Ints(idx)
	out := make([]*route, 0, len(idx))
	for i, x := range idx {
		if i == 0 || x != idx[i-1] {
			out = append(out, rts[x])
		}
	}
	return out
}
