package istio

import (
	"fmt"
	"strings"
)

// server is one server of an egress Gateway.
type server struct {
	gw    *object
	path  string // spec.servers[i]
	port  uint32
	proto string
	hosts []string
	mode  string // tls.mode, upper case; "" without tls
	// redirect: tls.httpsRedirect, plain HTTP answered with a redirect
	redirect bool
	slots    []*slot
}

// selects reports whether a selector picks the egress gateway's pods.
func (im *importer) selects(sel map[string]string) bool {
	for k, v := range sel {
		if im.opts.GatewayLabels[k] != v {
			return false
		}
	}
	return true
}

// egressGateways reads the Gateways that select the egress gateway;
// the others are reported as not its.
func (im *importer) egressGateways() {
	for _, o := range im.gateways {
		if o.broken {
			continue
		}
		g := o.spec.(*Gateway)
		key := o.meta.Namespace + "/" + o.meta.Name
		if !im.selects(g.Selector) {
			im.rep.addf(o, "", StatusNotCarried, "its selector %s does not select the egress gateway (labels %s): not an egress gateway", labelText(g.Selector), labelText(im.opts.GatewayLabels))
			im.otherGateways[key] = true
			continue
		}
		im.servers[key] = nil
		im.rep.add(o, "spec.selector", StatusCarried, "the egress gateway: its servers are the gateway group "+im.opts.Group)
		for i, sv := range g.Servers {
			p := fmt.Sprintf("spec.servers[%d]", i)
			s := &server{gw: o, path: p}
			if sv.Port != nil {
				s.port, s.proto = sv.Port.Number, strings.ToUpper(sv.Port.Protocol)
			}
			for _, h := range sv.Hosts {
				if _, after, ok := strings.Cut(h, "/"); ok {
					h = after // the namespace part says which VirtualServices may bind
				}
				s.hosts = append(s.hosts, strings.ToLower(h))
			}
			if sv.TLS != nil {
				s.mode = strings.ToUpper(sv.TLS.Mode)
				if s.mode == "" {
					s.mode = "PASSTHROUGH"
				}
			}
			im.servers[key] = append(im.servers[key], s)
			if sv.Bind != "" {
				im.rep.add(o, p+".bind", StatusNotCarried, "the gateways' listeners bind --listener-address")
			}
			if sv.DefaultEndpoint != "" {
				im.rep.add(o, p+".defaultEndpoint", StatusNotCarried, "a sidecar setting")
			}
			if sv.Name != "" {
				im.rep.add(o, p+".name", StatusNotCarried, "names the server only")
			}
			if sv.TLS != nil && sv.TLS.HTTPSRedirect {
				s.redirect = true
				im.rep.add(o, p+".tls.httpsRedirect", StatusAccess, "the gateway answered plain HTTP with a redirect, forwarding nothing: its destinations are held back")
			}
		}
	}
}

// serverFor is the server of an egress Gateway that accepts host on
// port, or nil.
func (im *importer) serverFor(gw, host string, port uint32) *server {
	for _, s := range im.servers[gw] {
		if s.port != port {
			continue
		}
		for _, h := range s.hosts {
			if hostCovers(h, host) {
				return s
			}
		}
	}
	return nil
}

// serverEffect applies what a server says about how traffic arrives.
func (im *importer) serverEffect(sv *server, s *slot) {
	sv.slots = append(sv.slots, s)
	switch sv.mode {
	case "ISTIO_MUTUAL":
		s.mesh = true
	case "SIMPLE", "OPTIONAL_MUTUAL":
		// The gateway terminated TLS with a certificate of its own:
		// workloads speak the ServiceEntry's protocol to it here.
	case "MUTUAL":
		s.hold("the egress gateway required client certificates of its own CA (Gateway tls MUTUAL)")
	case "AUTO_PASSTHROUGH":
		s.hold("AUTO_PASSTHROUGH routes by Istio's SNI form outbound_.port_.subset_.host, which egress-xds does not read")
	}
	if sv.redirect {
		s.hold("the egress gateway answered plain HTTP with a redirect (tls.httpsRedirect)")
	}
}

// reportServers says what became of every egress Gateway server.
func (im *importer) reportServers() {
	for _, o := range im.gateways {
		for _, sv := range im.servers[o.meta.Namespace+"/"+o.meta.Name] {
			st, text := StatusCarried, ""
			switch {
			case sv.mode == "ISTIO_MUTUAL":
				text = fmt.Sprintf("port %d %s over Istio's mutual TLS from sidecars: here the gateways' mesh port (--mesh-port, mutual TLS from sidecars); workloads name the port they connect to", sv.port, sv.proto)
			case sv.mode == "PASSTHROUGH":
				text = fmt.Sprintf("port %d %s passed through by SNI", sv.port, sv.proto)
			case sv.mode == "":
				text = fmt.Sprintf("port %d %s", sv.port, sv.proto)
			case sv.mode == "SIMPLE" || sv.mode == "OPTIONAL_MUTUAL":
				st, text = StatusNotCarried, fmt.Sprintf("port %d: TLS terminated with the gateway's own certificate (%s): here workloads speak the ServiceEntry's protocol to the gateway", sv.port, sv.mode)
			case sv.mode == "MUTUAL":
				st, text = StatusAccess, fmt.Sprintf("port %d required client certificates of the gateway's own CA (tls MUTUAL): not expressible, its destinations are held back", sv.port)
			default:
				st, text = StatusNotCarried, fmt.Sprintf("port %d tls mode %s: not expressible, its destinations are held back", sv.port, sv.mode)
			}
			if len(sv.slots) == 0 {
				if st == StatusCarried {
					st = StatusNotCarried
				}
				text += "; no ServiceEntry and VirtualService route takes traffic through it"
			}
			im.rep.add(o, sv.path, st, text, sv.slots...)
		}
	}
}

// hostCovers reports whether an Istio host pattern (exact, "*.domain",
// or "*") covers every name of host (itself exact or "*.domain").
func hostCovers(pattern, host string) bool {
	switch {
	case pattern == "*" || pattern == host:
		return true
	case strings.HasPrefix(pattern, "*"):
		suffix := pattern[1:]
		if strings.HasPrefix(host, "*") {
			return strings.HasSuffix(host[1:], suffix)
		}
		return strings.HasSuffix(host, suffix)
	}
	return false
}

// hostOverlaps reports whether a pattern covers some, not all, names of
// a wildcard host.
func hostOverlaps(pattern, host string) bool {
	if hostCovers(pattern, host) || !strings.HasPrefix(host, "*") {
		return false
	}
	p := strings.TrimPrefix(pattern, "*")
	return strings.HasSuffix(p, host[1:])
}

func labelText(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
