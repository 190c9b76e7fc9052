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
	sources := []intent.Source{{}, {Namespace: "a"}, {Namespace: "b"}, {Principal: "spiffe://cluster.local/ns/a/sa/x"}}
	methods := append(slices.Clone(intent.Methods), "PROPFIND")
	rules := []intent.PathRule{{Exact: "/a"}, {Prefix: "/a/"}, {Exact: "/b"}, {Prefix: "/c/"}, {Prefix: "/"}}
	paths := []string{"/a", "/a/x", "/b", "/b/x", "/c/d", "/e"}
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
			for _, p := range rules {
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
	admits := func(o ops, m, path string) bool {
		if o.methods != nil && !slices.Contains(o.methods, m) {
			return false
		}
		return o.paths == nil || slices.ContainsFunc(o.paths, func(p intent.PathRule) bool {
			return p.Exact == path || p.Prefix != "" && strings.HasPrefix(path, p.Prefix)
		})
	}
	// granted: what entries admit a source (its own, its namespace's,
	// every source's), for the grants and for the allow list alike, as
	// the gateway reads it (an entry's rules, else the destination's:
	// none here).
	granted := func(grants []intent.Source, src intent.Source, m, path string) bool {
		for _, g := range grants {
			same := g.Namespace == src.Namespace && g.Principal == src.Principal
			inNamespace := g.Namespace != "" && g.Principal == "" && nsOf(src.Principal) == g.Namespace
			if (everySource(g) || same || inNamespace) && admits(opsOf(g), m, path) {
				return true
			}
		}
		return false
	}
	r := rand.New(rand.NewSource(1))
	for round := range 2000 {
		var grants []intent.Source
		for range 1 + r.Intn(6) {
			grants = append(grants, pick(r).on(sources[r.Intn(len(sources))]))
		}
		allow := allowOf(grants)
		for _, src := range sources[1:] {
			for _, m := range methods {
				for _, path := range paths {
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
