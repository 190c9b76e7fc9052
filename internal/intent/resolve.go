package intent

import (
	"fmt"
	"maps"
	"slices"
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
	cm     string // the intent's namespace/name: the order of a ResolveCache's index
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
	set := newFlatSet(claimCount(cands))
	r := &resolver{set: set, own: func(in *Intent) ([]claim, Diagnostics) { return ownClaims(in, opts) }}
	r.resolveFlat(cands)
	return r.result(set.accepted())
}

// resolveFlat is Resolve's three steps, from nothing accepted.
func (r *resolver) resolveFlat(cands []Candidate) {
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
	r.admitNewcomers(newcomers)
}

// admitNewcomers admits newcomers oldest first (creation time, then
// namespace/name).
func (r *resolver) admitNewcomers(newcomers []Candidate) {
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
}

// result is what Resolve returns: the accepted intents (sorted by
// namespace/name) and the problems found.
func (r *resolver) result(accepted []*Intent) ([]*Intent, Diagnostics) {
	r.diags.Sort()
	return accepted, r.diags.Dedupe()
}

// resolver runs Resolve's steps over a set of accepted claims.
type resolver struct {
	set   claimSet
	diags Diagnostics
	// own is ownClaims, or a cache of it (ResolveCache).
	own func(*Intent) ([]claim, Diagnostics)
}

// claimSet holds the claims of the intents accepted so far: a flat index
// built by one resolution (Resolve), or a ResolveCache's index of what is
// served with this resolution's changes over it.
type claimSet interface {
	// conflict is the first accepted claim that c conflicts with, in the
	// order Resolve accepted them; nil if none.
	conflict(c *claim) *claim
	take(in *Intent, claims []claim, served bool)
	release(in *Intent)
	// claims are the claims of an accepted intent.
	claims(in *Intent) []claim
	// served reports whether an accepted intent was taken as served.
	served(in *Intent) bool
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
	r.set.take(in, claims, served)
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
			old := r.set.claims(c.Served)
			r.set.release(c.Served)
			if lost := r.conflicts(claims); len(lost) > 0 {
				r.set.take(c.Served, old, true)
				lostBy[c.Current] = lost
				next = append(next, c)
				continue
			}
			delete(lostBy, c.Current)
			r.set.take(c.Current, claims, false)
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

// ownClaims checks what an intent needs against the server's options and
// itself (two of its destinations claiming one thing). The claims
// returned may be shared with a cache: never changed.
func ownClaims(in *Intent, opts ResolveOptions) ([]claim, Diagnostics) {
	lost := append(identitiesAllowed(in, opts), settingsAuthority(in, opts)...)
	lost = append(lost, globalLimitsAllowed(in, opts)...)
	claims := claimsOf(in, opts)
	mine := make(claimIndex, len(claims))
	for i := range claims {
		c := &claims[i]
		if why, ok := opts.ReservedPorts[c.port]; ok && c.family != "" {
			lost = append(lost, c.diag(fmt.Sprintf("listener port %d is reserved for the gateway's %s", c.port, why)))
			continue
		}
		if other := mine.conflict(c); other != nil {
			lost = append(lost, c.diag(c.message(other, "")))
			continue
		}
		mine.add(c)
	}
	// Names are unique per ConfigMap only: never compared across.
	n := 0
	for i := range claims {
		if claims[i].key.kind != claimName {
			n++
		}
	}
	shared := make([]claim, 0, n)
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
		if other := r.set.conflict(c); other != nil {
			why := wonAsOlder
			if r.set.served(other.intent) {
				why = wonAsServed
			}
			lost = append(lost, c.diag(c.message(other, why)))
		}
	}
	return lost
}

func sortByName(cs []Candidate) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].Served.Origin.ConfigMap() < cs[j].Served.Origin.ConfigMap() })
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
	n := len(out)
	for _, d := range in.Docs {
		for i := range d.Destinations {
			n += 1 + 2*len(d.Destinations[i].Ports)
		}
	}
	out = slices.Grow(out, n-len(out))
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
	for i := range out {
		out[i].cm = cm
	}
	return out
}

func family(p Protocol) string {
	if p.Passthrough() {
		return "TLS"
	}
	return string(p)
}
