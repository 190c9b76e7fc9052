package istio

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Grants are what the ALLOW rules admit on a slot, before they are an
// allow list: entries of a source (the zero source standing for every
// source) and the requests it may make (ops). allowOf joins them into the
// allow list, DENY rules take methods out of them, and everySourceEntries
// writes what every source may ask in terms an intent has.

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
