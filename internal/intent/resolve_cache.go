package intent

import (
	"maps"
	"slices"
	"sort"
)

// ResolveCache resolves as Resolve does, with the work of what changed
// since its last call: it keeps the claims of the intents that call
// accepted, indexed in the order a resolution from scratch takes them
// when they are served (by namespace/name), and what each other intent
// claims and breaks on its own (a pure function of the intent and the
// options). When a call's served versions are among what the last one
// accepted, under the same options (a Store's every Update after its
// first), that index stands for step 1 of Resolve: only the moves and the
// newcomers are checked against it, and it is then updated by the
// intents that left and joined. Otherwise it resolves from scratch and
// indexes the result again. The result is Resolve's either way. Intents
// are immutable, so their pointers key it. Not safe for concurrent use;
// the zero value is ready; nil resolves from scratch and keeps nothing.
type ResolveCache struct {
	opts ResolveOptions
	// base holds the claims of what the last call accepted (nil: nothing
	// kept, or the options changed).
	base *servedIndex
	// own are own's results of the intents of the last call not in base.
	own map[*Intent]ownResult
}

// ownResult is what ownClaims found for an intent.
type ownResult struct {
	claims []claim
	lost   Diagnostics
}

// Resolve is the package's Resolve; the cache then holds this call's
// result.
func (rc *ResolveCache) Resolve(cands []Candidate, opts ResolveOptions) ([]*Intent, Diagnostics) {
	return rc.resolve(cands, opts, true)
}

// Try is Resolve leaving the cache as it was: what the candidates would
// give, for a review that changes nothing.
func (rc *ResolveCache) Try(cands []Candidate, opts ResolveOptions) ([]*Intent, Diagnostics) {
	return rc.resolve(cands, opts, false)
}

func (rc *ResolveCache) resolve(cands []Candidate, opts ResolveOptions, keep bool) ([]*Intent, Diagnostics) {
	if rc == nil {
		return Resolve(cands, opts)
	}
	if !sameResolveOptions(rc.opts, opts) {
		if !keep {
			return Resolve(cands, opts)
		}
		// What was kept was listed under other options. The caller's
		// maps are copied: one changed in place must not look like the
		// options the claims were listed under.
		rc.base, rc.own = nil, nil
		rc.opts = opts
		rc.opts.ReservedPorts, rc.opts.PortMap = maps.Clone(opts.ReservedPorts), maps.Clone(opts.PortMap)
	}
	next := map[*Intent]ownResult{}
	r := &resolver{own: rc.ownFunc(next, opts)}
	var accepted []*Intent
	var set *overlaySet
	if rc.base != nil {
		set = rc.base.plan(cands)
	}
	if set != nil {
		r.set = set
		r.move(set.moves)
		r.admitNewcomers(set.newcomers)
		accepted = set.accepted()
		if keep {
			rc.base.apply(set, accepted)
		}
	} else {
		flat := newFlatSet(claimCount(cands))
		r.set = flat
		r.resolveFlat(cands)
		accepted = flat.accepted()
		if keep {
			rc.base = newServedIndex(accepted, flat.claims)
		}
	}
	if keep {
		for in := range next {
			if rc.base.byIntent[in] != nil {
				delete(next, in) // its claims are in base
			}
		}
		rc.own = next
	}
	return r.result(accepted)
}

// ownFunc is ownClaims through the cache: this call's results go into
// next.
func (rc *ResolveCache) ownFunc(next map[*Intent]ownResult, opts ResolveOptions) func(*Intent) ([]claim, Diagnostics) {
	return func(in *Intent) ([]claim, Diagnostics) {
		if res, ok := next[in]; ok {
			return res.claims, res.lost
		}
		res, ok := rc.own[in]
		if !ok && rc.base != nil {
			// Accepted under these options: nothing of its own is wrong.
			if e := rc.base.byIntent[in]; e != nil {
				res, ok = ownResult{claims: e.claims}, true
			}
		}
		if !ok {
			res.claims, res.lost = ownClaims(in, opts)
		}
		next[in] = res
		return res.claims, res.lost
	}
}

// servedIndex holds the claims of a resolution's accepted intents, each
// list in the order Resolve takes them when all are served: by the
// intents' namespace/name, then each intent's claims in order.
type servedIndex struct {
	lists    map[familyKey][]*claim
	entries  []*servedEntry // by name
	byIntent map[*Intent]*servedEntry
	gen      uint64 // stamps the entries served in the current plan
}

type servedEntry struct {
	name   string // namespace/name
	in     *Intent
	claims []claim
	stamp  uint64
}

// newServedIndex indexes accepted (sorted by name), whose claims are
// claimsOf's.
func newServedIndex(accepted []*Intent, claimsOf func(*Intent) []claim) *servedIndex {
	n := 0
	for _, in := range accepted {
		n += len(claimsOf(in))
	}
	b := &servedIndex{lists: make(map[familyKey][]*claim, n), entries: make([]*servedEntry, 0, len(accepted)),
		byIntent: make(map[*Intent]*servedEntry, len(accepted))}
	for _, in := range accepted {
		e := &servedEntry{name: in.Origin.ConfigMap(), in: in, claims: claimsOf(in)}
		b.entries = append(b.entries, e)
		b.byIntent[in] = e
		for i := range e.claims {
			c := &e.claims[i]
			k := c.indexKey()
			b.lists[k] = append(b.lists[k], c)
		}
	}
	return b
}

// find is the entry of a namespace/name, or nil.
func (b *servedIndex) find(name string) (int, *servedEntry) {
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].name >= name })
	if i < len(b.entries) && b.entries[i].name == name {
		return i, b.entries[i]
	}
	return i, nil
}

// plan returns the claim set for resolving cands over the index, with
// their moves and newcomers, or nil when the index cannot stand for
// step 1: a served version it does not hold, a ConfigMap named twice.
func (b *servedIndex) plan(cands []Candidate) *overlaySet {
	b.gen++
	s := &overlaySet{base: b, over: newFlatSet(0)}
	for _, c := range cands {
		switch {
		case c.Served != nil:
			e := b.byIntent[c.Served]
			if e == nil || e.stamp == b.gen {
				return nil
			}
			e.stamp = b.gen
			if c.Current != nil && c.Current != c.Served {
				if c.Current.Origin.ConfigMap() != e.name {
					return nil
				}
				s.moves = append(s.moves, c)
			}
		case c.Current != nil:
			s.newcomers = append(s.newcomers, c)
		}
	}
	if len(s.newcomers) > 0 {
		names := make(map[string]bool, len(s.newcomers))
		for _, c := range s.newcomers {
			name := c.Current.Origin.ConfigMap()
			if _, e := b.find(name); names[name] || (e != nil && e.stamp == b.gen) {
				return nil
			}
			names[name] = true
		}
	}
	for _, e := range b.entries {
		if e.stamp != b.gen {
			s.markGone(e.in) // not a candidate's served version: deleted
		}
	}
	// Step 2 takes the moves by the served version's name.
	sort.Slice(s.moves, func(i, j int) bool {
		return b.byIntent[s.moves[i].Served].name < b.byIntent[s.moves[j].Served].name
	})
	return s
}

// apply makes the index hold what the resolution of s accepted.
func (b *servedIndex) apply(s *overlaySet, accepted []*Intent) {
	if len(s.gone)+len(s.over.held) > len(b.entries)/4+8 {
		// Most of it changed: indexing again costs less.
		*b = *newServedIndex(accepted, s.claims)
		return
	}
	for in := range s.gone {
		if _, ok := s.over.held[in]; !ok { // not taken back as served
			b.remove(b.byIntent[in])
		}
	}
	for in, claims := range s.over.held {
		if b.byIntent[in] == nil {
			b.insert(in, claims)
		}
	}
}

func (b *servedIndex) remove(e *servedEntry) {
	i, _ := b.find(e.name)
	b.entries = slices.Delete(b.entries, i, i+1)
	delete(b.byIntent, e.in)
	for i := range e.claims {
		// Each list holds the entry's claims side by side: the first
		// claim on a key takes them all, the others find none.
		k := e.claims[i].indexKey()
		list, ok := b.lists[k]
		if !ok {
			continue
		}
		lo := sort.Search(len(list), func(i int) bool { return list[i].cm >= e.name })
		hi := lo
		for hi < len(list) && list[hi].intent == e.in {
			hi++
		}
		if hi == lo {
			continue
		}
		if list = slices.Delete(list, lo, hi); len(list) == 0 {
			delete(b.lists, k)
		} else {
			b.lists[k] = list
		}
	}
}

func (b *servedIndex) insert(in *Intent, claims []claim) {
	e := &servedEntry{name: in.Origin.ConfigMap(), in: in, claims: claims}
	i, _ := b.find(e.name)
	b.entries = slices.Insert(b.entries, i, e)
	b.byIntent[in] = e
	for k, group := range keysOf(claims) {
		list := b.lists[k]
		at := sort.Search(len(list), func(i int) bool { return list[i].cm > e.name })
		b.lists[k] = slices.Insert(list, at, group...)
	}
}

// keysOf groups an intent's claims by index key, each group in order.
func keysOf(claims []claim) map[familyKey][]*claim {
	out := make(map[familyKey][]*claim, len(claims))
	for i := range claims {
		k := claims[i].indexKey()
		out[k] = append(out[k], &claims[i])
	}
	return out
}

// overlaySet is the claimSet of one resolution over a servedIndex: the
// index, less the intents released (gone), then what this resolution
// took (over), in the order taken. Resolve's index after step 1 is the
// served versions' claims in the index's order; each list after it is
// that, less what was released, then what was taken: the same lists, so
// every conflict names the same winner.
type overlaySet struct {
	base      *servedIndex
	gone      map[*Intent]bool
	over      *flatSet
	moves     []Candidate // served versions and their current ones, by name
	newcomers []Candidate
}

func (s *overlaySet) markGone(in *Intent) {
	if s.gone == nil {
		s.gone = map[*Intent]bool{}
	}
	s.gone[in] = true
}

func (s *overlaySet) conflict(c *claim) *claim {
	return searchKeys(c, func(k familyKey) *claim {
		if e := firstConflict(s.base.lists[k], c, s.gone); e != nil {
			return e
		}
		return firstConflict(s.over.index[k], c, nil)
	})
}

func (s *overlaySet) take(in *Intent, claims []claim, served bool) { s.over.take(in, claims, served) }

func (s *overlaySet) release(in *Intent) {
	if _, ok := s.over.held[in]; ok {
		s.over.release(in)
		return
	}
	if s.base.byIntent[in] != nil {
		s.markGone(in)
	}
}

func (s *overlaySet) claims(in *Intent) []claim {
	if claims, ok := s.over.held[in]; ok {
		return claims
	}
	if e := s.base.byIntent[in]; e != nil && !s.gone[in] {
		return e.claims
	}
	return nil
}

func (s *overlaySet) served(in *Intent) bool {
	if _, ok := s.over.held[in]; ok {
		return s.over.servedBy[in]
	}
	return s.base.byIntent[in] != nil && !s.gone[in]
}

// accepted lists the accepted intents by namespace/name: the index's
// entries not gone, merged with what was taken.
func (s *overlaySet) accepted() []*Intent {
	taken := s.over.accepted()
	names := make([]string, len(taken))
	for i, in := range taken {
		names[i] = in.Origin.ConfigMap()
	}
	out := make([]*Intent, 0, len(s.base.entries)+len(taken))
	j := 0
	for _, e := range s.base.entries {
		if s.gone[e.in] {
			continue
		}
		for j < len(taken) && names[j] < e.name {
			out = append(out, taken[j])
			j++
		}
		out = append(out, e.in)
	}
	return append(out, taken[j:]...)
}
