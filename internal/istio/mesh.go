package istio

import (
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Sidecars, PeerAuthentications and RequestAuthentications narrow access
// too: what a namespace's workloads see, whether workloads without a
// sidecar reach the gateway, whether a request's token is checked. Each
// is carried as a narrowing of allow lists where that is exact, and holds
// destinations back where it is not.

type sidecarEgress struct {
	Port *struct {
		Number   uint32 `json:"number"`
		Protocol string `json:"protocol"`
		Name     string `json:"name"`
	} `json:"port"`
	Bind        string   `json:"bind"`
	CaptureMode string   `json:"captureMode"`
	Hosts       []string `json:"hosts"`
}

func (im *importer) sidecars() {
	for _, o := range im.sidecarObjs {
		sc := o.spec.(*Sidecar)
		if p := sc.OutboundTrafficPolicy; p != nil {
			if strings.ToUpper(p.Mode) == "REGISTRY_ONLY" {
				im.rep.add(o, "spec.outboundTrafficPolicy", StatusDefault, "REGISTRY_ONLY: egress-xds refuses every host no intent declares")
			} else {
				im.rep.add(o, "spec.outboundTrafficPolicy", StatusNote, p.Mode+": egress-xds refuses every host no intent declares (narrower)")
			}
		}
		for _, f := range []field{{"ingress", sc.Ingress.Set()}, {"inboundConnectionPool", sc.InboundConnectionPool.Set()}} {
			if f.set {
				im.rep.add(o, "spec."+f.name, StatusNotCarried, "the workloads' inbound traffic: not egress")
			}
		}
		if !sc.Egress.Set() {
			continue
		}
		var egress []sidecarEgress
		var d decoder
		d.decode(sc.Egress.Node, &egress, "spec.egress")
		if len(d.problems) > 0 {
			im.holdAll(o, "spec.egress", "a Sidecar's egress could not be read")
			continue
		}
		ns := o.meta.Namespace
		if sc.WorkloadSelector != nil {
			im.rep.add(o, "spec.workloadSelector", StatusAccess, "applies to some workloads of "+ns+" only: what it hides is refused to the whole namespace (narrower)")
		}
		var hidden []*slot
		for _, s := range im.slotList {
			if len(s.held) > 0 || s.cluster.se == nil {
				continue
			}
			if !sees(egress, ns, s.cluster.se.meta.Namespace, s.key) {
				im.subtract(o, "spec.egress", s, alt{ids: idset{namespaces: []string{ns}}}, nil)
				hidden = append(hidden, s)
			}
		}
		if len(hidden) > 0 {
			im.rep.add(o, "spec.egress", StatusCarried, "workloads of "+ns+" did not see these hosts: not admitted", hidden...)
		} else {
			im.rep.add(o, "spec.egress", StatusCarried, "workloads of "+ns+" saw every declared destination")
		}
	}
}

// sees reports whether a Sidecar's egress listeners show a host of
// namespace seNS on a port to workloads of ns.
func sees(egress []sidecarEgress, ns, seNS string, k slotKey) bool {
	for _, e := range egress {
		if e.Port != nil && e.Port.Number != 0 && e.Port.Number != k.port {
			continue
		}
		for _, h := range e.Hosts {
			hn, hh, ok := strings.Cut(h, "/")
			if !ok {
				continue
			}
			switch hn {
			case "*":
			case ".":
				if seNS != ns {
					continue
				}
			case "~":
				continue
			default:
				if hn != seNS {
					continue
				}
			}
			if hostCovers(strings.ToLower(hh), k.host) {
				return true
			}
		}
	}
	return false
}

func (im *importer) peerAuthentications() {
	for _, o := range im.peerAuthObjs {
		pa := o.spec.(*PeerAuthentication)
		if o.meta.Namespace != im.opts.GatewayNamespace || pa.Selector != nil && !im.selects(pa.Selector.MatchLabels) {
			im.rep.add(o, "", StatusNotCarried, "applies to other workloads than the egress gateway (their inbound mutual TLS)")
			continue
		}
		strict := pa.Mtls != nil && strings.ToUpper(pa.Mtls.Mode) == "STRICT"
		for _, k := range sortedKeys(pa.PortLevelMtls) {
			strict = strict || strings.ToUpper(pa.PortLevelMtls[k].Mode) == "STRICT"
		}
		if !strict {
			im.rep.add(o, "spec", StatusNotCarried, "does not require mutual TLS at the gateway: no restriction to carry")
			continue
		}
		var narrowed []*slot
		for _, s := range im.slotList {
			if len(s.held) > 0 {
				continue
			}
			if s.allow == nil {
				s.hold("a STRICT PeerAuthentication let only mesh workloads reach the egress gateway")
				narrowed = append(narrowed, s)
				continue
			}
			var keep []intent.Source
			for _, src := range *s.allow {
				if src.CIDR == "" && !everySource(src) {
					keep = append(keep, src)
				}
			}
			if len(keep) != len(*s.allow) {
				narrowed = append(narrowed, s)
			}
			if len(keep) == 0 {
				s.hold("a STRICT PeerAuthentication let only mesh workloads reach the egress gateway")
				continue
			}
			s.allow = &keep
		}
		if len(narrowed) == 0 {
			im.rep.add(o, "spec.mtls", StatusCarried, "STRICT: only workloads with a sidecar (mutual TLS) reached the gateway; every destination written admits workload identities only, which only the mesh port proves")
			continue
		}
		im.rep.add(o, "spec.mtls", StatusAccess, "STRICT: only workloads with a sidecar (mutual TLS) reached the gateway; destinations open to other sources, and cidr entries, cannot say so: held back or taken out (narrower)", narrowed...)
	}
	for _, o := range im.requestAuthObjs {
		var held []*slot
		for _, s := range im.slotList {
			if s.protocol == intent.ProtocolHTTP && len(s.held) == 0 {
				s.hold("a RequestAuthentication on the egress gateway refused requests with invalid tokens")
				held = append(held, s)
			}
		}
		im.rep.add(o, "spec", StatusAccess, "the egress gateway refused HTTP requests carrying an invalid JWT; egress-xds does not check tokens: its HTTP destinations are held back", held...)
	}
}

// sweep reports every field no step accounted for, so that nothing is
// dropped without a line saying so.
func (im *importer) sweep() {
	for _, o := range im.objs {
		if o.broken {
			im.rep.add(o, "spec", StatusNotCarried, "the object has errors (listed above): nothing of it is carried")
			continue
		}
		var ls []string
		if spec := o.field("spec"); spec != nil {
			leaves(spec, "spec", &ls)
		}
		cs := newCoveredSet(o.covered)
		for _, l := range ls {
			if cs.covers(l) {
				continue
			}
			st := StatusNotCarried
			if o.kind == "AuthorizationPolicy" {
				st = StatusAccess
			}
			im.rep.add(o, l, st, "not used: egress-xds has no equivalent")
		}
	}
}
