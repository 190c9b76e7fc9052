// Package bootstrap holds the Envoy bootstrap of a plain Envoy egress
// gateway fed by egress-xds, and renders it for a given gateway instance.
package bootstrap

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// Types packed in Any fields of the bootstrap, so they resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// EgressGatewayYAML is egress-gateway.yaml: the bootstrap as shipped, with
// its comments, valid as is (node.id is a placeholder meant to be replaced
// with --service-node).
//
//go:embed egress-gateway.yaml
var EgressGatewayYAML []byte

// SidecarYAML is sidecar.yaml: the bootstrap of an egress sidecar (node
// metadata egress-xds.io/role: sidecar).
//
//go:embed sidecar.yaml
var SidecarYAML []byte

// Names and defaults used by the bootstrap.
const (
	// XDSClusterName is the static cluster of the ADS connection.
	XDSClusterName = "xds_cluster"

	DefaultCluster   = "egress-gateway"
	DefaultXDSHost   = "xds-server"
	DefaultXDSPort   = 18000
	DefaultAdminPort = 9901
	// DefaultStatsPort is the static listener that serves only
	// /stats/prometheus from the admin interface, for scraping.
	DefaultStatsPort = 9902

	statsListenerName = "envoy_prometheus"
	adminClusterName  = "envoy_admin"
)

// Params tell which gateway instance a bootstrap is for. Zero values take the
// defaults of egress-gateway.yaml.
type Params struct {
	// NodeID is the Envoy node.id, unique per Envoy instance. Required.
	NodeID string
	// Cluster is the Envoy node.cluster: the gateway group intents select
	// with `gateways:`. Default "egress-gateway".
	Cluster string
	// XDSHost is the DNS name or IP address of egress-xds. Default
	// "xds-server". An IP address makes xds_cluster STATIC instead of
	// STRICT_DNS.
	XDSHost string
	// XDSPort is egress-xds's gRPC port. Default 18000.
	XDSPort int
	// AdminPort is the port of the admin interface, always on 127.0.0.1.
	// Default 9901; negative lets Envoy pick a free port (run Envoy with
	// --admin-address-path to learn it).
	AdminPort int
	// StatsPort is the port of the Prometheus stats listener. Default 9902;
	// negative removes it (as does a negative AdminPort: the stats listener
	// must know the admin port).
	StatsPort int
	// XDSTLS, when set, secures the xDS connection with TLS and the
	// gateway's client certificate (xdstls.go); nil: plaintext, as
	// egress-gateway.yaml ships for a laptop.
	XDSTLS *XDSTLS
	// Delta subscribes with incremental xDS (ads_config.api_type
	// DELTA_GRPC: Envoy asks for and gets only what changed) instead of
	// the shipped state of the world (GRPC: every resource of a type on
	// each change). egress-xds serves both on the same port.
	Delta bool
}

// Parse reads an Envoy bootstrap in YAML (or JSON) strictly: unknown fields
// and unknown Any types are errors. It does not validate the result; see
// (*Bootstrap).ValidateAll.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: invalid YAML: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// Default returns egress-gateway.yaml parsed.
func Default() (*bootstrapv3.Bootstrap, error) {
	return Parse(EgressGatewayYAML)
}

// Build returns the bootstrap for p, validated.
func Build(p Params) (*bootstrapv3.Bootstrap, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	b, err := Default()
	if err != nil {
		return nil, err
	}
	b.Node.Id = p.NodeID
	if p.Cluster != "" {
		b.Node.Cluster = p.Cluster
	}

	xds, sa := xdsCluster(b)
	if sa == nil {
		return nil, errors.New("bootstrap: egress-gateway.yaml has no " + XDSClusterName + " with one socket address")
	}
	if p.XDSHost != "" {
		sa.Address = p.XDSHost
		if ip, err := netip.ParseAddr(p.XDSHost); err == nil {
			sa.Address = ip.String()
			xds.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			xds.DnsLookupFamily = clusterv3.Cluster_AUTO
		}
	}
	if p.XDSPort != 0 {
		sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(p.XDSPort)}
	}
	if p.XDSTLS != nil {
		if err := secureXDS(xds, sa.Address, p.XDSTLS); err != nil {
			return nil, err
		}
	}
	if p.Delta {
		ads := b.GetDynamicResources().GetAdsConfig()
		if ads == nil {
			return nil, errors.New("bootstrap: egress-gateway.yaml has no dynamic_resources.ads_config")
		}
		ads.ApiType = corev3.ApiConfigSource_DELTA_GRPC
	}

	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	switch {
	case p.AdminPort < 0:
		admin.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 0}
	case p.AdminPort > 0:
		admin.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(p.AdminPort)}
	}

	if err := statsListener(b, p); err != nil {
		return nil, err
	}

	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// statsListener points the stats listener's admin cluster at the admin
// port and moves the listener to p.StatsPort, or removes both.
func statsListener(b *bootstrapv3.Bootstrap, p Params) error {
	sr := b.GetStaticResources()
	if p.StatsPort < 0 || p.AdminPort < 0 {
		sr.Listeners = slices.DeleteFunc(sr.Listeners, func(l *listenerv3.Listener) bool { return l.GetName() == statsListenerName })
		sr.Clusters = slices.DeleteFunc(sr.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == adminClusterName })
		return nil
	}
	for _, l := range sr.GetListeners() {
		if l.GetName() == statsListenerName && p.StatsPort > 0 {
			l.GetAddress().GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(p.StatsPort)}
		}
	}
	for _, c := range sr.GetClusters() {
		if c.GetName() != adminClusterName {
			continue
		}
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			return errors.New("bootstrap: egress-gateway.yaml has no " + adminClusterName + " with one endpoint")
		}
		if p.AdminPort > 0 {
			eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().PortSpecifier =
				&corev3.SocketAddress_PortValue{PortValue: uint32(p.AdminPort)}
		}
	}
	return nil
}

// Render returns the bootstrap for p as YAML, ready for `envoy -c`.
func Render(p Params) ([]byte, error) {
	b, err := Build(p)
	if err != nil {
		return nil, err
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	protocol := ""
	if p.Delta {
		protocol = ", delta xDS"
	}
	header := fmt.Sprintf("# Envoy bootstrap of egress gateway node %q (cluster %q)%s, rendered from egress-gateway.yaml.\n",
		b.GetNode().GetId(), b.GetNode().GetCluster(), protocol)
	return append([]byte(header), y...), nil
}

func (p Params) check() error {
	var errs []error
	if strings.TrimSpace(p.NodeID) == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	for _, f := range []struct {
		name, v string
	}{{"NodeID", p.NodeID}, {"Cluster", p.Cluster}, {"XDSHost", p.XDSHost}} {
		if strings.ContainsFunc(f.v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("%s %q has spaces or control characters", f.name, f.v))
		}
	}
	if p.XDSPort < 0 || p.XDSPort > 65535 {
		errs = append(errs, fmt.Errorf("XDSPort %d is out of range", p.XDSPort))
	}
	if p.StatsPort > 65535 || (p.StatsPort > 0 && p.StatsPort == p.AdminPort) {
		errs = append(errs, fmt.Errorf("StatsPort %d is out of range or the admin port", p.StatsPort))
	}
	if p.AdminPort > 65535 {
		errs = append(errs, fmt.Errorf("AdminPort %d is out of range", p.AdminPort))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bootstrap: %w", errors.Join(errs...))
	}
	return nil
}

// xdsCluster returns the xDS cluster and the address of its only endpoint.
func xdsCluster(b *bootstrapv3.Bootstrap) (*clusterv3.Cluster, *corev3.SocketAddress) {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != XDSClusterName {
			continue
		}
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			return c, nil
		}
		return c, eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	}
	return nil, nil
}
