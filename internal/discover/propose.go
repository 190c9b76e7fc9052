package discover

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// Proposal is one proposed ConfigMap manifest.
type Proposal struct {
	// File is the suggested file name: <namespace>.<name>.yaml, and
	// widen.<namespace>.<name>.yaml for a widening.
	File string
	// ConfigMap is namespace/name.
	ConfigMap string
	// Widening replaces an existing ConfigMap, whose allow lists it
	// widens; otherwise the ConfigMap is new.
	Widening bool
	Manifest []byte
}

// Result is what Propose proposes, and what it did not, with why.
type Result struct {
	Proposals []Proposal
	Notes     []string
}

// Propose turns what was collected into ConfigMaps: new ones for the
// destinations current lacks (every destination without current), and
// widenings of current ConfigMaps whose allow lists refused a source.
// Every proposal is judged with current as the server would (ro: its
// reserved ports, port map, mesh), current served first: one that would be
// refused (a conflict, a reserved port, an identity without the mesh) is
// left out, and a note says why. The same lines give the same result.
func (c *Collector) Propose(current []compile.ConfigMap, ro intent.ResolveOptions) Result {
	var res Result
	cur, _ := compile.NewStore().Update(current, ro)
	byKey := map[string]compile.ConfigMap{}
	for _, cm := range current {
		byKey[cm.Origin().ConfigMap()] = cm
	}
	props := c.newDestinations(cur, &res)
	props = append(props, c.widenings(cur, byKey, &res)...)
	res.Proposals = c.judge(current, props, ro, &res)
	sort.Slice(res.Proposals, func(i, j int) bool { return res.Proposals[i].File < res.Proposals[j].File })
	sort.Strings(res.Notes)
	return res
}

// portSeen is one proposed port of a destination.
type portSeen struct {
	port     uint32
	protocol intent.Protocol
	seen
}

type proposedDest struct {
	group, host string
	ports       []portSeen
	src         sources
	seen        seen
	wildcardOf  int // names it stands for, when a wildcard
}

// newDestinations groups the undeclared destination ports by group and
// host, wildcards where enough names of one domain were seen.
func (c *Collector) newDestinations(cur []*intent.Intent, res *Result) []Proposal {
	keys := make([]destKey, 0, len(c.dests))
	for k := range c.dests {
		if by, ok := declared(cur, k); ok {
			res.Notes = append(res.Notes, fmt.Sprintf("%s port %d (%s, group %s): already declared by %s", k.host, k.port, k.protocol, k.group, by))
			continue
		}
		keys = append(keys, k)
	}
	sortKeys(keys)
	merged := map[destKey]*destination{}
	names := map[destKey]int{}
	wild := c.wildcards(keys, res)
	for _, k := range keys {
		d := c.dests[k]
		if w, ok := wild[k]; ok {
			k.host = w
		}
		m := merged[k]
		if m == nil {
			m = &destination{}
			merged[k] = m
		}
		m.seen.merge(d.seen)
		m.sources.merge(d.sources)
		names[k]++
	}
	byHost := map[[2]string]*proposedDest{}
	var order [][2]string
	for _, k := range sortedKeys(merged) {
		d := merged[k]
		hk := [2]string{k.group, k.host}
		p := byHost[hk]
		if p == nil {
			p = &proposedDest{group: k.group, host: k.host}
			byHost[hk] = p
			order = append(order, hk)
		}
		if strings.HasPrefix(k.host, "*.") {
			p.wildcardOf += names[k]
		}
		p.ports = append(p.ports, portSeen{port: k.port, protocol: k.protocol, seen: d.seen})
		p.src.merge(d.sources)
		p.seen.merge(d.seen)
	}
	groups := map[string]bool{}
	for _, hk := range order {
		groups[hk[0]] = true
	}
	var out []Proposal
	for _, hk := range order {
		p := byHost[hk]
		p.ports = onePerPort(p, res)
		out = append(out, c.render(p, len(groups) > 1))
	}
	return out
}

// onePerPort keeps one protocol per port number (a destination declares a
// port once): the one seen most, TLS and HTTP before TCP on a tie.
func onePerPort(p *proposedDest, res *Result) []portSeen {
	best := map[uint32]portSeen{}
	rank := func(ps portSeen) int {
		if ps.protocol == intent.ProtocolTCP {
			return 0
		}
		return 1
	}
	for _, ps := range p.ports {
		b, ok := best[ps.port]
		if !ok {
			best[ps.port] = ps
			continue
		}
		keep, drop := b, ps
		if ps.count > b.count || (ps.count == b.count && rank(ps) > rank(b)) {
			keep, drop = ps, b
		}
		best[ps.port] = keep
		res.Notes = append(res.Notes, fmt.Sprintf("%s port %d (group %s): seen as %s and %s; proposed as %s, seen more", p.host, ps.port, p.group, keep.protocol, drop.protocol, keep.protocol))
	}
	out := make([]portSeen, 0, len(best))
	for _, ps := range best {
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].port < out[j].port })
	return out
}

// wildcards maps the hosts proposed as a wildcard to it: at least
// WildcardThreshold distinct names directly under one domain, for one
// group, port and protocol, and a wildcard intents accept (not at a public
// suffix).
func (c *Collector) wildcards(keys []destKey, res *Result) map[destKey]string {
	out := map[destKey]string{}
	if c.opts.WildcardThreshold < 1 {
		return out
	}
	type domainKey struct {
		group, domain string
		port          uint32
		protocol      intent.Protocol
	}
	under := map[domainKey][]destKey{}
	for _, k := range keys {
		_, parent, ok := strings.Cut(k.host, ".")
		if !ok || !strings.Contains(parent, ".") {
			continue
		}
		dk := domainKey{k.group, parent, k.port, k.protocol}
		under[dk] = append(under[dk], k)
	}
	for dk, ks := range under {
		if len(ks) < c.opts.WildcardThreshold {
			continue
		}
		w := "*." + dk.domain
		if !wildcardAccepted(w) {
			res.Notes = append(res.Notes, fmt.Sprintf("%d names under %s (port %d, group %s) are proposed one by one: intents refuse the wildcard %s", len(ks), dk.domain, dk.port, dk.group, w))
			continue
		}
		for _, k := range ks {
			out[k] = w
		}
	}
	return out
}

// wildcardAccepted asks intent validation whether a wildcard host is one
// an intent may declare.
func wildcardAccepted(host string) bool {
	doc := "destinations: [{name: probe, host: " + strconv.Quote(host) + ", ports: [{number: 443, protocol: TLS}]}]"
	in, _ := intent.ParseConfigMap(intent.Origin{Namespace: "probe", Name: "probe"}, time.Time{}, map[string]string{"egress.yaml": doc})
	return in != nil
}

// declared reports whether the current intents of the group already
// declare a host (exactly, or by a wildcard) on a port.
func declared(cur []*intent.Intent, k destKey) (string, bool) {
	for _, in := range cur {
		for _, d := range in.Docs {
			if !d.AppliesTo(k.group) {
				continue
			}
			for i := range d.Destinations {
				dest := &d.Destinations[i]
				if !covers(dest.Host, k.host) {
					continue
				}
				for _, p := range dest.Ports {
					if p.Number == k.port {
						return in.Origin.ConfigMap(), true
					}
				}
			}
		}
	}
	return "", false
}

func covers(declared, host string) bool {
	if w, ok := strings.CutPrefix(declared, "*"); ok {
		return strings.HasSuffix(host, w) && len(host) > len(w)
	}
	return declared == host
}

// render writes a new destination's ConfigMap.
func (c *Collector) render(p *proposedDest, manyGroups bool) Proposal {
	name := configMapName(p.host)
	if manyGroups {
		name = configMapName(strings.ToLower(strings.ReplaceAll(p.group, "_", "-")) + "." + strings.ReplaceAll(p.host, "*", "wildcard"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "gateways: [%s]\n", p.group)
	b.WriteString("destinations:\n")
	fmt.Fprintf(&b, "  - name: %s\n", destinationName(p.host))
	fmt.Fprintf(&b, "    host: %s\n", strconv.Quote(p.host))
	b.WriteString("    ports:\n")
	for _, ps := range p.ports {
		fmt.Fprintf(&b, "      - {number: %d, protocol: %s}  # %s\n", ps.port, ps.protocol, ps.seen.describe())
	}
	writeAllow(&b, "    ", p.src)
	header := []string{
		"Proposed by xds-server discover from the audit log: review before applying.",
		fmt.Sprintf("%s (gateway group %s): %s.", p.host, p.group, p.seen.describe()),
	}
	if p.wildcardOf > 0 {
		header = append(header, fmt.Sprintf("A wildcard: %d names under %s were seen.", p.wildcardOf, strings.TrimPrefix(p.host, "*.")))
	}
	header = append(header, "The allow list is the sources seen: addresses aggregated into CIDRs, workload identities as principals.")
	data := map[string]string{"egress.yaml": b.String()}
	return Proposal{
		File:      c.opts.Namespace + "." + name + ".yaml",
		ConfigMap: c.opts.Namespace + "/" + name,
		Manifest:  manifest(header, c.opts.Namespace, name, map[string]string{intent.LabelKey: "true"}, data),
	}
}

// writeAllow writes the allow list of the sources seen, identities first,
// then address ranges, each with what was seen of it.
func writeAllow(b *strings.Builder, indent string, s sources) {
	b.WriteString(indent + "allow:\n")
	for _, e := range allowEntries(s) {
		fmt.Fprintf(b, "%s  - {%s: %s}  # %s\n", indent, e.field, e.value, e.comment)
	}
}

type allowEntry struct{ field, value, comment string }

func allowEntries(s sources) []allowEntry {
	var out []allowEntry
	ids := make([]string, 0, len(s.ids))
	for id := range s.ids {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		out = append(out, allowEntry{"principal", strconv.Quote(id), s.ids[id].describe()})
	}
	ps := make([]netip.Prefix, 0, len(s.buckets))
	for p := range s.buckets {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Addr().Less(ps[j].Addr()) })
	for _, p := range ps {
		b := s.buckets[p]
		cov := b.cover()
		what := b.seen.describe()
		if b.min != b.max {
			what += ", addresses " + b.min.String() + " to " + b.max.String()
		}
		out = append(out, allowEntry{"cidr", cov.String(), what})
	}
	return out
}

// describe is how often and when something was seen, for comments.
func (s seen) describe() string {
	d := fmt.Sprintf("seen %d time(s)", s.count)
	if s.count == 1 {
		d = "seen once"
	}
	if !s.first.IsZero() {
		d += ", first " + s.first.Format(time.RFC3339) + ", last " + s.last.Format(time.RFC3339)
	}
	return d
}

// configMapName is a Kubernetes object name for a host: '*' spelled
// wildcard, at most 253 characters (cut with a hash of the rest).
func configMapName(host string) string {
	n := strings.ReplaceAll(host, "*", "wildcard")
	if len(n) <= 253 {
		return n
	}
	return strings.TrimRight(n[:240], ".-") + "-" + shortHash(n)
}

// destinationName is a DNS label for a host.
func destinationName(host string) string {
	n := strings.ReplaceAll(strings.ReplaceAll(host, "*", "wildcard"), ".", "-")
	if len(n) <= 63 {
		return n
	}
	return strings.TrimRight(n[:54], "-") + "-" + shortHash(n)
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

// manifest is a ConfigMap manifest with header comments; data values are
// literal blocks where YAML allows.
func manifest(header []string, namespace, name string, labels, data map[string]string) []byte {
	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }
	mapping := func(kv ...*yaml.Node) *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Content: kv} }
	var ls []*yaml.Node
	for _, k := range sortedStrings(labels) {
		ls = append(ls, str(k), &yaml.Node{Kind: yaml.ScalarNode, Value: labels[k], Style: yaml.DoubleQuotedStyle})
	}
	var ds []*yaml.Node
	for _, k := range sortedStrings(data) {
		ds = append(ds, str(k), &yaml.Node{Kind: yaml.ScalarNode, Value: data[k], Style: yaml.LiteralStyle})
	}
	root := mapping(
		str("apiVersion"), str("v1"),
		str("kind"), str("ConfigMap"),
		str("metadata"), mapping(str("name"), str(name), str("namespace"), str(namespace), str("labels"), mapping(ls...)),
		str("data"), mapping(ds...),
	)
	root.HeadComment = strings.Join(header, "\n")
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil
	}
	_ = enc.Close()
	out := buf.Bytes()
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return out
}

// widenings are the current ConfigMaps whose allow lists refused sources
// that audit let through: each a copy with those sources added (only
// those the allow list does not admit yet), its comments kept.
func (c *Collector) widenings(cur []*intent.Intent, byKey map[string]compile.ConfigMap, res *Result) []Proposal {
	type edit struct {
		key, dest string
		src       sources
		seen      seen
	}
	edits := map[string][]edit{} // by ConfigMap
	wks := make([]widenKey, 0, len(c.widen))
	for k := range c.widen {
		wks = append(wks, k)
	}
	sort.Slice(wks, func(i, j int) bool {
		return wks[i].cluster < wks[j].cluster || (wks[i].cluster == wks[j].cluster && wks[i].group < wks[j].group)
	})
	for _, wk := range wks {
		d := c.widen[wk]
		in, doc, dest := findCluster(cur, wk)
		if dest == nil {
			res.Notes = append(res.Notes, fmt.Sprintf("%s (group %s): sources outside its allow list were let through %d time(s), but no current intent (--config-dir) declares it: nothing to widen", wk.cluster, wk.group, d.count))
			continue
		}
		if dest.Allow == nil {
			res.Notes = append(res.Notes, fmt.Sprintf("%s (group %s): its current intent has no allow list (every source is admitted): nothing to widen", wk.cluster, wk.group))
			continue
		}
		add := notAdmitted(d.sources, dest)
		if add.size() == 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: every source seen outside its allow list is admitted by the current one", wk.cluster))
			continue
		}
		cm := in.Origin.ConfigMap()
		if dest.HasHTTPRules() {
			// An added entry has no rules of its own: the destination's
			// apply to it, which may be none where other entries have
			// their own.
			res.Notes = append(res.Notes, fmt.Sprintf("%s: the sources added get the destination's own methods and paths (%s), not those of its other allow entries: review them", wk.cluster, rulesText(dest)))
		}
		edits[cm] = append(edits[cm], edit{key: doc.Origin.Key, dest: dest.Name, src: add, seen: d.seen})
	}
	var out []Proposal
	for _, cmKey := range sortedStrings(edits) {
		cm := byKey[cmKey]
		data := map[string]string{}
		for k, v := range cm.Data {
			data[k] = v
		}
		var what []string
		ok := true
		for _, e := range edits[cmKey] {
			text, err := widen(data[e.key], e.dest, e.src)
			if err != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("%s: %s: destination %s: cannot widen its allow list: %v", cmKey, e.key, e.dest, err))
				ok = false
				break
			}
			data[e.key] = text
			what = append(what, fmt.Sprintf("%s: destination %s, %d source(s) added (%s outside its allow list)", e.key, e.dest, e.src.size(), e.seen.describe()))
		}
		if !ok {
			continue
		}
		header := append([]string{
			"WIDENING proposed by xds-server discover: this replaces the ConfigMap " + cmKey + " with its allow lists widened.",
			"Review each added source (marked \"added by discover\") before applying: audit let them through, enforce refused them.",
		}, what...)
		ns, name, _ := strings.Cut(cmKey, "/")
		out = append(out, Proposal{
			File: "widen." + ns + "." + name + ".yaml", ConfigMap: cmKey, Widening: true,
			Manifest: manifest(header, ns, name, cm.Labels, data),
		})
	}
	return out
}

// rulesText says what the destination's own methods and paths admit.
func rulesText(d *intent.Destination) string {
	if len(d.Methods) == 0 && len(d.Paths) == 0 {
		return "none: every request"
	}
	var parts []string
	if len(d.Methods) > 0 {
		parts = append(parts, "methods "+strings.Join(d.Methods, ", "))
	}
	if len(d.Paths) > 0 {
		var ps []string
		for _, p := range d.Paths {
			if p.Prefix != "" {
				ps = append(ps, "prefix "+p.Prefix)
			} else {
				ps = append(ps, "exact "+p.Exact)
			}
		}
		parts = append(parts, "paths "+strings.Join(ps, ", "))
	}
	return strings.Join(parts, "; ")
}

// findCluster finds the current destination whose cluster (translate's
// naming) is wk's, in a document of wk's group.
func findCluster(cur []*intent.Intent, wk widenKey) (*intent.Intent, *intent.Doc, *intent.Destination) {
	for _, in := range cur {
		for di := range in.Docs {
			d := &in.Docs[di]
			if !d.AppliesTo(wk.group) {
				continue
			}
			for i := range d.Destinations {
				dest := &d.Destinations[i]
				id := translate.DestinationID(d.Origin, dest.Name)
				if !strings.HasPrefix(wk.cluster, id+"/") {
					continue
				}
				for _, p := range dest.Ports {
					if wk.cluster == id+"/"+strconv.Itoa(int(p.Number)) {
						return in, d, dest
					}
				}
			}
		}
	}
	return nil, nil, nil
}

// notAdmitted are the sources a destination's allow list does not admit.
func notAdmitted(s sources, dest *intent.Destination) sources {
	var out sources
	for p, b := range s.buckets {
		cov := b.cover()
		admitted := false
		for _, a := range *dest.Allow {
			if a.CIDR == "" {
				continue
			}
			if ap, err := intent.ParseCIDR(a.CIDR); err == nil && ap.Bits() <= cov.Bits() && ap.Contains(cov.Addr()) {
				admitted = true
			}
		}
		if !admitted {
			if out.buckets == nil {
				out.buckets = map[netip.Prefix]*bucket{}
			}
			out.buckets[p] = b
		}
	}
	for id, e := range s.ids {
		admitted := false
		for _, a := range *dest.Allow {
			wid, err := intent.ParseWorkloadID(id)
			if a.Principal == id || (a.Namespace != "" && err == nil && wid.Namespace == a.Namespace) {
				admitted = true
			}
		}
		if !admitted {
			if out.ids == nil {
				out.ids = map[string]*seen{}
			}
			out.ids[id] = e
		}
	}
	return out
}

// widen adds sources to the allow list of the named destination of one
// intent document, editing its YAML so that the rest (comments, order) is
// kept; the allow list is written one source per line.
func widen(text, dest string, add sources) (string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(text), &root); err != nil {
		return "", err
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return "", fmt.Errorf("not a document")
	}
	dests := mapValue(root.Content[0], "destinations")
	if dests == nil || dests.Kind != yaml.SequenceNode {
		return "", fmt.Errorf("no destinations list")
	}
	var allow *yaml.Node
	for _, item := range dests.Content {
		if n := mapValue(item, "name"); n != nil && n.Value == dest {
			allow = mapValue(item, "allow")
			// Block style down to the list, one source per line with
			// its comment (a flow collection holds no comments).
			dests.Style, item.Style = 0, 0
		}
	}
	if allow == nil || allow.Kind != yaml.SequenceNode {
		return "", fmt.Errorf("no allow list")
	}
	allow.Style = 0
	for _, e := range allow.Content {
		e.Style = yaml.FlowStyle
	}
	// A comment on the list, as a flow list holds it, goes with its
	// first entry: a block list does not print it.
	if allow.LineComment != "" && len(allow.Content) > 0 && allow.Content[0].LineComment == "" {
		allow.Content[0].LineComment, allow.LineComment = allow.LineComment, ""
	}
	for _, e := range allowEntries(add) {
		var v yaml.Node
		if err := yaml.Unmarshal([]byte(e.value), &v); err != nil || len(v.Content) == 0 {
			return "", fmt.Errorf("source %s: %v", e.value, err)
		}
		value := &yaml.Node{Kind: yaml.ScalarNode, Value: v.Content[0].Value}
		if e.field == "principal" {
			value.Style = yaml.DoubleQuotedStyle // as in new proposals
		}
		entry := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, LineComment: "added by discover: " + e.comment,
			Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: e.field}, value}}
		allow.Content = append(allow.Content, entry)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// judge keeps the proposals the server would accept beside current
// (served first), dropping the others with the reason, until every one
// left is accepted.
func (c *Collector) judge(current []compile.ConfigMap, props []Proposal, ro intent.ResolveOptions, res *Result) []Proposal {
	files := map[string]string{}
	for _, cm := range current {
		files[cm.Origin().ConfigMap()] = cm.File
	}
	base := compile.NewStore()
	_, curDiags := base.Update(current, ro)
	existing := map[string]bool{}
	for _, d := range curDiags {
		existing[d.Error()] = true
	}
	for range len(props) + 1 {
		replaced := map[string]bool{}
		var cms []compile.ConfigMap
		parsed := map[string]bool{}
		for _, p := range props {
			objs, _, err := watch.ParseManifests(p.Manifest)
			if err != nil || len(objs) != 1 {
				res.Notes = append(res.Notes, fmt.Sprintf("%s: internal error: the proposal does not parse as a manifest: %v", p.ConfigMap, err))
				continue
			}
			file := p.File
			if p.Widening {
				replaced[p.ConfigMap], file = true, files[p.ConfigMap]
			}
			parsed[p.ConfigMap] = true
			cms = append(cms, compile.ConfigMap{File: file, ConfigMap: &objs[0]})
		}
		for _, cm := range current {
			if !replaced[cm.Origin().ConfigMap()] {
				cms = append(cms, cm)
			}
		}
		s := compile.NewStore()
		s.Update(current, ro)
		_, diags := s.Update(cms, ro)
		bad := map[string]string{}
		for _, d := range diags {
			key := d.Origin.ConfigMap()
			if d.Severity == intent.SeverityError && parsed[key] && !existing[d.Error()] && bad[key] == "" {
				msg := d.Message
				if d.Path != "" {
					msg = d.Path + ": " + msg
				}
				bad[key] = msg
			}
		}
		kept := props[:0:0]
		for _, p := range props {
			if !parsed[p.ConfigMap] {
				continue
			}
			if why, no := bad[p.ConfigMap]; no {
				res.Notes = append(res.Notes, fmt.Sprintf("%s: not proposed, the server would refuse it: %s", p.ConfigMap, why))
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) == len(props) {
			return kept
		}
		props = kept
	}
	return props
}

func sortKeys(ks []destKey) {
	sort.Slice(ks, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if a.group != b.group {
			return a.group < b.group
		}
		if a.host != b.host {
			return a.host < b.host
		}
		if a.port != b.port {
			return a.port < b.port
		}
		return a.protocol < b.protocol
	})
}

func sortedKeys(m map[destKey]*destination) []destKey {
	ks := make([]destKey, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sortKeys(ks)
	return ks
}

func sortedStrings[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
