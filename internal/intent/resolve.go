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
	key    string   // what is claimed, e.g. "tls 443 api.github.com"
	groups []string // gateway groups, empty for all
	owner  string   // for messages: ns/name: key: destinations[i].ports[j] ("name")
	family string   // protocol family on the listener port, for port claims
	port   uint32
	intent *Intent
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
	index := map[string][]claim{}
	var accepted []*Intent
	var diags Diagnostics
	for _, in := range ordered {
		var mine []claim
		var lost Diagnostics
		for _, c := range claimsOf(in, opts) {
			if why, ok := opts.ReservedPorts[c.port]; ok && c.family != "" {
				lost = append(lost, c.diag(fmt.Sprintf("listener port %d is reserved for the gateway's %s", c.port, why)))
				continue
			}
			if other, ok := conflict(index[c.key], c); ok {
				lost = append(lost, c.diag(c.message(other)))
				continue
			}
			if other, ok := conflict(indexOf(mine, c.key), c); ok {
				lost = append(lost, c.diag(c.message(other)))
				continue
			}
			mine = append(mine, c)
		}
		if len(lost) > 0 {
			diags = append(diags, lost...)
			continue
		}
		for _, c := range mine {
			index[c.key] = append(index[c.key], c)
		}
		accepted = append(accepted, in)
	}
	sort.SliceStable(accepted, func(i, j int) bool { return accepted[i].Origin.ConfigMap() < accepted[j].Origin.ConfigMap() })
	diags.Sort()
	return accepted, diags
}

func indexOf(cs []claim, key string) []claim {
	var out []claim
	for _, c := range cs {
		if c.key == key {
			out = append(out, c)
		}
	}
	return out
}

// conflict finds an earlier claim on the same key for an overlapping group
// set. Port claims conflict only when their protocol families differ.
func conflict(earlier []claim, c claim) (claim, bool) {
	for _, e := range earlier {
		if !overlap(e.groups, c.groups) {
			continue
		}
		if c.family != "" && e.family == c.family {
			continue
		}
		return e, true
	}
	return claim{}, false
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
	return Diagnostic{Origin: c.intent.Origin, Path: c.owner, Message: msg, Severity: SeverityError}
}

func (c claim) message(winner claim) string {
	where := winner.intent.Origin.ConfigMap() + " (" + winner.owner + ")"
	why := ", which wins as the older ConfigMap (ties go to namespace/name order)"
	if winner.intent == c.intent {
		where, why = winner.owner, ""
	}
	switch {
	case c.family != "":
		return fmt.Sprintf("listener port %d is %s here but %s in %s%s", c.port, c.family, winner.family, where, why)
	case c.port == 0:
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
	for _, d := range in.Docs {
		for i, dest := range d.Destinations {
			base := fmt.Sprintf("%s: destinations[%d]", d.Origin.Key, i)
			out = append(out, claim{key: "name " + in.Origin.ConfigMap() + " " + dest.Name, groups: d.Gateways, owner: base + ".name", intent: in})
			for j, p := range dest.Ports {
				owner := fmt.Sprintf("%s.ports[%d]", base, j)
				lp := opts.ListenerPort(p.Number)
				fam := family(p.Protocol)
				out = append(out, claim{key: fmt.Sprintf("port %d", lp), family: fam, port: lp, groups: d.Gateways, owner: owner, intent: in})
				key := fmt.Sprintf("host %s port %d", dest.Host, lp)
				if fam == "TCP" {
					key = fmt.Sprintf("TCP port %d (TCP carries no host name to tell destinations apart)", lp)
				}
				out = append(out, claim{key: key, port: lp, groups: d.Gateways, owner: owner, intent: in})
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
