package translate

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dfpclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dynamic_forward_proxy/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	snidfpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_dynamic_forward_proxy/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamipv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/rbac/matchers/upstream_ip_port/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Audit mode (a gateway group's settings say mode: audit) lets through
// what enforce refuses, and logs it, so that intents can be discovered
// from real traffic (xds-server discover):
//   - an undeclared SNI on a TLS port: a last filter chain (TLS, any SNI)
//     forwards to the SNI on the declared port through the SNI dynamic
//     forward proxy, logged with "audit": "not_declared";
//   - an undeclared Host on an HTTP port, a CONNECT or absolute-form
//     request to an undeclared host on the forward proxy or the mesh port:
//     the catch-all virtual host forwards through the HTTP dynamic forward
//     proxy (the HTTP port: to its declared port; the proxies: to the
//     port the request names), logged likewise;
//   - a source outside a destination's allow list: on TLS and TCP ports
//     its chain (<destination>/source_not_allowed) forwards instead of
//     closing; on HTTP routes the allow list becomes RBAC shadow rules,
//     which never refuse. Logged with "audit": "source_not_allowed" and
//     the "policy" that would have refused it;
//   - a request outside a destination's methods and paths (HTTP ports):
//     the rules are shadow rules too, logged with "audit":
//     "method_or_path_not_allowed".
// Counters: tcp.<listener>/audit_not_declared.*, the TCP proxy stats of
// <destination>/source_not_allowed, vhost.egress_not_declared.route.
// <listener>/audit_not_declared.*, and per HTTP destination the virtual
// clusters vhost.<destination>.vcluster.source_not_allowed.* and
// vhost.<destination>.vcluster.method_or_path_not_allowed.*. Host names are
// in the logs only: no stat is named after a requested host.
//
// What audit never forwards: names that no intent could declare (IP
// addresses, single labels, *.localhost), and upstream addresses in
// AuditRefusedNetworks (loopback, link-local, private: the gateway's own
// admin listener, a cloud metadata service, the internal network), which
// any name can resolve to. Undeclared TCP ports have no listener and stay
// closed: nothing names a destination there. Held-back destinations (an
// unusable Secret) are refused, not forwarded without their TLS. The mesh
// port still requires its client certificate. Every connection or request
// is logged once, as in enforce.

const (
	// AuditCluster is the dynamic forward proxy cluster of audited
	// undeclared traffic: it connects to the requested name, without TLS
	// of its own (passthrough and CONNECT carry the client's).
	AuditCluster = "audit_not_declared"
	// AuditHeader carries the shadow RBAC decision from the RBAC filter to
	// the router, whose virtual clusters count it per destination; it is
	// set by the gateway (a client's is removed) and never sent upstream.
	AuditHeader = "x-egress-xds-audit"
	// Values of the access log's "audit" field.
	AuditNotDeclared      = "not_declared"
	AuditSourceNotAllowed = "source_not_allowed"
	// AuditOutsideRules: a request of an admitted source outside the
	// destination's methods and paths (enforce: 403).
	AuditOutsideRules = OperationNotAllowedPolicy
	// HeldBackBody answers requests for a destination held back in audit
	// mode (enforce answers NotDeclaredBody, as if it were not declared).
	HeldBackBody = "egress-xds: this destination is held back (its TLS Secret cannot be used), so audit does not forward it"

	auditUpstreamRBACFilter = "egress-xds.audit.upstream_rbac"
	headerMutationFilter    = "envoy.filters.http.header_mutation"
	routeMetadataNamespace  = "egress-xds"
	refusedNetworkPolicy    = "refused_network"
	notDNSNamePolicy        = "not_a_dns_name"
	// auditChainSuffix names the audit chain of a TLS listener, and its
	// stat prefix.
	auditChainSuffix = "/audit_not_declared"
)

// DefaultAuditRefusedNetworks are the upstream addresses audit never
// forwards to: loopback, unspecified, link-local (cloud metadata), private
// and shared (carrier-grade NAT) ranges, unique-local IPv6, and IPv4
// mapped into IPv6 (which would hide all of them).
var DefaultAuditRefusedNetworks = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::ffff:0:0/96"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// A name an intent could declare: labels of letters, digits and '-', at
// least two, the last starting with a letter (so no IP address in any
// notation); a trailing dot; and for authorities a port.
const (
	dnsNameRE   = `([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]*[a-zA-Z0-9])?\.?`
	sniRE       = `^` + dnsNameRE + `$`
	authorityRE = `^` + dnsNameRE + `(:[0-9]{1,5})?$`
	// localhostRE: RFC 6761 names under localhost resolve to loopback.
	localhostRE = `(?i)(^|\.)localhost\.?(:[0-9]{1,5})?$`
)

// audit reports whether this translation lets through and logs what the
// intents do not admit. Only gateways do: a sidecar's traffic is audited
// by its gateway.
func (t *translator) audit() bool { return t.opts.Audit && t.opts.Role == RoleGateway }

func (t *translator) refusedNetworks() []netip.Prefix {
	if t.opts.AuditRefusedNetworks != nil {
		return t.opts.AuditRefusedNetworks
	}
	return DefaultAuditRefusedNetworks
}

// auditFields are the literal fields of every audit log line: the reason,
// and what nothing in Envoy's log names and discover needs: the group, and
// on TLS and HTTP ports the declared port (the listener's may be mapped;
// the proxies' requests name theirs). dp is the destination whose allow
// list would have refused the source, if any.
func (t *translator) auditFields(reason string, dp *destPort, declaredPort uint32) map[string]string {
	f := map[string]string{"audit": reason, "group": t.opts.Group}
	if dp != nil {
		f["policy"] = allowPolicyText(dp.dest)
	}
	if declaredPort != 0 {
		f["port"] = strconv.FormatUint(uint64(declaredPort), 10)
	}
	return f
}

// allowPolicyText names the allow list that would have refused a source,
// at most five entries of it: it is in every such log line.
func allowPolicyText(d *intent.Destination) string {
	if d.Allow == nil {
		return ""
	}
	const most = 5
	var parts []string
	for i, s := range *d.Allow {
		if i == most {
			parts = append(parts, fmt.Sprintf("and %d more", len(*d.Allow)-most))
			break
		}
		switch {
		case s.CIDR != "":
			parts = append(parts, "cidr "+s.CIDR)
		case s.Principal != "":
			parts = append(parts, "principal "+s.Principal)
		case s.Namespace != "":
			parts = append(parts, "namespace "+s.Namespace)
		}
	}
	return "allow: " + strings.Join(parts, ", ")
}

// auditNotDeclaredChain is a TLS listener's last chain in audit: it
// matches TLS with any SNI no other chain declares. A network RBAC filter
// closes names no intent could declare, the SNI forward proxy resolves the
// SNI (to declaredPort, the port the workload connected to), a second RBAC
// filter closes refused upstream addresses, and the TCP proxy connects
// only once the client's first bytes passed both (ON_DOWNSTREAM_DATA: TLS
// speaks first), so a refused connection never reaches any upstream.
func (t *translator) auditNotDeclaredChain(listener string, declaredPort uint32) *listenerv3.FilterChain {
	name := listener + auditChainSuffix
	notDNS := &rbacnetv3.RBAC{StatPrefix: name + "/sni", Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
		notDNSNamePolicy: {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_NotRule{NotRule: &rbacv3.Permission{
				Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: safeRegex(sniRE)},
			}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		},
	}}}
	cfg := &tcpproxyv3.TcpProxy{
		StatPrefix:          name,
		ClusterSpecifier:    &tcpproxyv3.TcpProxy_Cluster{Cluster: AuditCluster},
		UpstreamConnectMode: tcpproxyv3.UpstreamConnectMode_ON_DOWNSTREAM_DATA,
		MaxEarlyDataBytes:   u32(64 * 1024),
		AccessLog:           t.accessLog(listener, notDeclaredRoute, t.auditFields(AuditNotDeclared, nil, declaredPort)),
	}
	return &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"},
		Filters: []*listenerv3.Filter{
			{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(notDNS)}},
			{Name: "envoy.filters.network.sni_dynamic_forward_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(&snidfpv3.FilterConfig{
				DnsCacheConfig:      t.dnsCacheConfig(),
				PortSpecifier:       &snidfpv3.FilterConfig_PortValue{PortValue: declaredPort},
				SaveUpstreamAddress: true,
			})}},
			{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(&rbacnetv3.RBAC{
				StatPrefix: name + "/upstream", Rules: t.refusedNetworkRules(),
			})}},
			{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(cfg)}},
		},
	}
}

// refusedNetworkRules deny the upstream addresses audit never forwards
// to; the dynamic forward proxy saved the address it resolved
// (save_upstream_address) for the upstream_ip_port matcher.
func (t *translator) refusedNetworkRules() *rbacv3.RBAC {
	var perms []*rbacv3.Permission
	for _, p := range t.refusedNetworks() {
		perms = append(perms, &rbacv3.Permission{Rule: &rbacv3.Permission_Matcher{Matcher: &corev3.TypedExtensionConfig{
			Name:        "envoy.rbac.matchers.upstream_ip_port",
			TypedConfig: t.pack(&upstreamipv3.UpstreamIpPortMatcher{UpstreamIp: cidrRange(p.Addr().String(), p.Bits())}),
		}}})
	}
	if len(perms) == 0 {
		// Nothing refused: a policy needs a permission; this one
		// matches nothing.
		perms = []*rbacv3.Permission{{Rule: &rbacv3.Permission_NotRule{NotRule: &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}}}}
	}
	return &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{refusedNetworkPolicy: {
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: perms}}}},
		Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
	}}}
}

// auditSourceChain replaces, in audit, the chain that closes a TLS or TCP
// destination's refused sources: it runs the admitted chain's filters
// (rate limit, SNI forward proxy) and forwards to the destination, still
// under the stat prefix <destination>/source_not_allowed, logging the
// policy that would have refused the source.
func (t *translator) auditSourceChain(listener string, dp *destPort, match *listenerv3.FilterChainMatch, filters []*listenerv3.Filter) *listenerv3.FilterChain {
	cfg := &tcpproxyv3.TcpProxy{
		StatPrefix:       refusedChainName(dp),
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: dp.cluster},
		AccessLog:        t.accessLog(listener, dp.cluster, t.auditFields(AuditSourceNotAllowed, dp, 0)),
	}
	fs := append(append([]*listenerv3.Filter(nil), filters...),
		&listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(cfg)}})
	return &listenerv3.FilterChain{Name: refusedChainName(dp), FilterChainMatch: match, Filters: fs}
}

// auditHTTPFilters are the connection manager's filters of audit, after
// the dynamic forward proxy and before the router: the refusal of
// upstream addresses (per route, on the audit routes), and the header
// that tells the router's virtual clusters the shadow RBAC decision.
func (t *translator) auditHTTPFilters() []*hcmv3.HttpFilter {
	mark := &headermutationv3.HeaderMutation{Mutations: &headermutationv3.Mutations{RequestMutations: []*mutationv3.HeaderMutation{
		{Action: &mutationv3.HeaderMutation_Remove{Remove: AuditHeader}},
		{Action: &mutationv3.HeaderMutation_Append{Append: &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: AuditHeader, Value: "%DYNAMIC_METADATA(" + httpRBACFilter + ":shadow_effective_policy_id)%"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}},
	}}}
	return []*hcmv3.HttpFilter{
		{Name: auditUpstreamRBACFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(&rbachttpv3.RBAC{})}},
		{Name: headerMutationFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(mark)}},
	}
}

// hcmAccessLog is a connection manager's access log. In audit it is two
// loggers, exactly one of which writes each request: the usual line, and
// for what the shadow rules refused, the line with "audit" (the shadow
// policy: not_declared or source_not_allowed), the route's "policy" and
// the group. (Envoy's metadata access log filter ignores the matcher's
// invert, seen with 1.40: the usual line selects "allowed" or no shadow
// decision instead.)
func (t *translator) hcmAccessLog(name string, declaredPort uint32) []*accesslogv3.AccessLog {
	usual := t.accessLog(name, "%ROUTE_NAME%", nil)
	if !t.audit() {
		return usual
	}
	fields := t.auditFields("%DYNAMIC_METADATA("+httpRBACFilter+":shadow_effective_policy_id)%", nil, declaredPort)
	fields["policy"] = "%METADATA(ROUTE:" + routeMetadataNamespace + ":policy)%"
	audited := t.accessLog(name, "%ROUTE_NAME%", fields)
	return []*accesslogv3.AccessLog{
		withFilter(usual, shadowResult("allowed", true)),
		withFilter(audited, shadowResult("denied", false)),
	}
}

// shadowResult selects requests by the shadow RBAC decision.
func shadowResult(result string, ifNotFound bool) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_MetadataFilter{MetadataFilter: &accesslogv3.MetadataFilter{
		Matcher: &matcherv3.MetadataMatcher{
			Filter: httpRBACFilter,
			Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "shadow_engine_result"}}},
			Value:  &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: exact(result)}},
		},
		MatchIfKeyNotFound: wrapperspb.Bool(ifNotFound),
	}}}
}

func withFilter(logs []*accesslogv3.AccessLog, f *accesslogv3.AccessLogFilter) *accesslogv3.AccessLog {
	return &accesslogv3.AccessLog{Name: logs[0].GetName(), ConfigType: logs[0].GetConfigType(), Filter: f}
}

// auditRBACPerRoute turns a destination's allow list and its methods and
// paths into shadow rules: a DENY policy named source_not_allowed for every
// source the allow list does not admit, and one named
// method_or_path_not_allowed for the requests of admitted sources that no
// entry's rules admit, so the shadow decision's policy is the log's
// "audit". The two never match the same request (the second requires an
// admitted source), whatever order Envoy tries them in. Nothing is
// enforced.
func (t *translator) auditRBACPerRoute(dp *destPort) *anypb.Any {
	d := dp.dest
	key := "audit\x00"
	if d.Allow != nil {
		key += allowKey(d)
	}
	if d.HasHTTPRules() {
		key += "\x00" + rulesKey(d)
	}
	if a, ok := t.rbacPerRoute[key]; ok {
		return a
	}
	policies := map[string]*rbacv3.Policy{}
	var admitted *rbacv3.Principal
	if d.Allow != nil {
		admitted = orIDs(t.rbacRules(d).GetPolicies()[allowPolicyName].GetPrincipals()...)
		policies[AuditSourceNotAllowed] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_NotId{NotId: admitted}}},
		}
	}
	if d.HasHTTPRules() {
		p := t.operationsPolicy(d)
		if admitted != nil {
			p.Principals = []*rbacv3.Principal{andIDs(admitted, p.Principals[0])}
		}
		policies[AuditOutsideRules] = p
	}
	a := t.pack(&rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{ShadowRules: &rbacv3.RBAC{
		Action:   rbacv3.RBAC_DENY,
		Policies: policies,
	}}})
	if t.rbacPerRoute == nil {
		t.rbacPerRoute = map[string]*anypb.Any{}
	}
	t.rbacPerRoute[key] = a
	return a
}

// auditDestination adds, in audit, what a destination's virtual host
// needs: the virtual clusters counting its sources outside the allow list
// and its requests outside the methods and paths, and on its route (the
// first) the allow list the log names as "policy".
func (t *translator) auditDestination(vh *routev3.VirtualHost, dp *destPort) {
	d := dp.dest
	if !t.audit() {
		return
	}
	count := func(name string) *routev3.VirtualCluster {
		return &routev3.VirtualCluster{
			Name: name,
			Headers: []*routev3.HeaderMatcher{{Name: AuditHeader, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
				StringMatch: exact(name),
			}}},
		}
	}
	if d.HasHTTPRules() && dp.port.Protocol == intent.ProtocolHTTP {
		vh.VirtualClusters = append(vh.VirtualClusters, count(AuditOutsideRules))
	}
	if d.Allow == nil {
		return
	}
	vh.VirtualClusters = append(vh.VirtualClusters, count(AuditSourceNotAllowed))
	if len(vh.Routes) > 0 {
		vh.Routes[0].Metadata = routeMetadata(map[string]any{"policy": allowPolicyText(d)})
	}
}

func routeMetadata(fields map[string]any) *corev3.Metadata {
	s, err := structpb.NewStruct(fields)
	if err != nil {
		return nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{routeMetadataNamespace: s}}
}

// catchAll is a route configuration's last virtual host: the default
// deny, or in audit the forwarding of undeclared hosts. declaredPort is
// the port of an HTTP listener, whose requests go to it; 0 for the forward
// proxy and the mesh port, whose requests name their port (CONNECT) or
// imply it (absolute-form: 80).
func (t *translator) catchAll(rc *routev3.RouteConfiguration, listener string, declaredPort uint32, connect bool) *routev3.VirtualHost {
	if !t.audit() {
		return notDeclaredVirtualHost()
	}
	rc.RequestHeadersToRemove = []string{AuditHeader}
	refuse := notDeclaredVirtualHost().GetRoutes()
	perRoute := map[string]*anypb.Any{
		httpRBACFilter:          t.auditNotDeclaredRBAC(),
		auditUpstreamRBACFilter: t.auditUpstreamRBAC(),
	}
	if declaredPort != 0 {
		perRoute[setFilterStateFilter] = t.dynamicUpstreamPort(declaredPort)
	}
	forward := &routev3.Route{
		Name:       notDeclaredRoute,
		Match:      &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:     &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: AuditCluster}}},
		StatPrefix: listener + auditChainSuffix, TypedPerFilterConfig: perRoute,
	}
	routes := []*routev3.Route{
		notDeclarable(cloneRoute(refuse[0])), localhost(cloneRoute(refuse[0])),
	}
	if connect {
		tunnel := connectRoute(notDeclaredRoute, AuditCluster, true)
		tunnel.StatPrefix, tunnel.TypedPerFilterConfig = listener+auditChainSuffix+"/connect", perRoute
		routes = append(routes, notDeclarable(cloneRoute(refuse[1])), localhost(cloneRoute(refuse[1])), forward, tunnel)
	} else {
		routes = append(routes, forward, refuse[1])
	}
	return &routev3.VirtualHost{Name: notDeclaredRoute, Domains: []string{"*"}, Routes: routes}
}

// notDeclarable is a refusal for authorities no intent could declare.
func notDeclarable(r *routev3.Route) *routev3.Route {
	r.Match.Headers = []*routev3.HeaderMatcher{{
		Name: ":authority", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: safeRegex(authorityRE)},
		InvertMatch: true, TreatMissingHeaderAsEmpty: true,
	}}
	return r
}

// localhost is a refusal for names under localhost.
func localhost(r *routev3.Route) *routev3.Route {
	r.Match.Headers = []*routev3.HeaderMatcher{{
		Name: ":authority", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: safeRegex(localhostRE)},
	}}
	return r
}

// sidecarCatchAll is the last virtual host of a sidecar's explicit proxy:
// the default deny, or, when its group audits, CONNECT and absolute-form
// requests for undeclared hosts passed to the gateways' mesh port as they
// are, where the gateway audits them with the workload's identity. (The
// capture listener keeps refusing what is not declared: a captured
// connection to an undeclared port names no host, and a captured HTTP
// request no port.)
func (t *translator) sidecarCatchAll(connect bool) *routev3.VirtualHost {
	if !t.opts.Audit || t.opts.Role != RoleSidecar || !connect {
		return notDeclaredVirtualHost()
	}
	refuse := notDeclaredVirtualHost().GetRoutes()
	pass := &routev3.Route{
		Name:   notDeclaredRoute,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: meshGatewayCluster}}},
	}
	return &routev3.VirtualHost{Name: notDeclaredRoute, Domains: []string{"*"}, Routes: []*routev3.Route{
		notDeclarable(cloneRoute(refuse[0])), localhost(cloneRoute(refuse[0])),
		notDeclarable(cloneRoute(refuse[1])), localhost(cloneRoute(refuse[1])),
		pass, connectRoute(notDeclaredRoute, meshGatewayCluster, false),
	}}
}

func cloneRoute(r *routev3.Route) *routev3.Route {
	c := &routev3.Route{Name: r.Name, Action: r.Action, Match: &routev3.RouteMatch{PathSpecifier: r.Match.PathSpecifier}}
	return c
}

// auditNotDeclaredRBAC marks every request of the audit route as what
// enforce would refuse: a shadow DENY policy named not_declared that
// matches everyone.
func (t *translator) auditNotDeclaredRBAC() *anypb.Any {
	const key = "audit\x00not_declared"
	if a, ok := t.rbacPerRoute[key]; ok {
		return a
	}
	a := t.pack(&rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{ShadowRules: &rbacv3.RBAC{
		Action: rbacv3.RBAC_DENY,
		Policies: map[string]*rbacv3.Policy{AuditNotDeclared: {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}},
	}}})
	if t.rbacPerRoute == nil {
		t.rbacPerRoute = map[string]*anypb.Any{}
	}
	t.rbacPerRoute[key] = a
	return a
}

// auditUpstreamRBAC refuses (403, rbac_access_denied_matched_policy
// [refused_network]) an audit route's request whose host resolved to a
// refused network; it runs after the dynamic forward proxy filter.
func (t *translator) auditUpstreamRBAC() *anypb.Any {
	const key = "audit\x00upstream"
	if a, ok := t.rbacPerRoute[key]; ok {
		return a
	}
	a := t.pack(&rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{Rules: t.refusedNetworkRules()}})
	if t.rbacPerRoute == nil {
		t.rbacPerRoute = map[string]*anypb.Any{}
	}
	t.rbacPerRoute[key] = a
	return a
}

// auditCluster is the dynamic forward proxy cluster of audit, sharing the
// one DNS cache.
func (t *translator) auditCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:           AuditCluster,
		ConnectTimeout: dur(defaultConnectTimeout),
		LbPolicy:       clusterv3.Cluster_CLUSTER_PROVIDED,
		ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
			Name:        "envoy.clusters.dynamic_forward_proxy",
			TypedConfig: t.pack(&dfpclusterv3.ClusterConfig{ClusterImplementationSpecifier: &dfpclusterv3.ClusterConfig_DnsCacheConfig{DnsCacheConfig: t.dnsCacheConfig()}}),
		}},
	}
}

// holdBack records, in audit, the ports of a destination left out for an
// unusable Secret, so that its host is refused rather than forwarded as
// undeclared without the TLS its intent asks for.
func (t *translator) holdBack(o intent.Origin, dest *intent.Destination) {
	if !t.audit() {
		return
	}
	ro := t.opts.ResolveOptions()
	for _, p := range dest.Ports {
		t.heldBack = append(t.heldBack, &destPort{origin: o, dest: dest, port: p, listenerPort: ro.ListenerPort(p.Number), sources: []string{o.ConfigMap()},
			cluster: fmt.Sprintf("%s/%d", DestinationID(o, dest.Name), p.Number)})
	}
}

// heldBackVirtualHosts answer 403 for held-back HTTP destinations on a
// listener port (0: every one, for the forward proxy and the mesh port).
func (t *translator) heldBackVirtualHosts(listenerPort uint32) []*routev3.VirtualHost {
	var out []*routev3.VirtualHost
	for _, dp := range t.heldBack {
		if dp.port.Protocol != intent.ProtocolHTTP || (listenerPort != 0 && dp.listenerPort != listenerPort) {
			continue
		}
		domains := []string{dp.dest.Host, fmt.Sprintf("%s:%d", dp.dest.Host, dp.port.Number)}
		if listenerPort == 0 {
			domains = proxyDomains(dp, dp.port.Number == 80)
		}
		out = append(out, &routev3.VirtualHost{Name: dp.cluster + "/held_back", Domains: domains, Routes: []*routev3.Route{{
			Name:  dp.cluster + "/held_back",
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 403, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: HeldBackBody}},
			}},
		}}})
	}
	return out
}

// heldBackChains close held-back destinations' connections on a TLS
// listener, as the refused sources' chains do.
func (t *translator) heldBackChains(listener string, listenerPort uint32) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	for _, dp := range t.heldBack {
		if !dp.port.Protocol.Passthrough() || dp.listenerPort != listenerPort {
			continue
		}
		t.refusing = append(t.refusing, dp.sources...)
		cfg := &tcpproxyv3.TcpProxy{StatPrefix: dp.cluster + "/held_back", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: RefusedCluster},
			AccessLog: t.accessLog(listener, dp.cluster+"/held_back", map[string]string{"reason": "held_back: the destination's TLS Secret cannot be used"})}
		out = append(out, &listenerv3.FilterChain{Name: dp.cluster + "/held_back", FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{dp.dest.Host}},
			Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: t.pack(cfg)}}}})
	}
	return out
}

// auditGatewayClusters adds the audit cluster, from the group's settings.
func (t *translator) auditGatewayClusters(clusters []*clusterv3.Cluster) []*clusterv3.Cluster {
	if !t.audit() {
		return clusters
	}
	if t.opts.AuditSource != "" {
		t.out.Sources.addConfigMap(resourcev3.ClusterType, AuditCluster, t.opts.AuditSource)
	}
	return append(clusters, t.auditCluster())
}

func safeRegex(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}
