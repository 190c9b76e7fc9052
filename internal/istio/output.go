package istio

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// output turns the slots that are not held back into destinations (slots
// of one host with the same settings share one, with several ports),
// checks them as the server would, and renders one ConfigMap per
// namespace.
func (im *importer) output() *Result {
	res := &Result{}
	var live []*slot
	for _, s := range im.slotList {
		if len(s.held) == 0 && im.checkAlone(s) {
			live = append(live, s)
		}
	}
	sort.SliceStable(live, func(i, j int) bool {
		a, b := live[i], live[j]
		if na, nb := im.outNamespace(a), im.outNamespace(b); na != nb {
			return na < nb
		}
		return lessSlot(a, b)
	})
	live = im.claims(live)
	type group struct {
		ns    string
		dests []*outDest
	}
	byNS := map[string]*group{}
	var nss []string
	for _, s := range live {
		ns := im.outNamespace(s)
		g := byNS[ns]
		if g == nil {
			g = &group{ns: ns}
			byNS[ns] = g
			nss = append(nss, ns)
		}
		d := destinationOf(s)
		key := specKey(d)
		var into *outDest
		for _, od := range g.dests {
			if od.d.Host == d.Host && od.key == key {
				into = od
			}
		}
		if into == nil {
			into = &outDest{d: d, key: key, base: dnsLabel(s.base)}
			g.dests = append(g.dests, into)
		} else {
			into.d.Ports = append(into.d.Ports, d.Ports...)
		}
		into.slots = append(into.slots, s)
		res.Identities = res.Identities || identities(d.Allow)
	}
	for _, ns := range nss {
		g := byNS[ns]
		nameDestinations(g.dests)
		cm := ConfigMap{Namespace: ns, Name: im.opts.Name, Destinations: len(g.dests)}
		cm.YAML = im.render(ns, g.dests)
		for _, od := range g.dests {
			for _, s := range od.slots {
				s.dest = &placed{configMap: ns + "/" + im.opts.Name, name: od.d.Name}
			}
		}
		im.check(cm)
		res.ConfigMaps = append(res.ConfigMaps, cm)
	}
	im.resolveAll()
	for _, s := range im.slotList {
		if s.dest == nil {
			res.Held++
		}
	}
	if res.Identities {
		im.rep.add(nil, "", StatusNote, fmt.Sprintf("allow lists name workload identities: serve them with --mesh-port 15443 --mesh-trust-domain %s, sidecars beside the workloads (README: The mesh); without the mesh, only destinations open to every source, or to cidr entries, are reachable", im.opts.TrustDomain))
	}
	return res
}

// Header starts every ConfigMap the importer writes, so a later import
// into the same folder knows which files are its own.
const Header = "# Written by xds-server import"

// outDest is one destination being written, and the slots it carries.
type outDest struct {
	d     intent.Destination
	key   string
	base  string
	slots []*slot
}

// destinationOf is a slot as a destination with one port.
func destinationOf(s *slot) intent.Destination {
	d := s.d
	d.Host = s.key.host
	p := intent.Port{Number: s.key.port, Protocol: s.protocol}
	if s.target != 0 && s.target != s.key.port && !(s.protocol == intent.ProtocolHTTP && d.TLS != nil) {
		p.TargetPort = s.target
	}
	d.Ports = []intent.Port{p}
	if s.protocol == intent.ProtocolHTTP && len(s.timeouts) > 0 {
		d.Timeout = &intent.Duration{Duration: slices.Min(s.timeouts)}
	}
	if s.protocol != intent.ProtocolHTTP {
		d.Retries, d.Timeout = nil, nil
	}
	d.Allow = s.allow
	return d
}

// specKey is a destination's settings but its name and ports: slots of
// one host with the same key share a destination.
func specKey(d intent.Destination) string {
	d.Ports, d.Name = nil, ""
	b, _ := yaml.Marshal(d)
	return string(b)
}

func identities(allow *[]intent.Source) bool {
	if allow == nil {
		return false
	}
	for _, s := range *allow {
		if s.Principal != "" || s.Namespace != "" {
			return true
		}
	}
	return false
}

// nameDestinations gives each destination its name: its ServiceEntry's,
// with the first port when that name is shared, unique in the ConfigMap.
func nameDestinations(ds []*outDest) {
	sort.SliceStable(ds, func(i, j int) bool {
		if ds[i].d.Host != ds[j].d.Host {
			return ds[i].d.Host < ds[j].d.Host
		}
		return ds[i].d.Ports[0].Number < ds[j].d.Ports[0].Number
	})
	count := map[string]int{}
	for _, od := range ds {
		sort.Slice(od.d.Ports, func(i, j int) bool { return od.d.Ports[i].Number < od.d.Ports[j].Number })
		count[od.base]++
	}
	used := map[string]bool{}
	for _, od := range ds {
		name := od.base
		if count[od.base] > 1 {
			name = dnsLabel(fmt.Sprintf("%s-%d", od.base, od.d.Ports[0].Number))
		}
		for n := 2; used[name]; n++ {
			name = dnsLabel(fmt.Sprintf("%s-%d", od.base, n))
		}
		used[name] = true
		od.d.Name = name
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].d.Name < ds[j].d.Name })
}

// checkAlone checks a slot's destination as the server would; one that
// fails is held back with the server's words.
func (im *importer) checkAlone(s *slot) bool {
	d := destinationOf(s)
	d.Name = "check"
	b, err := yaml.Marshal(intent.Document{Gateways: []string{im.opts.Group}, Destinations: []intent.Destination{d}})
	if err != nil {
		s.hold("it cannot be written: " + err.Error())
		im.rep.add(s.origin, s.path, StatusError, "cannot be written: "+err.Error(), s)
		return false
	}
	_, diags := intent.ParseDocument(intent.Origin{}, b)
	ok := true
	for _, dg := range diags {
		path := strings.TrimPrefix(strings.TrimPrefix(dg.Path, "destinations[0]"), ".")
		if dg.Severity == intent.SeverityWarning {
			im.rep.add(s.origin, s.path, StatusNote, "egress-xds warns: "+path+": "+dg.Message, s)
			continue
		}
		ok = false
		s.hold("not valid as an intent: " + dg.Message)
		im.rep.add(s.origin, s.path, StatusNotCarried, "not valid as an intent ("+path+": "+dg.Message+"): held back", s)
	}
	return ok
}

// claims holds back slots that would conflict on the gateways: a host
// and port declared twice, one TCP port for two hosts, one port for two
// protocol families, or a port the gateway keeps for itself.
func (im *importer) claims(live []*slot) []*slot {
	type claim struct{ what string }
	owner := map[string]*slot{}
	family := map[uint32]*slot{}
	var out []*slot
	for _, s := range live {
		port := s.key.port
		if why, ok := im.opts.Resolve.ReservedPorts[im.opts.Resolve.ListenerPort(port)]; ok {
			s.hold(fmt.Sprintf("port %d is the gateway's %s", port, why))
			im.rep.add(s.origin, s.path, StatusNotCarried, fmt.Sprintf("port %d is the gateways' %s: held back (serve with --port-map to move it)", port, why), s)
			continue
		}
		if f, ok := family[port]; ok && familyOf(f.protocol) != familyOf(s.protocol) {
			s.hold(fmt.Sprintf("port %d is %s for %s", port, familyOf(f.protocol), f.key.host))
			im.rep.add(s.origin, s.path, StatusNotCarried, fmt.Sprintf("port %d is already %s for %s: one gateway port serves one protocol family; held back", port, familyOf(f.protocol), f.key.host), s)
			continue
		}
		key := fmt.Sprintf("%s:%d", s.key.host, port)
		if s.protocol == intent.ProtocolTCP {
			key = fmt.Sprintf("tcp:%d", port)
		}
		if prev, ok := owner[key]; ok {
			s.hold(fmt.Sprintf("TCP port %d is already %s's", port, prev.key.host))
			im.rep.add(s.origin, s.path, StatusNotCarried, fmt.Sprintf("TCP port %d is already %s's: TCP carries no host name to tell destinations apart; held back", port, prev.key.host), s)
			continue
		}
		owner[key], family[port] = s, s
		out = append(out, s)
	}
	return out
}

func familyOf(p intent.Protocol) string {
	switch {
	case p.Passthrough():
		return "TLS"
	case p == intent.ProtocolHTTP:
		return "HTTP"
	}
	return "TCP"
}

// render writes a ConfigMap manifest: a comment saying where it came
// from (and what the server needs for identities), the intent labelled,
// each destination headed by the objects it was made from.
func (im *importer) render(ns string, ds []*outDest) []byte {
	var docNode yaml.Node
	doc := intent.Document{Gateways: []string{im.opts.Group}}
	for _, od := range ds {
		doc.Destinations = append(doc.Destinations, od.d)
	}
	if err := docNode.Encode(doc); err != nil {
		return nil
	}
	if dl := mapValue(&docNode, "destinations"); dl != nil {
		for i, od := range ds {
			if i < len(dl.Content) {
				dl.Content[i].HeadComment = "from " + strings.Join(fromObjects(od.slots), ", ")
			}
		}
	}
	var body bytes.Buffer
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	_ = enc.Encode(&docNode)
	_ = enc.Close()

	var head []string
	head = append(head, strings.TrimPrefix(Header, "# ")+" from Istio objects; its report says what was carried over and what was not.")
	ids, held := false, map[string][]string{}
	for _, od := range ds {
		ids = ids || identities(od.d.Allow)
	}
	if ids {
		head = append(head, "Allow lists name workload identities: serve with --mesh-port 15443 --mesh-trust-domain "+im.opts.TrustDomain+" (README: The mesh).")
	}
	for _, s := range im.slotList {
		if len(s.held) > 0 && im.outNamespace(s) == ns {
			k := hostPort(s.key)
			held[k] = append(held[k], s.held...)
		}
	}
	if len(held) > 0 {
		head = append(head, "Held back (not written, so refused):")
		for _, k := range sortedKeys(held) {
			head = append(head, "  "+k+": "+strings.Join(held[k], "; "))
		}
	}
	cm := &yaml.Node{Kind: yaml.MappingNode}
	add := func(m *yaml.Node, k string, v *yaml.Node) {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, v)
	}
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }
	meta := &yaml.Node{Kind: yaml.MappingNode}
	add(meta, "name", str(im.opts.Name))
	add(meta, "namespace", str(ns))
	labels := &yaml.Node{Kind: yaml.MappingNode}
	add(labels, intent.LabelKey, &yaml.Node{Kind: yaml.ScalarNode, Value: "true", Style: yaml.DoubleQuotedStyle})
	add(meta, "labels", labels)
	data := &yaml.Node{Kind: yaml.MappingNode}
	add(data, "egress.yaml", &yaml.Node{Kind: yaml.ScalarNode, Value: body.String(), Style: yaml.LiteralStyle})
	add(cm, "apiVersion", str("v1"))
	add(cm, "kind", str("ConfigMap"))
	add(cm, "metadata", meta)
	add(cm, "data", data)
	cm.HeadComment = strings.Join(head, "\n")
	var out bytes.Buffer
	enc = yaml.NewEncoder(&out)
	enc.SetIndent(2)
	_ = enc.Encode(cm)
	_ = enc.Close()
	return out.Bytes()
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// fromObjects names the objects a destination was made from.
func fromObjects(slots []*slot) []string {
	var out []string
	for _, s := range slots {
		for _, o := range []*object{s.origin, s.cluster.se} {
			if o != nil && !contains(out, o.id()) {
				out = append(out, o.id())
			}
		}
	}
	return out
}

// check parses the ConfigMap written as the server will and reports what
// it refuses: the importer's own mistake, never the input's.
func (im *importer) check(cm ConfigMap) {
	var parsed struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(cm.YAML, &parsed); err != nil {
		im.rep.add(nil, "", StatusError, fmt.Sprintf("ConfigMap %s/%s as written is not YAML (a bug): %v", cm.Namespace, cm.Name, err))
		return
	}
	origin := intent.Origin{Namespace: cm.Namespace, Name: cm.Name}
	in, diags := intent.ParseConfigMap(origin, time.Time{}, parsed.Data)
	if in != nil {
		im.accepted = append(im.accepted, intent.Candidate{Current: in})
	}
	im.bugs(diags)
}

// resolveAll checks the ConfigMaps written against each other, as the
// server resolves conflicts.
func (im *importer) resolveAll() {
	ro := im.opts.Resolve
	ro.TrustDomain = im.opts.TrustDomain
	_, rd := intent.Resolve(im.accepted, ro)
	im.bugs(rd)
}

func (im *importer) bugs(diags intent.Diagnostics) {
	for _, d := range diags {
		if d.Severity != intent.SeverityWarning {
			im.rep.add(nil, "", StatusError, "the ConfigMap written does not validate (a bug of the importer): "+d.Error())
		}
	}
}

// YAML is every ConfigMap written, as one stream of documents.
func (r *Result) YAML() []byte {
	var parts [][]byte
	for _, cm := range r.ConfigMaps {
		parts = append(parts, cm.YAML)
	}
	return bytes.Join(parts, []byte("---\n"))
}
