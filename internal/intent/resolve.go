package intent

import (
	"fmt"
	"maps"
	"sort"
	"strings"
)

// ResolveOptions describe the gateway ports intents cannot use.
type ResolveOptions struct {
	// ReservedPorts are listener ports the gateway uses itself (the forward
	// proxy), with what uses them.
	ReservedPorts map[uint32]string
	// PortMap maps declared ports to listener ports (443 -> 8443 for an
	// unprivileged gateway); ports not in it listen as declared.
	PortMap map[uint32]uint32
	// TrustDomain of workload identities when the gateway serves the mesh
	// (mutual TLS from sidecars); empty: no mesh, and allow lists cannot
	// name workload identities.
	TrustDomain string
	// SettingsNamespace is the one namespace whose settings ConfigMaps
	// are obeyed (settings.go); empty: none are.
	SettingsNamespace string
	// RateLimitService says the gateways have a rate limit service for
	// global rate limits (--ratelimit-address).
	RateLimitService bool
}

// ListenerPort is the gateway port that serves a declared port.
func (o ResolveOptions) ListenerPort(declared uint32) uint32 {
	if p, ok := o.PortMap[declared]; ok {
		return p
	}
	return declared
}

// claim is something a destination port needs for itself on a gateway.
type claim struct {
	key    claimKey
	groups []string // gateway groups, empty for all
	family string   // protocol family on the listener port, for port claims
	port   uint32
	intent *Intent
	doc    *Doc
	dest   int // destination index in doc
	portAt int // port index in the destination, -1 for name claims
}

type claimKind uint8

const (
	claimName claimKind = iota
	claimListenerPort
	claimHostPort
	claimTCPPort
	claimGroupSettings
)

// settingsClaim is the portAt of a settings claim: dest is then the index
// of the group in its settings document.
const settingsClaim = -2

// claimKey is what is claimed: a name within a ConfigMap, a listener port,
// a host on a port, or a whole TCP port.
type claimKey struct {
	kind claimKind
	name string // destination name or host
	cm   string // ConfigMap, for name claims
	port uint32
}

func (k claimKey) String() string {
	switch k.kind {
	case claimHostPort:
		return fmt.Sprintf("host %s port %d", k.name, k.port)
	case claimTCPPort:
		return fmt.Sprintf("TCP port %d (TCP carries no host name to tell destinations apart)", k.port)
	case claimGroupSettings:
		return fmt.Sprintf("the settings of gateway group %s", k.name)
	}
	return fmt.Sprintf("port %d", k.port)
}

// path is the field path of the claiming destination or port, within its
// document.
func (c claim) path() string {
	if c.portAt == settingsClaim {
		return fmt.Sprintf("groups[%d]", c.dest)
	}
	if c.portAt < 0 {
		return fmt.Sprintf("destinations[%d].name", c.dest)
	}
	return fmt.Sprintf("destinations[%d].ports[%d]", c.dest, c.portAt)
}

// owner names the claiming field for another ConfigMap's message: its
// data key and field path.
func (c claim) owner() string { return c.doc.Origin.Key + ": " + c.path() }

// Candidate is one ConfigMap for Resolve: the version to serve if it can
// be, and the version served until now.
type Candidate struct {
	// Current is the ConfigMap's current version; nil when it is invalid.
	Current *Intent
	// Served is the version served until now (after a restart: as saved);
	// nil for a ConfigMap that is not served (a newcomer).
	Served *Intent
}

// Why a conflict's winner wins, as the loser is told.
const (
	wonAsServed = "which is served and keeps it: a served claim is never taken over"
	wonAsOlder  = "which wins as the older ConfigMap (ties go to namespace/name order)"
)

// IsConflict reports whether a diagnostic says a ConfigMap lost a claim to
// another one.
func IsConflict(d Diagnostic) bool {
	return strings.Contains(d.Message, wonAsServed) || strings.Contains(d.Message, wonAsOlder)
}

// Resolve settles conflicts between intents deterministically: what is
// served keeps its claims, whatever the names and ages of newcomers.
//
//  1. The served versions are taken first (they agree with each other:
//     they were resolved together).
//  2. Each served ConfigMap whose current version differs moves to it if
//     the new version conflicts with nothing served; otherwise its served
//     version stays, as for an invalid edit. Moves are retried until none
//     succeeds, so a claim one ConfigMap gives up is free for another in
//     the same rebuild.
//  3. Newcomers follow, oldest first (creation time, then namespace/name:
//     on a cold start with nothing served, this alone decides); one that
//     claims a listener port, host or TCP port already taken for an
//     overlapping set of gateway groups is rejected as a whole, with an
//     error naming the winner.
//
// The same candidates give the same result on every replica.
func Resolve(cands []Candidate, opts ResolveOptions) ([]*Intent, Diagnostics) {
	return (*ResolveCache)(nil).Resolve(cands, opts)
}

// ResolveCache keeps, between calls of its Resolve, what each intent
// claims and breaks on its own (a pure function of the intent and the
// options): after one edit, only the edited ConfigMap's claims are
// listed and checked again. Intents are immutable, so their pointers
// key it. Not safe for concurrent use; the zero value and nil are
// ready (nil keeps nothing).
type ResolveCache struct {
	opts ResolveOptions
	own  map[*Intent]ownResult
}

// ownResult is what resolver.own found for an intent.
type ownResult struct {
	claims []claim
	lost   Diagnostics
}

// Resolve is the package's Resolve, reusing the claims of intents seen
// by the last call when the options are the same; the result is the same.
func (rc *ResolveCache) Resolve(cands []Candidate, opts ResolveOptions) ([]*Intent, Diagnostics) {
	r := &resolver{opts: opts, index: make(claimIndex, claimCount(cands)), held: map[*Intent][]claim{}, served: map[*Intent]bool{}}
	if rc != nil {
		prev := rc.own
		if !sameResolveOptions(rc.opts, opts) {
			prev = nil
		}
		// Only this call's intents are kept: an edited ConfigMap's old
		// versions are not held for ever.
		r.prev, r.next = prev, make(map[*Intent]ownResult, len(cands))
		defer func() {
			// The caller's maps are copied: one changed in place must not
			// look like the options the claims were listed under.
			rc.opts, rc.own = opts, r.next
			rc.opts.ReservedPorts, rc.opts.PortMap = maps.Clone(opts.ReservedPorts), maps.Clone(opts.PortMap)
		}()
	}
	var served, moves, newcomers []Candidate
	for _, c := range cands {
		switch {
		case c.Served != nil:
			served = append(served, c)
		case c.Current != nil:
			newcomers = append(newcomers, c)
		}
	}
	sortByName(served)
	for _, c := range served {
		if r.admit(c.Served, true) {
			if c.Current != nil && c.Current != c.Served {
				moves = append(moves, c)
			}
			continue
		}
		// Not servable any more (the server's options changed since):
		// the current version gets a newcomer's chance.
		if c.Current != nil {
			newcomers = append(newcomers, Candidate{Current: c.Current})
		}
	}
	r.move(moves)
	sort.SliceStable(newcomers, func(i, j int) bool {
		a, b := newcomers[i].Current, newcomers[j].Current
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.Origin.ConfigMap() < b.Origin.ConfigMap()
	})
	for _, c := range newcomers {
		r.admit(c.Current, false)
	}
	accepted := make([]*Intent, 0, len(r.held))
	for in := range r.held {
		accepted = append(accepted, in)
	}
	sort.Slice(accepted, func(i, j int) bool { return accepted[i].Origin.ConfigMap() < accepted[j].Origin.ConfigMap() })
	r.diags.Sort()
	return accepted, r.diags.Dedupe()
}

// resolver holds the claims of the intents accepted so far.
type resolver struct {
	opts   ResolveOptions
	index  claimIndex
	held   map[*Intent][]claim // accepted intents and their claims
	served map[*Intent]bool    // accepted as the served version
	diags  Diagnostics
	// prev and next are own's results of the last call and of this one
	// (ResolveCache); nil without a cache.
	prev, next map[*Intent]ownResult
}

func sameResolveOptions(a, b ResolveOptions) bool {
	return maps.Equal(a.ReservedPorts, b.ReservedPorts) && maps.Equal(a.PortMap, b.PortMap) &&
		a.TrustDomain == b.TrustDomain && a.SettingsNamespace == b.SettingsNamespace && a.RateLimitService == b.RateLimitService
}

// admit accepts an intent if it breaks no rule of its own and conflicts
// with nothing accepted, and reports whether it did.
func (r *resolver) admit(in *Intent, served bool) bool {
	claims, lost := r.own(in)
	if len(lost) == 0 {
		lost = r.conflicts(claims)
	}
	if len(lost) > 0 {
		r.diags = append(r.diags, lost...)
		return false
	}
	r.take(in, claims, served)
	return true
}

// move moves served ConfigMaps to their current versions where they
// conflict with nothing, retrying the others after every pass that moved
// one; what cannot move keeps its served version.
func (r *resolver) move(moves []Candidate) {
	lostBy := map[*Intent]Diagnostics{}
	for len(moves) > 0 {
		var next []Candidate
		for _, c := range moves {
			claims, lost := r.own(c.Current)
			if len(lost) > 0 { // its own problem: no other move changes it
				lostBy[c.Current] = lost
				continue
			}
			old := r.held[c.Served]
			r.release(c.Served)
			if lost := r.conflicts(claims); len(lost) > 0 {
				r.take(c.Served, old, true)
				lostBy[c.Current] = lost
				next = append(next, c)
				continue
			}
			delete(lostBy, c.Current)
			r.take(c.Current, claims, false)
		}
		if len(next) == len(moves) {
			break
		}
		moves = next
	}
	for in, lost := range lostBy {
		r.diags = append(r.diags, lost...)
		r.diags = append(r.diags, Diagnostic{Origin: in.Origin, Severity: SeverityWarning,
			Message: "keeping the served version of this ConfigMap until its conflicts are resolved"})
	}
}

// own checks what an intent needs against the server's options and
// itself (two of its destinations claiming one thing). The claims
// returned are shared with the cache: never changed.
func (r *resolver) own(in *Intent) ([]claim, Diagnostics) {
	if r.next == nil {
		return ownClaims(in, r.opts)
	}
	res, ok := r.next[in]
	if !ok {
		if res, ok = r.prev[in]; !ok {
			res.claims, res.lost = ownClaims(in, r.opts)
		}
		r.next[in] = res
	}
	return res.claims, res.lost
}

func ownClaims(in *Intent, opts ResolveOptions) ([]claim, Diagnostics) {
	r := &resolver{opts: opts}
	lost := append(identitiesAllowed(in, r.opts), settingsAuthority(in, r.opts)...)
	lost = append(lost, globalLimitsAllowed(in, r.opts)...)
	mine := claimIndex{}
	claims := claimsOf(in, r.opts)
	for i := range claims {
		c := &claims[i]
		if why, ok := r.opts.ReservedPorts[c.port]; ok && c.family != "" {
			lost = append(lost, c.diag(fmt.Sprintf("listener port %d is reserved for the gateway's %s", c.port, why)))
			continue
		}
		if other, ok := conflict(mine.candidates(c), c); ok {
			lost = append(lost, c.diag(c.message(other, "")))
			continue
		}
		mine.add(c)
	}
	// Names are unique per ConfigMap only: never compared across.
	shared := claims[:0:0]
	for _, c := range claims {
		if c.key.kind != claimName {
			shared = append(shared, c)
		}
	}
	return shared, lost
}

// conflicts lists the claims that another accepted intent holds.
func (r *resolver) conflicts(claims []claim) Diagnostics {
	var lost Diagnostics
	for i := range claims {
		c := &claims[i]
		if other, ok := conflict(r.index.candidates(c), c); ok {
			why := wonAsOlder
			if r.served[other.intent] {
				why = wonAsServed
			}
			lost = append(lost, c.diag(c.message(other, why)))
		}
	}
	return lost
}

func (r *resolver) take(in *Intent, claims []claim, served bool) {
	r.held[in] = claims
	r.served[in] = served
	for i := range claims {
		r.index.add(&claims[i])
	}
}

func (r *resolver) release(in *Intent) {
	r.index.remove(in, r.held[in])
	delete(r.held, in)
	delete(r.served, in)
}

func sortByName(cs []Candidate) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].Served.Origin.ConfigMap() < cs[j].Served.Origin.ConfigMap() })
}

// claimCount sizes the claim index up front: growing a map of tens of
// thousands of claims costs more than filling it.
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

// claimIndex holds accepted claims by key and, for listener-port claims, by
// protocol family: thousands of destinations share port 443, and only a
// claim of another family can conflict with them.
type claimIndex map[familyKey][]*claim

type familyKey struct {
	claimKey
	family string
}

var families = []string{"", "HTTP", "TCP", "TLS"}

func (ix claimIndex) add(c *claim) {
	k := familyKey{c.key, c.family}
	ix[k] = append(ix[k], c)
}

// remove drops the claims of in (claims lists them).
func (ix claimIndex) remove(in *Intent, claims []claim) {
	done := make(map[familyKey]bool, len(claims))
	for i := range claims {
		k := familyKey{claims[i].key, claims[i].family}
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

// candidates are the accepted claims c may conflict with.
func (ix claimIndex) candidates(c *claim) []*claim {
	if c.family == "" {
		return ix[familyKey{c.key, ""}]
	}
	var out []*claim
	for _, fam := range families {
		if fam != c.family {
			out = append(out, ix[familyKey{c.key, fam}]...)
		}
	}
	return out
}

// conflict finds an earlier claim on the same key for an overlapping group
// set. Port claims conflict only when their protocol families differ.
func conflict(earlier []*claim, c *claim) (*claim, bool) {
	for _, e := range earlier {
		if !overlap(e.groups, c.groups) {
			continue
		}
		if c.family != "" && e.family == c.family {
			continue
		}
		return e, true
	}
	return nil, false
}

func overlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// diag is a problem of the claim, on its document's key and field path,
// like every other problem of a document.
func (c claim) diag(msg string) Diagnostic {
	return Diagnostic{Origin: c.doc.Origin, Path: c.path(), Message: msg, Severity: SeverityError}
}

// message tells the loser of a conflict who won, and why (empty: the
// winner is another destination of the same ConfigMap).
func (c *claim) message(winner *claim, why string) string {
	where := winner.intent.Origin.ConfigMap() + " (" + winner.owner() + ")"
	if why != "" {
		why = ", " + why
	} else {
		where = winner.owner()
	}
	switch {
	case c.family != "":
		return fmt.Sprintf("listener port %d is %s here but %s in %s%s", c.port, c.family, winner.family, where, why)
	case c.key.kind == claimGroupSettings:
		return fmt.Sprintf("%s are already set by %s%s", c.key, where, why)
	case c.key.kind == claimName:
		return fmt.Sprintf("destination name is already used by %s%s", where, why)
	default:
		return fmt.Sprintf("%s is already declared by %s%s", c.key, where, why)
	}
}

// claimsOf lists what every destination port of an intent needs on a
// gateway: its listener port for its protocol family, and the host on that
// port (the whole port for TCP, which carries no name to route by).
func claimsOf(in *Intent, opts ResolveOptions) []claim {
	out := settingsClaims(in)
	cm := in.Origin.ConfigMap()
	for di := range in.Docs {
		d := &in.Docs[di]
		for i := range d.Destinations {
			dest := &d.Destinations[i]
			out = append(out, claim{key: claimKey{kind: claimName, name: dest.Name, cm: cm}, groups: d.Gateways, intent: in, doc: d, dest: i, portAt: -1})
			for j, p := range dest.Ports {
				lp := opts.ListenerPort(p.Number)
				fam := family(p.Protocol)
				c := claim{groups: d.Gateways, port: lp, intent: in, doc: d, dest: i, portAt: j}
				port := c
				port.key, port.family = claimKey{kind: claimListenerPort, port: lp}, fam
				host := c
				host.key = claimKey{kind: claimHostPort, name: dest.Host, port: lp}
				if fam == "TCP" {
					host.key = claimKey{kind: claimTCPPort, port: lp}
				}
				out = append(out, port, host)
			}
		}
	}
	return out
}

func family(p Protocol) string {
	if p.Passthrough() {
		return "TLS"
	}
	return string(p)
}
