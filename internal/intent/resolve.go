package intent

import (
	"fmt"
	"sort"
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
)

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
	}
	return fmt.Sprintf("port %d", k.port)
}

// owner is the field path of the claiming destination or port.
func (c claim) owner() string {
	if c.portAt < 0 {
		return fmt.Sprintf("%s: destinations[%d].name", c.doc.Origin.Key, c.dest)
	}
	return fmt.Sprintf("%s: destinations[%d].ports[%d]", c.doc.Origin.Key, c.dest, c.portAt)
}

// Resolve settles conflicts between intents deterministically, the same way
// on every replica: intents are taken oldest first (ties by namespace/name),
// and an intent that claims a listener port, host or destination name
// already claimed by an earlier one for an overlapping set of gateway groups
// is rejected as a whole, with an error naming the winner.
func Resolve(intents []*Intent, opts ResolveOptions) ([]*Intent, Diagnostics) {
	ordered := append([]*Intent(nil), intents...)
	sort.SliceStable(ordered, func(i, j int) bool {
		a, b := ordered[i], ordered[j]
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.Origin.ConfigMap() < b.Origin.ConfigMap()
	})
	// Sized up front: growing a map of tens of thousands of claims costs
	// more than filling it.
	n := 0
	for _, in := range ordered {
		for _, d := range in.Docs {
			for i := range d.Destinations {
				n += 1 + len(d.Destinations[i].Ports)
			}
		}
	}
	index := make(claimIndex, n)
	var accepted []*Intent
	var diags Diagnostics
	for _, in := range ordered {
		mine := claimIndex{}
		var mineList []*claim
		lost := identitiesAllowed(in, opts)
		claims := claimsOf(in, opts)
		for i := range claims {
			c := &claims[i]
			if why, ok := opts.ReservedPorts[c.port]; ok && c.family != "" {
				lost = append(lost, c.diag(fmt.Sprintf("listener port %d is reserved for the gateway's %s", c.port, why)))
				continue
			}
			if other, ok := conflict(index.candidates(c), c); ok {
				lost = append(lost, c.diag(c.message(other)))
				continue
			}
			if other, ok := conflict(mine.candidates(c), c); ok {
				lost = append(lost, c.diag(c.message(other)))
				continue
			}
			mine.add(c)
			mineList = append(mineList, c)
		}
		if len(lost) > 0 {
			diags = append(diags, lost...)
			continue
		}
		for _, c := range mineList {
			// Names are unique per ConfigMap only: never compared across.
			if c.key.kind != claimName {
				index.add(c)
			}
		}
		accepted = append(accepted, in)
	}
	sort.SliceStable(accepted, func(i, j int) bool { return accepted[i].Origin.ConfigMap() < accepted[j].Origin.ConfigMap() })
	diags.Sort()
	return accepted, diags
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
	if c.family != "" && len(c.groups) > 0 {
		// One accepted claim of a family for all groups is enough to detect
		// any conflict; keep the list short.
		for _, e := range ix[k] {
			if len(e.groups) == 0 {
				return
			}
		}
	}
	ix[k] = append(ix[k], c)
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

func (c claim) diag(msg string) Diagnostic {
	return Diagnostic{Origin: c.intent.Origin, Path: c.owner(), Message: msg, Severity: SeverityError}
}

func (c *claim) message(winner *claim) string {
	where := winner.intent.Origin.ConfigMap() + " (" + winner.owner() + ")"
	why := ", which wins as the older ConfigMap (ties go to namespace/name order)"
	if winner.intent == c.intent {
		where, why = winner.owner(), ""
	}
	switch {
	case c.family != "":
		return fmt.Sprintf("listener port %d is %s here but %s in %s%s", c.port, c.family, winner.family, where, why)
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
	var out []claim
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
