package bootstrap

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

type want struct {
	node, cluster, host string
	port, admin         uint32
	static              bool
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
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("ads_config %v", ads)
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

// TestEnvoyValidates runs `envoy --mode validate` on the shipped file and a
// rendered one when an Envoy binary is at hand ($ENVOY_BIN or envoy on PATH).
func TestEnvoyValidates(t *testing.T) {
	bin := os.Getenv("ENVOY_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("envoy"); err != nil {
			t.Skip("no envoy binary: set ENVOY_BIN or put envoy on PATH")
		}
	}
	rendered, err := Render(Params{NodeID: "validate", XDSHost: "127.0.0.1", AdminPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(path, rendered, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"egress-gateway.yaml", "sidecar.yaml", path} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", file,
			"--service-node", "validate", "--log-level", "warn").CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("envoy --mode validate -c %s: %v\n%s", file, err, out)
		}
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
