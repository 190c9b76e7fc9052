package discover

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Options say how log lines become intents.
type Options struct {
	// Group is the gateway group of lines that name none (gateways of an
	// older release); empty: such lines are skipped.
	Group string
	// TrustDomain of workload identities (the server's mesh); identities
	// of another, or any when empty (no mesh), cannot be allowed and
	// their lines are skipped.
	TrustDomain string
	// TLSPorts are the CONNECT ports proposed as TLS; CONNECT to any
	// other port is proposed as TCP.
	TLSPorts map[uint32]bool
	// CIDRBits and CIDR6Bits bound how far addresses are aggregated: the
	// addresses of one /CIDRBits (IPv4) or /CIDR6Bits (IPv6) become the
	// narrowest CIDR covering them.
	CIDRBits, CIDR6Bits int
	// WildcardThreshold: this many distinct names directly under one
	// domain (same group, port, protocol) are proposed as *.domain; 0:
	// never.
	WildcardThreshold int
	// Namespace of the proposed ConfigMaps.
	Namespace string
	// MaxDestinations and MaxSources bound memory whatever the input:
	// destinations beyond the first MaxDestinations, and sources of a
	// destination beyond MaxSources, are counted, not kept.
	MaxDestinations, MaxSources int
}

// Defaults of Options.
const (
	DefaultNamespace       = "egress-discovered"
	DefaultCIDRBits        = 24
	DefaultCIDR6Bits       = 64
	DefaultMaxDestinations = 10000
	DefaultMaxSources      = 1000
)

// DefaultTLSPorts are the CONNECT ports that carry TLS by convention.
var DefaultTLSPorts = []uint32{443, 6443, 8443, 9443}

// Stats count what the lines were.
type Stats struct {
	Lines   int // read
	Audited int // audit lines of ours
	// Refused were refused even in audit (a name no intent could
	// declare, a refused upstream network).
	Refused int
	// Unusable audit lines: no group, a host, port or source that an
	// intent cannot name.
	Unusable int
	// OtherTrustDomain: lines from a workload identity the server's mesh
	// cannot admit.
	OtherTrustDomain int
	// OutsideRules: requests of admitted sources outside their
	// destination's methods and paths. Nothing is proposed for them:
	// widening rules is a judgement discover leaves to a person.
	OutsideRules int
	// OverLimit: lines of destinations beyond MaxDestinations;
	// SourcesNotKept: of sources beyond MaxSources.
	OverLimit, SourcesNotKept int
}

// seen counts occurrences and when they were.
type seen struct {
	count       int
	first, last time.Time
}

func (s *seen) add(t time.Time) {
	s.count++
	if t.IsZero() {
		return
	}
	if s.first.IsZero() || t.Before(s.first) {
		s.first = t
	}
	if t.After(s.last) {
		s.last = t
	}
}

func (s *seen) merge(o seen) {
	s.count += o.count
	if !o.first.IsZero() && (s.first.IsZero() || o.first.Before(s.first)) {
		s.first = o.first
	}
	if o.last.After(s.last) {
		s.last = o.last
	}
}

// bucket is the addresses seen within one /CIDRBits.
type bucket struct {
	seen
	min, max netip.Addr
}

// sources are the sources of one destination: address buckets by their
// /CIDRBits, workload identities by SPIFFE ID.
type sources struct {
	buckets map[netip.Prefix]*bucket
	ids     map[string]*seen
}

func (s *sources) size() int { return len(s.buckets) + len(s.ids) }

// source is one line's source.
type source struct {
	id   string
	addr netip.Addr
}

// destKey is a destination port proposed: group, host, port, protocol.
type destKey struct {
	group, host string
	port        uint32
	protocol    intent.Protocol
}

type destination struct {
	seen
	sources
}

// widenKey is a destination whose allow list refused a source: its group
// and cluster name, namespace/configmap/destination/port.
type widenKey struct{ group, cluster string }

// Collector aggregates log lines. Not safe for concurrent use.
type Collector struct {
	opts  Options
	dests map[destKey]*destination
	widen map[widenKey]*destination
	Stats Stats
}

// NewCollector returns an empty collector; zero options take defaults.
func NewCollector(o Options) *Collector {
	if o.CIDRBits <= 0 || o.CIDRBits > 32 {
		o.CIDRBits = DefaultCIDRBits
	}
	if o.CIDR6Bits <= 0 || o.CIDR6Bits > 128 {
		o.CIDR6Bits = DefaultCIDR6Bits
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.MaxDestinations <= 0 {
		o.MaxDestinations = DefaultMaxDestinations
	}
	if o.MaxSources <= 0 {
		o.MaxSources = DefaultMaxSources
	}
	if o.TLSPorts == nil {
		o.TLSPorts = map[uint32]bool{}
		for _, p := range DefaultTLSPorts {
			o.TLSPorts[p] = true
		}
	}
	return &Collector{opts: o, dests: map[destKey]*destination{}, widen: map[widenKey]*destination{}}
}

// clusterRE is a destination port's cluster name, as the translator
// names them (translate.DestinationID and the port).
var clusterRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9_]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?/[0-9]{1,5}$`)

// Add reads one log line. The line is not kept: Add may be given a
// buffer that is reused for the next one.
func (c *Collector) Add(line []byte) {
	c.Stats.Lines++
	l, ok := parseLine(line)
	if !ok {
		return
	}
	c.Stats.Audited++
	if strings.Contains(l.Details, "rbac_access_denied") || strings.Contains(l.Termination, "rbac_access_denied") {
		c.Stats.Refused++
		return
	}
	group := l.Group
	if group == "" {
		group = c.opts.Group
	}
	if !validGroup(group) || len(l.Listener) > 64 {
		c.Stats.Unusable++
		return
	}
	src, ok := c.source(l)
	if !ok {
		return
	}
	at, _ := parseTime(l.Time)
	var d *destination
	switch l.Audit {
	case "not_declared":
		k, ok := c.notDeclared(l, group)
		if !ok {
			c.Stats.Unusable++
			return
		}
		if d = c.dests[k]; d == nil {
			if len(c.dests) >= c.opts.MaxDestinations {
				c.Stats.OverLimit++
				return
			}
			d = &destination{}
			k.group, k.host = strings.Clone(k.group), strings.Clone(k.host)
			c.dests[k] = d
		}
	case "source_not_allowed":
		if !clusterRE.MatchString(l.Destination) {
			c.Stats.Unusable++
			return
		}
		k := widenKey{group, l.Destination}
		if d = c.widen[k]; d == nil {
			if len(c.widen) >= c.opts.MaxDestinations {
				c.Stats.OverLimit++
				return
			}
			d = &destination{}
			k.group, k.cluster = strings.Clone(k.group), strings.Clone(k.cluster)
			c.widen[k] = d
		}
	case "method_or_path_not_allowed":
		c.Stats.OutsideRules++
		return
	default:
		c.Stats.Unusable++
		return
	}
	d.add(at)
	c.addSource(&d.sources, src, at)
}

// source is who made the request: the workload identity its sidecar's
// certificate proved (the mesh port), else the peer address.
func (c *Collector) source(l logLine) (source, bool) {
	if l.Peer != "" {
		id, err := intent.ParseWorkloadID(l.Peer)
		switch {
		case err != nil:
			c.Stats.Unusable++
			return source{}, false
		case c.opts.TrustDomain == "" || id.TrustDomain != c.opts.TrustDomain:
			c.Stats.OtherTrustDomain++
			return source{}, false
		}
		return source{id: "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}, true
	}
	a, ok := parseAddress(l.Downstream)
	if !ok || a.Zone() != "" {
		c.Stats.Unusable++
		return source{}, false
	}
	return source{addr: a}, true
}

// notDeclared is the destination port an undeclared request asked for:
// the SNI on a TLS port, the Host on an HTTP port (both on the declared
// port the line names), the authority of a CONNECT (TLS on TLSPorts, else
// TCP) or of an absolute-form request (HTTP, port 80 by default) on the
// forward proxy and the mesh port.
func (c *Collector) notDeclared(l logLine, group string) (destKey, bool) {
	k := destKey{group: group}
	var name string
	switch {
	case strings.HasPrefix(l.Listener, "tls_"):
		name, k.protocol = l.SNI, intent.ProtocolTLS
		k.port = portOf(l.Port)
	case strings.HasPrefix(l.Listener, "http_"):
		host, _, ok := splitAuthority(l.Authority)
		if !ok {
			return k, false
		}
		name, k.protocol, k.port = host, intent.ProtocolHTTP, portOf(l.Port)
	case strings.HasPrefix(l.Listener, "forward_proxy_"), strings.HasPrefix(l.Listener, "mesh_"):
		host, port, ok := splitAuthority(l.Authority)
		if !ok {
			return k, false
		}
		name, k.port = host, port
		switch {
		case l.Method == "CONNECT" && port == 0:
			return k, false
		case l.Method == "CONNECT" && c.opts.TLSPorts[port]:
			k.protocol = intent.ProtocolTLS
		case l.Method == "CONNECT":
			k.protocol = intent.ProtocolTCP
		default:
			k.protocol = intent.ProtocolHTTP
			if k.port == 0 {
				k.port = 80
			}
		}
	default:
		return k, false
	}
	host, ok := hostName(name)
	if !ok || k.port == 0 {
		return k, false
	}
	k.host = host
	return k, true
}

func portOf(s string) uint32 {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0
	}
	return uint32(p)
}

func (c *Collector) addSource(s *sources, src source, at time.Time) {
	if src.id != "" {
		e := s.ids[src.id]
		if e == nil {
			if s.size() >= c.opts.MaxSources {
				c.Stats.SourcesNotKept++
				return
			}
			if s.ids == nil {
				s.ids = map[string]*seen{}
			}
			e = &seen{}
			s.ids[src.id] = e
		}
		e.add(at)
		return
	}
	bits := c.opts.CIDRBits
	if src.addr.Is6() {
		bits = c.opts.CIDR6Bits
	}
	p, _ := src.addr.Prefix(bits)
	b := s.buckets[p]
	if b == nil {
		if s.size() >= c.opts.MaxSources {
			c.Stats.SourcesNotKept++
			return
		}
		if s.buckets == nil {
			s.buckets = map[netip.Prefix]*bucket{}
		}
		b = &bucket{min: src.addr, max: src.addr}
		s.buckets[p] = b
	}
	b.add(at)
	if src.addr.Less(b.min) {
		b.min = src.addr
	}
	if b.max.Less(src.addr) {
		b.max = src.addr
	}
}

// cover is the narrowest CIDR covering a bucket's addresses.
func (b *bucket) cover() netip.Prefix {
	bits := b.min.BitLen()
	for bits > 0 {
		p, _ := b.min.Prefix(bits)
		if p.Contains(b.max) {
			return p
		}
		bits--
	}
	p, _ := b.min.Prefix(0)
	return p
}

func (s *sources) merge(o sources) {
	for p, b := range o.buckets {
		if s.buckets == nil {
			s.buckets = map[netip.Prefix]*bucket{}
		}
		mine := s.buckets[p]
		if mine == nil {
			c := *b
			s.buckets[p] = &c
			continue
		}
		mine.seen.merge(b.seen)
		if b.min.Less(mine.min) {
			mine.min = b.min
		}
		if mine.max.Less(b.max) {
			mine.max = b.max
		}
	}
	for id, e := range o.ids {
		if s.ids == nil {
			s.ids = map[string]*seen{}
		}
		mine := s.ids[id]
		if mine == nil {
			c := *e
			s.ids[id] = &c
			continue
		}
		mine.merge(*e)
	}
}
