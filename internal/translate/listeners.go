package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	snidfpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_dynamic_forward_proxy/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// NotDeclaredReason is logged for connections whose SNI no intent declares.
const NotDeclaredReason = "egress_not_declared: no egress intent declares this host on this port"

// SourceNotAllowedReason is logged for TLS and TCP connections from a
// source outside the destination's allow list.
const SourceNotAllowedReason = "source_not_allowed: the destination's allow list does not admit this source address"

// RefusedCluster is the cluster, without endpoints, that the chains of
// refused sources send to: the TCP proxy closes the connection at once
// (flag UH) without connecting anywhere.
const RefusedCluster = "source_not_allowed"

func (t *translator) listener(name string, port uint32) *listenerv3.Listener {
	return t.listenerAt(t.opts.ListenerAddress, name, port)
}

func (t *translator) listenerAt(address, name string, port uint32) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress(address, port),
		// Envoy's default of 1 MiB per connection buffer is generous for a
		// gateway fronting many clients.
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(32 * 1024),
	}
}

// tlsListener routes TLS by SNI without terminating it: one filter chain per
// declared host (wildcards included). A connection whose SNI matches no chain
// is closed by Envoy: that is the default deny, and the listener's access log
// (filtered to the connections that matched no filter chain) records it.
func (t *translator) tlsListener(port uint32, dps []*destPort) *listenerv3.Listener {
	name := listenerName(kindTLS, port)
	l := t.listener(name, port)
	l.ListenerFilters = []*listenerv3.ListenerFilter{{
		Name:       "envoy.filters.listener.tls_inspector",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: t.pack(&tlsinspectorv3.TlsInspector{})},
	}}
	var kinds chainKinds
	l.FilterChains, kinds = t.tlsChains(name, port, dps)
	if t.audit() {
		extra := append(t.heldBackChains(name, port), t.auditNotDeclaredChain(name, t.listenerDeclaredPort(port)))
		kinds.add(t, extra)
		l.FilterChains = append(l.FilterChains, extra...)
	}
	l.AccessLog = append(t.notDeclaredLog(name), t.chainLogsOf(name, kinds)...)
	return l
}

// tcpListener forwards a port to its one destination: TCP carries no name
// to tell destinations apart, so intent resolution allows one per port.
func (t *translator) tcpListener(port uint32, dp *destPort) *listenerv3.Listener {
	name := listenerName(kindTCP, port)
	l := t.listener(name, port)
	l.FilterChains = t.admissionChains(name, dp, nil)
	l.AccessLog = t.chainLogs(name, l.FilterChains)
	return l
}

// admissionChains are a TLS or TCP destination's filter chains (matching
// serverNames, if any). A destination with an allow list admits sources in
// the filter chain match: a source outside it lands on a chain of its own
// that closes the connection and logs why, before anything else runs. A
// network RBAC filter would decide only on the first bytes, after the
// connection rate limit had taken its token (denied sources would drain
// the allowed ones' bucket) and the TCP proxy had connected upstream.
// Identities cannot be checked on these ports (no client certificate):
// a destination allowing only identities refuses every connection here.
func (t *translator) admissionChains(listener string, dp *destPort, serverNames []string) []*listenerv3.FilterChain {
	var filters []*listenerv3.Filter
	if f := t.networkRateLimit(dp); f != nil {
		filters = append(filters, f)
	}
	if f := t.networkGlobalRateLimit(dp); f != nil {
		filters = append(filters, f)
	}
	if dp.dynamic() {
		filters = append(filters, &listenerv3.Filter{Name: "envoy.filters.network.sni_dynamic_forward_proxy",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(&snidfpv3.FilterConfig{
				DnsCacheConfig: t.dnsCacheConfig(),
				PortSpecifier:  &snidfpv3.FilterConfig_PortValue{PortValue: dp.upstreamPort()},
			})}})
	}
	match := func() *listenerv3.FilterChainMatch {
		if serverNames == nil {
			return nil
		}
		return &listenerv3.FilterChainMatch{ServerNames: serverNames}
	}
	admitted := &listenerv3.FilterChain{Name: dp.cluster, FilterChainMatch: match(), Filters: append(filters[:len(filters):len(filters)], t.tcpProxy(dp))}
	if dp.dest.Allow == nil {
		return []*listenerv3.FilterChain{admitted}
	}
	var out []*listenerv3.FilterChain
	if ranges := sourceRanges(dp.dest); len(ranges) > 0 {
		if admitted.FilterChainMatch == nil {
			admitted.FilterChainMatch = &listenerv3.FilterChainMatch{}
		}
		admitted.FilterChainMatch.SourcePrefixRanges = ranges
		out = append(out, admitted)
	}
	if t.audit() {
		return append(out, t.auditSourceChain(listener, dp, match(), filters))
	}
	t.refusing = append(t.refusing, dp.sources...)
	return append(out, &listenerv3.FilterChain{
		Name:             refusedChainName(dp),
		FilterChainMatch: match(),
		Filters:          []*listenerv3.Filter{t.refusingProxy(dp)},
	})
}

// refusedChainName names the chain of the sources a destination refuses;
// it is also the stat prefix of their connections.
func refusedChainName(dp *destPort) string { return dp.cluster + "/source_not_allowed" }

// tcpProxy sends a destination port's connections to its cluster. Its
// connections are logged by the listener (chainLogs), so the chain carries
// no access log of its own.
func (t *translator) tcpProxy(dp *destPort) *listenerv3.Filter {
	cfg := &tcpproxyv3.TcpProxy{
		StatPrefix:       dp.cluster,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: dp.cluster},
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(cfg)}}
}

// refusingProxy closes the connections of refused sources: its cluster has
// no endpoints. Their stats are the destination's, under
// <destination>/source_not_allowed, and the listener's log says why.
func (t *translator) refusingProxy(dp *destPort) *listenerv3.Filter {
	cfg := &tcpproxyv3.TcpProxy{
		StatPrefix:       refusedChainName(dp),
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: RefusedCluster},
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(cfg)}}
}

// tcpProxyTo sends a destination port's connections to cluster, inside an
// HTTP CONNECT tunnel when tunnel is set; stats and logs are the
// destination's.
func (t *translator) tcpProxyTo(listenerName string, dp *destPort, cluster string, tunnel *tcpproxyv3.TcpProxy_TunnelingConfig) *listenerv3.Filter {
	cfg := &tcpproxyv3.TcpProxy{
		StatPrefix:       dp.cluster,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		TunnelingConfig:  tunnel,
	}
	// The access log is the bulk of a TCP proxy's config and the same for
	// every chain of the listener: encoded once.
	logs, ok := t.tcpAccessLogs[listenerName]
	if !ok {
		logs = t.encodeField(cfg, "access_log", asMessages(t.accessLog(listenerName, "%FILTER_CHAIN_NAME%", nil))...)
		if t.tcpAccessLogs == nil {
			t.tcpAccessLogs = map[string]sharedField{}
		}
		t.tcpAccessLogs[listenerName] = logs
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.packWith(cfg, logs)}}
}

// httpListener serves plain HTTP from workloads: a connection manager whose
// route configuration (RDS, named like the listener) has a virtual host per
// destination and answers 403 to every other host.
func (t *translator) httpListener(port uint32, dps []*destPort) (*listenerv3.Listener, *routev3.RouteConfiguration) {
	name := listenerName(kindHTTP, port)
	l := t.listener(name, port)
	l.FilterChains = []*listenerv3.FilterChain{{Name: name, Filters: []*listenerv3.Filter{t.connectionManager(name, dps, false)}}}
	return l, t.httpRoutes(name, dps)
}

// forwardProxy is the explicit proxy for workloads with HTTP(S)_PROXY set:
// CONNECT host:port for TLS and TCP destinations and absolute-form requests
// for HTTP ones, each only to declared destinations.
func (t *translator) forwardProxy(port uint32, dps []*destPort) (*listenerv3.Listener, *routev3.RouteConfiguration) {
	name := listenerName(kindForwardProxy, port)
	l := t.listener(name, port)
	l.FilterChains = []*listenerv3.FilterChain{{Name: name, Filters: []*listenerv3.Filter{t.connectionManager(name, dps, true)}}}
	return l, t.forwardProxyRoutes(name, dps)
}

func (t *translator) connectionManager(name string, dps []*destPort, connect bool) *listenerv3.Filter {
	// Authorization first, then the rate limits: a refused request spends
	// no token.
	tr := t.traits(dps)
	filters := []*hcmv3.HttpFilter{{Name: httpRBACFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.httpRBACBase()}}}
	filters = append(filters, t.operationsFilters(&tr)...)
	filters = append(filters, &hcmv3.HttpFilter{Name: httpRateLimitFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.httpRateLimitBase(name)}})
	filters = append(filters, t.globalRateLimitFilters(&tr)...)
	// Only gateways connect to the destinations themselves; a sidecar's
	// routes all lead to its gateways.
	if t.opts.Role == RoleGateway && (tr.dynamic || t.audit()) {
		filters = append(filters, t.dynamicFilters()...)
	}
	if t.audit() {
		filters = append(filters, t.auditHTTPFilters()...)
	}
	filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(&routerv3.Router{})}})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: name,
			ConfigSource:    adsSource(),
		}},
		HttpFilters:      filters,
		AccessLog:        t.hcmAccessLog(name, t.declaredPort(dps, connect)),
		LocalReplyConfig: notDeclaredReply(),
		// The gateway is the edge toward the internet: never trust
		// forwarding headers from workloads, and do not leak internal ones.
		UseRemoteAddress:  wrapperspb.Bool(true),
		SkipXffAppend:     false,
		GenerateRequestId: wrapperspb.Bool(true),
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout: dur(defaultIdleTimeout),
		},
		RequestHeadersTimeout: dur(defaultRequestHeadersTimeout),
	}
	normalizePaths(hcm, &tr)
	if connect {
		hcm.UpgradeConfigs = []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "CONNECT"}}
		hcm.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{AllowConnect: true}
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(hcm)}}
}

// notDeclaredReply appends the requested authority to 403 bodies, so a
// refused workload reads which host was not declared (or not allowed).
func notDeclaredReply() *hcmv3.LocalReplyConfig {
	return &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{
		Filter: statusFilter(403),
		BodyFormatOverride: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: "%LOCAL_REPLY_BODY%: %REQ(:AUTHORITY)%\n"},
			}},
		},
	}}}
}

// declaredPort is the port an HTTP listener's workloads connect to; 0 for
// the proxies, whose requests name theirs.
func (t *translator) declaredPort(dps []*destPort, connect bool) uint32 {
	if connect || len(dps) == 0 {
		return 0
	}
	return t.listenerDeclaredPort(dps[0].listenerPort)
}

// listenerDeclaredPort is the port workloads connected to when their
// traffic reaches listener port l, for what no destination declares (the
// port audit mode forwards it to, and the access log names): the declared
// port the operator's PortMap serves at l (--port-map maps one port to
// each listener at most; the smallest, should a caller map several), else
// l. Never a destination's own: when a destination declares l itself while
// PortMap also serves another port at l, which tenant sorts first must not
// move where everyone's undeclared traffic goes.
func (t *translator) listenerDeclaredPort(l uint32) uint32 {
	out, mapped := l, false
	for declared, at := range t.opts.PortMap {
		if at == l && (!mapped || declared < out) {
			out, mapped = declared, true
		}
	}
	return out
}

// exact matches a string exactly; for header and SAN matchers.
func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}
