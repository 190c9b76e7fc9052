package istio

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// An ALLOW rule's to.operation methods and paths become the methods and
// paths of the allow entries it makes, on HTTP ports. Istio's semantics:
// rules are OR'ed, within a rule from, to and when are AND'ed, the to
// entries OR'ed; within one operation every field must match. So a rule
// admits each of its sources for each operation that names the
// destination, and an allow entry carries one operation's methods and
// paths (an entry's own replace the destination's, and entries are
// OR'ed, intent/httprules.go). What egress-xds cannot say (notPaths,
// suffix and template paths, methods it does not name) admits less,
// never more.

// ops is what one operation admits of an HTTP request: methods and
// paths, nil for any.
type ops struct {
	methods []string
	paths   []intent.PathRule
}

func (o ops) any() bool { return o.methods == nil && o.paths == nil }

func (o ops) String() string {
	var parts []string
	if o.methods != nil {
		parts = append(parts, "methods "+strings.Join(o.methods, ", "))
	}
	if o.paths != nil {
		var ps []string
		for _, p := range o.paths {
			ps = append(ps, pathText(p))
		}
		parts = append(parts, "paths "+strings.Join(ps, ", "))
	}
	return strings.Join(parts, " on ")
}

func pathText(p intent.PathRule) string {
	if p.Prefix != "" {
		return p.Prefix + "*"
	}
	return p.Exact
}

// everySource reports whether an entry stands for every source (grants
// only: the intent has no such entry).
func everySource(s intent.Source) bool { return s.CIDR == "" && s.Principal == "" && s.Namespace == "" }

func opsOf(s intent.Source) ops { return ops{methods: s.Methods, paths: s.Paths} }

func (o ops) on(s intent.Source) intent.Source {
	s.Methods, s.Paths = o.methods, o.paths
	return s
}

// covers reports whether every request b admits, a admits.
func (a ops) covers(b ops) bool {
	if a.methods != nil && (b.methods == nil || !subset(b.methods, a.methods)) {
		return false
	}
	if a.paths != nil && (b.paths == nil || !subset(b.paths, a.paths)) {
		return false
	}
	return true
}

func subset[T comparable](a, b []T) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// union is a's elements, then b's not in a.
func union[T comparable](a, b []T) []T {
	out := append([]T(nil), a...)
	seen := make(map[T]bool, len(a)+len(b))
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// mostCompared bounds the pairwise work on one source's operations (which
// covers which): beyond it they are written as they are, exact still.
const mostCompared = 64

// mergeAll joins what can be joined exactly (operations with the same
// methods, then with the same paths, until nothing changes) and leaves
// out what another operation covers; the rest stay apart.
func mergeAll(l []ops) []ops {
	var out []ops
	seen := map[string]bool{}
	for _, o := range l {
		o = sortedOps(o)
		if o.any() {
			return []ops{o}
		}
		if k := o.String(); !seen[k] {
			seen[k] = true
			out = append(out, o)
		}
	}
	for n := -1; n != len(out); {
		n = len(out)
		out = joinBy(out, func(o ops) string { return listKey(o.methods) }, func(a, b ops) ops {
			return ops{methods: a.methods, paths: anyOr(a.paths, b.paths)}
		})
		out = joinBy(out, func(o ops) string { return listKey(o.paths) }, func(a, b ops) ops {
			return ops{methods: anyOr(a.methods, b.methods), paths: a.paths}
		})
	}
	if len(out) <= mostCompared {
		var keep []ops
		for i, o := range out {
			covered := false
			for j, x := range out {
				covered = covered || j != i && x.covers(o) && (!o.covers(x) || j < i)
			}
			if !covered {
				keep = append(keep, o)
			}
		}
		out = keep
	}
	return out
}

// anyOr is the union of two lists where nil is every value.
func anyOr[T comparable](a, b []T) []T {
	if a == nil || b == nil {
		return nil
	}
	return union(a, b)
}

// joinBy joins the operations of the same key, in first-seen order.
func joinBy(l []ops, key func(ops) string, join func(a, b ops) ops) []ops {
	at := map[string]int{}
	var out []ops
	for _, o := range l {
		k := key(o)
		if i, ok := at[k]; ok {
			out[i] = join(out[i], o)
			continue
		}
		at[k] = len(out)
		out = append(out, o)
	}
	for i := range out {
		out[i] = sortedOps(out[i])
	}
	return out
}

// listKey names a list as a set: nil (every value) apart from any list.
func listKey[T any](l []T) string {
	if l == nil {
		return "*"
	}
	parts := make([]string, len(l))
	for i, x := range l {
		parts[i] = fmt.Sprint(x)
	}
	sort.Strings(parts)
	return strings.Join(parts, "\x00")
}

func sortedOps(o ops) ops {
	if o.methods != nil {
		o.methods = append([]string(nil), o.methods...)
		sort.Strings(o.methods)
	}
	if o.paths != nil {
		o.paths = append([]intent.PathRule(nil), o.paths...)
		sort.Slice(o.paths, func(i, j int) bool { return pathText(o.paths[i]) < pathText(o.paths[j]) })
	}
	return o
}

// allowOf is the allow list of what the ALLOW rules granted, each entry
// a source (the zero source: every source) and the requests it may make:
// nil when every source may make every request. An entry whose requests
// another entry of the same source (or of every source) admits is left
// out; the operations of one source are joined where that is exact.
func allowOf(grants []intent.Source) *[]intent.Source {
	type group struct {
		src intent.Source
		ops []ops
	}
	var groups []*group
	bySource := map[string]*group{}
	for _, g := range grants {
		src := ops{}.on(g)
		k := sourceText(src)
		into := bySource[k]
		if into == nil {
			into = &group{src: src}
			bySource[k] = into
			groups = append(groups, into)
		}
		into.ops = append(into.ops, opsOf(g))
	}
	var every []ops
	for _, g := range groups {
		g.ops = mergeAll(g.ops)
		if everySource(g.src) {
			every = g.ops
		}
	}
	var out []intent.Source
	for _, g := range groups {
		for _, o := range g.ops {
			if everySource(g.src) {
				if o.any() {
					return nil
				}
			} else if len(every) <= mostCompared && slices.ContainsFunc(every, func(e ops) bool { return e.covers(o) }) {
				continue
			}
			out = append(out, o.on(g.src))
		}
	}
	out = sortSources(out)
	return &out
}

// readOperation reads an operation's methods and paths as egress-xds can
// say them, reporting each; ok is false when it admits no request here,
// narrowed when it admits less than in Istio.
func (im *importer) readOperation(o *object, op *Operation, p string) (out ops, ok, narrowed bool) {
	methods, mok, mn := im.readMethods(o, op, p)
	paths, pok, pn := im.readPaths(o, op, p)
	return ops{methods: methods, paths: paths}, mok && pok, mn || pn
}

func (im *importer) readMethods(o *object, op *Operation, p string) (out []string, ok, narrowed bool) {
	if len(op.Methods) == 0 && len(op.NotMethods) == 0 {
		return nil, true, false
	}
	all := len(op.Methods) == 0
	for i, m := range op.Methods {
		ep := fmt.Sprintf("%s.methods[%d]", p, i)
		switch known := matchingMethods(m); {
		case m == "*":
			all = true
			im.rep.add(o, ep, StatusCarried, "any method")
		case strings.Contains(m, "*"):
			out = union(out, known)
			what := "none of the methods egress-xds names matches: it admits no method here (narrower)"
			if len(known) > 0 {
				what = "methods " + strings.Join(known, ", ") + " (the methods egress-xds names that match; others are refused here: narrower)"
			}
			im.rep.add(o, ep, StatusAccess, clip(m)+": "+what)
			narrowed = true
		case len(known) == 1:
			out = union(out, known)
			im.rep.add(o, ep, StatusCarried, "method "+m)
		case strings.ToUpper(m) != m:
			im.rep.add(o, ep, StatusNotCarried, clip(m)+" matched no request in Istio (it refuses methods not in capitals with 400): nothing to carry")
		default:
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%s is not among the methods egress-xds names (%s): not admitted here (narrower)", clip(m), strings.Join(intent.Methods, ", ")))
			narrowed = true
		}
	}
	if all {
		out = nil
	}
	if len(op.NotMethods) > 0 {
		base := out
		if base == nil {
			base = intent.Methods
		}
		var keep []string
		for _, m := range base {
			if !slices.ContainsFunc(op.NotMethods, func(n string) bool { return methodMatches(n, m) }) {
				keep = append(keep, m)
			}
		}
		st, why := StatusCarried, ""
		if out == nil {
			st, why = StatusAccess, "; methods egress-xds does not name are refused here, which Istio admitted (narrower)"
			narrowed = true
		}
		if len(keep) == 0 {
			im.rep.add(o, p+".notMethods", StatusCarried, "refuses every method the operation admits: it admits no request")
			return nil, false, narrowed
		}
		im.rep.add(o, p+".notMethods", st, "the methods left: "+strings.Join(keep, ", ")+why)
		out = keep
	}
	if out == nil && !all {
		return nil, false, narrowed
	}
	return out, true, narrowed
}

// matchingMethods is the methods egress-xds names that an Istio method
// pattern (exact, prefix "P*", suffix "*T") matches.
func matchingMethods(pat string) []string {
	var out []string
	for _, m := range intent.Methods {
		if methodMatches(pat, m) {
			out = append(out, m)
		}
	}
	return out
}

func methodMatches(pat, m string) bool {
	switch {
	case pat == "*":
		return true
	case strings.HasPrefix(pat, "*"):
		return strings.HasSuffix(m, pat[1:])
	case strings.HasSuffix(pat, "*"):
		return strings.HasPrefix(m, strings.TrimSuffix(pat, "*"))
	}
	return pat == m
}

func (im *importer) readPaths(o *object, op *Operation, p string) (out []intent.PathRule, ok, narrowed bool) {
	if len(op.NotPaths) > 0 {
		im.rep.add(o, p+".notPaths", StatusAccess, "notPaths cannot be expressed (paths name what is admitted): this operation admits no request here (narrower)")
		return nil, false, true
	}
	if len(op.Paths) == 0 {
		return nil, true, false
	}
	anyPath := false
	for i, v := range op.Paths {
		ep := fmt.Sprintf("%s.paths[%d]", p, i)
		var pr intent.PathRule
		switch {
		case v == "*":
			im.rep.add(o, ep, StatusCarried, "any path")
			anyPath = true
			continue
		case strings.Contains(v, "{*}") || strings.Contains(v, "{**}"):
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%s: path templates cannot be expressed (paths are exact or prefixes): not admitted here (narrower)", clip(v)))
			narrowed = true
			continue
		case strings.HasPrefix(v, "*"):
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%s: suffix matches cannot be expressed (paths are exact or prefixes): not admitted here (narrower)", clip(v)))
			narrowed = true
			continue
		case strings.HasSuffix(v, "*"):
			pr.Prefix = strings.TrimSuffix(v, "*")
		default:
			pr.Exact = v
		}
		if why := pathRuleProblem(pr); why != "" {
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%s: egress-xds refuses it (%s): not admitted here (narrower)", clip(v), why))
			narrowed = true
			continue
		}
		out = append(out, pr)
		what := "path " + pr.Exact
		if pr.Prefix != "" {
			what = "paths under prefix " + pr.Prefix
		}
		im.rep.add(o, ep, StatusCarried, what+" (matched once normalized, without the query, as Istio does)")
	}
	if anyPath {
		return nil, true, narrowed
	}
	return out, len(out) > 0, narrowed
}

// pathRuleProblem says why the server would refuse a path rule, as it
// says it; empty when it takes it.
func pathRuleProblem(pr intent.PathRule) string {
	d := intent.Destination{Name: "p", Host: "p.example.com", Ports: []intent.Port{{Number: 80, Protocol: intent.ProtocolHTTP}}, Paths: []intent.PathRule{pr}}
	b, err := yaml.Marshal(intent.Document{Destinations: []intent.Destination{d}})
	if err != nil {
		return err.Error()
	}
	_, diags := intent.ParseDocument(intent.Origin{}, b)
	for _, dg := range diags {
		if dg.Severity != intent.SeverityWarning {
			return dg.Message
		}
	}
	return ""
}

// httpFields names the HTTP-only fields of a rule's operations: Istio
// skips an ALLOW rule naming any of them for TLS and TCP traffic, every
// operation of it.
func httpFields(r *Rule) []string {
	var out []string
	for _, to := range r.To {
		if op := to.Operation; op != nil {
			for _, n := range setNames([]field{{"methods", len(op.Methods) > 0}, {"notMethods", len(op.NotMethods) > 0}, {"paths", len(op.Paths) > 0}, {"notPaths", len(op.NotPaths) > 0}}) {
				out = appendUnique(out, n)
			}
		}
	}
	return out
}

// everySourceEntries writes the grants of every source that some
// requests only have: alone, they are the destination's own methods and
// paths; beside other entries (an allow entry names a source), entries
// of cidr 0.0.0.0/0 and ::/0, every address, carry them.
func (im *importer) everySourceEntries() {
	for _, s := range im.slotList {
		if s.allow == nil || len(s.held) > 0 {
			continue
		}
		l := *s.allow
		if len(l) == 1 && everySource(l[0]) {
			s.d.Methods, s.d.Paths = l[0].Methods, l[0].Paths
			s.allow = nil
			continue
		}
		var out []intent.Source
		for _, src := range l {
			if !everySource(src) {
				out = append(out, src)
				continue
			}
			for _, c := range []string{"0.0.0.0/0", "::/0"} {
				x := src
				x.CIDR = c
				out = append(out, x)
			}
			im.rep.add(s.origin, s.path, StatusNote, sourceText(src)+", beside other allow entries: written as entries of cidr 0.0.0.0/0 and ::/0 (every address) with these rules", s)
		}
		s.allow = &out
	}
}

// deniedMethods is what a DENY operation's methods refuse, as egress-xds
// names methods (patterns expanded; an entry keeps an explicit list, so
// methods it does not name are refused with them): nil for "*", every
// method; some is false when none is in capitals (Istio matched nothing).
func deniedMethods(l []string) (out []string, some bool) {
	out = []string{}
	for _, m := range l {
		if m == "*" {
			return nil, true
		}
		if strings.ToUpper(m) != m {
			continue
		}
		some = true
		out = union(out, matchingMethods(m))
	}
	return out, some
}

// refusedMethods is what a DENY rule's operations refuse on a slot: nil
// when one of them refuses every request, else the methods of all.
func refusedMethods(l []ops) []string {
	out := []string{}
	for _, o := range l {
		if o.methods == nil {
			return nil
		}
		out = union(out, o.methods)
	}
	sort.Strings(out)
	return out
}

// withoutMethods is an entry's methods (nil: every method egress-xds
// names) but the denied ones.
func withoutMethods(have, denied []string) []string {
	if have == nil {
		have = intent.Methods
	}
	var out []string
	for _, m := range have {
		if !slices.Contains(denied, m) {
			out = append(out, m)
		}
	}
	return out
}
