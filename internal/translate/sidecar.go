package translate

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpupstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// A sidecar runs beside one workload and carries its egress to the
// gateways of its group: it never connects to external hosts itself, and
// refuses what no intent declares before it leaves the pod. It gets:
//   - the cluster of its group's gateways (mesh_gateway): mutual TLS with
//     its workload certificate, HTTP/2, and the gateway group's SPIFFE ID
//     required of the server;
//   - an explicit proxy on 127.0.0.1 (HTTP_PROXY/HTTPS_PROXY): CONNECT to a
//     declared host:port and absolute-form requests to declared HTTP hosts
//     are passed to the gateway as they are, anything else gets a 403;
//   - a transparent capture listener on 127.0.0.1 for outbound traffic
//     redirected by iptables: TLS by port and SNI, TCP by port, each
//     tunnelled to the gateway in an HTTP/2 CONNECT to host:port (TLS stays
//     end to end inside the tunnel), HTTP by port and Host; a connection
//     that matches no declared destination is closed and logged.
// Allow lists are enforced by the gateway, which sees the verified
// identity; the sidecar has no keys but its own workload's.

const (
	meshGatewayCluster = "mesh_gateway"
	kindSidecarProxy   = "sidecar_proxy"
	kindSidecarCapture = "sidecar_capture"
	kindSidecarHTTP    = "sidecar_http"
	sidecarAddress     = "127.0.0.1"
)

func (t *translator) buildSidecar() {
	m := t.opts.Mesh
	if m == nil {
		t.diags = append(t.diags, intent.Diagnostic{Message: "sidecars need the mesh: start xds-server with --mesh-port and --mesh-trust-domain", Severity: intent.SeverityError})
		return
	}
	if !t.meshSecrets(MeshWorkloadCertSecret) {
		return
	}
	c, err := t.meshGatewayCluster()
	if err != nil {
		t.diags = append(t.diags, intent.Diagnostic{Message: err.Error(), Severity: intent.SeverityError})
		return
	}
	t.out.Clusters = append(t.out.Clusters, c)
	t.out.Sources.add(resourcev3.ClusterType, c.Name, t.ports...)
	if m.SidecarProxyPort != 0 {
		name := listenerName(kindSidecarProxy, m.SidecarProxyPort)
		l := t.listenerAt(sidecarAddress, name, m.SidecarProxyPort)
		l.FilterChains = []*listenerv3.FilterChain{{Name: name, Filters: []*listenerv3.Filter{t.connectionManager(name, t.ports, true)}}}
		t.addListener(l, t.sidecarRoutes(name, t.ports, true), t.ports)
	}
	if m.SidecarCapturePort != 0 {
		t.captureListener(m.SidecarCapturePort)
	}
}

// meshGatewayCluster reaches the group's gateways' mesh port.
func (t *translator) meshGatewayCluster() (*clusterv3.Cluster, error) {
	m := t.opts.Mesh
	host, port, err := m.gatewayAddress(t.opts.Group)
	if err != nil {
		return nil, err
	}
	c := &clusterv3.Cluster{
		Name:           meshGatewayCluster,
		ConnectTimeout: dur(defaultConnectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: meshGatewayCluster,
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
	// The gateway is identified by its SPIFFE ID; the SNI is only a
	// courtesy, and an IP address is not a valid one.
	up := &tlsv3.UpstreamTlsContext{CommonTlsContext: meshTLSContext(MeshWorkloadCertSecret, exact(GatewaySPIFFEID(m.TrustDomain, t.opts.Group)))}
	if _, err := netip.ParseAddr(host); err == nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		c.ClusterDiscoveryType = t.dnsCluster(false)
		up.Sni = host
	}
	c.TransportSocket = &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: t.pack(up)},
	}
	return c, nil
}

// sidecarRoutes passes declared destinations to the gateway unchanged:
// CONNECT host:port for TLS and TCP ports (proxied as an HTTP/2 CONNECT,
// not terminated), requests by Host for HTTP ports. connect also admits
// the absolute-form authority of an explicit proxy (host for port 80).
func (t *translator) sidecarRoutes(name string, dps []*destPort, connect bool) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
	refuse := notDeclaredVirtualHost().GetRoutes()
	for _, dp := range dps {
		http := dp.port.Protocol == intent.ProtocolHTTP
		if !http && !connect {
			continue
		}
		domains := proxyDomains(dp, http && (!connect || dp.port.Number == 80))
		r := connectRoute(dp.cluster, meshGatewayCluster, false)
		if http {
			action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: meshGatewayCluster}}
			if dp.dest.Timeout != nil {
				action.Timeout = dur(dp.dest.Timeout.Duration)
			}
			r = &routev3.Route{Name: dp.cluster, Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: action}}
		}
		routes := []*routev3.Route{r}
		// As on the gateway's forward proxy: the other kind of request for
		// the authority gets the default deny's 403, not Envoy's 404.
		switch {
		case connect && http:
			routes = append(routes, refuse[1])
		case connect:
			routes = append(routes, refuse[0])
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: dp.cluster, Domains: domains, Routes: routes})
	}
	rc.VirtualHosts = append(rc.VirtualHosts, t.sidecarCatchAll(connect))
	return rc
}

// captureListener takes outbound connections redirected to it and picks
// the destination by original destination port and, for TLS, SNI.
func (t *translator) captureListener(port uint32) {
	name := listenerName(kindSidecarCapture, port)
	l := t.listenerAt(sidecarAddress, name, port)
	l.ListenerFilters = []*listenerv3.ListenerFilter{{
		Name:       "envoy.filters.listener.original_dst",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: t.pack(&origdstv3.OriginalDst{})},
	}}
	l.AccessLog = t.notDeclaredLog(name)
	tlsPorts := map[uint32]bool{}
	http := map[uint32][]*destPort{}
	var httpPorts []uint32
	for _, dp := range t.ports {
		p := dp.port.Number
		match := &listenerv3.FilterChainMatch{DestinationPort: u32(p)}
		switch {
		case dp.port.Protocol == intent.ProtocolHTTP:
			if http[p] == nil {
				httpPorts = append(httpPorts, p)
			}
			http[p] = append(http[p], dp)
			continue
		case dp.port.Protocol.Passthrough():
			match.ServerNames = []string{dp.dest.Host}
			tlsPorts[p] = true
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name: dp.cluster, FilterChainMatch: match, Filters: []*listenerv3.Filter{t.tunnel(name, dp)},
		})
	}
	slices.Sort(httpPorts)
	for _, p := range httpPorts {
		rname := listenerName(kindSidecarHTTP, p)
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             rname,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: u32(p)},
			Filters:          []*listenerv3.Filter{t.connectionManager(rname, http[p], false)},
		})
		rc := t.sidecarRoutes(rname, http[p], false)
		t.out.Routes = append(t.out.Routes, rc)
		t.out.Sources.add(resourcev3.RouteType, rc.Name, http[p]...)
	}
	if len(tlsPorts) > 0 {
		l.ListenerFilters = append(l.ListenerFilters, t.tlsInspectorOn(slices.Sorted(maps.Keys(tlsPorts))))
	}
	if len(l.FilterChains) == 0 {
		// Nothing declared: Envoy refuses a listener without filter
		// chains, so it gets one that no connection matches (no listener
		// filter sets that transport protocol). Every connection is closed
		// and logged as not declared, as undeclared ones always are.
		l.FilterChains = []*listenerv3.FilterChain{{
			Name:             notDeclaredRoute,
			FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: notDeclaredRoute},
		}}
	}
	t.addListener(l, nil, t.ports)
}

// tlsInspectorOn reads the SNI only on the given destination ports: on
// others a server-speaks-first protocol would wait for a ClientHello that
// never comes.
func (t *translator) tlsInspectorOn(ports []uint32) *listenerv3.ListenerFilter {
	var rules []*listenerv3.ListenerFilterChainMatchPredicate
	for _, p := range ports {
		rules = append(rules, &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: int32(p), End: int32(p) + 1},
		}})
	}
	onPorts := rules[0]
	if len(rules) > 1 {
		onPorts = &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_OrMatch{
			OrMatch: &listenerv3.ListenerFilterChainMatchPredicate_MatchSet{Rules: rules},
		}}
	}
	return &listenerv3.ListenerFilter{
		Name:           "envoy.filters.listener.tls_inspector",
		ConfigType:     &listenerv3.ListenerFilter_TypedConfig{TypedConfig: t.pack(&tlsinspectorv3.TlsInspector{})},
		FilterDisabled: &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: onPorts}},
	}
}

// tunnel carries a captured TLS or TCP connection to the gateway in an
// HTTP/2 CONNECT to the destination's host:port; for a wildcard host, to
// the name the client asked for in its SNI.
func (t *translator) tunnel(listener string, dp *destPort) *listenerv3.Filter {
	host := dp.dest.Host
	if strings.HasPrefix(host, "*.") {
		host = "%REQUESTED_SERVER_NAME%"
	}
	return t.tcpProxyTo(listener, dp, meshGatewayCluster,
		&tcpproxyv3.TcpProxy_TunnelingConfig{Hostname: fmt.Sprintf("%s:%d", host, dp.port.Number)})
}
