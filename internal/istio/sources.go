package istio

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// idset is the workload identities a source admits: principals (SPIFFE
// IDs) and namespaces; any: no identity is asked for.
type idset struct {
	any        bool
	principals []string
	namespaces []string
}

// alt is one alternative of a rule's from: identities and, or, addresses
// (nil: any address).
type alt struct {
	ids   idset
	cidrs []netip.Prefix
}

func (a alt) anySource() bool { return a.ids.any && a.cidrs == nil }

func nsOf(principal string) string {
	id, err := intent.ParseWorkloadID(principal)
	if err != nil {
		return ""
	}
	return id.Namespace
}

// intersect is what two identity constraints admit together.
func intersect(a, b idset) idset {
	switch {
	case a.any:
		return b
	case b.any:
		return a
	}
	var out idset
	for _, p := range a.principals {
		if contains(b.principals, p) || contains(b.namespaces, nsOf(p)) {
			out.principals = appendUnique(out.principals, p)
		}
	}
	for _, p := range b.principals {
		if contains(a.namespaces, nsOf(p)) {
			out.principals = appendUnique(out.principals, p)
		}
	}
	for _, n := range a.namespaces {
		if contains(b.namespaces, n) {
			out.namespaces = appendUnique(out.namespaces, n)
		}
	}
	return out
}

func appendUnique(l []string, s string) []string {
	if contains(l, s) {
		return l
	}
	return append(l, s)
}

// ruleSources is what an ALLOW rule admits; false when it admits no one.
func (im *importer) ruleSources(o *object, r *Rule, path string, kind policyKind) (sources, bool) {
	alts, ok := im.ruleAlternatives(o, r, path, kind)
	if !ok {
		return sources{}, false
	}
	var out sources
	for _, a := range alts {
		switch {
		case a.anySource():
			out.any = true
		case a.cidrs != nil:
			for _, c := range a.cidrs {
				out.list = appendSource(out.list, intent.Source{CIDR: c.String()})
			}
		default:
			for _, p := range a.ids.principals {
				out.list = appendSource(out.list, intent.Source{Principal: p})
			}
			for _, n := range a.ids.namespaces {
				out.list = appendSource(out.list, intent.Source{Namespace: n})
			}
		}
	}
	if out.any {
		out.list = nil
	}
	return out, out.any || len(out.list) > 0
}

func appendSource(l []intent.Source, s intent.Source) []intent.Source {
	if containsSource(l, s) {
		return l
	}
	return append(l, s)
}

// ruleAlternatives reads a rule's from and source conditions. In an
// ALLOW rule, what cannot be expressed admits no one (narrower); in a
// DENY rule it makes the rule unreadable (false): what it refuses is not
// known, and the caller holds its destinations back.
func (im *importer) ruleAlternatives(o *object, r *Rule, path string, kind policyKind) ([]alt, bool) {
	cond, ok := im.sourceConditions(o, r, path, kind)
	if !ok {
		return nil, false
	}
	froms := r.From
	if len(froms) == 0 {
		return []alt{cond}, true
	}
	var out []alt
	for i, f := range froms {
		p := fmt.Sprintf("%s.from[%d].source", path, i)
		src := f.Source
		if src == nil {
			src = &Source{}
		}
		a := alt{ids: idset{any: true}}
		bad := ""
		for _, x := range []struct {
			name string
			l    []string
		}{{"notPrincipals", src.NotPrincipals}, {"requestPrincipals", src.RequestPrincipals}, {"notRequestPrincipals", src.NotRequestPrincipals},
			{"notNamespaces", src.NotNamespaces}, {"notServiceAccounts", src.NotServiceAccounts}, {"notIpBlocks", src.NotIPBlocks},
			{"remoteIpBlocks", src.RemoteIPBlocks}, {"notRemoteIpBlocks", src.NotRemoteIPBlocks}} {
			if len(x.l) > 0 {
				im.rep.add(o, p+"."+x.name, StatusAccess, x.name+" cannot be expressed (allow lists name who may pass, by identity or address): "+altFate(kind))
				bad = x.name
			}
		}
		if len(src.Principals) > 0 {
			a.ids = intersect(a.ids, im.principals(o, p+".principals", src.Principals, kind, &bad))
		}
		if len(src.ServiceAccounts) > 0 {
			a.ids = intersect(a.ids, im.serviceAccounts(o, p+".serviceAccounts", src.ServiceAccounts, kind, &bad))
		}
		if len(src.Namespaces) > 0 {
			a.ids = intersect(a.ids, im.namespaces(o, p+".namespaces", src.Namespaces, kind, &bad))
		}
		if len(src.IPBlocks) > 0 {
			a.cidrs = im.cidrs(o, p+".ipBlocks", src.IPBlocks, kind, &bad)
		}
		a = and(a, cond)
		if bad == "" && a.cidrs != nil && !a.ids.any {
			im.rep.add(o, p, StatusAccess, "an address and an identity together cannot be expressed (an allow list admits either): "+altFate(kind))
			bad = "ipBlocks with identities"
		}
		if bad != "" {
			if kind == denyPolicy {
				return nil, false
			}
			continue
		}
		out = append(out, a)
	}
	return out, true
}

func altFate(kind policyKind) string {
	if kind == allowPolicy {
		return "this source admits no one here (narrower)"
	}
	return "what the rule refuses is not known, so the destinations it names are held back"
}

// and combines a from alternative with the rule's source conditions.
func and(a, b alt) alt {
	out := alt{ids: intersect(a.ids, b.ids), cidrs: a.cidrs}
	switch {
	case a.cidrs == nil:
		out.cidrs = b.cidrs
	case b.cidrs != nil:
		out.cidrs = nil
		for _, x := range a.cidrs {
			for _, y := range b.cidrs {
				switch {
				case cidrContains(x, y):
					out.cidrs = append(out.cidrs, y)
				case cidrContains(y, x):
					out.cidrs = append(out.cidrs, x)
				}
			}
		}
		if out.cidrs == nil {
			out.cidrs = []netip.Prefix{} // nothing in common: admits no address
		}
	}
	return out
}

// sourceConditions reads a rule's when conditions on the source.
func (im *importer) sourceConditions(o *object, r *Rule, path string, kind policyKind) (alt, bool) {
	a := alt{ids: idset{any: true}}
	for i, c := range r.When {
		p := fmt.Sprintf("%s.when[%d]", path, i)
		bad := ""
		switch c.Key {
		case "connection.sni", "destination.port":
			continue // destinations: ruleTargets reads these
		case "source.principal":
			a.ids = intersect(a.ids, im.principals(o, p+".values", c.Values, kind, &bad))
		case "source.namespace":
			a.ids = intersect(a.ids, im.namespaces(o, p+".values", c.Values, kind, &bad))
		case "source.ip":
			a = and(a, alt{ids: idset{any: true}, cidrs: im.cidrs(o, p+".values", c.Values, kind, &bad)})
		default:
			if !strings.HasPrefix(c.Key, "source.") && c.Key != "remote.ip" && !strings.HasPrefix(c.Key, "request.auth") {
				continue // not a source condition: destinationConditions reports it
			}
			bad = c.Key
			im.rep.add(o, p, StatusAccess, "condition "+c.Key+" cannot be expressed: this rule "+narrowing(kind))
		}
		if bad == "" && len(c.NotValues) > 0 {
			bad = "notValues"
			im.rep.add(o, p+".notValues", StatusAccess, "notValues cannot be expressed: this rule "+narrowing(kind))
		}
		if bad != "" {
			if kind == denyPolicy {
				im.holdAll(o, p, "an AuthorizationPolicy DENY condition cannot be expressed")
			}
			return alt{}, false
		}
	}
	return a, true
}

// principals maps Istio principals (<td>/ns/<ns>/sa/<sa>, with a leading
// or trailing "*") to SPIFFE IDs and namespaces of the mesh.
func (im *importer) principals(o *object, path string, l []string, kind policyKind, bad *string) idset {
	td := im.opts.TrustDomain
	var out idset
	for i, p := range l {
		ep := fmt.Sprintf("%s[%d]", path, i)
		fail := func(why string) {
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%q: %s: %s", p, why, elementFate(kind)))
			if kind == denyPolicy {
				*bad = "principal"
			}
		}
		switch {
		case p == "*" || p == td+"/*":
			if mn := im.opts.MeshNamespaces; len(mn) > 0 {
				for _, n := range mn {
					out.namespaces = appendUnique(out.namespaces, n)
				}
				im.rep.add(o, ep, StatusCarried, "any workload of the mesh: namespaces "+strings.Join(mn, ", ")+" (--mesh-namespaces)")
				continue
			}
			fail("any workload of the mesh cannot be expressed without --mesh-namespaces (identities are named one by one, or by namespace)")
		case strings.HasPrefix(p, "spiffe://"):
			im.rep.add(o, ep, StatusNotCarried, fmt.Sprintf("%q: Istio principals have no spiffe:// prefix, so it matched no one in Istio: nothing to carry", p))
		case strings.HasPrefix(p, "*/") && !strings.Contains(p[1:], "*"):
			id := "spiffe://" + td + p[1:]
			if _, err := intent.ParseWorkloadID(id); err != nil {
				fail("not a workload principal")
				continue
			}
			out.principals = appendUnique(out.principals, id)
			im.rep.add(o, ep, StatusCarried, "principal "+id+" (any trust domain: the mesh has one, "+td+")")
		case strings.HasSuffix(p, "/*") || strings.HasSuffix(p, "/sa/*"):
			rest := strings.TrimSuffix(strings.TrimSuffix(p, "/*"), "/sa")
			parts := strings.Split(rest, "/")
			if len(parts) != 3 || parts[1] != "ns" || strings.Contains(rest, "*") {
				fail("this pattern cannot be expressed (only <td>/ns/<namespace>/* , a namespace)")
				continue
			}
			if parts[0] != td {
				fail("trust domain " + parts[0] + " is not the mesh's (" + td + ", --trust-domain)")
				continue
			}
			out.namespaces = appendUnique(out.namespaces, parts[2])
			im.rep.add(o, ep, StatusCarried, "namespace "+parts[2])
		case strings.Contains(p, "*"):
			fail("this pattern cannot be expressed")
		default:
			id := "spiffe://" + p
			w, err := intent.ParseWorkloadID(id)
			switch {
			case err != nil:
				fail("not a workload principal (<trust-domain>/ns/<namespace>/sa/<service-account>)")
			case w.TrustDomain != td:
				fail("trust domain " + w.TrustDomain + " is not the mesh's (" + td + ", --trust-domain)")
			default:
				out.principals = appendUnique(out.principals, id)
				im.rep.add(o, ep, StatusCarried, "principal "+id)
			}
		}
	}
	return out
}

func elementFate(kind policyKind) string {
	if kind == allowPolicy {
		return "not admitted here (narrower)"
	}
	return "what it refuses is not known, so the destinations the rule names are held back"
}

func (im *importer) serviceAccounts(o *object, path string, l []string, kind policyKind, bad *string) idset {
	var out idset
	for i, sa := range l {
		ep := fmt.Sprintf("%s[%d]", path, i)
		ns, name, ok := strings.Cut(sa, "/")
		id := "spiffe://" + im.opts.TrustDomain + "/ns/" + ns + "/sa/" + name
		if _, err := intent.ParseWorkloadID(id); !ok || err != nil {
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%q is not <namespace>/<service-account>: %s", sa, elementFate(kind)))
			if kind == denyPolicy {
				*bad = "serviceAccount"
			}
			continue
		}
		out.principals = appendUnique(out.principals, id)
		im.rep.add(o, ep, StatusCarried, "principal "+id)
	}
	return out
}

func (im *importer) namespaces(o *object, path string, l []string, kind policyKind, bad *string) idset {
	var out idset
	for i, n := range l {
		ep := fmt.Sprintf("%s[%d]", path, i)
		if mn := im.opts.MeshNamespaces; n == "*" && len(mn) > 0 {
			for _, m := range mn {
				out.namespaces = appendUnique(out.namespaces, m)
			}
			im.rep.add(o, ep, StatusCarried, "any namespace of the mesh: "+strings.Join(mn, ", ")+" (--mesh-namespaces)")
			continue
		}
		if strings.Contains(n, "*") || !validLabel(n) {
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%q cannot be expressed (namespaces are named one by one): %s", n, elementFate(kind)))
			if kind == denyPolicy {
				*bad = "namespace"
			}
			continue
		}
		out.namespaces = appendUnique(out.namespaces, n)
		im.rep.add(o, ep, StatusCarried, "namespace "+n)
	}
	return out
}

func (im *importer) cidrs(o *object, path string, l []string, kind policyKind, bad *string) []netip.Prefix {
	out := []netip.Prefix{}
	for i, c := range l {
		ep := fmt.Sprintf("%s[%d]", path, i)
		pfx, err := intent.ParseCIDR(c)
		if err != nil {
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%q is not an address or CIDR: %s", c, elementFate(kind)))
			if kind == denyPolicy {
				*bad = "ipBlock"
			}
			continue
		}
		out = append(out, pfx)
		im.rep.add(o, ep, StatusCarried, "cidr "+pfx.String()+" (the connection's peer address at the gateway)")
	}
	return out
}

func validLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// deny carries a DENY policy: refused sources are taken out of allow
// lists where that is exact; elsewhere the destination is held back.
func (im *importer) deny(o *object, ap *AuthorizationPolicy) {
	if len(ap.Rules) == 0 {
		im.rep.add(o, "spec", StatusCarried, "a DENY policy without rules refuses nothing")
	}
	for i := range ap.Rules {
		path := fmt.Sprintf("spec.rules[%d]", i)
		targets, requests, _ := im.ruleTargetsDropped(o, &ap.Rules[i], path, denyPolicy)
		alts, ok := im.ruleAlternatives(o, &ap.Rules[i], path, denyPolicy)
		if !ok {
			for _, s := range targets {
				s.hold("an AuthorizationPolicy DENY rule cannot be expressed")
			}
			im.rep.add(o, path, StatusAccess, "what it refuses cannot be expressed: the destinations it names are held back", targets...)
			continue
		}
		var what []string
		for _, a := range alts {
			what = append(what, altText(a))
		}
		by := map[string][]*slot{}
		var lines []string
		for _, s := range targets {
			denied := refusedMethods(requests[s])
			for _, a := range alts {
				im.subtract(o, path, s, a, denied)
			}
			line := "refuses " + strings.Join(what, "; ")
			if denied != nil {
				line += " the methods " + strings.Join(denied, ", ")
			}
			if by[line] == nil {
				lines = append(lines, line)
			}
			by[line] = append(by[line], s)
		}
		for _, l := range lines {
			im.rep.add(o, path, StatusCarried, l, by[l]...)
		}
	}
}

func altText(a alt) string {
	if a.anySource() {
		return "every source"
	}
	var parts []string
	for _, c := range a.cidrs {
		parts = append(parts, "cidr "+c.String())
	}
	for _, p := range a.ids.principals {
		parts = append(parts, "principal "+p)
	}
	for _, n := range a.ids.namespaces {
		parts = append(parts, "namespace "+n)
	}
	return strings.Join(parts, ", ")
}

// subtract takes what a DENY alternative refuses (every request, or the
// methods denied: non-nil) out of a slot's allow list, or holds the slot
// back when that cannot be said exactly.
func (im *importer) subtract(o *object, path string, s *slot, a alt, denied []string) {
	inexact := func(why string) {
		s.hold("an AuthorizationPolicy DENY rule cannot be expressed on its allow list")
		im.rep.add(o, path, StatusAccess, why+": not expressible, held back", s)
	}
	if len(s.held) > 0 {
		return // left out already: refused
	}
	if a.anySource() && denied == nil {
		s.hold("an AuthorizationPolicy DENY rule refuses every source")
		return
	}
	if s.allow == nil {
		if !a.anySource() {
			inexact("every source but " + altText(a))
			return
		}
		l := []intent.Source{{}} // every source, for what remains
		s.allow = &l
	}
	var keep []intent.Source
	narrowed := false
	for _, src := range *s.allow {
		covered := a.anySource()
		switch {
		case covered:
		case everySource(src):
			inexact("every source but " + altText(a) + " (" + opsOf(src).String() + ")")
			return
		case src.CIDR != "" && a.cidrs != nil:
			pfx, _ := intent.ParseCIDR(src.CIDR)
			overlaps := false
			for _, d := range a.cidrs {
				covered = covered || cidrContains(d, pfx)
				overlaps = overlaps || d.Overlaps(pfx)
			}
			if !covered && overlaps {
				inexact(src.CIDR + " except " + altText(a))
				return
			}
		case src.CIDR != "" || a.cidrs != nil:
			inexact("refusing by address what is admitted by identity, or by identity what is admitted by address")
			return
		case src.Principal != "":
			covered = contains(a.ids.principals, src.Principal) || contains(a.ids.namespaces, nsOf(src.Principal))
		case src.Namespace != "":
			covered = contains(a.ids.namespaces, src.Namespace)
			for _, p := range a.ids.principals {
				if !covered && nsOf(p) == src.Namespace {
					inexact("namespace " + src.Namespace + " except " + p)
					return
				}
			}
		}
		if !covered {
			keep = append(keep, src)
			continue
		}
		if denied == nil {
			continue
		}
		narrowed = narrowed || src.Methods == nil
		if m := withoutMethods(src.Methods, denied); len(m) > 0 {
			src.Methods = m
			keep = append(keep, src)
		}
	}
	if narrowed {
		im.rep.add(o, path, StatusAccess, "refusing methods leaves the methods egress-xds names: others, which Istio let through, are refused here (narrower)", s)
	}
	if len(keep) == 0 {
		s.hold("the AuthorizationPolicy DENY rules refuse every source its ALLOW rules admit")
		return
	}
	s.allow = allowOf(keep)
}

// custom holds back what an external authorizer decided on.
func (im *importer) custom(o *object, ap *AuthorizationPolicy) {
	for i := range ap.Rules {
		path := fmt.Sprintf("spec.rules[%d]", i)
		targets := im.ruleTargets(o, &ap.Rules[i], path, denyPolicy)
		for _, s := range targets {
			s.hold("an external authorizer (AuthorizationPolicy CUSTOM) decided on it")
		}
		im.rep.add(o, path, StatusAccess, "an external authorizer decided on these requests: not expressible, held back", targets...)
	}
	if ap.Provider.Set() {
		im.rep.add(o, "spec.provider", StatusAccess, "the external authorizer: not carried")
	}
}

// exportTo narrows what a ServiceEntry's exportTo hides from other
// namespaces: their workloads never saw the host.
func (im *importer) exportTo() {
	for _, s := range im.slotList {
		o := s.cluster.se
		if o == nil || o.broken {
			continue
		}
		se := o.spec.(*ServiceEntry)
		if len(se.ExportTo) == 0 {
			continue
		}
		if len(s.held) > 0 {
			im.rep.add(o, "spec.exportTo", StatusCarried, "which namespaces saw it: moot, the destination is held back (see why)", s)
			continue
		}
		var ns []string
		all, none := false, true
		for _, e := range se.ExportTo {
			switch e {
			case "*":
				all = true
			case "~":
			case ".":
				ns, none = appendUnique(ns, o.meta.Namespace), false
			default:
				ns, none = appendUnique(ns, e), false
			}
		}
		sort.Strings(ns)
		switch {
		case all:
			im.rep.add(o, "spec.exportTo", StatusDefault, "every namespace sees it", s)
		case none:
			s.hold("its ServiceEntry is exported to no namespace")
			im.rep.add(o, "spec.exportTo", StatusCarried, "exported to no namespace: no workload reached it, left out", s)
		case s.allow == nil:
			l := make([]intent.Source, 0, len(ns))
			for _, n := range ns {
				l = append(l, intent.Source{Namespace: n})
			}
			s.allow = &l
			im.rep.add(o, "spec.exportTo", StatusCarried, "only workloads of "+strings.Join(ns, ", ")+" saw it: allow namespaces "+strings.Join(ns, ", ")+" (workloads without a sidecar, which prove no namespace, are refused here: narrower)", s)
		default:
			var keep []intent.Source
			dropped := false
			for _, src := range *s.allow {
				switch {
				case src.Namespace != "" && contains(ns, src.Namespace), src.Principal != "" && contains(ns, nsOf(src.Principal)):
					keep = append(keep, src)
				case everySource(src):
					keep = append(keep, inNamespaces(src, ns)...)
					im.rep.add(o, "spec.exportTo", StatusCarried, sourceText(src)+": only workloads of "+strings.Join(ns, ", ")+" saw it: allow namespaces "+strings.Join(ns, ", ")+" with the same rules", s)
				default:
					dropped = true
					st := StatusCarried
					why := "not exported to its namespace, so its workloads never saw it: not admitted"
					if src.CIDR != "" {
						st, why = StatusAccess, "an address says nothing of the namespace, and only "+strings.Join(ns, ", ")+" saw it: not admitted (narrower)"
					}
					im.rep.add(o, "spec.exportTo", st, sourceText(src)+": "+why, s)
				}
			}
			if !dropped {
				im.rep.add(o, "spec.exportTo", StatusCarried, "exported to "+strings.Join(ns, ", ")+": the allow list admits workloads of these namespaces only", s)
			}
			if len(keep) == 0 {
				s.hold("no source its AuthorizationPolicies admit is in a namespace its ServiceEntry is exported to")
				continue
			}
			s.allow = allowOf(keep)
		}
	}
}

// meshOnly carries what a Gateway server of ISTIO_MUTUAL required: a
// workload of the mesh, with a sidecar's certificate. A destination it
// left open to every such workload admits the namespaces of
// --mesh-namespaces; without them it is held back: open, it would admit
// workloads without a sidecar too.
func (im *importer) meshOnly() {
	for _, s := range im.slotList {
		if !s.mesh || len(s.held) > 0 {
			continue
		}
		var sv *server
		for _, l := range im.servers {
			for _, x := range l {
				for _, y := range x.slots {
					if y == s && x.mode == "ISTIO_MUTUAL" {
						sv = x
					}
				}
			}
		}
		if sv == nil {
			continue
		}
		mn := im.opts.MeshNamespaces
		switch {
		case s.allow != nil:
			var keep []intent.Source
			for _, src := range *s.allow {
				switch {
				case everySource(src) && len(mn) > 0:
					keep = append(keep, inNamespaces(src, mn)...)
					im.rep.add(sv.gw, sv.path+".tls.mode", StatusCarried, "ISTIO_MUTUAL let any workload of the mesh through: "+sourceText(src)+" becomes namespaces "+strings.Join(mn, ", ")+" (--mesh-namespaces) with the same rules", s)
				case everySource(src):
					im.rep.add(sv.gw, sv.path+".tls.mode", StatusAccess, sourceText(src)+": only workloads with a sidecar passed this server (ISTIO_MUTUAL), which needs --mesh-namespaces to be said: not admitted (narrower)", s)
				case src.CIDR == "":
					keep = append(keep, src)
				default:
					im.rep.add(sv.gw, sv.path, StatusAccess, sourceText(src)+": only workloads with a sidecar passed this server (ISTIO_MUTUAL), which an address does not prove: not admitted (narrower)", s)
				}
			}
			if len(keep) == 0 {
				s.hold("its Gateway server (ISTIO_MUTUAL) let only mesh workloads through, and its allow list names none")
				continue
			}
			s.allow = allowOf(keep)
		case len(mn) > 0:
			l := make([]intent.Source, 0, len(mn))
			for _, n := range mn {
				l = append(l, intent.Source{Namespace: n})
			}
			s.allow = &l
			im.rep.add(sv.gw, sv.path+".tls.mode", StatusCarried, "ISTIO_MUTUAL let any workload of the mesh through: allow namespaces "+strings.Join(mn, ", ")+" (--mesh-namespaces), over the mesh port", s)
		default:
			s.hold("its Gateway server (ISTIO_MUTUAL) let only workloads of the mesh through, which needs --mesh-namespaces to be said")
			im.rep.add(sv.gw, sv.path+".tls.mode", StatusAccess, "ISTIO_MUTUAL let only workloads with a sidecar through; open, the destination would admit every source: held back. Name the namespaces of the mesh's workloads with --mesh-namespaces, or carry an AuthorizationPolicy naming who may pass", s)
		}
	}
}

// inNamespaces is an every-source grant as the same grant for each of
// the namespaces.
func inNamespaces(src intent.Source, ns []string) []intent.Source {
	var out []intent.Source
	for _, n := range ns {
		out = append(out, opsOf(src).on(intent.Source{Namespace: n}))
	}
	return out
}
