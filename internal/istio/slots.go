package istio

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// A slot is one host and port workloads may reach through the gateway:
// the unit every Istio object's effect is worked out on (routes, TLS,
// policies, allow lists), before slots with the same settings are joined
// into one destination with several ports.
type slot struct {
	key       slotKey
	protocol  intent.Protocol
	namespace string // of the object declaring it
	base      string // the destination name, before it is made unique
	origin    *object
	path      string // in origin: spec.hosts[i]
	// gatewayPort is the port of Istio's egress gateway this traffic
	// arrived on (AuthorizationPolicy ports, EnvoyFilter listeners).
	gatewayPort uint32
	viaGateway  bool // an egress Gateway server and route took it there
	mesh        bool // over ISTIO_MUTUAL from sidecars: the mesh port here
	cluster     cluster

	d        intent.Destination // the settings: all but name, host and ports
	target   uint32             // upstream port when it differs
	timeouts []time.Duration    // from routes, sidecar and gateway: the least wins
	allow    *[]intent.Source   // nil: every source
	held     []string           // why it is left out; empty: written
	dest     *placed
	seq      int // creation order
}

type slotKey struct {
	host string
	port uint32
}

// cluster is where the gateway sends a slot's traffic: a ServiceEntry
// host and port (Istio's outbound|port|subset|host).
type cluster struct {
	host    string
	port    uint32
	subsets []string
	se      *object
	sePort  ServicePort
}

// placed is where a slot was written.
type placed struct{ configMap, name string }

// hold leaves the slot out, for the reason given.
func (s *slot) hold(why string) {
	for _, h := range s.held {
		if h == why {
			return
		}
	}
	s.held = append(s.held, why)
}

func (im *importer) slotFor(k slotKey) *slot { return im.slots[k] }

func (im *importer) newSlot(s *slot) *slot {
	s.seq = len(im.slotList)
	im.slots[s.key] = s
	im.slotList = append(im.slotList, s)
	if im.byHost == nil {
		im.byHost = map[string][]*slot{}
	}
	im.byHost[s.key.host] = append(im.byHost[s.key.host], s)
	return s
}

// serviceEntry makes a slot of each host and port of a ServiceEntry.
func (im *importer) serviceEntry(o *object) {
	if o.broken {
		return
	}
	se := o.spec.(*ServiceEntry)
	ns := o.meta.Namespace
	if len(se.Hosts) == 0 {
		im.rep.add(o, "spec.hosts", StatusNotCarried, "no hosts: nothing to declare")
	}
	var protos []intent.Protocol
	var ok []bool
	var notes []string
	for j, p := range se.Ports {
		proto, note, good := mapProtocol(p.Protocol)
		protos, ok, notes = append(protos, proto), append(ok, good), append(notes, note)
		if !good {
			im.rep.addf(o, fmt.Sprintf("spec.ports[%d]", j), StatusNotCarried, "port %d protocol %s: %s", p.Number, p.Protocol, note)
		}
	}
	for i, h := range se.Hosts {
		host := strings.ToLower(strings.TrimSuffix(h, "."))
		hp := fmt.Sprintf("spec.hosts[%d]", i)
		switch {
		case host == "*":
			im.rep.add(o, hp, StatusNotCarried, `"*" would declare every host; egress-xds declares hosts one by one, or by a wildcard under one owner's domain`)
			continue
		case se.Location == "MESH_INTERNAL" && !strings.Contains(host, "."):
			im.rep.addf(o, hp, StatusNotCarried, "%q is a short name inside the mesh, not an external host", h)
			continue
		}
		base := o.meta.Name
		if len(se.Hosts) > 1 {
			base += "-" + strings.ReplaceAll(host, "*", "wildcard")
		}
		var made []*slot
		for j, p := range se.Ports {
			if !ok[j] {
				continue
			}
			k := slotKey{host, p.Number}
			if prev := im.slotFor(k); prev != nil {
				im.rep.addf(o, hp, StatusNotCarried, "%s port %d is already declared by %s (first by namespace/name): this one is not carried", host, p.Number, prev.origin.id())
				continue
			}
			s := im.newSlot(&slot{key: k, protocol: protos[j], namespace: ns, base: base, origin: o, path: hp, gatewayPort: p.Number,
				cluster: cluster{host: host, port: p.Number, se: o, sePort: p}})
			made = append(made, s)
			what := describeProtocol(protos[j])
			if p.TargetPort != 0 && p.TargetPort != p.Number {
				what += fmt.Sprintf(", upstream port %d", p.TargetPort)
			}
			if notes[j] != "" {
				what += "; " + notes[j]
			}
			im.rep.add(o, fmt.Sprintf("spec.ports[%d]", j), StatusCarried, fmt.Sprintf("port %d %s", p.Number, what), s)
		}
		if len(made) > 0 {
			im.rep.add(o, hp, StatusCarried, "host "+host, made...)
		}
	}
	if len(se.Ports) == 0 {
		im.rep.add(o, "spec.ports", StatusNotCarried, "no ports: egress-xds declares a destination by host and port")
	}
	switch se.Location {
	case "", "MESH_EXTERNAL":
		if se.Location != "" {
			im.rep.add(o, "spec.location", StatusDefault, "every destination is outside the mesh")
		}
	case "MESH_INTERNAL":
		im.rep.add(o, "spec.location", StatusNotCarried, "MESH_INTERNAL: the gateway reaches it as an external host, without Istio's mutual TLS")
	default:
		im.rep.addf(o, "spec.location", StatusNotCarried, "%q is not an Istio location", se.Location)
	}
	if len(se.Addresses) > 0 {
		im.rep.add(o, "spec.addresses", StatusNotCarried, "virtual addresses for sidecars to capture: workloads reach the gateway by name (DNS pointing at it, the explicit proxy or a sidecar), and TCP destinations are told apart by port")
	}
	if se.WorkloadSelector != nil {
		im.rep.add(o, "spec.workloadSelector", StatusNotCarried, "selects workloads inside the mesh as endpoints; egress-xds needs their addresses as endpoints")
	}
	if len(se.SubjectAltNames) > 0 {
		im.rep.add(o, "spec.subjectAltNames", StatusNotCarried, "identities Istio's sidecars verify over mutual TLS; for TLS origination, DestinationRule tls.subjectAltNames is carried")
	}
}

// mapProtocol is the intent protocol of an Istio port protocol; a note
// says why one is not carried.
func mapProtocol(p string) (intent.Protocol, string, bool) {
	switch strings.ToUpper(p) {
	case "HTTP":
		return intent.ProtocolHTTP, "", true
	case "HTTPS":
		return intent.ProtocolHTTPS, "", true
	case "TLS":
		return intent.ProtocolTLS, "", true
	case "TCP":
		return intent.ProtocolTCP, "", true
	case "":
		return intent.ProtocolTCP, "no protocol (Istio detects it): carried as TCP, the bytes passed as they are", true
	case "HTTP2", "GRPC", "GRPC-WEB", "MONGO", "MYSQL", "REDIS":
		return intent.ProtocolTCP, "protocol " + p + " carried as TCP: the bytes pass as they are (one host per TCP port)", true
	case "UDP":
		return "", "egress-xds carries TCP only", false
	}
	return "", "not an Istio protocol", false
}

func describeProtocol(p intent.Protocol) string {
	switch p {
	case intent.ProtocolHTTP:
		return "HTTP (routed by Host)"
	case intent.ProtocolTCP:
		return "TCP"
	}
	return string(p) + " (SNI passthrough)"
}

// dnsLabel makes a destination name of s: a DNS label, at most 63
// characters; a long one keeps a hash of the whole, so names stay unique
// and stable.
func dnsLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimRight(b.String(), "-")
	if out == "" {
		out = "destination"
	}
	if len(out) > 63 {
		sum := sha256.Sum256([]byte(s))
		out = strings.TrimRight(out[:54], "-") + "-" + hex.EncodeToString(sum[:])[:8]
	}
	return out
}
