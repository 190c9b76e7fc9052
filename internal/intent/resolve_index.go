package intent

import "sort"

// claimIndex holds accepted claims by key and, for listener-port claims, by
// protocol family: thousands of destinations share port 443, and only a
// claim of another family can conflict with them.
type claimIndex map[familyKey][]*claim

type familyKey struct {
	claimKey
	family string
}

var families = []string{"", "HTTP", "TCP", "TLS"}

func (c *claim) indexKey() familyKey { return familyKey{c.key, c.family} }

func (ix claimIndex) add(c *claim) {
	k := c.indexKey()
	ix[k] = append(ix[k], c)
}

// remove drops the claims of in (claims lists them).
func (ix claimIndex) remove(in *Intent, claims []claim) {
	done := make(map[familyKey]bool, len(claims))
	for i := range claims {
		k := claims[i].indexKey()
		if done[k] {
			continue
		}
		done[k] = true
		list := ix[k]
		kept := list[:0]
		for _, e := range list {
			if e.intent != in {
				kept = append(kept, e)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(ix, k)
		} else {
			ix[k] = kept
		}
	}
}

// conflict is the first claim of ix that c conflicts with.
func (ix claimIndex) conflict(c *claim) *claim {
	return searchKeys(c, func(k familyKey) *claim { return firstConflict(ix[k], c, nil) })
}

// searchKeys calls search with each key of an index whose claims c may
// conflict with, in order (a port claim: those of every other family),
// until one returns a claim.
func searchKeys(c *claim, search func(familyKey) *claim) *claim {
	if c.family == "" {
		return search(familyKey{c.key, ""})
	}
	for _, fam := range families {
		if fam == c.family {
			continue
		}
		if e := search(familyKey{c.key, fam}); e != nil {
			return e
		}
	}
	return nil
}

// firstConflict finds the first claim of list, on c's index key, for a
// gateway group set overlapping c's, skipping the claims of the intents
// in skip.
func firstConflict(list []*claim, c *claim, skip map[*Intent]bool) *claim {
	for _, e := range list {
		if overlap(e.groups, c.groups) && !skip[e.intent] {
			return e
		}
	}
	return nil
}

// flatSet is the claimSet of one resolution from scratch.
type flatSet struct {
	index    claimIndex
	held     map[*Intent][]claim // accepted intents and their claims
	servedBy map[*Intent]bool    // accepted as the served version
}

// newFlatSet returns an empty set; claims sizes its index up front:
// growing a map of tens of thousands of claims costs more than filling it.
func newFlatSet(claims int) *flatSet {
	return &flatSet{index: make(claimIndex, claims), held: map[*Intent][]claim{}, servedBy: map[*Intent]bool{}}
}

func (s *flatSet) conflict(c *claim) *claim { return s.index.conflict(c) }

func (s *flatSet) take(in *Intent, claims []claim, served bool) {
	s.held[in] = claims
	s.servedBy[in] = served
	for i := range claims {
		s.index.add(&claims[i])
	}
}

func (s *flatSet) release(in *Intent) {
	s.index.remove(in, s.held[in])
	delete(s.held, in)
	delete(s.servedBy, in)
}

func (s *flatSet) claims(in *Intent) []claim { return s.held[in] }
func (s *flatSet) served(in *Intent) bool    { return s.servedBy[in] }

// accepted lists the accepted intents by namespace/name.
func (s *flatSet) accepted() []*Intent {
	out := make([]*Intent, 0, len(s.held))
	for in := range s.held {
		out = append(out, in)
	}
	sortIntents(out)
	return out
}

// sortIntents sorts intents by namespace/name, each name made once.
func sortIntents(ins []*Intent) {
	names := make([]string, len(ins))
	for i, in := range ins {
		names[i] = in.Origin.ConfigMap()
	}
	sort.Sort(byName{ins, names})
}

type byName struct {
	ins   []*Intent
	names []string
}

func (b byName) Len() int           { return len(b.ins) }
func (b byName) Less(i, j int) bool { return b.names[i] < b.names[j] }
func (b byName) Swap(i, j int) {
	b.ins[i], b.ins[j] = b.ins[j], b.ins[i]
	b.names[i], b.names[j] = b.names[j], b.names[i]
}

// claimCount sizes the claim index up front.
func claimCount(cands []Candidate) int {
	n := 0
	for _, c := range cands {
		in := c.Current
		if in == nil {
			in = c.Served
		}
		if in == nil {
			continue
		}
		for _, d := range in.Docs {
			for i := range d.Destinations {
				n += len(d.Destinations[i].Ports)
			}
		}
		for _, sd := range in.Settings {
			n += len(sd.Groups)
		}
	}
	return n
}
