package istio

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// AuthorizationPolicies on the egress gateway become allow lists. Istio's
// rules: DENY is checked first; then, if any ALLOW policy applies, a
// request must match one of its rules; with none, everything is allowed.
// egress-xds has one allow list per destination (sources: cidr, principal,
// namespace; omitted: every source). What cannot be said exactly is made
// narrower, never wider: an admission that cannot be expressed is dropped,
// a refusal that cannot be expressed holds the destination back; both are
// ACCESS NOT CARRIED.

// sources is what one rule admits: every source, or a list.
type sources struct {
	any  bool
	list []intent.Source
}

// grant adds what the sources may ask (op) to a slot's grants: allow
// entries, the zero source standing for every source (allowOf joins
// them).
func (a sources) grant(l []intent.Source, op ops) []intent.Source {
	if a.any {
		return append(l, op.on(intent.Source{}))
	}
	for _, s := range a.list {
		l = append(l, op.on(s))
	}
	return l
}

func containsSource(l []intent.Source, s intent.Source) bool {
	for _, x := range l {
		if reflect.DeepEqual(x, s) {
			return true
		}
	}
	return false
}

type policyKind int

const (
	allowPolicy policyKind = iota
	denyPolicy
)

func (im *importer) authorize() {
	type pol struct {
		o  *object
		ap *AuthorizationPolicy
	}
	var allows, denies []pol
	for _, o := range im.policies {
		ap := o.spec.(*AuthorizationPolicy)
		if !im.policyApplies(o, ap) {
			continue
		}
		action := strings.ToUpper(ap.Action)
		if action == "" {
			action = "ALLOW"
		}
		if o.broken {
			if action == "ALLOW" {
				allows = append(allows, pol{o, &AuthorizationPolicy{}})
				im.rep.add(o, "spec", StatusAccess, "could not be read: read as an ALLOW policy admitting no one")
			} else {
				for _, s := range im.slotList {
					s.hold("an AuthorizationPolicy on the egress gateway could not be read")
				}
				im.rep.add(o, "spec", StatusAccess, "could not be read, and may refuse anything: every destination is held back", im.slotList...)
			}
			continue
		}
		if ap.Action != "" {
			im.rep.add(o, "spec.action", StatusCarried, action)
		}
		switch action {
		case "ALLOW":
			allows = append(allows, pol{o, ap})
		case "DENY":
			denies = append(denies, pol{o, ap})
		case "AUDIT":
			im.rep.add(o, "spec.rules", StatusDefault, "AUDIT only logs: the gateways log every connection and request, refused ones with the reason")
		case "CUSTOM":
			im.custom(o, ap)
		default:
			for _, s := range im.slotList {
				s.hold("an AuthorizationPolicy on the egress gateway has an unknown action")
			}
			im.rep.add(o, "spec.action", StatusAccess, ap.Action+" is not an Istio action: every destination is held back", im.slotList...)
		}
	}
	adm := map[*slot][]intent.Source{}
	if len(allows) > 0 {
		for _, p := range allows {
			if len(p.ap.Rules) == 0 && !p.o.broken {
				im.rep.add(p.o, "spec", StatusDefault, "an ALLOW policy without rules admits no one: the default here (only what an allow list or an open destination admits passes)")
			}
			for i := range p.ap.Rules {
				path := fmt.Sprintf("spec.rules[%d]", i)
				targets, requests, dropped := im.ruleTargetsDropped(p.o, &p.ap.Rules[i], path, allowPolicy)
				src, ok := im.ruleSources(p.o, &p.ap.Rules[i], path, allowPolicy)
				if !ok {
					continue
				}
				if len(targets) == 0 && dropped {
					continue
				}
				if len(targets) == 0 {
					im.rep.add(p.o, path, StatusNotCarried, "admits "+src.String()+" to no declared destination: no ServiceEntry declares what it names")
					continue
				}
				var lines []string
				by := map[string][]*slot{}
				for _, s := range targets {
					var what []string
					for _, op := range requests[s] {
						adm[s] = src.grant(adm[s], op)
						what = appendUnique(what, op.String())
					}
					line := "admits " + src.String()
					if !slices.Contains(what, "") {
						line += " to " + strings.Join(what, "; or ")
					}
					if by[line] == nil {
						lines = append(lines, line)
					}
					by[line] = append(by[line], s)
				}
				for _, l := range lines {
					im.rep.add(p.o, path, StatusCarried, l, by[l]...)
				}
			}
		}
		for _, s := range im.slotList {
			allow := allowOf(adm[s])
			switch {
			case allow == nil:
			case len(*allow) == 0:
				switch {
				case len(s.held) > 0:
				case s.viaGateway:
					im.rep.add(s.origin, s.path, StatusCarried, fmt.Sprintf("port %d: no ALLOW rule on the egress gateway admits it, so Istio refused it: left out", s.key.port), s)
				default:
					im.rep.add(s.origin, s.path, StatusNotCarried, fmt.Sprintf("port %d: Istio's sidecars reached it directly, past the egress gateway's policies; here everything passes the gateway, where no ALLOW rule admits it: left out (narrower)", s.key.port), s)
				}
				s.hold("no ALLOW AuthorizationPolicy rule on the egress gateway admits it")
			default:
				s.allow = allow
			}
		}
	}
	// exportTo first: a DENY is exact on more allow lists once visibility
	// has become namespaces.
	im.exportTo()
	im.meshOnly()
	for _, p := range denies {
		im.deny(p.o, p.ap)
	}
	im.sidecars()
	im.peerAuthentications()
	im.everySourceEntries()
}

// policyApplies reports whether a policy is the egress gateway's: in its
// namespace (also the root namespace) without a selector, or selecting
// its labels. targetRefs cannot be judged: such a policy is read as the
// gateway's, which can only narrow.
func (im *importer) policyApplies(o *object, ap *AuthorizationPolicy) bool {
	if ap.TargetRef.Set() || ap.TargetRefs.Set() {
		im.rep.add(o, "spec.targetRefs", StatusAccess, "targets Gateway API resources or Services, which egress-xds cannot tell from the egress gateway: read as applying to it (narrower if it does not)")
		if ap.TargetRef.Set() {
			im.rep.add(o, "spec.targetRef", StatusAccess, "read as applying to the egress gateway")
		}
		return true
	}
	if o.meta.Namespace != im.opts.GatewayNamespace {
		im.rep.addf(o, "", StatusNotCarried, "applies to workloads of namespace %s (their inbound traffic), not to the egress gateway in %s", o.meta.Namespace, im.opts.GatewayNamespace)
		return false
	}
	if ap.Selector == nil {
		im.rep.add(o, "", StatusNote, "no selector in "+im.opts.GatewayNamespace+": applies to every workload there, the egress gateway included")
		return true
	}
	if !im.selects(ap.Selector.MatchLabels) {
		im.rep.addf(o, "", StatusNotCarried, "selects %s, not the egress gateway (%s)", labelText(ap.Selector.MatchLabels), labelText(im.opts.GatewayLabels))
		return false
	}
	im.rep.add(o, "spec.selector", StatusCarried, "the egress gateway: its rules become the allow lists of the destinations they name")
	return true
}

// ruleTargets lists the slots a rule's to (and destination conditions)
// select, entirely. Operations egress-xds cannot express select nothing
// in an ALLOW rule (narrower); in a DENY rule they hold back what they
// might refuse.
func (im *importer) ruleTargets(o *object, r *Rule, path string, kind policyKind) []*slot {
	out, _, _ := im.ruleTargetsDropped(o, r, path, kind)
	return out
}

// ruleTargetsDropped is ruleTargets, the requests an ALLOW rule admits
// on each slot (one ops per operation naming it: methods and paths on
// HTTP ports), and whether some slot was named but left out because the
// rule cannot be expressed on it.
func (im *importer) ruleTargetsDropped(o *object, r *Rule, path string, kind policyKind) ([]*slot, map[*slot][]ops, bool) {
	dropped := false
	hostConds, portConds, ok := im.destinationConditions(o, r, path, kind)
	if !ok {
		return nil, nil, true
	}
	var out []*slot
	admits := map[*slot][]ops{}
	pick := func(s *slot, op ops) {
		if _, ok := admits[s]; !ok {
			out = append(out, s)
		}
		admits[s] = append(admits[s], op)
	}
	matchHosts := func(pats []string, s *slot) (full, part bool) {
		for _, p := range pats {
			p = strings.ToLower(p)
			if h, port, ok := strings.Cut(p, ":"); ok {
				if n, err := strconv.ParseUint(port, 10, 32); err != nil || uint32(n) != s.gatewayPort {
					continue
				}
				p = h
			}
			prefix, isPrefix := strings.CutSuffix(p, "*")
			isPrefix = isPrefix && p != "*" && !strings.HasPrefix(p, "*")
			switch {
			case hostCovers(p, s.key.host):
				full = true
			case isPrefix && !strings.HasPrefix(s.key.host, "*") && strings.HasPrefix(s.key.host, prefix):
				full = true // Istio's prefix match, "api.*"
			case hostOverlaps(p, s.key.host) || isPrefix && strings.HasPrefix(s.key.host, "*"):
				part = true
			}
		}
		return full, part
	}
	// Istio skips an ALLOW rule with HTTP-only fields for TLS and TCP
	// traffic, all of it: the error of one operation drops the rule.
	ruleHTTP := strings.Join(httpFields(r), ", ")
	tos := r.To
	if len(tos) == 0 {
		tos = append(tos, struct {
			Operation *Operation `json:"operation"`
		}{})
	}
	for i, to := range tos {
		op := to.Operation
		p := fmt.Sprintf("%s.to[%d].operation", path, i)
		if op == nil {
			op = &Operation{}
		}
		httpOnly := setNames([]field{{"methods", len(op.Methods) > 0}, {"notMethods", len(op.NotMethods) > 0}, {"paths", len(op.Paths) > 0}, {"notPaths", len(op.NotPaths) > 0}})
		ports, badPort := parsePorts(op.Ports)
		notPorts, badNot := parsePorts(op.NotPorts)
		if badPort != "" || badNot != "" {
			dropped = true
			im.rep.add(o, p, StatusAccess, "ports "+badPort+badNot+" are not port numbers: this operation "+narrowing(kind))
			if kind == denyPolicy {
				im.holdAll(o, p, "an AuthorizationPolicy DENY rule could not be read")
			}
			continue
		}
		// An ALLOW operation's methods and paths are read (and reported)
		// once it names an HTTP destination.
		var requests ops
		read, requestsOK, narrowed := false, true, false
		cands := im.slotList
		if kind == allowPolicy && len(op.Hosts) > 0 && len(hostConds) == 0 {
			cands = im.slotsOf(op.Hosts)
		}
		for _, s := range cands {
			full, part := true, false
			// Istio drops hosts from a DENY rule for TLS and TCP traffic
			// (HTTP-only fields): it refused on every such port.
			ignoreHosts := kind == denyPolicy && s.protocol != intent.ProtocolHTTP
			if len(op.Hosts) > 0 && !ignoreHosts {
				full, part = matchHosts(op.Hosts, s)
			}
			if nf, np := matchHosts(op.NotHosts, s); ignoreHosts {
			} else if nf {
				full, part = false, false
			} else if np {
				part = part || full
				full = false
			}
			if len(hostConds) > 0 {
				f, pt := matchHosts(hostConds, s)
				part = part || (full && !f && pt)
				full = full && f
			}
			if len(ports) > 0 && !ports[s.gatewayPort] || notPorts[s.gatewayPort] || len(portConds) > 0 && !portConds[s.gatewayPort] {
				full, part = false, false
			}
			if !full && !part {
				continue
			}
			if kind == allowPolicy && len(httpOnly) > 0 && s.protocol == intent.ProtocolHTTP && !read {
				read = true
				requests, requestsOK, narrowed = im.readOperation(o, op, p)
			}
			switch {
			case kind == allowPolicy && s.protocol != intent.ProtocolHTTP && ruleHTTP != "":
				dropped = true
				im.rep.add(o, p, StatusNotCarried, "Istio skips an ALLOW rule with "+ruleHTTP+" for TLS and TCP traffic (every operation of it): it admits no one here, as in Istio", s)
				continue
			case kind == allowPolicy && len(httpOnly) > 0 && !requestsOK && narrowed:
				dropped = true
				im.rep.add(o, p, StatusAccess, "admits no request egress-xds can express here (see its "+strings.Join(httpOnly, ", ")+"): it admits no one here (narrower)", s)
				continue
			case kind == allowPolicy && len(httpOnly) > 0 && !requestsOK:
				dropped = true
				im.rep.add(o, p, StatusNotCarried, "its "+strings.Join(httpOnly, ", ")+" admit no request, in Istio as here", s)
				continue
			case kind == allowPolicy:
			case len(httpOnly) == 1 && httpOnly[0] == "methods" && s.protocol == intent.ProtocolHTTP:
				denied, some := deniedMethods(op.Methods)
				if !some {
					im.rep.add(o, p+".methods", StatusNotCarried, "no method in capitals: it matched no request in Istio, and refuses nothing", s)
					continue
				}
				if full {
					pick(s, ops{methods: denied})
					continue
				}
			case len(httpOnly) > 0 && s.protocol == intent.ProtocolHTTP:
				fields := strings.Join(httpOnly, ", ")
				s.hold("an AuthorizationPolicy DENY rule refuses some of its requests (" + fields + "), which egress-xds cannot express")
				im.rep.add(o, p, StatusAccess, "refuses requests with these "+fields+": not expressible, held back", s)
				continue
			}
			// (A DENY on TLS and TCP: Istio drops the HTTP fields and
			// refuses the traffic.)
			switch {
			case full:
				pick(s, requests)
			case kind == allowPolicy:
				dropped = true
				im.rep.add(o, p, StatusAccess, "admits only some names of the wildcard "+s.key.host+": not expressible, so this rule admits no one there (narrower)", s)
			default:
				s.hold("an AuthorizationPolicy DENY rule refuses some names of it, which egress-xds cannot express")
				im.rep.add(o, p, StatusAccess, "refuses some names of the wildcard "+s.key.host+": not expressible, held back", s)
			}
		}
		if kind == allowPolicy && !read {
			for _, f := range httpOnly {
				im.rep.add(o, p+"."+f, StatusNotCarried, "names no HTTP destination declared here: nothing to carry")
			}
		}
		var what []string
		for _, f := range []struct {
			name string
			l    []string
		}{{"hosts", op.Hosts}, {"notHosts", op.NotHosts}, {"ports", op.Ports}, {"notPorts", op.NotPorts}} {
			if len(f.l) > 0 {
				what = append(what, f.name+" "+strings.Join(f.l, ", "))
			}
		}
		if len(what) > 0 {
			im.rep.add(o, p, StatusCarried, "selects the destinations of "+strings.Join(what, "; ")+" (ports are the egress gateway's)")
		}
		if len(op.Hosts)+len(op.NotHosts) > 0 {
			for _, s := range out {
				switch {
				case s.protocol == intent.ProtocolHTTP:
				case kind == allowPolicy:
					im.rep.add(o, p+".hosts", StatusNote, "Istio documents hosts as HTTP only, and ignores an ALLOW rule naming them for TLS and TCP traffic (it admitted no one there); here it admits what it says, by SNI (TLS) or by port (TCP)", s)
				default:
					im.rep.add(o, p+".hosts", StatusNote, "Istio documents hosts as HTTP only, and drops them from a DENY rule for TLS and TCP traffic: it refused on every TLS and TCP port the rule names, and so does the import", s)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return lessSlot(out[i], out[j]) })
	return out, admits, dropped
}

func narrowing(kind policyKind) string {
	if kind == allowPolicy {
		return "admits no one here (narrower)"
	}
	return "is read as refusing everything: every destination is held back"
}

func (im *importer) holdAll(o *object, p, why string) {
	for _, s := range im.slotList {
		s.hold(why)
	}
	im.rep.add(o, p, StatusAccess, "every destination is held back", im.slotList...)
}

func parsePorts(l []string) (map[uint32]bool, string) {
	out := map[uint32]bool{}
	for _, s := range l {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || n == 0 {
			return nil, s
		}
		out[uint32(n)] = true
	}
	return out, ""
}

// destinationConditions reads a rule's when conditions on the
// destination (connection.sni, destination.port); false when a
// condition egress-xds cannot express makes the rule select nothing (ALLOW)
// or hold everything back (DENY).
func (im *importer) destinationConditions(o *object, r *Rule, path string, kind policyKind) (hosts []string, ports map[uint32]bool, ok bool) {
	for i, c := range r.When {
		p := fmt.Sprintf("%s.when[%d]", path, i)
		switch {
		case strings.HasPrefix(c.Key, "source.") || c.Key == "remote.ip" || strings.HasPrefix(c.Key, "request.auth"):
			continue // sources: ruleSources reads these
		case len(c.NotValues) > 0:
		case c.Key == "connection.sni":
			hosts = append(hosts, c.Values...)
			im.rep.add(o, p, StatusCarried, "the destinations of SNI "+strings.Join(c.Values, ", "))
			continue
		case c.Key == "destination.port":
			pm, bad := parsePorts(c.Values)
			if bad == "" {
				if ports == nil {
					ports = pm
				} else {
					for k := range ports {
						if !pm[k] {
							delete(ports, k)
						}
					}
				}
				im.rep.add(o, p, StatusCarried, "the destinations of port "+strings.Join(c.Values, ", ")+" (the egress gateway's)")
				continue
			}
		}
		im.rep.add(o, p, StatusAccess, "condition "+c.Key+" cannot be expressed: this rule "+narrowing(kind))
		if kind == denyPolicy {
			im.holdAll(o, p, "an AuthorizationPolicy DENY condition cannot be expressed")
		}
		return nil, nil, false
	}
	if ports == nil && hosts == nil {
		return nil, nil, true
	}
	if ports == nil {
		return hosts, nil, true
	}
	if len(ports) == 0 {
		ports = map[uint32]bool{0: true} // conditions that exclude each other: nothing
	}
	return hosts, ports, true
}

func lessSlot(a, b *slot) bool {
	if a.key.host != b.key.host {
		return a.key.host < b.key.host
	}
	return a.key.port < b.key.port
}

func (s sources) String() string {
	if s.any {
		return "every source"
	}
	var parts []string
	for _, x := range sortSources(s.list) {
		parts = append(parts, sourceText(x))
	}
	return strings.Join(parts, ", ")
}

func sourceText(s intent.Source) string {
	t := "every source"
	switch {
	case s.CIDR != "":
		t = "cidr " + s.CIDR
	case s.Principal != "":
		t = "principal " + s.Principal
	case s.Namespace != "":
		t = "namespace " + s.Namespace
	}
	if o := opsOf(s); !o.any() {
		t += " (" + o.String() + ")"
	}
	return t
}

func sortSources(l []intent.Source) []intent.Source {
	out := append([]intent.Source(nil), l...)
	sort.Slice(out, func(i, j int) bool { return sourceText(out[i]) < sourceText(out[j]) })
	return out
}

// cidrContains reports whether prefix a contains all of b.
func cidrContains(a, b netip.Prefix) bool {
	return a.Bits() <= b.Bits() && a.Contains(b.Addr())
}

// slotsOf is the slots whose host the patterns may name, in slot order:
// by index for exact names, every slot when one is a pattern.
func (im *importer) slotsOf(pats []string) []*slot {
	var out []*slot
	for _, p := range pats {
		p = strings.ToLower(p)
		if h, _, ok := strings.Cut(p, ":"); ok {
			p = h
		}
		if strings.Contains(p, "*") {
			return im.slotList
		}
		out = append(out, im.byHost[p]...)
		// a wildcard destination covering p is named in part
		for i := strings.IndexByte(p, '.'); i >= 0; i = strings.IndexByte(p[i+1:], '.') + i + 1 {
			out = append(out, im.byHost["*"+p[i:]]...)
			if strings.IndexByte(p[i+1:], '.') < 0 {
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return appendSlots(nil, out)
}
