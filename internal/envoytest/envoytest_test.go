package envoytest

import (
	"context"
	"errors"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	// Types packed in the Any fields below.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dynamic_forward_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// The harness fails on what only Envoy knows: each bootstrap passes
// ValidateAll()-style checks (it parses), and Envoy rejects it when it
// builds the cluster, the listener's filter chain or a route's per-filter
// config; the same bootstrap with the one defect mended passes, so the
// harness does not reject everything either.
func TestValidateRejectsWhatOnlyEnvoyKnows(t *testing.T) {
	bin := Find(t)
	cases := []struct {
		name, bad, good, want string
	}{{
		name: "cluster factory: dynamic forward proxy options",
		bad:  dfpCluster("upstream_http_protocol_options: {auto_sni: true}"),
		good: dfpCluster("upstream_http_protocol_options: {auto_sni: true, auto_san_validation: true}"),
		want: "dynamic_forward_proxy cluster must have auto_sni and auto_san_validation true",
	}, {
		name: "cluster factory: registered name",
		bad:  dnsCluster("envoy.clusters.dns", "google.protobuf.Struct"),
		good: dnsCluster("envoy.cluster.dns", "envoy.extensions.clusters.dns.v3.DnsCluster"),
		want: "Didn't find a registered cluster factory implementation for name: 'envoy.clusters.dns'",
	}, {
		name: "listener: HTTP filter order",
		bad:  httpListener("1s", true),
		good: httpListener("1s", false),
		want: "must be the last filter in a http filter chain",
	}, {
		name: "route: per-filter config",
		bad:  httpListener("0.01s", false),
		good: httpListener("1s", false),
		want: "local rate limit token bucket fill timer must be >= 50ms",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := Validate(context.Background(), bin.Path, c.bad)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Envoy %s on the bad bootstrap: %v; want an error with %q", bin.Version, err, c.want)
			}
			if err := Validate(context.Background(), bin.Path, c.good); err != nil {
				t.Errorf("the mended bootstrap: %v", err)
			}
		})
	}
}

func dfpCluster(options string) string {
	return `
static_resources:
  clusters:
  - name: dfp
    lb_policy: CLUSTER_PROVIDED
    cluster_type:
      name: envoy.clusters.dynamic_forward_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig
        dns_cache_config: {name: c}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        ` + options + `
        explicit_http_config: {http_protocol_options: {}}
`
}

func dnsCluster(name, typ string) string {
	return `
static_resources:
  clusters:
  - name: dns
    cluster_type:
      name: ` + name + `
      typed_config: {"@type": type.googleapis.com/` + typ + `}
    load_assignment:
      cluster_name: dns
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: example.com, port_value: 80}}}}]}]
`
}

func httpListener(fill string, routerFirst bool) string {
	filters := []string{`
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: base`, `
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}`}
	if routerFirst {
		filters[0], filters[1] = filters[1], filters[0]
	}
	return `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200}
                typed_per_filter_config:
                  envoy.filters.http.local_ratelimit:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: route
                    token_bucket: {max_tokens: 1, fill_interval: ` + fill + `}
          http_filters:` + strings.Join(filters, "")
}

// served is what a group could be served: an HTTP listener whose routes
// come over RDS, an EDS cluster with TLS origination whose client
// certificate comes over SDS and whose CA is a file of the proxy.
const served = `
listeners:
- name: http_80
  address: {socket_address: {address: 0.0.0.0, port_value: 80}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: http_80
        rds: {route_config_name: http_80, config_source: {ads: {}, resource_api_version: V3}}
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
routes:
- name: http_80
  virtual_hosts:
  - name: api
    domains: [api.example.com]
    routes: [{match: {prefix: /}, route: {cluster: apps/egress/api/80}}]
clusters:
- name: apps/egress/api/80
  type: EDS
  eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3}}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
      sni: api.example.com
      common_tls_context:
        tls_certificate_sds_secret_configs: [{name: apps/client, sds_config: {ads: {}, resource_api_version: V3}}]
        validation_context: {trusted_ca: {filename: /etc/ssl/certs/ca-certificates.crt}}
endpoints:
- cluster_name: apps/egress/api/80
  endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 192.0.2.10, port_value: 443}}}}]}]
secrets:
- name: apps/client
  tls_certificate:
    certificate_chain: {filename: /etc/egress-xds/mesh/tls.crt}
    private_key: {filename: /etc/egress-xds/mesh/tls.key}
    watched_directory: {path: /etc/egress-xds/mesh}
`

func servedResources(t *testing.T) *translate.Resources {
	t.Helper()
	var doc map[string][]any
	if err := yaml.Unmarshal([]byte(served), &doc); err != nil {
		t.Fatal(err)
	}
	res := &translate.Resources{}
	for _, v := range doc["listeners"] {
		res.Listeners = append(res.Listeners, decode[*listenerv3.Listener](t, v))
	}
	for _, v := range doc["routes"] {
		res.Routes = append(res.Routes, decode[*routev3.RouteConfiguration](t, v))
	}
	for _, v := range doc["clusters"] {
		res.Clusters = append(res.Clusters, decode[*clusterv3.Cluster](t, v))
	}
	for _, v := range doc["endpoints"] {
		res.Endpoints = append(res.Endpoints, decode[*endpointv3.ClusterLoadAssignment](t, v))
	}
	for _, v := range doc["secrets"] {
		res.Secrets = append(res.Secrets, decode[*tlsv3.Secret](t, v))
	}
	return res
}

func decode[M proto.Message](t *testing.T, v any) M {
	t.Helper()
	var m M
	m = m.ProtoReflect().Type().New().Interface().(M)
	j, err := yaml.Marshal(v)
	if err == nil {
		j, err = yaml.YAMLToJSON(j)
	}
	if err == nil {
		err = protojson.Unmarshal(j, m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Static holds everything a proxy would fetch over ADS, so Envoy builds
// all of it: the RDS routes inline, the EDS endpoints, the SDS secret, the
// files the proxy reads replaced by stand-ins.
func TestStatic(t *testing.T) {
	bin := Find(t)
	boot, err := Static(servedResources(t), Node{ID: "test", Cluster: "egress-gateway"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"route_config":`, `"type": "STATIC"`, `"load_assignment":`} {
		if !strings.Contains(boot, s) {
			t.Errorf("the static bootstrap has no %s:\n%s", s, boot)
		}
	}
	for _, s := range []string{`"rds"`, `"ads"`, `/etc/`} {
		if strings.Contains(boot, s) {
			t.Errorf("the static bootstrap still has %s:\n%s", s, boot)
		}
	}
	MustValidate(t, bin, boot)

	// A secret the cluster references and the group is not served is
	// found by Envoy.
	res := servedResources(t)
	res.Secrets = nil
	boot, err = Static(res, Node{ID: "test", Cluster: "egress-gateway"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(context.Background(), bin.Path, boot); err == nil || !strings.Contains(err.Error(), "Unknown static secret: apps/client") {
		t.Errorf("a missing secret: %v", err)
	}
}

// What a static bootstrap cannot stand for is an error, not dropped.
func TestStaticRefusesDanglingReferences(t *testing.T) {
	for name, mutate := range map[string]func(*translate.Resources){
		"route configuration": func(r *translate.Resources) { r.Routes = nil },
		"endpoints":           func(r *translate.Resources) { r.Endpoints = nil },
		"ADS reference": func(r *translate.Resources) {
			r.Routes[0].Vhds = &routev3.Vhds{ConfigSource: r.Clusters[0].GetEdsClusterConfig().GetEdsConfig()}
		},
	} {
		res := servedResources(t)
		mutate(res)
		if _, err := Static(res, Node{ID: "test", Cluster: "c"}, t.TempDir()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEnvoyError(t *testing.T) {
	out := []byte("[warning] something\nerror initializing configuration '/tmp/x/bootstrap.json': Unknown static secret: a/b\n")
	if got := envoyError(out, errors.New("exit status 1")); got != "Unknown static secret: a/b" {
		t.Errorf("envoyError: %q", got)
	}
	if got := envoyError([]byte("segfault"), errors.New("signal: killed")); !strings.Contains(got, "signal: killed: segfault") {
		t.Errorf("envoyError: %q", got)
	}
}

func TestOlder(t *testing.T) {
	for _, c := range []struct {
		v, than string
		want    bool
	}{{"1.39.9", "1.40.0", true}, {"1.40.0", "1.40.0", false}, {"1.40.1", "1.40.0", false}, {"2.0.0", "1.40.0", false}, {"junk", "1.40.0", true}} {
		if got := older(c.v, c.than); got != c.want {
			t.Errorf("older(%s, %s) = %v", c.v, c.than, got)
		}
	}
}
