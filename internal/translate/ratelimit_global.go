package translate

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dnscommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/common/dns/v3"
	dnsclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	commonratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	setfilterstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	ratelimithttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	setfilterstatehttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_filter_state/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	ratelimitnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ratelimit/v3"
	celformatterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/formatter/cel/v3"
	networkinputsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/network/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpupstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Global rate limits (rateLimit.global) are counted by the rate limit
// service (envoyproxy/ratelimit, with Redis), which every gateway asks
// before it lets a request or connection through: the budget is the
// fleet's, not each gateway's. xds-server configures both sides from the
// same intents:
//   - gateways (this file, RoleGateway): Envoy's global rate limit filters
//     (HTTP: per route; TLS and TCP: per filter chain) send the descriptor
//     [("destination", namespace/configmap/destination)], plus the source
//     for per-source limits ("principal", "namespace" or "address"), to
//     the rate limit service's cluster (RateLimitServiceCluster), domain
//     RateLimitDomain. Over the limit: 429 with x-rate-limited: true, as
//     the local limits answer (TLS and TCP: the connection is closed).
//   - the rate limit service (RoleRateLimit): one RateLimitConfig, served
//     over xDS as envoyproxy/ratelimit fetches it (CONFIG_TYPE=GRPC_XDS_SOTW),
//     with every destination's limit.
// A per-source limit has no value in the service's configuration for the
// source entry: each source gets a counter of its own, one Redis key per
// source and window.

// RoleRateLimit is the rate limit service (envoyproxy/ratelimit) fetching
// its configuration: node metadata egress-xds.io/role: ratelimit.
const RoleRateLimit Role = "ratelimit"

const (
	// RateLimitDomain is the rate limit domain of every descriptor, and
	// the name of the one RateLimitConfig the service is served.
	RateLimitDomain = "egress-xds"
	// RateLimitServiceCluster is the gateways' cluster of the rate limit
	// service.
	RateLimitServiceCluster = "egress_ratelimit"
	// DefaultRateLimitTimeout bounds a gateway's call to the service.
	// Envoy's own default, 20ms, is a request's budget on one machine;
	// the service is across the network from the gateways and asks Redis.
	DefaultRateLimitTimeout = 100 * time.Millisecond

	httpGlobalRateLimitFilter       = "envoy.filters.http.ratelimit"
	httpGlobalRateLimitClosedFilter = "envoy.filters.http.ratelimit.fail_closed"
	networkGlobalRateLimitFilter    = "envoy.filters.network.ratelimit"
	rateLimitSourceFilter           = "envoy.filters.http.set_filter_state.ratelimit_source"
	// NoSource is the source entry of requests that carry no identity
	// (every port but the mesh port): they count as one source. Neither a
	// SPIFFE ID nor a namespace is ever "-" (Envoy's rendering of a
	// missing value).
	NoSource = "-"
)

// RateLimitServiceOptions say where gateways reach the rate limit service.
type RateLimitServiceOptions struct {
	// Address is the service's gRPC address, host:port (a name is
	// resolved by the gateway's system resolver, not --dns-resolver: the
	// service is inside the cluster).
	Address string
	// TLS verifies the service with CAFile (a file in the gateways;
	// empty: the system CA bundle), requiring its certificate to name
	// SNI (empty: the host of Address).
	TLS    bool
	CAFile string
	SNI    string
	// ClientCertDir, with TLS, is a directory in the gateways holding
	// tls.crt and tls.key (a mounted kubernetes.io/tls Secret): the
	// gateways present that certificate to the service, which can then
	// refuse callers that are not gateways. Envoy reads the files itself
	// and again when the directory changes (a renewed certificate): the
	// key never travels over xDS. Empty: no client certificate.
	ClientCertDir string
	// Timeout of a call; DefaultRateLimitTimeout when 0.
	Timeout time.Duration
	// FailureModeDeny is the default of destinations that do not say:
	// refuse requests while the service cannot answer. false: let them
	// through (fail open).
	FailureModeDeny bool
}

// Check reports options that cannot work.
func (o *RateLimitServiceOptions) Check() error {
	if o == nil {
		return nil
	}
	if _, _, err := o.hostPort(); err != nil {
		return err
	}
	if o.Timeout < 0 {
		return fmt.Errorf("ratelimit: timeout %s is negative", o.Timeout)
	}
	if o.ClientCertDir != "" && !o.TLS {
		return fmt.Errorf("ratelimit: a client certificate (%s) needs TLS", o.ClientCertDir)
	}
	if o.ClientCertDir != "" && !path.IsAbs(o.ClientCertDir) {
		return fmt.Errorf("ratelimit: client certificate directory %q is not an absolute path", o.ClientCertDir)
	}
	return nil
}

// RateLimitClientCertSecret is the SDS name of the gateways' client
// certificate to the rate limit service (RateLimitServiceOptions.
// ClientCertDir). The colon keeps it apart from every Secret an intent
// can name (namespace/name: no colon in either).
const RateLimitClientCertSecret = "egress-xds:ratelimit/client-certificate"

func (o *RateLimitServiceOptions) hostPort() (string, uint32, error) {
	host, portText, err := net.SplitHostPort(o.Address)
	p, perr := strconv.ParseUint(portText, 10, 16)
	if err != nil || perr != nil || host == "" || p == 0 {
		return "", 0, fmt.Errorf("ratelimit: address %q is not host:port", o.Address)
	}
	return host, uint32(p), nil
}

func (o *RateLimitServiceOptions) timeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultRateLimitTimeout
	}
	return o.Timeout
}

// globalLimit is a destination port's global limit, nil when it has none
// or the gateways have no rate limit service (intent resolution refuses
// such intents; a sidecar has none either).
func (t *translator) globalLimit(dp *destPort) *intent.GlobalRateLimit {
	if t.opts.Role != RoleGateway || t.opts.RateLimitService == nil || dp.dest.RateLimit == nil {
		return nil
	}
	return dp.dest.RateLimit.Global
}

// failClosed reports whether requests to the destination are refused while
// the service cannot answer.
func (t *translator) failClosed(g *intent.GlobalRateLimit) bool {
	if g.FailureModeDeny != nil {
		return *g.FailureModeDeny
	}
	return t.opts.RateLimitService.FailureModeDeny
}

// usesRateLimitService records a destination port whose filters call the
// service: its cluster is then served, from their ConfigMaps. A port may
// be recorded more than once (Sources.add merges repeats): a search for
// it among every user would make a translation quadratic in them.
func (t *translator) usesRateLimitService(dp *destPort) {
	if n := len(t.rateLimitUsers); n > 0 && t.rateLimitUsers[n-1] == dp {
		return
	}
	t.rateLimitUsers = append(t.rateLimitUsers, dp)
}

// globalRateLimitFilters are the connection manager's global rate limit
// filters: one that lets requests through while the service cannot answer
// and one that refuses them, each present when a destination needs it,
// and before them the sources of per-source limits. Each enforces only the
// per-route descriptors given to it by name.
func (t *translator) globalRateLimitFilters(tr *portTraits) []*hcmv3.HttpFilter {
	open, closed, kinds := tr.limitOpen, tr.limitClosed, tr.limitKinds
	var out []*hcmv3.HttpFilter
	if len(kinds) > 0 {
		out = append(out, &hcmv3.HttpFilter{Name: rateLimitSourceFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(t.rateLimitSources(kinds))}})
	}
	if open {
		out = append(out, &hcmv3.HttpFilter{Name: httpGlobalRateLimitFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(t.httpGlobalRateLimit(false))}})
	}
	if closed {
		out = append(out, &hcmv3.HttpFilter{Name: httpGlobalRateLimitClosedFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(t.httpGlobalRateLimit(true))}})
	}
	return out
}

// httpGlobalRateLimit is one HTTP global rate limit filter. Over the limit:
// 429 with x-rate-limited: true. Fail closed, requests get 503 while the
// service cannot answer (Envoy's default, 500, would read as a bug).
// Stats are the upstream cluster's, so the destination port's:
// cluster.<destination>/<port>.ratelimit.{ok,over_limit,error,failure_mode_allowed}.
func (t *translator) httpGlobalRateLimit(failClosed bool) *ratelimithttpv3.RateLimit {
	rl := &ratelimithttpv3.RateLimit{
		Domain:           RateLimitDomain,
		Timeout:          dur(t.opts.RateLimitService.timeout()),
		FailureModeDeny:  failClosed,
		RateLimitService: rateLimitService(),
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: RateLimitedHeader, Value: "true"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}
	if failClosed {
		rl.StatusOnError = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}
		rl.StatPrefix = "fail_closed"
	}
	return rl
}

func rateLimitService() *ratelimitconfv3.RateLimitServiceConfig {
	return &ratelimitconfv3.RateLimitServiceConfig{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: RateLimitServiceCluster},
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
	}
}

// rateLimitSources puts, in the request's filter state, the source of
// each kind per-source limits of the listener count by (sourceState): the
// peer address of the connection (as allow lists match it, never
// X-Forwarded-For), the verified SPIFFE ID of the caller's certificate,
// its namespace (the mesh port admits spiffe://<td>/ns/<namespace>/sa/<sa>
// only). Without a verified certificate (every port but the mesh port)
// the identity renders as NoSource, so every request has its entry and is
// counted: a descriptor with a missing entry would not be sent at all.
// CEL's split is off by default in Envoy; the namespace's formatter turns
// it on for its one expression. No read_only: Envoy 1.40 deprecates it and
// ignores it (every filter state object is mutable); no other filter of
// ours writes these keys, and a client cannot write filter state.
func (t *translator) rateLimitSources(kinds map[intent.SourceKind]bool) *setfilterstatehttpv3.Config {
	var values []*setfilterstatev3.FilterStateValue
	for _, k := range sourceKinds {
		if !kinds[k] {
			continue
		}
		f := &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: sourceFormat[k]},
		}}}
		if k == intent.SourceNamespace {
			f.Formatters = []*corev3.TypedExtensionConfig{{
				Name:        "envoy.formatter.cel",
				TypedConfig: t.pack(&celformatterv3.Cel{CelConfig: &corev3.CelExpressionConfig{EnableStringFunctions: true}}),
			}}
		}
		values = append(values, &setfilterstatev3.FilterStateValue{
			Key:        &setfilterstatev3.FilterStateValue_ObjectKey{ObjectKey: sourceState(k)},
			FactoryKey: "envoy.string",
			Value:      &setfilterstatev3.FilterStateValue_FormatString{FormatString: f},
		})
	}
	return &setfilterstatehttpv3.Config{OnRequestHeaders: values}
}

// sourceKinds are the kinds of per-source limits, in a stable order.
var sourceKinds = []intent.SourceKind{intent.SourceAddress, intent.SourceNamespace, intent.SourcePrincipal}

// sourceFormat renders a request's source of each kind; a missing value
// (no peer certificate) renders "-" (NoSource).
var sourceFormat = map[intent.SourceKind]string{
	intent.SourceAddress:   "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
	intent.SourcePrincipal: "%DOWNSTREAM_PEER_URI_SAN%",
	intent.SourceNamespace: "%CEL(connection.uri_san_peer_certificate.split('/')[4])%",
}

// sourceState is the filter state object holding a request's source of
// one kind.
func sourceState(k intent.SourceKind) string { return "egress-xds.ratelimit_source." + string(k) }

// globalRateLimitPerRoute is a destination port's descriptor for the
// filter its failure mode names; nil without a global limit.
func (t *translator) globalRateLimitPerRoute(dp *destPort) (string, *anypb.Any) {
	g := t.globalLimit(dp)
	if g == nil {
		return "", nil
	}
	t.usesRateLimitService(dp)
	actions := []*routev3.RateLimit_Action{{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{
		DescriptorKey: "destination", DescriptorValue: DestinationID(dp.origin, dp.dest.Name),
	}}}}
	if g.PerSource != "" {
		// The source entry is the filter state rateLimitSources set, by
		// Envoy's stable filter state input (remote_address_match, which
		// formats values too, drags a work-in-progress xDS type along).
		actions = append(actions, &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_Extension{
			Extension: &corev3.TypedExtensionConfig{
				Name:        string(g.PerSource),
				TypedConfig: t.pack(&networkinputsv3.FilterStateInput{Key: sourceState(g.PerSource)}),
			},
		}})
	}
	name := httpGlobalRateLimitFilter
	if t.failClosed(g) {
		name = httpGlobalRateLimitClosedFilter
	}
	return name, t.pack(&ratelimithttpv3.RateLimitPerRoute{RateLimits: []*routev3.RateLimit{{Actions: actions}}})
}

// networkGlobalRateLimit asks the service for each new connection of a TLS
// or TCP destination port; over the limit the connection is closed.
// Connections on these ports carry no identity: per principal or namespace
// they count as one source. Stats: ratelimit.<destination>/<port>.*.
func (t *translator) networkGlobalRateLimit(dp *destPort) *listenerv3.Filter {
	g := t.globalLimit(dp)
	if g == nil {
		return nil
	}
	t.usesRateLimitService(dp)
	entries := []*commonratelimitv3.RateLimitDescriptor_Entry{{Key: "destination", Value: DestinationID(dp.origin, dp.dest.Name)}}
	switch g.PerSource {
	case intent.SourceAddress:
		entries = append(entries, &commonratelimitv3.RateLimitDescriptor_Entry{Key: string(g.PerSource), Value: sourceFormat[intent.SourceAddress]})
	case intent.SourcePrincipal, intent.SourceNamespace:
		entries = append(entries, &commonratelimitv3.RateLimitDescriptor_Entry{Key: string(g.PerSource), Value: NoSource})
	}
	return &listenerv3.Filter{Name: networkGlobalRateLimitFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(&ratelimitnetv3.RateLimit{
		StatPrefix:       dp.cluster,
		Domain:           RateLimitDomain,
		Descriptors:      []*commonratelimitv3.RateLimitDescriptor{{Entries: entries}},
		Timeout:          dur(t.opts.RateLimitService.timeout()),
		FailureModeDeny:  t.failClosed(g),
		RateLimitService: rateLimitService(),
	})}}
}

// addRateLimitServiceCluster serves the service's cluster when a filter
// calls it, from the ConfigMaps of the destinations that do.
func (t *translator) addRateLimitServiceCluster(clusters []*clusterv3.Cluster) []*clusterv3.Cluster {
	if len(t.rateLimitUsers) == 0 {
		return clusters
	}
	t.out.Sources.add(resourcev3.ClusterType, RateLimitServiceCluster, t.rateLimitUsers...)
	return append(clusters, t.rateLimitServiceCluster())
}

// rateLimitServiceCluster reaches the service over gRPC (HTTP/2), by DNS
// with the gateway's system resolver (an IP resolves to itself), with TLS
// when asked: the service's certificate must name SNI.
func (t *translator) rateLimitServiceCluster() *clusterv3.Cluster {
	o := t.opts.RateLimitService
	host, port, _ := o.hostPort()
	c := &clusterv3.Cluster{
		Name:           RateLimitServiceCluster,
		ConnectTimeout: dur(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
			Name: dnsClusterType,
			TypedConfig: t.pack(&dnsclusterv3.DnsCluster{
				RespectDnsTtl:     true,
				DnsMinRefreshRate: dur(5 * time.Second),
				DnsLookupFamily:   dnscommonv3.DnsLookupFamily_V4_PREFERRED,
			}),
		}},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: RateLimitServiceCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}},
			}}}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": t.pack(&httpupstreamv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpupstreamv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpupstreamv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpupstreamv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}},
			}),
		},
	}
	if o.TLS {
		sni := o.SNI
		if sni == "" {
			sni = host
		}
		san := &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exact(sni)}
		if _, err := netip.ParseAddr(sni); err == nil {
			san.SanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		}
		ca := o.CAFile
		if ca == "" {
			ca = t.opts.SystemCABundle
		}
		common := &tlsv3.CommonTlsContext{
			AlpnProtocols: []string{"h2"},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: ca}},
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
			}},
		}
		if o.ClientCertDir != "" {
			cert := fileCertificateSecret(o.ClientCertDir)
			cert.Name = RateLimitClientCertSecret
			t.addSecret(cert)
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsConfig(RateLimitClientCertSecret)}
		}
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: t.pack(&tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: common}),
		}}
	}
	return c
}

// rateLimitUnits are the service's units of intent.Unit.
var rateLimitUnits = map[intent.Unit]rlsconfv3.RateLimitUnit{
	intent.UnitSecond: rlsconfv3.RateLimitUnit_SECOND,
	intent.UnitMinute: rlsconfv3.RateLimitUnit_MINUTE,
	intent.UnitHour:   rlsconfv3.RateLimitUnit_HOUR,
	intent.UnitDay:    rlsconfv3.RateLimitUnit_DAY,
}

// buildRateLimitService is the rate limit service's configuration: the
// limit of every destination of every group, by destination ID (unique:
// namespace/configmap/destination), sorted. A destination served by
// several groups has one budget for all their gateways.
func (t *translator) buildRateLimitService(docs []intent.Doc) {
	type limit struct {
		id     string
		origin intent.Origin
		g      *intent.GlobalRateLimit
	}
	var limits []limit
	for _, d := range docs {
		for i := range d.Destinations {
			dest := &d.Destinations[i]
			if dest.RateLimit != nil && dest.RateLimit.Global != nil {
				limits = append(limits, limit{DestinationID(d.Origin, dest.Name), d.Origin, dest.RateLimit.Global})
			}
		}
	}
	sort.Slice(limits, func(i, j int) bool { return limits[i].id < limits[j].id })
	cfg := &rlsconfv3.RateLimitConfig{Name: RateLimitDomain, Domain: RateLimitDomain}
	for i, l := range limits {
		if i > 0 && limits[i-1].id == l.id {
			continue
		}
		policy := &rlsconfv3.RateLimitPolicy{Unit: rateLimitUnits[l.g.Per], RequestsPerUnit: l.g.Requests}
		desc := &rlsconfv3.RateLimitDescriptor{Key: "destination", Value: l.id}
		if l.g.PerSource != "" {
			// No value: every source is counted apart.
			desc.Descriptors = []*rlsconfv3.RateLimitDescriptor{{Key: string(l.g.PerSource), RateLimit: policy}}
		} else {
			desc.RateLimit = policy
		}
		cfg.Descriptors = append(cfg.Descriptors, desc)
		t.out.Sources.addConfigMap(resourcev3.RateLimitConfigType, cfg.Name, l.origin.ConfigMap())
	}
	t.out.RateLimitConfigs = []*rlsconfv3.RateLimitConfig{cfg}
}
