package translate

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Cache keeps the fragments of the last translation, so that the next one
// rebuilds only what its input changed: the cluster (and endpoints) of
// each destination port, its filter chains on a TLS listener, its TCP
// listener, its virtual hosts on HTTP listeners and the proxies. Listeners
// and route configurations are assembled from the fragments around them,
// which are cheap. The output is exactly that of Translate (the
// equivalence tests prove it over random edit sequences); the cache only
// saves work.
//
// Fragments are kept per document, with its destination ports, and found
// by what shapes them: the document's parsed destinations (compile.Store
// parses a changed ConfigMap into new values and keeps those of unchanged
// ones, which are never modified: a document is recognised by identity,
// without hashing its content again), which fix the ConfigMap, the ports
// and listeners, and every option of the translation (a fingerprint of
// Options; any change drops every fragment). Secrets shape no fragment:
// fragments name them, and the SDS resources and the checks of their
// data, which decide whether a destination is served, are redone by every
// translation. A document that references no Secret is reused whole
// (segments.go): its sorted ports and what they gave together (clusters,
// chains, virtual hosts, connection manager traits), so that an edit
// walks the edited documents' ports alone. Documents a translation did
// not have are dropped at its end, so the cache holds what the input
// declares, however many edits came before. Not safe for concurrent use;
// nil is a valid cache that keeps nothing.
type Cache struct {
	options [32]byte
	gen     uint64
	// docs hold, by a document's first destination, its destination
	// ports (with their fragments), by destination.
	docs map[*intent.Destination]*cachedDoc
	// dests hold the destination ports of a destination by the hash of
	// its content and ConfigMap, for the unchanged destinations of a
	// document parsed again. An entry lives as long as the document that
	// last used it (its owner) is kept: a document reused whole does not
	// hash its destinations again, yet they stay found when it is parsed
	// again later.
	dests map[[32]byte]*cachedDest
	// listeners hold the listeners assembled from destination ports, by
	// kind and port, and the ports they were assembled from.
	listeners map[string]*assembled
	checked   checkMemo   // check.go
	sources   portSources // sources.go
	// sourcesOf are the sources of listeners of more than one port
	// (segments.go).
	sourcesOf map[string]*listenerSources
}

type assembled struct {
	gen uint64
	dps []*destPort
	f   *fragment
}

type cachedDoc struct {
	gen   uint64
	ports [][]*destPort
	// keys are the content hashes of its destinations (dests), of
	// those that were hashed.
	keys [][32]byte
	// flat are its destination ports, sorted (translator.collect),
	// once collected is set: for a document that references no Secret.
	flat      []*destPort
	collected bool
	out       docOutputs // segments.go
}

type cachedDest struct {
	gen   uint64
	owner *cachedDoc
	ports []*destPort
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{} }

type fragmentKind uint8

const (
	fragCluster fragmentKind = iota
	fragTLSChains
	fragTCPListener
	fragHTTPVirtualHost
	fragProxyVirtualHost
	fragmentKinds
)

// fragment is what building one produced, side effects included, so that
// a cached one replays them.
type fragment struct {
	cluster  *clusterv3.Cluster
	cla      *endpointv3.ClusterLoadAssignment
	chains   []*listenerv3.FilterChain
	listener *listenerv3.Listener
	routes   *routev3.RouteConfiguration
	vhost    *routev3.VirtualHost
	// A document's (segments.go).
	vhosts   []*routev3.VirtualHost
	clusters []*clusterv3.Cluster
	clas     []*endpointv3.ClusterLoadAssignment
	eds      []*destPort // the ports of clas
	kinds    chainKinds  // of chains
	// refusing: the ConfigMaps of the ports whose chains send refused
	// sources to RefusedCluster; rateLimit: the ports whose filters call
	// the rate limit service.
	refusing  []string
	rateLimit []*destPort
	errs      []error
}

// Translate is Translate, reusing the fragments of the last call whose
// inputs are unchanged.
func (c *Cache) Translate(docs []intent.Doc, secrets Secrets, opts Options) (*Resources, intent.Diagnostics) {
	if c != nil {
		c.begin(opts)
		defer c.end()
	}
	return translate(docs, secrets, opts, c)
}

// begin starts a translation: a new generation, and nothing kept of
// other options.
func (c *Cache) begin(opts Options) {
	c.gen++
	fp := optionsFingerprint(opts)
	if fp != c.options || c.docs == nil {
		c.options = fp
		c.docs = map[*intent.Destination]*cachedDoc{}
		c.dests = map[[32]byte]*cachedDest{}
		c.listeners = map[string]*assembled{}
		c.sources = portSources{}
		c.sourcesOf = map[string]*listenerSources{}
	}
}

// end drops the documents the translation did not have, and the
// destinations they own.
func (c *Cache) end() {
	for k, d := range c.docs {
		if d.gen != c.gen {
			delete(c.docs, k)
			c.release(d)
		}
	}
	for k, a := range c.listeners {
		if a.gen != c.gen {
			delete(c.listeners, k)
		}
	}
	for k, s := range c.sourcesOf {
		if s.gen != c.gen {
			delete(c.sourcesOf, k)
		}
	}
}

// release drops the destinations a document owns.
func (c *Cache) release(d *cachedDoc) {
	for _, key := range d.keys {
		if e := c.dests[key]; e != nil && e.owner == d {
			delete(c.dests, key)
		}
	}
}

// doc is the cached entry of a document, nil without a cache (or
// destinations).
func (c *Cache) doc(d *intent.Doc) *cachedDoc {
	if c == nil {
		return nil
	}
	if len(d.Destinations) == 0 {
		return &cachedDoc{}
	}
	e, ok := c.docs[&d.Destinations[0]]
	if !ok || len(e.ports) != len(d.Destinations) {
		if ok {
			c.release(e)
		}
		e = &cachedDoc{ports: make([][]*destPort, len(d.Destinations))}
		c.docs[&d.Destinations[0]] = e
	}
	e.gen = c.gen
	return e
}

// destPorts are the destination ports of a destination: those of the
// last translation for the same document, or for the same content in
// another version of the document (given the destination's new value);
// new ones otherwise, built by build.
func (c *Cache) destPorts(doc *cachedDoc, i int, origin intent.Origin, dest *intent.Destination, build func() []*destPort) []*destPort {
	if c == nil {
		return build()
	}
	if dps := doc.ports[i]; dps != nil {
		return dps
	}
	key := contentHash(origin, dest)
	e, ok := c.dests[key]
	if !ok || e.gen == c.gen {
		// New, or the same content twice in one translation: ports of
		// its own.
		e = &cachedDest{ports: build()}
		if !ok {
			c.dests[key] = e
		}
	}
	if !ok || e.gen != c.gen {
		e.owner = doc
		doc.keys = append(doc.keys, key)
	}
	e.gen = c.gen
	for _, dp := range e.ports {
		dp.dest = dest
	}
	doc.ports[i] = e.ports
	return e.ports
}

// contentHash covers a destination and where it comes from.
func contentHash(origin intent.Origin, dest *intent.Destination) [32]byte {
	b, err := json.Marshal(struct {
		Origin      intent.Origin
		Destination *intent.Destination
	}{origin, dest})
	if err != nil {
		// Intents always marshal; should one not, it shares nothing.
		b = fmt.Appendf(nil, "unmarshallable destination %p", dest)
	}
	return sha256.Sum256(b)
}

// optionsFingerprint covers every option but the instant certificates are
// judged at and the warning period, which only the Secrets' checks read
// (secrets.go, certs.go), never a fragment.
func optionsFingerprint(opts Options) [32]byte {
	opts.Now, opts.CertificateExpiryWarning = time.Time{}, 0
	b, err := json.Marshal(opts)
	if err != nil {
		// Options always marshal; should they not, nothing is shared.
		b = fmt.Appendf(nil, "unmarshallable options %p", &opts)
	}
	return sha256.Sum256(b)
}

// fragment returns dp's fragment of a kind, built by build the first
// time.
func (t *translator) fragment(kind fragmentKind, dp *destPort, build func(*fragment)) *fragment {
	if f := dp.fragments[kind]; f != nil {
		return t.replay(f)
	}
	f := t.build(build)
	if t.cache != nil {
		dp.fragments[kind] = f
	}
	return f
}

// build builds a fragment, recording what building it did to the
// translation.
func (t *translator) build(build func(*fragment)) *fragment {
	// Built with empty records, so that what it adds is its own.
	refusing, users, errs := t.refusing, t.rateLimitUsers, t.errs
	t.refusing, t.rateLimitUsers, t.errs = nil, nil, nil
	f := &fragment{}
	build(f)
	// Neighbouring ports mostly come from one ConfigMap: one is kept.
	f.refusing, f.rateLimit, f.errs = slices.Compact(t.refusing), t.rateLimitUsers, t.errs
	t.refusing, t.rateLimitUsers, t.errs = refusing, users, errs
	return t.replay(f)
}

// replay does to the translation what building f did.
func (t *translator) replay(f *fragment) *fragment {
	t.refusing = append(t.refusing, f.refusing...)
	for _, u := range f.rateLimit {
		t.usesRateLimitService(u)
	}
	t.errs = append(t.errs, f.errs...)
	return f
}

// assembledListener is a listener (and route configuration) built from
// destination ports by build, the same as last time when they are the
// same ports: their fragments are then unchanged, and so is the rest,
// which depends on the options alone. Not with held-back destinations,
// which audit adds to listeners.
func (t *translator) assembledListener(key string, dps []*destPort, build func(*fragment)) (*listenerv3.Listener, *routev3.RouteConfiguration) {
	if t.cache == nil || len(t.heldBack) > 0 {
		f := t.build(build)
		return f.listener, f.routes
	}
	if a, ok := t.cache.listeners[key]; ok && slices.Equal(a.dps, dps) {
		a.gen = t.cache.gen
		t.replay(a.f)
		return a.f.listener, a.f.routes
	}
	f := t.build(build)
	t.cache.listeners[key] = &assembled{gen: t.cache.gen, dps: slices.Clone(dps), f: f}
	return f.listener, f.routes
}

// The cached builders below build directly without a cache: there is
// nothing to replay, so nothing to record.

// cachedCluster is cluster, once per destination port and options.
func (t *translator) cachedCluster(dp *destPort) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	if t.cache == nil {
		return t.cluster(dp)
	}
	f := t.fragment(fragCluster, dp, func(f *fragment) { f.cluster, f.cla = t.cluster(dp) })
	return f.cluster, f.cla
}

// cachedAdmissionChains are a TLS destination port's filter chains.
func (t *translator) cachedAdmissionChains(listener string, dp *destPort) []*listenerv3.FilterChain {
	if t.cache == nil {
		return t.admissionChains(listener, dp, []string{dp.dest.Host})
	}
	return t.fragment(fragTLSChains, dp, func(f *fragment) {
		f.chains = t.admissionChains(listener, dp, []string{dp.dest.Host})
	}).chains
}

// cachedTCPListener is the listener of a TCP destination port.
func (t *translator) cachedTCPListener(port uint32, dp *destPort) *listenerv3.Listener {
	if t.cache == nil {
		return t.tcpListener(port, dp)
	}
	return t.fragment(fragTCPListener, dp, func(f *fragment) { f.listener = t.tcpListener(port, dp) }).listener
}

// cachedHTTPVirtualHost is a destination port's virtual host on its HTTP
// listener.
func (t *translator) cachedHTTPVirtualHost(dp *destPort) *routev3.VirtualHost {
	if t.cache == nil {
		return t.httpVirtualHost(dp)
	}
	return t.fragment(fragHTTPVirtualHost, dp, func(f *fragment) { f.vhost = t.httpVirtualHost(dp) }).vhost
}

// cachedProxyVirtualHost is a destination port's virtual host on the
// forward proxy and the mesh port.
func (t *translator) cachedProxyVirtualHost(dp *destPort) *routev3.VirtualHost {
	if t.cache == nil {
		return t.proxyVirtualHost(dp)
	}
	return t.fragment(fragProxyVirtualHost, dp, func(f *fragment) { f.vhost = t.proxyVirtualHost(dp) }).vhost
}
