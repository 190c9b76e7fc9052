package translate

import (
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// A translation with a cache lists the destination ports document by
// document (segments), in the order of all of them, so that what is
// built from many ports (the clusters, the chains of a TLS listener, the
// virtual hosts of an HTTP listener, the forward proxy and the mesh port)
// is put together from what each document gave last time: a document
// reused whole gives the same clusters, chains, virtual hosts and
// traits, and only the edited ones are walked port by port. Without a
// cache, or when the documents' ports had to be sorted together, there
// are no segments and every port is walked.

// segment is one document's destination ports; doc is its cache entry
// when the document is reused whole (cachedDoc.collected), nil
// otherwise.
type segment struct {
	doc        *cachedDoc
	start, end int // in translator.ports
}

// docOutputs are what a document's ports gave, kept in its cache entry.
type docOutputs struct {
	// clusters: its clusters and endpoints (the cluster goroutine's);
	// proxy: its virtual hosts on the forward proxy and the mesh port.
	clusters, proxy *fragment
	traits          *portTraits
	// groups are its ports by listener port; chains and vhosts, its
	// filter chains on TLS listeners and virtual hosts on HTTP ones, by
	// port.
	groups         map[uint32][]*destPort
	chains, vhosts map[uint32]*fragment
	listenerTraits map[uint32]*portTraits
}

// listenerSegment is one document's ports on a listener; doc as in
// segment.
type listenerSegment struct {
	doc *cachedDoc
	dps []*destPort
}

// tlsChains are the filter chains of dps on a TLS listener, and their
// kinds; from each reused document's when dps are all the ports on it.
func (t *translator) tlsChains(listener string, port uint32, dps []*destPort) ([]*listenerv3.FilterChain, chainKinds) {
	var out []*listenerv3.FilterChain
	var kinds chainKinds
	for _, f := range t.listenerParts(port, dps, func(o *docOutputs) *map[uint32]*fragment { return &o.chains }, func(f *fragment, dps []*destPort) {
		for _, dp := range dps {
			f.chains = append(f.chains, t.cachedAdmissionChains(listener, dp)...)
		}
		f.kinds.add(t, f.chains)
	}) {
		out = append(out, f.chains...)
		kinds.merge(f.kinds)
	}
	return out, kinds
}

// httpVirtualHosts are the virtual hosts of dps on an HTTP listener, as
// tlsChains, in a new list with room for extra more.
func (t *translator) httpVirtualHosts(port uint32, dps []*destPort, extra int) []*routev3.VirtualHost {
	out := make([]*routev3.VirtualHost, 0, len(dps)+extra)
	for _, f := range t.listenerParts(port, dps, func(o *docOutputs) *map[uint32]*fragment { return &o.vhosts }, func(f *fragment, dps []*destPort) {
		for _, dp := range dps {
			f.vhosts = append(f.vhosts, t.cachedHTTPVirtualHost(dp))
		}
	}) {
		out = append(out, f.vhosts...)
	}
	return out
}

// listenerParts are the fragments that build makes of dps on a listener
// port: one per document, kept in the entry that store names of each
// reused one, when dps are all the ports on it; one of all otherwise.
func (t *translator) listenerParts(port uint32, dps []*destPort, store func(*docOutputs) *map[uint32]*fragment, build func(*fragment, []*destPort)) []*fragment {
	segs := t.listenerSegments(port, dps)
	if segs == nil {
		segs = []listenerSegment{{dps: dps}}
	}
	out := make([]*fragment, 0, len(segs))
	for _, s := range segs {
		b := func(f *fragment) { build(f, s.dps) }
		if s.doc == nil {
			out = append(out, t.build(b))
			continue
		}
		m := store(&s.doc.out)
		if f := (*m)[port]; f != nil {
			out = append(out, t.replay(f))
			continue
		}
		f := t.build(b)
		if *m == nil {
			*m = map[uint32]*fragment{}
		}
		(*m)[port] = f
		out = append(out, f)
	}
	return out
}

// portTraits are what a connection manager's filters depend on among its
// destination ports.
type portTraits struct {
	httpRules, pathRules, dynamic bool
	// Global rate limits: fail open, fail closed, by source kind.
	limitOpen, limitClosed bool
	limitKinds             map[intent.SourceKind]bool
}

func (t *translator) traitsOf(dps []*destPort) portTraits {
	var tr portTraits
	for _, dp := range dps {
		d := dp.dest
		tr.httpRules = tr.httpRules || d.HasHTTPRules()
		tr.pathRules = tr.pathRules || d.HasPathRules()
		tr.dynamic = tr.dynamic || dp.dynamic()
		if g := t.globalLimit(dp); g != nil {
			closed := t.failClosed(g)
			tr.limitClosed = tr.limitClosed || closed
			tr.limitOpen = tr.limitOpen || !closed
			if g.PerSource != "" {
				if tr.limitKinds == nil {
					tr.limitKinds = map[intent.SourceKind]bool{}
				}
				tr.limitKinds[g.PerSource] = true
			}
		}
	}
	return tr
}

func (tr *portTraits) merge(o *portTraits) {
	tr.httpRules = tr.httpRules || o.httpRules
	tr.pathRules = tr.pathRules || o.pathRules
	tr.dynamic = tr.dynamic || o.dynamic
	tr.limitOpen = tr.limitOpen || o.limitOpen
	tr.limitClosed = tr.limitClosed || o.limitClosed
	for k := range o.limitKinds {
		if tr.limitKinds == nil {
			tr.limitKinds = map[intent.SourceKind]bool{}
		}
		tr.limitKinds[k] = true
	}
}

// listenerSegments are the ports on a listener port by document, when
// dps are all of them (the very list byListener made); nil otherwise.
func (t *translator) listenerSegments(port uint32, dps []*destPort) []listenerSegment {
	all := t.groups[port]
	if t.onListener == nil || len(dps) == 0 || len(all) != len(dps) || &all[0] != &dps[0] {
		return nil
	}
	return t.onListener[port]
}

// allPorts reports whether dps are the translation's ports, listed by
// segments.
func (t *translator) allPorts(dps []*destPort) bool {
	return t.segs != nil && len(dps) == len(t.ports) && (len(dps) == 0 || &dps[0] == &t.ports[0])
}

func (t *translator) segPorts(s segment) []*destPort { return t.ports[s.start:s.end] }

// traits are those of dps, from each document's when they are all the
// ports.
func (t *translator) traits(dps []*destPort) portTraits {
	if !t.allPorts(dps) {
		return t.listenerTraits(dps)
	}
	var tr portTraits
	for _, s := range t.segs {
		if s.doc == nil {
			o := t.traitsOf(t.segPorts(s))
			tr.merge(&o)
			continue
		}
		if s.doc.out.traits == nil {
			o := t.traitsOf(t.segPorts(s))
			s.doc.out.traits = &o
		}
		tr.merge(s.doc.out.traits)
	}
	return tr
}

// listenerTraits are the traits of dps, from each document's when they
// are all the ports on their listener port.
func (t *translator) listenerTraits(dps []*destPort) portTraits {
	var segs []listenerSegment
	if len(dps) > 0 {
		segs = t.listenerSegments(dps[0].listenerPort, dps)
	}
	if segs == nil {
		return t.traitsOf(dps)
	}
	lp := dps[0].listenerPort
	var tr portTraits
	for _, s := range segs {
		if s.doc == nil {
			o := t.traitsOf(s.dps)
			tr.merge(&o)
			continue
		}
		o := s.doc.out.listenerTraits[lp]
		if o == nil {
			v := t.traitsOf(s.dps)
			o = &v
			if s.doc.out.listenerTraits == nil {
				s.doc.out.listenerTraits = map[uint32]*portTraits{}
			}
			s.doc.out.listenerTraits[lp] = o
		}
		tr.merge(o)
	}
	return tr
}

// proxyVirtualHosts are the ports' virtual hosts on the forward proxy or
// the mesh port, in a new list with room for extra more.
func (t *translator) proxyVirtualHosts(dps []*destPort, extra int) []*routev3.VirtualHost {
	out := make([]*routev3.VirtualHost, 0, len(dps)+extra)
	if !t.allPorts(dps) {
		for _, dp := range dps {
			out = append(out, t.cachedProxyVirtualHost(dp))
		}
		return out
	}
	for _, s := range t.segs {
		build := func(f *fragment) {
			for _, dp := range t.segPorts(s) {
				f.vhosts = append(f.vhosts, t.cachedProxyVirtualHost(dp))
			}
		}
		var f *fragment
		switch {
		case s.doc == nil:
			f = t.build(build)
		case s.doc.out.proxy == nil:
			f = t.build(build)
			s.doc.out.proxy = f
		default:
			f = t.replay(s.doc.out.proxy)
		}
		out = append(out, f.vhosts...)
	}
	return out
}

// clusterList is the clusters and endpoints of every port, in order,
// and the ports of the endpoints; t is the cluster goroutine's
// translator, all the main one's.
func (t *translator) clusterList(all *translator) ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment, []*destPort) {
	clusters := make([]*clusterv3.Cluster, 0, len(all.ports))
	var endpoints []*endpointv3.ClusterLoadAssignment
	var eds []*destPort
	build := func(dps []*destPort) func(f *fragment) {
		return func(f *fragment) {
			for _, dp := range dps {
				c, cla := t.cachedCluster(dp)
				f.clusters = append(f.clusters, c)
				if cla != nil {
					f.clas, f.eds = append(f.clas, cla), append(f.eds, dp)
				}
			}
		}
	}
	if all.segs == nil {
		f := t.build(build(all.ports))
		return append(clusters, f.clusters...), f.clas, f.eds
	}
	for _, s := range all.segs {
		var f *fragment
		switch {
		case s.doc == nil:
			f = t.build(build(all.segPorts(s)))
		case s.doc.out.clusters == nil:
			f = t.build(build(all.segPorts(s)))
			s.doc.out.clusters = f
		default:
			f = t.replay(s.doc.out.clusters)
		}
		clusters = append(clusters, f.clusters...)
		endpoints, eds = append(endpoints, f.clas...), append(eds, f.eds...)
	}
	return clusters, endpoints, eds
}

// configMaps are the sources of a listener (and its route configuration)
// of dps: from every port's, or, for all the ports, every document's; a
// listener of more than one port has those of last time while its ports
// are the same.
func (t *translator) configMaps(listener string, dps []*destPort) []string {
	if t.cache != nil && len(dps) > 1 && !t.allPorts(dps) {
		if e := t.cache.sourcesOf[listener]; e != nil && slices.Equal(e.dps, dps) {
			e.gen = t.cache.gen
			return e.cms
		}
		cms := configMaps(dps)
		// A copy, as assembledListener keeps: the next translation
		// compares its ports with these, whatever the caller does with
		// its list (one copy per change of the listener's ports).
		t.cache.sourcesOf[listener] = &listenerSources{gen: t.cache.gen, dps: slices.Clone(dps), cms: cms}
		return cms
	}
	var out []string
	if t.allPorts(dps) {
		for _, s := range t.segs {
			if s.end > s.start {
				out = append(out, t.ports[s.start].sources...)
			}
		}
		return out
	}
	return configMaps(dps)
}

// listenerSources are the sources of a listener of more than one port.
type listenerSources struct {
	gen uint64
	dps []*destPort
	cms []string
}

func configMaps(dps []*destPort) []string {
	if len(dps) == 1 {
		return dps[0].sources
	}
	var out []string
	for i, dp := range dps {
		// Ports come sorted by ConfigMap: most repeats are the last one.
		if i == 0 || dp.sources[0] != dps[i-1].sources[0] {
			out = append(out, dp.sources...)
		}
	}
	return out
}
