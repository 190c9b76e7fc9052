package translate

import (
	"fmt"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

const (
	defaultIdleTimeout           = time.Hour
	defaultRequestHeadersTimeout = 10 * time.Second
	// NotDeclaredBody is the 403 body for hosts no intent declares; the
	// connection manager appends ": <authority>".
	NotDeclaredBody = "egress-xds: egress to this host is not declared"
)

// httpRoutes is the route configuration of an HTTP listener: a virtual host
// per destination, matched by host and host:port, and a catch-all that
// answers 403.
func (t *translator) httpRoutes(name string, dps []*destPort) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false), VirtualHosts: t.httpVirtualHosts(dps[0].listenerPort, dps, 1)}
	rc.VirtualHosts = append(append(rc.VirtualHosts, t.heldBackVirtualHosts(dps[0].listenerPort)...), t.catchAll(rc, name, t.listenerDeclaredPort(dps[0].listenerPort), false))
	return rc
}

// httpVirtualHost is a destination port's virtual host on its HTTP
// listener.
func (t *translator) httpVirtualHost(dp *destPort) *routev3.VirtualHost {
	vh := &routev3.VirtualHost{
		Name:    dp.cluster,
		Domains: []string{dp.dest.Host, fmt.Sprintf("%s:%d", dp.dest.Host, dp.port.Number)},
		Routes:  []*routev3.Route{t.httpRoute(dp)},
	}
	t.auditDestination(vh, dp)
	return vh
}

// httpRoute sends a destination's requests to its cluster with its timeout,
// retries, source allowlist and rate limit.
func (t *translator) httpRoute(dp *destPort) *routev3.Route {
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: dp.cluster}}
	if dp.dest.Timeout != nil {
		action.Timeout = dur(dp.dest.Timeout.Duration)
	}
	if rt := dp.dest.Retries; rt != nil {
		action.RetryPolicy = &routev3.RetryPolicy{
			RetryOn:       strings.Join(rt.On, ","),
			NumRetries:    u32(rt.Attempts),
			PerTryTimeout: optDur(rt.PerTryTimeout),
		}
	}
	return &routev3.Route{
		Name:                 dp.cluster,
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:               &routev3.Route_Route{Route: action},
		TypedPerFilterConfig: t.perRouteFilters(dp),
	}
}

// perRouteFilters are built once per destination port and shared by its
// routes on the HTTP listener and the forward proxy.
func (t *translator) perRouteFilters(dp *destPort) map[string]*anypb.Any {
	if dp.perRouteDone {
		return dp.perRoute
	}
	dp.perRouteDone = true
	out := map[string]*anypb.Any{}
	if a := t.httpRBACPerRoute(dp); a != nil {
		out[httpRBACFilter] = a
	}
	if a := t.operationsPerRoute(dp); a != nil {
		out[operationsRBACFilter] = a
	}
	if a := t.httpRateLimitPerRoute(dp); a != nil {
		out[httpRateLimitFilter] = a
	}
	if name, a := t.globalRateLimitPerRoute(dp); a != nil {
		out[name] = a
	}
	if dp.dynamic() && t.opts.Role == RoleGateway {
		out[setFilterStateFilter] = t.dynamicUpstream(dp)
	}
	if len(out) > 0 {
		dp.perRoute = out
	}
	return dp.perRoute
}

// forwardProxyRoutes: a virtual host per destination port, matched by the
// authority a proxy client sends (host:port for CONNECT, host or host:port
// for absolute-form HTTP). TLS and TCP ports accept CONNECT and tunnel the
// bytes to the destination's cluster; HTTP ports take absolute-form requests.
// The other kind of request for the same authority (CONNECT to an HTTP
// port, a plain request to a TLS or TCP port) is not declared either: it
// gets the default deny's 403, where Envoy would answer 404 for a virtual
// host without a matching route.
func (t *translator) forwardProxyRoutes(name string, dps []*destPort) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false), VirtualHosts: t.proxyVirtualHosts(dps, 1)}
	rc.VirtualHosts = append(append(rc.VirtualHosts, t.heldBackVirtualHosts(0)...), t.catchAll(rc, name, 0, true))
	return rc
}

// proxyVirtualHost is a destination port's virtual host on the forward
// proxy and the mesh port.
func (t *translator) proxyVirtualHost(dp *destPort) *routev3.VirtualHost {
	// The refusals are the same in every virtual host: shared, as
	// resources are never modified once built.
	if t.refuse == nil {
		t.refuse = notDeclaredVirtualHost().GetRoutes()
	}
	refuse := t.refuse
	http := dp.port.Protocol == intent.ProtocolHTTP
	domains := proxyDomains(dp, http && dp.port.Number == 80)
	var routes []*routev3.Route
	if http {
		routes = []*routev3.Route{t.httpRoute(dp), refuse[1]}
	} else {
		r := connectRoute(dp.cluster, dp.cluster, true)
		r.TypedPerFilterConfig = t.perRouteFilters(dp)
		routes = []*routev3.Route{r, refuse[0]}
	}
	vh := &routev3.VirtualHost{Name: dp.cluster, Domains: domains, Routes: routes}
	t.auditDestination(vh, dp)
	return vh
}

// proxyDomains are the authorities a proxy client sends for a destination
// port: host:port, and the bare host when it may leave the port out (a
// Host header, or an absolute-form URL on port 80).
func proxyDomains(dp *destPort, bareHost bool) []string {
	d := []string{fmt.Sprintf("%s:%d", dp.dest.Host, dp.port.Number)}
	if bareHost {
		d = append(d, dp.dest.Host)
	}
	return d
}

// connectRoute sends CONNECT requests to cluster. terminate ends the
// CONNECT here and forwards the tunnelled bytes (the gateway); otherwise
// the CONNECT itself goes upstream (a sidecar to its gateway). A tunnel
// lives as long as its connection: no request timeout.
func connectRoute(name, cluster string, terminate bool) *routev3.Route {
	upgrade := &routev3.RouteAction_UpgradeConfig{UpgradeType: "CONNECT"}
	if terminate {
		upgrade.ConnectConfig = &routev3.RouteAction_UpgradeConfig_ConnectConfig{}
	}
	return &routev3.Route{
		Name:  name,
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_ConnectMatcher_{ConnectMatcher: &routev3.RouteMatch_ConnectMatcher{}}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          dur(0),
			UpgradeConfigs:   []*routev3.RouteAction_UpgradeConfig{upgrade},
		}},
	}
}

// notDeclaredVirtualHost is the default deny of HTTP: any host no intent
// declares gets a 403 and an access-log line with route egress_not_declared.
// Its routes are the refusal of requests with a path, then of CONNECT.
func notDeclaredVirtualHost() *routev3.VirtualHost {
	return &routev3.VirtualHost{
		Name:    notDeclaredRoute,
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Name:  notDeclaredRoute,
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 403,
				Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: NotDeclaredBody}},
			}},
		}, {
			// CONNECT requests carry no path; refuse them the same way.
			Name:  notDeclaredRoute,
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_ConnectMatcher_{ConnectMatcher: &routev3.RouteMatch_ConnectMatcher{}}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 403,
				Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: NotDeclaredBody}},
			}},
		}},
	}
}

// statusFilter selects responses with one status code.
func statusFilter(code uint32) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
			Op:    accesslogv3.ComparisonFilter_EQ,
			Value: &corev3.RuntimeUInt32{DefaultValue: code, RuntimeKey: fmt.Sprintf("egress.local_reply.status_%d", code)},
		}},
	}}
}
