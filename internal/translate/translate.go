// Package translate turns validated egress intent into Envoy resources. It is
// a pure function: intent and secret data in, sorted resources out; no
// client-go, no clock. A Cache (fragments.go) only saves work: its output is
// Translate's. Proto construction lives only here, one file per kind.
package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Role is the kind of proxy the resources are for.
type Role string

const (
	// RoleGateway is an egress gateway: it listens on the declared ports and
	// sends traffic to the external hosts.
	RoleGateway Role = "gateway"
	// RoleSidecar runs beside a workload and carries its egress to the
	// gateways of its group over mutual TLS (sidecar.go).
	RoleSidecar Role = "sidecar"
)

// DefaultSystemCABundle is where Debian-based images, including the official
// Envoy image, keep the system CA bundle.
const DefaultSystemCABundle = "/etc/ssl/certs/ca-certificates.crt"

// Options are the gateway-level settings of a translation.
type Options struct {
	Role Role
	// Group is the gateway group translated for (sidecars: the group whose
	// gateways they send to).
	Group string
	// ForwardProxyPort is the explicit HTTP proxy listener (CONNECT and
	// absolute-form requests); 0 disables it.
	ForwardProxyPort uint32
	// PortMap maps declared ports to listener ports, e.g. 443 -> 8443 for a
	// gateway running without privileges.
	PortMap map[uint32]uint32
	// SystemCABundle is the CA file Envoy verifies upstream servers with when
	// an intent names no CA Secret.
	SystemCABundle string
	// ListenerAddress is the address gateway listeners bind; "0.0.0.0"
	// when empty.
	ListenerAddress string
	// StatsPort is the gateways' own Prometheus stats listener (a static
	// listener of the bootstrap): intents may not use it. 0: none.
	StatsPort uint32
	// DNSResolvers are the DNS servers gateways resolve upstream names
	// with (DNS clusters and the dynamic forward proxy's cache), in order;
	// empty: the gateway's system resolver (/etc/resolv.conf). Sidecars
	// keep theirs: they only resolve the gateways' address.
	DNSResolvers []netip.AddrPort
	// Mesh, when set, serves mutual TLS from sidecars on the gateways'
	// mesh port, and sidecars.
	Mesh *MeshOptions
	// PrivateKeysInline lets SDS carry origination client keys inline. The
	// server sets it only when a proxy must prove its identity to get
	// them (client certificates, node authorization) or xDS listens on
	// loopback alone; otherwise a destination with a client certificate
	// is held back, unless OriginationSecretDir is set.
	PrivateKeysInline bool
	// OriginationSecretDir, when set, is where gateways read origination
	// client certificates: <dir>/<namespace>/<name>/tls.crt and tls.key,
	// mounted Secrets, watched. SDS then carries only those paths, whatever
	// PrivateKeysInline says: a key that never travels is safer still.
	OriginationSecretDir string
	// Now is when certificates are judged (expired, not yet valid,
	// expiring); zero: validity is not judged.
	Now time.Time
	// CertificateExpiryWarning is how long before a client certificate
	// expires a warning is given; 0: none.
	CertificateExpiryWarning time.Duration
	// Audit lets through, and logs, what the group's intents do not
	// admit (audit.go); set per group from its settings, which
	// AuditSource names (namespace/name) for the resources it adds.
	Audit       bool
	AuditSource string
	// AuditRefusedNetworks are the upstream addresses audit never
	// forwards to; nil: DefaultAuditRefusedNetworks.
	AuditRefusedNetworks []netip.Prefix
	// SettingsNamespace is the one namespace whose gateway group settings
	// are obeyed (see intent.ResolveOptions).
	SettingsNamespace string
	// RateLimitService, when set, is where gateways ask about global rate
	// limits (ratelimit_global.go); nil: intents may not set them.
	RateLimitService *RateLimitServiceOptions
}

// ResolveOptions are the constraints these options put on intents.
func (o Options) ResolveOptions() intent.ResolveOptions {
	ro := intent.ResolveOptions{PortMap: o.PortMap, ReservedPorts: map[uint32]string{}, SettingsNamespace: o.SettingsNamespace, RateLimitService: o.RateLimitService != nil}
	if o.ForwardProxyPort != 0 {
		ro.ReservedPorts[o.ForwardProxyPort] = "forward proxy"
	}
	if o.StatsPort != 0 {
		ro.ReservedPorts[o.StatsPort] = "Prometheus stats listener (bootstrap)"
	}
	if o.Mesh != nil {
		ro.ReservedPorts[o.Mesh.Port] = "mesh port (mutual TLS from sidecars)"
		ro.TrustDomain = o.Mesh.TrustDomain
	}
	return ro
}

// SecretKey names a Kubernetes Secret.
type SecretKey struct{ Namespace, Name string }

func (k SecretKey) String() string { return k.Namespace + "/" + k.Name }

// Secrets is the data of the Secrets intents may reference.
type Secrets map[SecretKey]map[string][]byte

// Resources is what one gateway group is served, each kind sorted by name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Secrets   []*tlsv3.Secret
	// RateLimitConfigs is the rate limit service's configuration
	// (RoleRateLimit only).
	RateLimitConfigs []*rlsconfv3.RateLimitConfig
	// Sources lists the ConfigMaps each resource comes from, so problems
	// (a NACK, a dump) can be traced back to them.
	Sources Sources
	// Certificates are the validity periods of the Secrets' certificates
	// used (served or held back), by Secret and key, for expiry metrics.
	Certificates []Certificate
	// RecheckAt, when not zero, is the next instant at which the
	// certificate judgement of this translation changes by itself (a
	// certificate expires, nears expiry or becomes valid).
	RecheckAt time.Time
}

// Translate builds the resources of one gateway group from the documents that
// apply to it. The documents must have been through intent.Resolve. A
// destination whose Secrets are missing or malformed is left out and
// reported; everything else is still translated.
func Translate(docs []intent.Doc, secrets Secrets, opts Options) (*Resources, intent.Diagnostics) {
	return translate(docs, secrets, opts, nil)
}

func translate(docs []intent.Doc, secrets Secrets, opts Options, cache *Cache) (*Resources, intent.Diagnostics) {
	if opts.Role == "" {
		opts.Role = RoleGateway
	}
	if opts.SystemCABundle == "" {
		opts.SystemCABundle = DefaultSystemCABundle
	}
	if opts.ListenerAddress == "" {
		opts.ListenerAddress = "0.0.0.0"
	}
	t := &translator{opts: opts, secrets: secrets, out: &Resources{Sources: Sources{}}, cache: cache}
	switch opts.Role {
	case RoleGateway:
		t.collect(docs)
		t.buildGateway()
	case RoleSidecar:
		t.collect(docs)
		t.buildSidecar()
	case RoleRateLimit:
		t.buildRateLimitService(docs)
	default:
		t.diags = append(t.diags, intent.Diagnostic{Message: fmt.Sprintf("proxy role %q is not supported", opts.Role), Severity: intent.SeverityError})
		return t.out, t.diags
	}
	t.sortOutput()
	if err := t.firstErr(); err != nil {
		t.diags = append(t.diags, intent.Diagnostic{Message: "internal translation error: " + err.Error(), Severity: intent.SeverityError})
	}
	return t.out, t.diags
}

// translator carries one translation's inputs and outputs.
type translator struct {
	// cache, when set, holds the fragments of the last translation
	// (fragments.go).
	cache   *Cache
	opts    Options
	secrets Secrets
	out     *Resources
	diags   intent.Diagnostics
	errs    []error
	ports   []*destPort
	// refuse are the refusals of the proxies' virtual hosts (routes.go).
	refuse []*routev3.Route
	// segs are the ports by document (segments.go); nil: none.
	segs []segment
	// onListener are the ports on each listener port by document, when
	// there are segments, and groups all of them (byListener).
	onListener map[uint32][]listenerSegment
	groups     map[uint32][]*destPort
	// sortedClusters and sortedEndpoints are how many of the first
	// clusters and endpoints are sorted by name.
	sortedClusters, sortedEndpoints int
	secretsOut                      map[string]*tlsv3.Secret
	certs                           map[certKey]Certificate
	accessLogs                      map[string][]*accesslogv3.AccessLog
	rbacPerRoute                    map[string]*anypb.Any // by allow list
	// Fields encoded once and shared by many typed configs (protos.go).
	tcpAccessLogs map[string]sharedField // by listener
	// refusing are the ConfigMaps of the destination ports whose chains
	// send refused sources to RefusedCluster (repeats included).
	refusing []string
	// dnsClusters are the packed DNS cluster configurations: strict, logical.
	dnsClusters [2]*anypb.Any
	// resolver is the packed DNS resolver configuration (dns.go), once built.
	resolver     *anypb.Any
	resolverDone bool
	// protocolOptions are packed upstream HTTP options by what they depend on.
	protocolOptions map[protocolOptionsKey]*anypb.Any
	// dynamicUpstreams are packed per-route filter states by upstream port.
	dynamicUpstreams map[uint32]*anypb.Any
	// heldBack are the ports of destinations left out for their Secrets,
	// kept in audit only (audit.go).
	heldBack []*destPort
	// opsPerRoute are packed method and path rules by rulesKey (httprules.go).
	opsPerRoute map[string]*anypb.Any
	// rateLimitUsers are the destination ports whose filters call the
	// rate limit service (ratelimit_global.go).
	rateLimitUsers []*destPort
}

// destPort is one declared port of one destination: the unit every listener
// entry, route and cluster is built from.
type destPort struct {
	origin       intent.Origin
	dest         *intent.Destination
	port         intent.Port
	listenerPort uint32
	cluster      string // cluster name, also the stat prefix and route name
	// sources is its ConfigMap (namespace/name), the sources of what
	// it alone gives (its cluster and endpoints).
	sources      []string
	perRoute     map[string]*anypb.Any
	perRouteDone bool
	// fragments are what it was translated into, kept while a cache
	// keeps the port (fragments.go).
	fragments [fragmentKinds]*fragment
}

// upstreamPort is the port the gateway connects to.
func (dp *destPort) upstreamPort() uint32 {
	switch {
	case dp.port.Protocol == intent.ProtocolHTTP && dp.dest.TLS != nil:
		return dp.dest.TLS.Port
	case dp.port.TargetPort != 0:
		return dp.port.TargetPort
	}
	return dp.port.Number
}

// dynamic reports whether the gateway resolves each requested name itself.
func (dp *destPort) dynamic() bool { return dp.dest.Resolution == intent.ResolutionDynamic }

// originatesTLS reports whether the gateway speaks TLS upstream for this port.
func (dp *destPort) originatesTLS() bool {
	return dp.port.Protocol == intent.ProtocolHTTP && dp.dest.TLS != nil
}

// collect lists the destination ports of the documents, sorted by
// cluster name. A document reused whole (fragments.go) gives the ports it
// gave last time, already sorted, without its destinations being walked
// again: it references no Secret, so nothing else decides which of its
// destinations are served.
func (t *translator) collect(docs []intent.Doc) {
	ro := t.opts.ResolveOptions()
	sorted := true
	var segs []segment
	for di := range docs {
		d := &docs[di]
		cached := t.cache.doc(d)
		start := len(t.ports)
		if cached != nil && cached.collected {
			t.ports = append(t.ports, cached.flat...)
			segs = append(segs, segment{doc: cached, start: start, end: len(t.ports)})
		} else {
			fixed := true
			for i := range d.Destinations {
				dest := &d.Destinations[i]
				fixed = fixed && !usesSecrets(dest)
				if !t.secretsPresent(d.Origin, i, dest) {
					t.holdBack(d.Origin, dest)
					continue
				}
				dps := t.cache.destPorts(cached, i, d.Origin, dest, func() []*destPort {
					id := DestinationID(d.Origin, dest.Name)
					var dps []*destPort
					for _, p := range dest.Ports {
						dps = append(dps, &destPort{
							origin:       d.Origin,
							dest:         dest,
							port:         p,
							listenerPort: ro.ListenerPort(p.Number),
							cluster:      fmt.Sprintf("%s/%d", id, p.Number),
							sources:      []string{d.Origin.ConfigMap()},
						})
					}
					return dps
				})
				t.ports = append(t.ports, dps...)
			}
			sortPorts(t.ports[start:])
			s := segment{start: start, end: len(t.ports)}
			if cached != nil && fixed {
				cached.flat, cached.collected = slices.Clone(t.ports[start:]), true
				s.doc = cached
			}
			segs = append(segs, s)
		}
		// Each document's ports are sorted: so are all of them when
		// every document's follow the last one's.
		if start > 0 && start < len(t.ports) && t.ports[start].cluster < t.ports[start-1].cluster {
			sorted = false
		}
	}
	if !sorted {
		sortPorts(t.ports)
	} else if t.cache != nil {
		t.segs = segs
	}
	if t.opts.Role == RoleGateway {
		if m := t.cache.clusterSources(t.ports); len(m) > 0 {
			t.out.Sources[resourcev3.ClusterType] = m
		}
	}
}

// sortPorts sorts destination ports by cluster name, keeping the order
// of equal names (which the check then reports as defined twice), so
// that sorting each document's ports, then all of them, gives the order
// of sorting all of them once.
func sortPorts(dps []*destPort) {
	slices.SortStableFunc(dps, func(a, b *destPort) int { return strings.Compare(a.cluster, b.cluster) })
}

// usesSecrets reports whether a destination references Secrets, whose
// data each translation judges again.
func usesSecrets(d *intent.Destination) bool {
	return d.TLS != nil && (d.TLS.ClientCertificate != nil || d.TLS.CACertificates != nil)
}

// byListener groups destination ports by listener port, ports ascending;
// by document, from each reused document's groups (segments.go).
func (t *translator) byListener() ([]uint32, map[uint32][]*destPort) {
	m := map[uint32][]*destPort{}
	if t.segs == nil {
		addGroups(m, t.ports)
	} else {
		t.onListener = map[uint32][]listenerSegment{}
	}
	for _, s := range t.segs {
		var groups map[uint32][]*destPort
		switch {
		case s.doc == nil || s.doc.out.groups == nil:
			groups = map[uint32][]*destPort{}
			addGroups(groups, t.segPorts(s))
			if s.doc != nil {
				s.doc.out.groups = groups
			}
		default:
			groups = s.doc.out.groups
		}
		for lp, dps := range groups {
			t.onListener[lp] = append(t.onListener[lp], listenerSegment{doc: s.doc, dps: dps})
		}
	}
	// Each listener's ports in one list of the right size.
	for lp, segs := range t.onListener {
		n := 0
		for _, s := range segs {
			n += len(s.dps)
		}
		all := make([]*destPort, 0, n)
		for _, s := range segs {
			all = append(all, s.dps...)
		}
		m[lp] = all
	}
	t.groups = m
	keys := make([]uint32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys, m
}

func addGroups(m map[uint32][]*destPort, dps []*destPort) {
	for _, dp := range dps {
		m[dp.listenerPort] = append(m[dp.listenerPort], dp)
	}
}

// buildGateway builds listeners and routes on one goroutine and clusters
// and endpoints on another: they share nothing but the read-only input,
// and translation time matters at ten thousand destinations.
func (t *translator) buildGateway() {
	ct := &translator{opts: t.opts, cache: t.cache}
	var clusters []*clusterv3.Cluster
	var endpoints []*endpointv3.ClusterLoadAssignment
	var edsPorts []*destPort
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		clusters, endpoints, edsPorts = ct.clusterList(t)
	}()
	ports, groups := t.byListener()
	for _, lp := range ports {
		dps := groups[lp]
		switch {
		case dps[0].port.Protocol.Passthrough():
			l, _ := t.assembledListener(listenerName(kindTLS, lp), dps, func(f *fragment) { f.listener = t.tlsListener(lp, dps) })
			t.addListener(l, nil, dps)
		case dps[0].port.Protocol == intent.ProtocolHTTP:
			l, rc := t.assembledListener(listenerName(kindHTTP, lp), dps, func(f *fragment) { f.listener, f.routes = t.httpListener(lp, dps) })
			t.addListener(l, rc, dps)
		default:
			t.addListener(t.cachedTCPListener(lp, dps[0]), nil, dps)
		}
	}
	if p := t.opts.ForwardProxyPort; p != 0 {
		l, rc := t.assembledListener(listenerName(kindForwardProxy, p), t.ports, func(f *fragment) { f.listener, f.routes = t.forwardProxy(p, t.ports) })
		t.addListener(l, rc, t.ports)
	}
	if t.opts.Mesh != nil {
		t.meshListener(t.ports)
	}
	wg.Wait()
	clusters = t.auditGatewayClusters(clusters)
	if len(t.refusing) > 0 {
		clusters = append(clusters, refusedCluster())
		t.out.Sources.addConfigMap(resourcev3.ClusterType, RefusedCluster, t.refusing...)
	}
	clusters = t.addRateLimitServiceCluster(clusters)
	// Clusters and endpoints come in the order of the ports (sorted by
	// name) but for those added after them.
	t.out.Clusters, t.out.Endpoints = clusters, endpoints
	t.sortedClusters, t.sortedEndpoints = len(t.ports), len(endpoints)
	if len(edsPorts) > 0 {
		eds := make(map[string][]string, len(edsPorts))
		for _, dp := range edsPorts {
			if cms := eds[dp.cluster]; cms != nil {
				// A name twice, which the check refuses.
				eds[dp.cluster] = normalized(append(slices.Clone(cms), dp.sources...))
			} else {
				eds[dp.cluster] = dp.sources
			}
		}
		t.out.Sources[resourcev3.EndpointType] = eds
	}
	t.errs = append(t.errs, ct.errs...)
}

// addListener adds a listener and its route configuration (if any), both
// coming from the ConfigMaps of the destination ports they serve.
func (t *translator) addListener(l *listenerv3.Listener, rc *routev3.RouteConfiguration, dps []*destPort) {
	t.out.Listeners = append(t.out.Listeners, l)
	cms := t.configMaps(l.Name, dps)
	if len(cms) > 0 {
		t.out.Sources.addConfigMap(resourcev3.ListenerType, l.Name, cms...)
	}
	if rc != nil {
		t.out.Routes = append(t.out.Routes, rc)
		if len(cms) > 0 {
			t.out.Sources.addConfigMap(resourcev3.RouteType, rc.Name, cms...)
		}
	}
}

func (t *translator) sortOutput() {
	o := t.out
	o.Listeners = sortByName(o.Listeners, 0, (*listenerv3.Listener).GetName)
	o.Routes = sortByName(o.Routes, 0, (*routev3.RouteConfiguration).GetName)
	o.Clusters = sortByName(o.Clusters, t.sortedClusters, (*clusterv3.Cluster).GetName)
	o.Endpoints = sortByName(o.Endpoints, t.sortedEndpoints, (*endpointv3.ClusterLoadAssignment).GetClusterName)
	for _, s := range t.secretsOut {
		o.Secrets = append(o.Secrets, s)
	}
	sort.Slice(o.Secrets, func(i, j int) bool { return o.Secrets[i].Name < o.Secrets[j].Name })
	o.Certificates = t.sortedCertificates()
}

// sortByName sorts resources by name, the first sorted of which are
// sorted already: the few after them are sorted and merged in (stably:
// before any of the same name), without the others being read.
func sortByName[T any](l []T, sorted int, name func(T) string) []T {
	less := func(a, b T) int { return strings.Compare(name(a), name(b)) }
	if sorted <= 1 || sorted > len(l) {
		slices.SortStableFunc(l, less)
		return l
	}
	if sorted == len(l) {
		return l
	}
	head, tail := l[:sorted], l[sorted:]
	slices.SortStableFunc(tail, less)
	if less(head[len(head)-1], tail[0]) <= 0 {
		return l // the few sort after the others
	}
	tail = slices.Clone(tail)
	out := make([]T, 0, len(l))
	for _, x := range tail {
		n := name(x)
		k := sort.Search(len(head), func(i int) bool { return name(head[i]) > n })
		out = append(append(out, head[:k]...), x)
		head = head[k:]
	}
	return append(out, head...)
}

func (t *translator) firstErr() error {
	if len(t.errs) == 0 {
		return nil
	}
	return t.errs[0]
}
