package istio

import (
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// allowOf joins grants into an allow list that admits exactly what they
// did, no more and no less: every source and request of a small universe
// is checked against random grants (a fixed seed), and against the list
// written.
func TestAllowOfAdmitsWhatGrantsDid(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for round := range 2000 {
		grants := randomGrants(r)
		allow := allowOf(grants)
		for _, src := range testSources[1:] {
			for _, m := range testMethods {
				for _, path := range testPaths {
					want := granted(grants, src, m, path)
					got := allow == nil || granted(*allow, src, m, path)
					if got != want {
						t.Fatalf("round %d: %s %s %s: allow list admits %v, the grants %v\ngrants %+v\nallow %+v", round, sourceText(src), m, path, got, want, grants, allow)
					}
				}
			}
		}
	}
}

// A DENY rule's methods are taken out of the entries of the sources it
// refuses, exactly for the methods egress-xds names (others an entry of
// every method admitted are refused: narrower), and nothing else changes.
func TestSubtractMethods(t *testing.T) {
	alts := []alt{{ids: idset{any: true}}, {ids: idset{namespaces: []string{"a"}}}, {ids: idset{principals: []string{"spiffe://cluster.local/ns/a/sa/x"}}}, {ids: idset{namespaces: []string{"b"}}}}
	r := rand.New(rand.NewSource(2))
	for round := range 2000 {
		grants := randomGrants(r)
		allow := allowOf(grants)
		a := alts[r.Intn(len(alts))]
		denied := []string{}
		for _, m := range intent.Methods {
			if r.Intn(3) == 0 {
				denied = append(denied, m)
			}
		}
		im := &importer{}
		s := &slot{allow: allow}
		im.subtract(nil, "spec.rules[0]", s, a, denied)
		for _, src := range testSources[1:] {
			refused := a.ids.any || contains(a.ids.namespaces, src.Namespace) || contains(a.ids.principals, src.Principal) || src.Principal != "" && contains(a.ids.namespaces, nsOf(src.Principal))
			for _, m := range testMethods {
				for _, path := range testPaths {
					before := allow == nil || granted(*allow, src, m, path)
					want := before && !(refused && slices.Contains(denied, m))
					got := len(s.held) == 0 && (s.allow == nil || granted(*s.allow, src, m, path))
					switch {
					case got && !want:
						t.Fatalf("round %d: %s %s %s admitted, refused by the DENY (%s, methods %v)\nbefore %+v\nafter %+v", round, sourceText(src), m, path, altText(a), denied, allow, s.allow)
					case !got && want && len(s.held) == 0 && slices.Contains(intent.Methods, m):
						t.Fatalf("round %d: %s %s %s refused, which the DENY (%s, methods %v) let through\nbefore %+v\nafter %+v", round, sourceText(src), m, path, altText(a), denied, allow, s.allow)
					}
				}
			}
		}
	}
}

var (
	testSources = []intent.Source{{}, {Namespace: "a"}, {Namespace: "b"}, {Principal: "spiffe://cluster.local/ns/a/sa/x"}}
	testMethods = append(slices.Clone(intent.Methods), "PROPFIND")
	testRules   = []intent.PathRule{{Exact: "/a"}, {Prefix: "/a/"}, {Exact: "/b"}, {Prefix: "/c/"}, {Prefix: "/"}}
	testPaths   = []string{"/a", "/a/x", "/b", "/b/x", "/c/d", "/e"}
)

// randomGrants is one to six grants of the test universe.
func randomGrants(r *rand.Rand) []intent.Source {
	pick := func(r *rand.Rand) ops {
		var o ops
		if r.Intn(3) > 0 {
			o.methods = []string{}
			for _, m := range intent.Methods {
				if r.Intn(3) == 0 {
					o.methods = append(o.methods, m)
				}
			}
			if len(o.methods) == 0 {
				o.methods = []string{"GET"}
			}
		}
		if r.Intn(3) > 0 {
			o.paths = []intent.PathRule{}
			for _, p := range testRules {
				if r.Intn(3) == 0 {
					o.paths = append(o.paths, p)
				}
			}
			if len(o.paths) == 0 {
				o.paths = []intent.PathRule{{Exact: "/b"}}
			}
		}
		return o
	}
	var grants []intent.Source
	for range 1 + r.Intn(6) {
		grants = append(grants, pick(r).on(testSources[r.Intn(len(testSources))]))
	}
	return grants
}

// granted reports whether entries admit a source's request: its own, its
// namespace's, every source's, as the gateway reads them (an entry's
// rules, else the destination's: none here).
func granted(entries []intent.Source, src intent.Source, m, path string) bool {
	admits := func(o ops) bool {
		if o.methods != nil && !slices.Contains(o.methods, m) {
			return false
		}
		return o.paths == nil || slices.ContainsFunc(o.paths, func(p intent.PathRule) bool {
			return p.Exact == path || p.Prefix != "" && strings.HasPrefix(path, p.Prefix)
		})
	}
	for _, g := range entries {
		same := g.Namespace == src.Namespace && g.Principal == src.Principal
		inNamespace := g.Namespace != "" && g.Principal == "" && nsOf(src.Principal) == g.Namespace
		if (everySource(g) || same || inNamespace) && admits(opsOf(g)) {
			return true
		}
	}
	return false
}
