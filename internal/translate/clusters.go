package translate

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	dnscommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/common/dns/v3"
	dnsclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	dfpclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dynamic_forward_proxy/v3"
	dnscachev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/dynamic_forward_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpupstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

const (
	defaultConnectTimeout = 5 * time.Second
	// dnsClusterType is the registered name of the DNS cluster factory.
	dnsClusterType = "envoy.cluster.dns"
)

var lbPolicies = map[intent.LoadBalancer]clusterv3.Cluster_LbPolicy{
	intent.LBRoundRobin:   clusterv3.Cluster_ROUND_ROBIN,
	intent.LBLeastRequest: clusterv3.Cluster_LEAST_REQUEST,
	intent.LBRandom:       clusterv3.Cluster_RANDOM,
}

// cluster builds the upstream of one destination port, and its endpoints
// when they are served by EDS (STATIC resolution: endpoint changes then do
// not rebuild the cluster, which would drain its connections).
func (t *translator) cluster(dp *destPort) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	d := dp.dest
	c := &clusterv3.Cluster{
		Name:           dp.cluster,
		ConnectTimeout: dur(defaultConnectTimeout),
		LbPolicy:       lbPolicies[d.LoadBalancer],
	}
	var cla *endpointv3.ClusterLoadAssignment
	switch d.Resolution {
	case intent.ResolutionStatic:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()}
		cla = loadAssignment(dp)
	case intent.ResolutionDynamic:
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		c.ClusterDiscoveryType = &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
			Name: "envoy.clusters.dynamic_forward_proxy",
			TypedConfig: t.pack(&dfpclusterv3.ClusterConfig{
				ClusterImplementationSpecifier: &dfpclusterv3.ClusterConfig_DnsCacheConfig{DnsCacheConfig: t.dnsCacheConfig()},
				// Envoy refuses a forward proxy cluster that does not check
				// each host's certificate, unless told it is meant.
				AllowInsecureClusterOptions: dp.originatesTLS() && d.TLS.InsecureSkipVerify,
			}),
		}}
	default:
		c.ClusterDiscoveryType = t.dnsCluster(d.Resolution == intent.ResolutionDNSRoundRobin)
		c.LoadAssignment = loadAssignment(dp)
	}
	if cp := d.ConnectionPool; cp != nil {
		if cp.ConnectTimeout != nil {
			c.ConnectTimeout = dur(cp.ConnectTimeout.Duration)
		}
		c.CircuitBreakers = circuitBreakers(cp)
	}
	if od := d.OutlierDetection; od != nil {
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:                    optU32p(od.Consecutive5xxErrors),
			ConsecutiveGatewayFailure:          optU32p(od.ConsecutiveGatewayErrors),
			Interval:                           optDur(od.Interval),
			BaseEjectionTime:                   optDur(od.BaseEjectionTime),
			MaxEjectionPercent:                 optU32p(od.MaxEjectionPercent),
			EnforcingConsecutive_5Xx:           enforcing(od.Consecutive5xxErrors),
			EnforcingConsecutiveGatewayFailure: enforcing(od.ConsecutiveGatewayErrors),
		}
	}
	if dp.port.Protocol == intentHTTP {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": t.httpProtocolOptionsAny(dp),
		}
	}
	if dp.originatesTLS() {
		c.TransportSocket = &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: t.pack(t.upstreamTLS(dp))},
		}
	}
	return c, cla
}

const intentHTTP = intent.ProtocolHTTP

// refusedCluster has no endpoints: a TCP proxy sending to it closes the
// connection without connecting anywhere.
func refusedCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 RefusedCluster,
		ConnectTimeout:       dur(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: RefusedCluster},
	}
}

// enforcing turns on ejection for a configured detector; Envoy enforces
// consecutive gateway failures at 0% unless told otherwise.
func enforcing(v *uint32) *wrapperspb.UInt32Value {
	if v == nil {
		return nil
	}
	return u32(100)
}

func optU32p(v *uint32) *wrapperspb.UInt32Value {
	if v == nil {
		return nil
	}
	return u32(*v)
}

func circuitBreakers(cp *intent.ConnectionPool) *clusterv3.CircuitBreakers {
	th := &clusterv3.CircuitBreakers_Thresholds{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     optU32(cp.MaxConnections),
		MaxPendingRequests: optU32(cp.MaxPendingRequests),
		MaxRequests:        optU32(cp.MaxRequests),
		MaxRetries:         optU32(cp.MaxRetries),
		TrackRemaining:     true,
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
}

// httpProtocolOptionsAny packs httpProtocolOptions, once per distinct
// value: most HTTP clusters share the same options.
func (t *translator) httpProtocolOptionsAny(dp *destPort) *anypb.Any {
	var key protocolOptionsKey
	if cp := dp.dest.ConnectionPool; cp != nil {
		key.maxRequests = cp.MaxRequestsPerConnection
		if cp.IdleTimeout != nil {
			key.idle = cp.IdleTimeout.Duration
		}
	}
	if dp.dynamic() {
		key.autoSNI, key.autoSAN = true, !insecure(dp)
	}
	if a, ok := t.protocolOptions[key]; ok {
		return a
	}
	a := t.pack(t.httpProtocolOptions(dp))
	if t.protocolOptions == nil {
		t.protocolOptions = map[protocolOptionsKey]*anypb.Any{}
	}
	t.protocolOptions[key] = a
	return a
}

// protocolOptionsKey is everything httpProtocolOptions depends on.
type protocolOptionsKey struct {
	maxRequests      uint32
	idle             time.Duration
	autoSNI, autoSAN bool
}

// insecure reports TLS origination without verification.
func insecure(dp *destPort) bool { return dp.originatesTLS() && dp.dest.TLS.InsecureSkipVerify }

// httpProtocolOptions: HTTP/1.1 upstream, connection reuse limits, and for
// dynamic forward proxy clusters the SNI and certificate check of each
// request's own host (auto_sni, auto_san_validation). Envoy supplies those
// two itself only to a forward proxy cluster without any HTTP protocol
// options, and refuses one whose options lack them (unless
// allow_insecure_cluster_options): plain HTTP clusters get them too, where
// they are what Envoy would set and do nothing.
func (t *translator) httpProtocolOptions(dp *destPort) *httpupstreamv3.HttpProtocolOptions {
	o := &httpupstreamv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpupstreamv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpupstreamv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpupstreamv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}},
	}
	if cp := dp.dest.ConnectionPool; cp != nil && (cp.MaxRequestsPerConnection != 0 || cp.IdleTimeout != nil) {
		o.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{
			MaxRequestsPerConnection: optU32(cp.MaxRequestsPerConnection),
			IdleTimeout:              optDur(cp.IdleTimeout),
		}
	}
	if dp.dynamic() {
		o.UpstreamHttpProtocolOptions = &corev3.UpstreamHttpProtocolOptions{
			AutoSni:           true,
			AutoSanValidation: !insecure(dp),
		}
	}
	return o
}

// upstreamTLS originates TLS. The server is verified by default, against
// the named CA Secret or the system bundle, and must present the SNI (or the
// listed names) in its certificate: Envoy checks no name unless told to.
func (t *translator) upstreamTLS(dp *destPort) *tlsv3.UpstreamTlsContext {
	o := dp.dest.TLS
	ctx := &tlsv3.UpstreamTlsContext{Sni: o.SNI, CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"http/1.1"}}}
	ns := dp.origin.Namespace
	if o.ClientCertificate != nil {
		ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsConfig(tlsSecretName(SecretKey{ns, o.ClientCertificate.Secret}))}
	}
	if o.InsecureSkipVerify {
		return ctx
	}
	var sans []*tlsv3.SubjectAltNameMatcher
	names := o.SubjectAltNames
	if len(names) == 0 && o.SNI != "" {
		names = []string{o.SNI}
	}
	for _, n := range names {
		sans = append(sans, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exact(n)})
	}
	if o.CACertificates != nil {
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
				ValidationContextSdsSecretConfig: sdsConfig(caSecretName(SecretKey{ns, o.CACertificates.Secret})),
			},
		}
		return ctx
	}
	ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.opts.SystemCABundle}},
		MatchTypedSubjectAltNames: sans,
	}}
	return ctx
}

// loadAssignment lists a destination's endpoints: the declared ones, or the
// host itself for DNS resolution without endpoints.
func loadAssignment(dp *destPort) *endpointv3.ClusterLoadAssignment {
	d := dp.dest
	eps := d.Endpoints
	if len(eps) == 0 {
		eps = []intent.Endpoint{{Address: d.Host}}
	}
	var lbs []*endpointv3.LbEndpoint
	for _, ep := range eps {
		port := dp.upstreamPort()
		if ep.Port != 0 {
			port = ep.Port
		}
		lb := &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address:  socketAddress(ep.Address, port),
				Hostname: d.Host,
			}},
			LoadBalancingWeight: optU32(ep.Weight),
		}
		if len(ep.Labels) > 0 {
			fields := map[string]any{}
			for k, v := range ep.Labels {
				fields[k] = v
			}
			if s, err := structpb.NewStruct(fields); err == nil {
				lb.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.lb": s}}
			}
		}
		lbs = append(lbs, lb)
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: dp.cluster,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}

// dnsCluster resolves the endpoints' names through the DNS cluster
// extension, which replaces the STRICT_DNS and LOGICAL_DNS types and their
// deprecated Cluster fields: every address an endpoint (strict), or one
// address at a time (logical, for names behind many rotating addresses),
// re-resolved as the records' TTL says but not more often than every 5s
// (dns_min_refresh_rate is a floor on the interval). Envoy finds custom
// cluster types by the name their factory registers, envoy.cluster.dns
// (source/extensions/clusters/dns), and only falls back to the config's
// type URL when the name is unknown.
// The two configurations are packed once per translation and shared.
func (t *translator) dnsCluster(logical bool) *clusterv3.Cluster_ClusterType {
	i := 0
	if logical {
		i = 1
	}
	a := t.dnsClusters[i]
	if a == nil {
		a = t.pack(&dnsclusterv3.DnsCluster{
			RespectDnsTtl:                true,
			DnsMinRefreshRate:            dur(5 * time.Second),
			DnsLookupFamily:              dnscommonv3.DnsLookupFamily_V4_PREFERRED,
			AllAddressesInSingleEndpoint: logical,
			TypedDnsResolverConfig:       t.dnsResolver(),
		})
		t.dnsClusters[i] = a
	}
	return &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{Name: dnsClusterType, TypedConfig: a}}
}

// dnsCacheConfig is shared by every dynamic forward proxy filter and cluster:
// Envoy requires all users of one cache name to agree on its configuration,
// the DNS resolver included.
func (t *translator) dnsCacheConfig() *dnscachev3.DnsCacheConfig {
	return &dnscachev3.DnsCacheConfig{
		Name:                   dnsCacheName,
		DnsLookupFamily:        clusterv3.Cluster_V4_PREFERRED,
		MaxHosts:               u32(4096),
		TypedDnsResolverConfig: t.dnsResolver(),
	}
}
