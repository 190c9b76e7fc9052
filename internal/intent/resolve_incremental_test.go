package intent

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// resolveWorld is a set of ConfigMaps as a Store sees them over edits:
// each one's current version (nil: broken) and the version served.
type resolveWorld struct {
	t    *testing.T
	rng  *rand.Rand
	cms  map[string]*worldCM // by namespace/name
	opts ResolveOptions
	log  []string
}

type worldCM struct {
	ns, name        string
	created         time.Time
	current, served *Intent
}

// A small world, so that conflicts are frequent: few hosts and ports,
// every protocol family on each port, two gateway groups, names that sort
// differently by namespace and by namespace/name ("a/x" > "a-x/y"),
// creation times that tie.
var (
	worldNamespaces = []string{"a", "a-x", "b", "egress-xds"}
	worldNames      = []string{"x", "y", "z"}
	worldHosts      = []string{"a.example.com", "b.example.com", "c.example.com", "*.example.org"}
	worldPorts      = []uint32{443, 8443, 80, 5432}
	worldProtocols  = []Protocol{ProtocolTLS, ProtocolHTTPS, ProtocolHTTP, ProtocolTCP}
	worldGateways   = []string{"", "gateways: [one]\n", "gateways: [two]\n", "gateways: [one, two]\n"}
	worldCreated    = []time.Time{{}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}
)

// version parses a random version of a ConfigMap; nil when it is
// invalid (a broken edit), which some are.
func (w *resolveWorld) version(c *worldCM) *Intent {
	if c.ns == "egress-xds" && w.rng.IntN(3) == 0 {
		groups := []string{"one", "two"}[:1+w.rng.IntN(2)]
		var b strings.Builder
		b.WriteString("groups:\n")
		for _, g := range groups {
			fmt.Fprintf(&b, "  - {name: %s, mode: %s}\n", g, []string{"audit", "enforce"}[w.rng.IntN(2)])
		}
		in, _ := ParseSettingsConfigMap(Origin{Namespace: c.ns, Name: c.name}, c.created, map[string]string{"settings.yaml": b.String()}, nil)
		return in
	}
	data := map[string]string{}
	for k := 0; k < 1+w.rng.IntN(2); k++ {
		var b strings.Builder
		b.WriteString(worldGateways[w.rng.IntN(len(worldGateways))])
		b.WriteString("destinations:\n")
		for i := 0; i < 1+w.rng.IntN(4); i++ {
			host := worldHosts[w.rng.IntN(len(worldHosts))]
			fmt.Fprintf(&b, "  - name: d%d-%d\n    host: %q\n", k, i, host)
			proto := worldProtocols[w.rng.IntN(len(worldProtocols))]
			if proto == ProtocolTCP && !strings.HasPrefix(host, "*") {
				b.WriteString("    resolution: STATIC\n    endpoints: [{address: 192.0.2.1}]\n")
			}
			b.WriteString("    ports:\n")
			for _, j := range w.rng.Perm(len(worldPorts))[:1+w.rng.IntN(2)] {
				if w.rng.IntN(3) == 0 {
					proto = worldProtocols[w.rng.IntN(len(worldProtocols))]
				}
				fmt.Fprintf(&b, "      - {number: %d, protocol: %s}\n", worldPorts[j], proto)
			}
		}
		data[fmt.Sprintf("k%d.yaml", k)] = b.String()
	}
	in, _ := ParseConfigMap(Origin{Namespace: c.ns, Name: c.name}, c.created, data)
	return in
}

func (w *resolveWorld) add() {
	c := &worldCM{ns: worldNamespaces[w.rng.IntN(len(worldNamespaces))], name: worldNames[w.rng.IntN(len(worldNames))],
		created: worldCreated[w.rng.IntN(len(worldCreated))]}
	key := c.ns + "/" + c.name
	if old := w.cms[key]; old != nil {
		// Deleted and created again: a newcomer, perhaps of another age.
		w.log = append(w.log, "recreate "+key)
	} else {
		w.log = append(w.log, "add "+key)
	}
	c.current = w.version(c)
	w.cms[key] = c
}

func (w *resolveWorld) keys() []string {
	var out []string
	for k := range w.cms {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (w *resolveWorld) pick() *worldCM {
	keys := w.keys()
	if len(keys) == 0 {
		return nil
	}
	return w.cms[keys[w.rng.IntN(len(keys))]]
}

// step changes the world as one rebuild's worth of events does.
func (w *resolveWorld) step() {
	for range 1 + w.rng.IntN(4) {
		c := w.pick()
		switch k := w.rng.IntN(13); {
		case c == nil || k < 2:
			w.add()
		case k < 6:
			c.current = w.version(c)
			w.log = append(w.log, fmt.Sprintf("edit %s/%s (valid: %t)", c.ns, c.name, c.current != nil))
		case k < 7:
			c.current = nil
			w.log = append(w.log, "break "+c.ns+"/"+c.name)
		case k < 8:
			c.current = c.served // edited back to what is served
			w.log = append(w.log, "revert "+c.ns+"/"+c.name)
		case k < 9:
			delete(w.cms, c.ns+"/"+c.name)
			w.log = append(w.log, "delete "+c.ns+"/"+c.name)
		case k < 10:
			w.option()
		case k < 11: // several edited at once: their moves compete
			for _, k := range w.keys() {
				if c := w.cms[k]; w.rng.IntN(2) == 0 {
					c.current = w.version(c)
					w.log = append(w.log, fmt.Sprintf("edit %s/%s (valid: %t)", c.ns, c.name, c.current != nil))
				}
			}
		default: // the same content parsed again: a new intent, same claims
			if c.current != nil {
				c.current = w.reparse(c.current)
				w.log = append(w.log, "reparse "+c.ns+"/"+c.name)
			}
		}
	}
}

func (w *resolveWorld) reparse(in *Intent) *Intent {
	cp := *in
	return &cp
}

func (w *resolveWorld) option() {
	o := &w.opts
	switch w.rng.IntN(4) {
	case 0:
		if o.PortMap == nil {
			o.PortMap = map[uint32]uint32{443: 8443} // 443 and 8443 then share a listener
		} else {
			o.PortMap = nil
		}
	case 1:
		if o.ReservedPorts == nil {
			o.ReservedPorts = map[uint32]string{80: "forward proxy"}
		} else {
			o.ReservedPorts = nil
		}
	case 2:
		o.SettingsNamespace = map[string]string{"": "egress-xds", "egress-xds": ""}[o.SettingsNamespace]
	default:
		o.RateLimitService = !o.RateLimitService
	}
	w.log = append(w.log, fmt.Sprintf("options %+v", *o))
}

// cands are the world's candidates, in a random order.
func (w *resolveWorld) cands() []Candidate {
	var out []Candidate
	for _, k := range w.keys() {
		c := w.cms[k]
		out = append(out, Candidate{Current: c.current, Served: c.served})
	}
	w.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// review is a Store.Review's candidates: everything served as it is,
// and one ConfigMap's proposed version.
func (w *resolveWorld) review() []Candidate {
	var out []Candidate
	c := w.pick()
	for _, k := range w.keys() {
		if d := w.cms[k]; d != c && d.served != nil {
			out = append(out, Candidate{Current: d.served, Served: d.served})
		}
	}
	if c != nil {
		if in := w.version(c); in != nil {
			out = append(out, Candidate{Current: in, Served: c.served})
		}
	}
	return out
}

func (w *resolveWorld) check(what string, rc *ResolveCache, cands []Candidate, keep bool) []*Intent {
	w.t.Helper()
	want, wdiags := Resolve(cands, w.opts)
	// The order candidates come in decides nothing.
	rev := slices.Clone(cands)
	slices.Reverse(rev)
	if again, diags := Resolve(rev, w.opts); !slices.Equal(again, want) || !reflect.DeepEqual(diags, wdiags) {
		w.t.Fatalf("%s: Resolve depends on the order of the candidates after:\n  %s\n%s\n%v\nreversed: %s\n%v", what, strings.Join(w.log, "\n  "),
			names(want), wdiags, names(again), diags)
	}
	var got []*Intent
	var gdiags Diagnostics
	if keep {
		got, gdiags = rc.Resolve(cands, w.opts)
	} else {
		got, gdiags = rc.Try(cands, w.opts)
	}
	if !slices.Equal(got, want) || !reflect.DeepEqual(gdiags, wdiags) {
		w.t.Fatalf("%s differs from Resolve after:\n  %s\ncached: %s\n%v\nfresh:  %s\n%v", what, strings.Join(w.log, "\n  "),
			names(got), gdiags, names(want), wdiags)
	}
	if keep {
		checkServedIndex(w.t, rc, got)
	}
	return got
}

// checkServedIndex proves the cache's index is the one a resolution from
// scratch would build for what it accepted: every list in the order of
// step 1 of Resolve.
func checkServedIndex(t *testing.T, rc *ResolveCache, accepted []*Intent) {
	t.Helper()
	b := rc.base
	if len(b.entries) != len(accepted) || len(b.byIntent) != len(accepted) {
		t.Fatalf("index of %d entries (%d by intent) for %d accepted", len(b.entries), len(b.byIntent), len(accepted))
	}
	for i, in := range accepted {
		if b.entries[i].in != in || b.byIntent[in] != b.entries[i] {
			t.Fatalf("entry %d is %s, accepted %s", i, b.entries[i].name, in.Origin.ConfigMap())
		}
	}
	want := newServedIndex(accepted, func(in *Intent) []claim { return b.byIntent[in].claims })
	if len(want.lists) != len(b.lists) {
		t.Fatalf("index of %d keys, a fresh one %d", len(b.lists), len(want.lists))
	}
	for k, list := range want.lists {
		if !slices.Equal(list, b.lists[k]) { // the same claims, by address
			t.Fatalf("index list of %v differs from a fresh index of what was accepted", k)
		}
	}
	for in := range rc.own {
		if b.byIntent[in] != nil {
			t.Fatalf("%s kept twice", in.Origin.ConfigMap())
		}
	}
}

// TestResolveCacheEquivalence drives random edit sequences (edits, broken
// edits, reverts, deletions, ConfigMaps created again with another age,
// creation-time ties, options changed) through a ResolveCache as a Store
// does, with reviews (Try) between them and now and then candidates the
// cache does not hold (a restart's served versions, a name twice), and
// proves every result is Resolve's from scratch, the cache's index is a
// fresh index of what was accepted, and most calls were served by it.
func TestResolveCacheEquivalence(t *testing.T) {
	var total worldCounts
	for seed := uint64(1); seed <= 40; seed++ {
		c := runResolveWorld(t, seed, 60)
		total.calls, total.planned = total.calls+c.calls, total.planned+c.planned
		total.servedWins, total.olderWins = total.servedWins+c.servedWins, total.olderWins+c.olderWins
	}
	t.Logf("%d calls, %d over the cache's index, with %d conflicts won by a served claim and %d by an older one",
		total.calls, total.planned, total.servedWins, total.olderWins)
	if total.planned < total.calls/2 || total.servedWins < total.planned/4 || total.olderWins < 50 {
		t.Fatal("the sequences do not exercise the cache")
	}
}

// FuzzResolveCache is TestResolveCacheEquivalence's sequences from any
// seed.
func FuzzResolveCache(f *testing.F) {
	f.Add(uint64(41))
	f.Add(uint64(1 << 40))
	f.Fuzz(func(t *testing.T, seed uint64) { runResolveWorld(t, seed, 60) })
}

type worldCounts struct{ calls, planned, servedWins, olderWins int }

func runResolveWorld(t *testing.T, seed uint64, steps int) worldCounts {
	t.Helper()
	var n worldCounts
	w := &resolveWorld{t: t, rng: rand.New(rand.NewPCG(seed, 17)), cms: map[string]*worldCM{}}
	rc := &ResolveCache{}
	for range 4 + w.rng.IntN(6) {
		w.add()
	}
	for step := range steps {
		w.step()
		if w.rng.IntN(4) == 0 {
			w.check(fmt.Sprintf("seed %d step %d: review", seed, step), rc, w.review(), false)
		}
		cands := w.cands()
		switch k := w.rng.IntN(20); {
		case k == 0: // a restart: what is served is as saved, not as accepted
			if c := w.pick(); c != nil && c.current != nil {
				c.served = w.reparse(c.current)
				w.log = append(w.log, "restored "+c.ns+"/"+c.name)
				cands = w.cands()
			}
		case k == 1 && len(cands) > 0: // a ConfigMap given twice
			cands = append(cands, cands[w.rng.IntN(len(cands))])
			w.log = append(w.log, "one candidate twice")
		}
		over := rc.base != nil && sameResolveOptions(rc.opts, w.opts) && rc.base.plan(cands) != nil
		n.calls++
		accepted := w.check(fmt.Sprintf("seed %d step %d", seed, step), rc, cands, true)
		if over {
			n.planned++
			_, diags := Resolve(cands, w.opts)
			for _, d := range diags {
				switch {
				case strings.Contains(d.Message, wonAsServed):
					n.servedWins++
				case strings.Contains(d.Message, wonAsOlder):
					n.olderWins++
				}
			}
		}
		// What a Store serves next.
		byName := map[string]*Intent{}
		for _, in := range accepted {
			byName[in.Origin.ConfigMap()] = in
		}
		for k, c := range w.cms {
			c.served = byName[k]
		}
	}
	return n
}

// Two served ConfigMaps edited to claim the same free host compete in
// the order of their names, whatever the order of the candidates: over
// the cache's index as from scratch (the random sequences rarely have
// two moves race for one claim).
func TestResolveCacheMovesRaceByName(t *testing.T) {
	aOld := intentOf(t, "a", "x", time.Time{}, docsOpen)
	bOld := intentOf(t, "b", "y", time.Time{}, dbOpen)
	gh := "\n  - {name: gh, host: api.github.com, ports: [{number: 443, protocol: TLS}]}"
	aNew := intentOf(t, "a", "x", time.Time{}, "destinations:\n  - {name: docs, host: docs.example.com, ports: [{number: 443, protocol: TLS}]}"+gh)
	bNew := intentOf(t, "b", "y", time.Time{}, "destinations:\n  - {name: db, host: db.example.com, endpoints: [{address: 192.0.2.1}], ports: [{number: 5432, protocol: TCP}]}"+gh)
	for _, cands := range [][]Candidate{
		{{Current: aNew, Served: aOld}, {Current: bNew, Served: bOld}},
		{{Current: bNew, Served: bOld}, {Current: aNew, Served: aOld}},
	} {
		want, wdiags := Resolve(cands, ResolveOptions{})
		if len(want) != 2 || want[0] != aNew || want[1] != bOld {
			t.Fatalf("from scratch: accepted %s\n%v", names(want), wdiags)
		}
		for _, keep := range []bool{false, true} {
			rc := &ResolveCache{}
			rc.Resolve(served(aOld, bOld), ResolveOptions{})
			var got []*Intent
			var gdiags Diagnostics
			if keep {
				got, gdiags = rc.Resolve(cands, ResolveOptions{})
			} else {
				got, gdiags = rc.Try(cands, ResolveOptions{})
			}
			if !slices.Equal(got, want) || !reflect.DeepEqual(gdiags, wdiags) {
				t.Fatalf("over the index (keep %t): accepted %s\n%v\nfrom scratch %s\n%v", keep, names(got), gdiags, names(want), wdiags)
			}
		}
	}
}
