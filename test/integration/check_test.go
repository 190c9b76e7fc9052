package integration

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/xdstest"
)

// check reads what a gateway holds (an xdstest client's state) and keeps
// the first mismatch. Lookups return nil when something is missing; proto
// getters are nil-safe, so an assertion can read on without testing each
// step, and only the first error is reported.
type check struct {
	st  *xdstest.State
	err error
}

func (c *check) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf(format, args...)
	}
}

func (c *check) equal(what string, got, want any) {
	if !reflect.DeepEqual(got, want) {
		c.fail("%s: got %v, want %v", what, got, want)
	}
}

// equalSet compares string lists in any order.
func (c *check) equalSet(what string, got, want []string) {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		c.fail("%s: got %v, want %v", what, g, w)
	}
}

func (c *check) listener(name string) *listenerv3.Listener {
	for _, l := range c.st.Listeners() {
		if l.GetName() == name {
			return l
		}
	}
	c.fail("no listener %s", name)
	return nil
}

func (c *check) chain(l *listenerv3.Listener, name string) *listenerv3.FilterChain {
	for _, fc := range l.GetFilterChains() {
		if fc.GetName() == name {
			return fc
		}
	}
	c.fail("listener %s: no filter chain %s", l.GetName(), name)
	return nil
}

// filter unpacks the typed config of the named network filter of a chain.
func filter[T proto.Message](c *check, fc *listenerv3.FilterChain, name string) T {
	for _, f := range fc.GetFilters() {
		if f.GetName() == name {
			return unpack[T](c, f.GetTypedConfig())
		}
	}
	c.fail("filter chain %s: no filter %s", fc.GetName(), name)
	var zero T
	return zero
}

func unpack[T proto.Message](c *check, a *anypb.Any) T {
	var zero T
	if a == nil {
		c.fail("missing typed config")
		return zero
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		c.fail("%s: %v", a.GetTypeUrl(), err)
		return zero
	}
	t, ok := m.(T)
	if !ok {
		c.fail("%s is a %T, want %T", a.GetTypeUrl(), m, zero)
	}
	return t
}

// hcm is the connection manager of a single-chain HTTP listener.
func (c *check) hcm(l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	if n := len(l.GetFilterChains()); n != 1 {
		c.fail("listener %s has %d filter chains, want 1", l.GetName(), n)
		return nil
	}
	return filter[*hcmv3.HttpConnectionManager](c, l.GetFilterChains()[0], "envoy.filters.network.http_connection_manager")
}

func (c *check) routes(name string) *routev3.RouteConfiguration {
	for _, rc := range c.st.Routes() {
		if rc.GetName() == name {
			return rc
		}
	}
	c.fail("no route configuration %s", name)
	return nil
}

func (c *check) vhost(rc *routev3.RouteConfiguration, name string) *routev3.VirtualHost {
	if vh := findVHost(rc, name); vh != nil {
		return vh
	}
	c.fail("route configuration %s: no virtual host %s", rc.GetName(), name)
	return nil
}

func findVHost(rc *routev3.RouteConfiguration, name string) *routev3.VirtualHost {
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == name {
			return vh
		}
	}
	return nil
}

// route is the route of a destination's virtual host: its first, and
// only one but for 403 refusals (the forward proxy refuses CONNECT to an
// HTTP port and plain requests to a CONNECT port).
func (c *check) route(vh *routev3.VirtualHost) *routev3.Route {
	routes := vh.GetRoutes()
	if len(routes) == 0 {
		c.fail("virtual host %s has no route", vh.GetName())
		return nil
	}
	for _, r := range routes[1:] {
		if r.GetDirectResponse().GetStatus() != 403 {
			c.fail("virtual host %s has routes %v, want one and 403 refusals", vh.GetName(), routes)
		}
	}
	return routes[0]
}

func findCluster(st *xdstest.State, name string) *clusterv3.Cluster {
	for _, cl := range st.Clusters() {
		if cl.GetName() == name {
			return cl
		}
	}
	return nil
}

func (c *check) cluster(name string) *clusterv3.Cluster {
	cl := findCluster(c.st, name)
	if cl == nil {
		c.fail("no cluster %s", name)
	}
	return cl
}

// endpoints are the host:port of a cluster's endpoints, from EDS or its
// own load assignment.
func (c *check) endpoints(cl *clusterv3.Cluster) []string {
	cla := cl.GetLoadAssignment()
	if cl.GetType() == clusterv3.Cluster_EDS {
		name := cl.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = cl.GetName()
		}
		cla = nil
		for _, e := range c.st.Endpoints() {
			if e.GetClusterName() == name {
				cla = e
			}
		}
		if cla == nil {
			c.fail("cluster %s: no endpoints %s over EDS", cl.GetName(), name)
		}
	}
	var out []string
	for _, loc := range cla.GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, hostPort{sa.GetAddress(), sa.GetPortValue()}.String())
		}
	}
	return out
}

// upstreamTLS is the TLS origination of a cluster.
func (c *check) upstreamTLS(cl *clusterv3.Cluster) *tlsv3.UpstreamTlsContext {
	ts := cl.GetTransportSocket()
	if ts == nil {
		c.fail("cluster %s originates no TLS", cl.GetName())
		return nil
	}
	return unpack[*tlsv3.UpstreamTlsContext](c, ts.GetTypedConfig())
}

// sans are the exact subject alt names an upstream TLS context requires.
func sans(ctx *tlsv3.UpstreamTlsContext) []string {
	vc := ctx.GetCommonTlsContext().GetValidationContext()
	if vc == nil {
		vc = ctx.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext()
	}
	var out []string
	for _, m := range vc.GetMatchTypedSubjectAltNames() {
		out = append(out, m.GetMatcher().GetExact())
	}
	return out
}

// principals are the source CIDRs an RBAC policy allows.
// sourceRanges are the source addresses a filter chain matches.
func sourceRanges(fc *listenerv3.FilterChain) []string {
	var out []string
	for _, r := range fc.GetFilterChainMatch().GetSourcePrefixRanges() {
		out = append(out, r.GetAddressPrefix()+"/"+strconv.Itoa(int(r.GetPrefixLen().GetValue())))
	}
	return out
}

func hasChain(l *listenerv3.Listener, name string) bool {
	for _, fc := range l.GetFilterChains() {
		if fc.GetName() == name {
			return true
		}
	}
	return false
}

// refusedChain is the cluster of the chain that takes the sources a
// destination refuses; the chain matches the same names as the admitted
// one, without the source ranges.
func refusedChain(c *check, l *listenerv3.Listener, destination string) string {
	fc := c.chain(l, destination+"/source_not_allowed")
	if fc == nil {
		return ""
	}
	if len(fc.GetFilterChainMatch().GetSourcePrefixRanges()) != 0 {
		c.fail("the refusing chain of %s matches sources", destination)
	}
	return filter[*tcpproxyv3.TcpProxy](c, fc, tcpProxy).GetCluster()
}

func principals(r *rbacv3.RBAC) []string {
	var out []string
	for _, p := range r.GetPolicies() {
		for _, pr := range p.GetPrincipals() {
			if ip := pr.GetDirectRemoteIp(); ip != nil {
				out = append(out, ip.GetAddressPrefix()+"/"+strconv.Itoa(int(ip.GetPrefixLen().GetValue())))
			}
			// Workload identities: the peer certificate's SPIFFE ID,
			// exactly (principal=) or by prefix (principal^=).
			if m := pr.GetAuthenticated().GetPrincipalName(); m.GetExact() != "" {
				out = append(out, "principal="+m.GetExact())
			} else if m.GetPrefix() != "" {
				out = append(out, "principal^="+m.GetPrefix())
			}
		}
	}
	return out
}

func accessLogField(c *check, logs []*accesslogv3.AccessLog, key string) string {
	if len(logs) == 0 {
		c.fail("no access log")
		return ""
	}
	f := unpack[*streamv3.StdoutAccessLog](c, logs[0].GetTypedConfig())
	return f.GetLogFormat().GetJsonFormat().GetFields()[key].GetStringValue()
}

func localReplyFormat(h *hcmv3.HttpConnectionManager) string {
	for _, m := range h.GetLocalReplyConfig().GetMappers() {
		return m.GetBodyFormatOverride().GetTextFormatSource().GetInlineString()
	}
	return ""
}

// directResponses are "status body" of a virtual host's direct responses.
func directResponses(vh *routev3.VirtualHost) []string {
	var out []string
	for _, r := range vh.GetRoutes() {
		if dr := r.GetDirectResponse(); dr != nil {
			out = append(out, fmt.Sprint(dr.GetStatus(), " ", dr.GetBody().GetInlineString()))
		}
	}
	return out
}

func httpFilters(h *hcmv3.HttpConnectionManager) []string {
	var out []string
	for _, f := range h.GetHttpFilters() {
		out = append(out, f.GetName())
	}
	return out
}

func upgrades[T interface{ GetUpgradeType() string }](ucs []T) []string {
	var out []string
	for _, u := range ucs {
		out = append(out, u.GetUpgradeType())
	}
	return out
}

func routeRBAC(c *check, r *routev3.Route) []string {
	return principals(unpack[*rbachttpv3.RBACPerRoute](c, r.GetTypedPerFilterConfig()[httpRBAC]).GetRbac().GetRules())
}

func threshold(k *clusterv3.Cluster) *clusterv3.CircuitBreakers_Thresholds {
	for _, th := range k.GetCircuitBreakers().GetThresholds() {
		return th
	}
	return nil
}

// signedBy checks a PEM certificate against a PEM CA, for client use.
func signedBy(certPEM, caPEM []byte) error {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("no PEM CA")
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}
