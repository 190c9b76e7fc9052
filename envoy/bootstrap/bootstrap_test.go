package bootstrap

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	downstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

type want struct {
	node, cluster, host string
	port, admin         uint32
	static, delta       bool
}

// check parses a bootstrap the way the brief asks (YAMLToJSON, protojson
// with unknown fields rejected), validates it and the messages packed in its
// Any fields, and checks what egress-xds relies on.
func check(t *testing.T, data []byte, w want) *bootstrapv3.Bootstrap {
	t.Helper()
	b := parseValid(t, data)

	if got := b.GetNode().GetId(); got != w.node {
		t.Errorf("node.id %q, want %q", got, w.node)
	}
	if got := b.GetNode().GetCluster(); got != w.cluster || got == "" {
		t.Errorf("node.cluster %q, want %q", got, w.cluster)
	}

	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	if admin.GetAddress() != "127.0.0.1" || admin.GetPortValue() != w.admin || admin.GetProtocol() != corev3.SocketAddress_TCP {
		t.Errorf("admin address %v, want 127.0.0.1:%d", admin, w.admin)
	}

	ads := b.GetDynamicResources().GetAdsConfig()
	api := corev3.ApiConfigSource_GRPC
	if w.delta {
		api = corev3.ApiConfigSource_DELTA_GRPC
	}
	if ads.GetApiType() != api || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("ads_config %v, want %v over transport V3", ads, api)
	}
	if gs := ads.GetGrpcServices(); len(gs) != 1 || gs[0].GetEnvoyGrpc().GetClusterName() != XDSClusterName {
		t.Errorf("ads grpc_services %v", gs)
	}
	if !ads.GetSetNodeOnFirstMessageOnly() {
		t.Error("set_node_on_first_message_only is false")
	}
	for name, cs := range map[string]*corev3.ConfigSource{
		"cds_config": b.GetDynamicResources().GetCdsConfig(),
		"lds_config": b.GetDynamicResources().GetLdsConfig(),
	} {
		if cs.GetAds() == nil || cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("%s %v, want ads v3", name, cs)
		}
	}

	xds, sa := xdsCluster(b)
	if sa == nil {
		t.Fatal("no xds_cluster endpoint")
	}
	if sa.GetAddress() != w.host || sa.GetPortValue() != w.port {
		t.Errorf("xds_cluster endpoint %s:%d, want %s:%d", sa.GetAddress(), sa.GetPortValue(), w.host, w.port)
	}
	wantType := clusterv3.Cluster_STRICT_DNS
	if w.static {
		wantType = clusterv3.Cluster_STATIC
	}
	if xds.GetType() != wantType {
		t.Errorf("xds_cluster type %v, want %v", xds.GetType(), wantType)
	}
	if xds.GetLoadAssignment().GetClusterName() != XDSClusterName {
		t.Errorf("load_assignment.cluster_name %q", xds.GetLoadAssignment().GetClusterName())
	}
	anyOpts := xds.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if anyOpts == nil {
		t.Fatal("xds_cluster has no HttpProtocolOptions")
	}
	opts := &httpv3.HttpProtocolOptions{}
	if err := anyOpts.UnmarshalTo(opts); err != nil {
		t.Fatal(err)
	}
	h2 := opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions()
	if h2 == nil || h2.GetConnectionKeepalive().GetInterval().AsDuration() <= 0 || h2.GetConnectionKeepalive().GetTimeout().AsDuration() <= 0 {
		t.Errorf("xds_cluster HTTP/2 options %v, want explicit HTTP/2 with keepalive", h2)
	}

	// Envoy refuses an overload manager monitor with another name for the
	// global connection limit.
	var monitors []string
	for _, m := range b.GetOverloadManager().GetResourceMonitors() {
		monitors = append(monitors, m.GetName())
	}
	if !strings.Contains(strings.Join(monitors, " "), "envoy.resource_monitors.global_downstream_max_connections") {
		t.Errorf("resource monitors %v lack the global connection limit", monitors)
	}
	return b
}

// parseValid parses a bootstrap strictly and fails on anything invalid or
// deprecated in it, typed configs included.
func parseValid(t *testing.T, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll: %v", err)
	}
	walk(func(msg string) { t.Error(msg) }, b.ProtoReflect(), "bootstrap")
	return b
}

// walk reports deprecated fields, deprecated enum values and invalid
// typed configs anywhere in m (xdstest.Deprecated).
func walk(report func(string), m protoreflect.Message, path string) {
	for _, p := range xdstest.Deprecated(m.Interface(), path) {
		report(p)
	}
}

func TestWalkFindsDeprecatedAndInvalid(t *testing.T) {
	b, err := Parse([]byte(`
static_resources:
  clusters:
  - name: c
    dns_refresh_rate: 5s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options:
            max_concurrent_streams: 0
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	walk(func(s string) { got = append(got, s) }, b.ProtoReflect(), "b")
	all := strings.Join(got, "\n")
	if !strings.Contains(all, "dns_refresh_rate is deprecated") || !strings.Contains(all, "MaxConcurrentStreams") {
		t.Errorf("walk found:\n%s", all)
	}
}

func TestShippedFile(t *testing.T) {
	data, err := os.ReadFile("egress-gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	check(t, data, want{node: "egress-gateway", cluster: DefaultCluster, host: DefaultXDSHost, port: DefaultXDSPort, admin: DefaultAdminPort})
}

func TestParseIsStrict(t *testing.T) {
	for _, in := range []string{
		"node: {id: a, bogus: 1}\n",
		"node: {id: a, id: b}\n",
		"static_resources:\n  clusters:\n  - name: c\n    typed_extension_protocol_options:\n      x:\n        \"@type\": type.googleapis.com/no.such.Type\n",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("no error for %q", in)
		}
	}
}

func TestRender(t *testing.T) {
	cases := []struct {
		p Params
		w want
	}{
		{Params{NodeID: "gw-0"},
			want{node: "gw-0", cluster: DefaultCluster, host: DefaultXDSHost, port: DefaultXDSPort, admin: DefaultAdminPort}},
		{Params{NodeID: "gw-1", Cluster: "payments", XDSHost: "egress-xds.egress-system.svc", XDSPort: 15010, AdminPort: 19001},
			want{node: "gw-1", cluster: "payments", host: "egress-xds.egress-system.svc", port: 15010, admin: 19001}},
		{Params{NodeID: "it-a", XDSHost: "127.0.0.1", XDSPort: 40123, AdminPort: -1},
			want{node: "it-a", cluster: DefaultCluster, host: "127.0.0.1", port: 40123, admin: 0, static: true}},
		{Params{NodeID: "it-b", XDSHost: "::1", XDSPort: 40124},
			want{node: "it-b", cluster: DefaultCluster, host: "::1", port: 40124, admin: DefaultAdminPort, static: true}},
		{Params{NodeID: "gw-delta", Delta: true},
			want{node: "gw-delta", cluster: DefaultCluster, host: DefaultXDSHost, port: DefaultXDSPort, admin: DefaultAdminPort, delta: true}},
	}
	for _, c := range cases {
		t.Run(c.p.NodeID, func(t *testing.T) {
			out, err := Render(c.p)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(out), "# Envoy bootstrap of egress gateway node \""+c.p.NodeID) {
				t.Errorf("header: %.100s", out)
			}
			check(t, out, c.w)
		})
	}
}

func TestRenderKeepsTheRest(t *testing.T) {
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(Params{NodeID: "x", AdminPort: 1234})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(def.GetOverloadManager(), b.GetOverloadManager()) ||
		!proto.Equal(def.GetLayeredRuntime(), b.GetLayeredRuntime()) ||
		!proto.Equal(def.GetDynamicResources(), b.GetDynamicResources()) {
		t.Error("Build changed more than the parameters")
	}
}

func TestRenderErrors(t *testing.T) {
	for _, p := range []Params{
		{},
		{NodeID: " "},
		{NodeID: "a b"},
		{NodeID: "a", Cluster: "x\ny"},
		{NodeID: "a", XDSHost: "h\t"},
		{NodeID: "a", XDSPort: 70000},
		{NodeID: "a", XDSPort: -1},
		{NodeID: "a", AdminPort: 65536},
	} {
		if out, err := Render(p); err == nil {
			t.Errorf("%+v: no error\n%s", p, out)
		}
	}
}

// Envoy itself accepts both shipped bootstraps, and a rendered one
// (envoytest finds Envoy, or skips saying how to install it).
func TestEnvoyValidates(t *testing.T) {
	bin := envoytest.Find(t)
	rendered, err := Render(Params{NodeID: "validate", XDSHost: "127.0.0.1", AdminPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(path, rendered, 0o644); err != nil {
		t.Fatal(err)
	}
	delta, err := Render(Params{NodeID: "validate", XDSHost: "127.0.0.1", AdminPort: -1, Delta: true})
	if err != nil {
		t.Fatal(err)
	}
	deltaPath := filepath.Join(t.TempDir(), "delta.yaml")
	if err := os.WriteFile(deltaPath, delta, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"egress-gateway.yaml", "sidecar.yaml", path, deltaPath} {
		if err := envoytest.ValidateFile(context.Background(), bin.Path, file, "--service-node", "validate"); err != nil {
			t.Errorf("Envoy %s: %v", bin.Version, err)
		}
	}
}

// Prometheus must reach the stats listener exactly when the gateway is at
// its global connection limit: the listener bypasses the limit
// (ignore_global_conn_limit), like the admin interface. Proved with Envoy:
// the shipped bootstrap with a limit of one connection, which a held
// connection to another listener takes.
func TestStatsListenerBypassesTheConnectionLimit(t *testing.T) {
	for _, l := range must(Default()).GetStaticResources().GetListeners() {
		if l.GetName() == statsListenerName && !l.GetIgnoreGlobalConnLimit() {
			t.Errorf("the stats listener lacks ignore_global_conn_limit: Prometheus is refused when the gateway is overloaded")
		}
	}
	bin := envoytest.Find(t)
	ports := freePorts(t, 3)
	b, err := Build(Params{NodeID: "limit", XDSHost: "127.0.0.1", AdminPort: int(ports[1]), StatsPort: int(ports[0])})
	if err != nil {
		t.Fatal(err)
	}
	b.DynamicResources = nil // nothing to wait for: static listeners serve at once
	sr := b.GetStaticResources()
	sr.Clusters = slices.DeleteFunc(sr.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == XDSClusterName })
	if len(sr.GetListeners()) != 1 {
		t.Fatalf("listeners %v, want the stats listener alone", sr.GetListeners())
	}
	sr.Listeners[0].GetAddress().GetSocketAddress().Address = "127.0.0.1"
	busy := proto.Clone(sr.GetListeners()[0]).(*listenerv3.Listener)
	busy.Name, busy.IgnoreGlobalConnLimit = "busy", false
	busy.GetAddress().GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: ports[2]}
	sr.Listeners = append(sr.Listeners, busy)
	limited := false
	for _, m := range b.GetOverloadManager().GetResourceMonitors() {
		if m.GetName() == "envoy.resource_monitors.global_downstream_max_connections" {
			m.ConfigType = &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: must(anypb.New(&downstreamv3.DownstreamConnectionsConfig{MaxActiveDownstreamConnections: 1}))}
			limited = true
		}
	}
	if !limited {
		t.Fatal("no global connection limit to lower")
	}
	config, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	envoytest.Serve(t, bin, string(config))

	stats := fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", ports[0])
	get := func() error {
		// A new connection each time: a kept-alive one would count.
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(stats)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "envoy_server_live") {
			return fmt.Errorf("%s: %.200s", resp.Status, body)
		}
		return nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for err := get(); err != nil; err = get() {
		if time.Now().After(deadline) {
			t.Fatalf("the stats listener never served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Take the one connection the gateway accepts, and hold it.
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[2]), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	active := fmt.Sprintf("listener.127.0.0.1_%d.downstream_cx_active: 1", ports[2])
	var seen string
	waitFor(t, func() bool {
		seen, _ = httpGetBody(fmt.Sprintf("http://127.0.0.1:%d/stats?filter=downstream_cx_active", ports[1]))
		return strings.Contains(seen, active)
	}, func() string { return "no " + active + " in\n" + seen })
	if err := get(); err != nil {
		t.Fatalf("Prometheus is refused while the gateway is at its connection limit: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func freePorts(t *testing.T, n int) []uint32 {
	t.Helper()
	ports, err := envoytest.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

func httpGetBody(u string) (string, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func waitFor(t *testing.T, ok func() bool, why func() string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatal(why())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The stats listener serves the admin interface's /stats/prometheus on its
// own port, follows the admin port, and goes away when that is unknown.
func TestStatsListener(t *testing.T) {
	b, err := Build(Params{NodeID: "gw", AdminPort: 19901, StatsPort: 19902})
	if err != nil {
		t.Fatal(err)
	}
	var port uint32
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() == statsListenerName {
			port = l.GetAddress().GetSocketAddress().GetPortValue()
		}
	}
	if port != 19902 {
		t.Fatalf("stats listener port %d", port)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == adminClusterName {
			if got := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 19901 {
				t.Fatalf("admin cluster points at %v", got)
			}
		}
	}
	b, err = Build(Params{NodeID: "gw", AdminPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.GetStaticResources().GetListeners()) != 0 || len(b.GetStaticResources().GetClusters()) != 1 {
		t.Fatalf("with an unknown admin port the stats listener must go: %v", b.GetStaticResources())
	}
}

// The shipped sidecar bootstrap is valid, uses no deprecated field, and
// identifies as a sidecar the way xds-server reads it.
func TestShippedSidecarFile(t *testing.T) {
	b := parseValid(t, SidecarYAML)
	if got := snapshot.GroupOf(b.GetNode()); got != "sidecar/"+DefaultCluster {
		t.Errorf("the sidecar bootstrap's node is served as %q, want the sidecar configuration of %q", got, DefaultCluster)
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" {
		t.Errorf("admin on %v, want loopback only", a)
	}
}

// The shipped bootstraps subscribe with state-of-the-world xDS, and the
// switch their comment documents (api_type GRPC to DELTA_GRPC, one word)
// is exactly what Render's Delta does: the rest of dynamic_resources
// (ADS config sources of CDS and LDS, V3) serves both.
func TestDeltaSwitch(t *testing.T) {
	for name, data := range map[string][]byte{"egress-gateway.yaml": EgressGatewayYAML, "sidecar.yaml": SidecarYAML} {
		sotw := parseValid(t, data)
		if got := sotw.GetDynamicResources().GetAdsConfig().GetApiType(); got != corev3.ApiConfigSource_GRPC {
			t.Errorf("%s subscribes with %v, the README says GRPC (state of the world)", name, got)
		}
		if !strings.Contains(string(data), "DELTA_GRPC") {
			t.Errorf("%s does not say how to switch to delta xDS", name)
		}
		switched := strings.Replace(string(data), "api_type: GRPC\n", "api_type: DELTA_GRPC\n", 1)
		if switched == string(data) {
			t.Fatalf("%s has no line api_type: GRPC to switch", name)
		}
		b := parseValid(t, []byte(switched))
		if name != "egress-gateway.yaml" {
			continue
		}
		rendered := must(Build(Params{NodeID: b.GetNode().GetId(), Delta: true}))
		if !proto.Equal(b.GetDynamicResources(), rendered.GetDynamicResources()) {
			t.Errorf("the documented switch gives\n%v\nRender with Delta gives\n%v", b.GetDynamicResources(), rendered.GetDynamicResources())
		}
	}
}
