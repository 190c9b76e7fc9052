package xdstest

import (
	"fmt"
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// refs are the names one cluster or listener makes Envoy fetch on the same
// ADS stream: EDS assignments (clusters of type EDS), RDS route
// configurations (HttpConnectionManager with rds) and SDS secrets
// (SdsSecretConfig with an sds_config in a TLS transport socket).
type refs struct {
	eds, rds, sds []string
}

// resourceRefs returns what msg, a resource of a source type (CDS or LDS),
// references. An error means Envoy would reject the resource (for instance
// a TLS transport socket whose typed_config does not decode).
func resourceRefs(msg proto.Message) (refs, error) {
	switch m := msg.(type) {
	case *clusterv3.Cluster:
		return clusterRefs(m)
	case *listenerv3.Listener:
		return listenerRefs(m)
	}
	return refs{}, nil
}

// clusterRefs: a cluster of type EDS subscribes the ClusterLoadAssignment
// named eds_cluster_config.service_name, or the cluster name when unset;
// an UpstreamTlsContext transport socket subscribes its SDS secrets.
func clusterRefs(c *clusterv3.Cluster) (refs, error) {
	var r refs
	if c.GetType() == clusterv3.Cluster_EDS {
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		r.eds = append(r.eds, name)
	}
	if err := transportSocketRefs(c.GetTransportSocket(), &r.sds); err != nil {
		return r, fmt.Errorf("cluster %q: %w", c.GetName(), err)
	}
	for _, m := range c.GetTransportSocketMatches() {
		if err := transportSocketRefs(m.GetTransportSocket(), &r.sds); err != nil {
			return r, fmt.Errorf("cluster %q transport_socket_matches %q: %w", c.GetName(), m.GetName(), err)
		}
	}
	return r, nil
}

// listenerRefs: every HttpConnectionManager with rds (in any filter chain
// and the default filter chain) subscribes its route_config_name; a
// DownstreamTlsContext transport socket subscribes its SDS secrets.
func listenerRefs(l *listenerv3.Listener) (refs, error) {
	var r refs
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains[:len(chains):len(chains)], d)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil || tc.GetTypeUrl() != typeHCM {
				continue
			}
			var hcm hcmv3.HttpConnectionManager
			if err := tc.UnmarshalTo(&hcm); err != nil {
				return r, fmt.Errorf("listener %q filter %q: %w", l.GetName(), f.GetName(), err)
			}
			if name := hcm.GetRds().GetRouteConfigName(); name != "" {
				r.rds = append(r.rds, name)
			}
		}
		if err := transportSocketRefs(fc.GetTransportSocket(), &r.sds); err != nil {
			return r, fmt.Errorf("listener %q filter chain %q: %w", l.GetName(), fc.GetName(), err)
		}
	}
	return r, nil
}

const (
	typeHCM           = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	typeUpstreamTLS   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	typeDownstreamTLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
)

// transportSocketRefs appends the dynamic SDS secret names of a TLS
// transport socket to out.
func transportSocketRefs(ts *corev3.TransportSocket, out *[]string) error {
	tc := ts.GetTypedConfig()
	if tc == nil {
		return nil
	}
	switch tc.GetTypeUrl() {
	case typeUpstreamTLS:
		var up tlsv3.UpstreamTlsContext
		if err := tc.UnmarshalTo(&up); err != nil {
			return err
		}
		commonTLSRefs(up.GetCommonTlsContext(), out)
	case typeDownstreamTLS:
		var down tlsv3.DownstreamTlsContext
		if err := tc.UnmarshalTo(&down); err != nil {
			return err
		}
		commonTLSRefs(down.GetCommonTlsContext(), out)
		sdsRef(down.GetSessionTicketKeysSdsSecretConfig(), out)
	}
	return nil
}

func commonTLSRefs(c *tlsv3.CommonTlsContext, out *[]string) {
	for _, s := range c.GetTlsCertificateSdsSecretConfigs() {
		sdsRef(s, out)
	}
	sdsRef(c.GetValidationContextSdsSecretConfig(), out)
	sdsRef(c.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(), out)
}

// sdsRef appends the secret name when Envoy would fetch it over xDS. Envoy
// only subscribes an SdsSecretConfig that has an sds_config: without one,
// the name refers to a static secret of the bootstrap and nothing is
// requested from the control plane.
func sdsRef(s *tlsv3.SdsSecretConfig, out *[]string) {
	if s.GetName() == "" || s.GetSdsConfig() == nil {
		return
	}
	*out = append(*out, s.GetName())
}

// wantedNames are, per named type (EDS, RDS, SDS), the names the
// references of the clusters and listeners held (source type -> resource
// name -> references) make Envoy subscribe.
func wantedNames(held map[string]map[string]refs) map[string]map[string]struct{} {
	want := map[string]map[string]struct{}{EndpointType: {}, RouteType: {}, SecretType: {}}
	for _, src := range []string{ClusterType, ListenerType} {
		for _, r := range held[src] {
			for _, n := range r.eds {
				want[EndpointType][n] = struct{}{}
			}
			for _, n := range r.rds {
				want[RouteType][n] = struct{}{}
			}
			for _, n := range r.sds {
				want[SecretType][n] = struct{}{}
			}
		}
	}
	return want
}

// subscription compares the names wanted with the current subscription
// (cur, sorted; subscribed whether the type was ever requested): the new
// one, sorted, and what it adds and drops, for delta. changed is false
// when nothing is to be sent: the same names, or none for a type never
// requested (an empty set is only sent to unsubscribe, as Envoy does).
func subscription(want map[string]struct{}, cur []string, subscribed bool) (names, sub, unsub []string, changed bool) {
	names = slices.Sorted(maps.Keys(want))
	if slices.Equal(names, cur) || (len(names) == 0 && !subscribed) {
		return nil, nil, nil, false
	}
	for _, n := range names {
		if !slices.Contains(cur, n) {
			sub = append(sub, n)
		}
	}
	for _, n := range cur {
		if _, ok := want[n]; !ok {
			unsub = append(unsub, n)
		}
	}
	return names, sub, unsub, true
}
