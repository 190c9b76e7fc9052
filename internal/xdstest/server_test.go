package xdstest

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// testTimeout bounds every wait of a test.
const testTimeout = 20 * time.Second

// testServer is go-control-plane's own ADS server (SnapshotCache in ADS
// mode) on 127.0.0.1, with a recorder of what crossed the wire.
type testServer struct {
	addr  string
	cache cachev3.SnapshotCache
	rec   *recorder
}

func newTestServer(t *testing.T, opts ...config.XDSOption) *testServer {
	return newBenchServer(t, opts...)
}

// newBenchServer is newTestServer for tests and benchmarks.
func newBenchServer(t testing.TB, opts ...config.XDSOption) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{}
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	srv := serverv3.NewServer(ctx, cache, rec.callbacks(), opts...)
	gs := grpc.NewServer()
	discoverypb.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		<-served
	})
	return &testServer{addr: lis.Addr().String(), cache: cache, rec: rec}
}

func (s *testServer) set(t *testing.T, node string, snap *cachev3.Snapshot) {
	t.Helper()
	if err := snap.Consistent(); err != nil {
		t.Fatalf("inconsistent snapshot: %v", err)
	}
	if err := s.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// dial starts a client closed at the end of the test.
func dial(t *testing.T, opts Options) *Client {
	t.Helper()
	c, err := Dial(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// Recorded wire traffic, as the server callbacks saw it.
type (
	sotwReq struct {
		stream              int64
		node                *corev3.Node
		typ, version, nonce string
		names               []string
		errCode             int32
		errMsg              string
		hasErr              bool
	}
	sotwResp struct {
		stream              int64
		typ, version, nonce string
		n                   int
	}
	deltaReq struct {
		stream     int64
		node       *corev3.Node
		typ, nonce string
		sub, unsub []string
		initial    map[string]string
		errCode    int32
		errMsg     string
		hasErr     bool
	}
	deltaResp struct {
		stream              int64
		typ, version, nonce string
		names, removed      []string
	}
)

type recorder struct {
	mu         sync.Mutex
	changed    chan struct{}
	sotwReqs   []sotwReq
	sotwResps  []sotwResp
	deltaReqs  []deltaReq
	deltaResps []deltaResp
}

func (r *recorder) update(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn()
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// wait blocks until cond (run under the recorder lock) holds.
func (r *recorder) wait(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for {
		r.mu.Lock()
		ok := cond()
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("server: waiting for %s: %v", what, ctx.Err())
		}
	}
}

func (r *recorder) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discoverypb.DiscoveryRequest) error {
			rq := sotwReq{stream: id, node: req.GetNode(), typ: req.GetTypeUrl(), version: req.GetVersionInfo(),
				nonce: req.GetResponseNonce(), names: slices.Clone(req.GetResourceNames())}
			if d := req.GetErrorDetail(); d != nil {
				rq.hasErr, rq.errCode, rq.errMsg = true, d.GetCode(), d.GetMessage()
			}
			r.update(func() { r.sotwReqs = append(r.sotwReqs, rq) })
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoverypb.DiscoveryRequest, resp *discoverypb.DiscoveryResponse) {
			rs := sotwResp{stream: id, typ: resp.GetTypeUrl(), version: resp.GetVersionInfo(), nonce: resp.GetNonce(), n: len(resp.GetResources())}
			r.update(func() { r.sotwResps = append(r.sotwResps, rs) })
		},
		StreamDeltaRequestFunc: func(id int64, req *discoverypb.DeltaDiscoveryRequest) error {
			rq := deltaReq{stream: id, node: req.GetNode(), typ: req.GetTypeUrl(), nonce: req.GetResponseNonce(),
				sub: slices.Clone(req.GetResourceNamesSubscribe()), unsub: slices.Clone(req.GetResourceNamesUnsubscribe())}
			if len(req.GetInitialResourceVersions()) > 0 {
				rq.initial = map[string]string{}
				for k, v := range req.GetInitialResourceVersions() {
					rq.initial[k] = v
				}
			}
			if d := req.GetErrorDetail(); d != nil {
				rq.hasErr, rq.errCode, rq.errMsg = true, d.GetCode(), d.GetMessage()
			}
			r.update(func() { r.deltaReqs = append(r.deltaReqs, rq) })
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoverypb.DeltaDiscoveryRequest, resp *discoverypb.DeltaDiscoveryResponse) {
			rs := deltaResp{stream: id, typ: resp.GetTypeUrl(), version: resp.GetSystemVersionInfo(), nonce: resp.GetNonce(),
				removed: slices.Clone(resp.GetRemovedResources())}
			for _, res := range resp.GetResources() {
				rs.names = append(rs.names, res.GetName())
			}
			r.update(func() { r.deltaResps = append(r.deltaResps, rs) })
		},
	}
}

// sotwAcked reports (under the lock) whether the latest response of every
// type in types, on the latest stream of node, was ACKed with version.
func (r *recorder) sotwAcked(node, version string, types ...string) bool {
	stream := r.sotwStream(node)
	for _, typ := range types {
		last := ""
		for _, rs := range r.sotwResps {
			if rs.stream == stream && rs.typ == typ {
				last = rs.nonce
			}
		}
		if last == "" {
			return false
		}
		if !slices.ContainsFunc(r.sotwReqs, func(rq sotwReq) bool {
			return rq.stream == stream && rq.typ == typ && rq.nonce == last && rq.version == version && !rq.hasErr
		}) {
			return false
		}
	}
	return true
}

// deltaAcked reports (under the lock) whether the latest response of every
// type in types, on stream, was ACKed.
func (r *recorder) deltaAcked(stream int64, types ...string) bool {
	for _, typ := range types {
		last := ""
		for _, rs := range r.deltaResps {
			if rs.stream == stream && rs.typ == typ {
				last = rs.nonce
			}
		}
		if last == "" {
			return false
		}
		if !slices.ContainsFunc(r.deltaReqs, func(rq deltaReq) bool {
			return rq.stream == stream && rq.typ == typ && rq.nonce == last && !rq.hasErr
		}) {
			return false
		}
	}
	return true
}

// sotwStream and deltaStream return the latest stream of node (0 if none).
func (r *recorder) sotwStream(node string) int64 {
	var id int64
	for _, rq := range r.sotwReqs {
		if rq.node.GetId() == node {
			id = max(id, rq.stream)
		}
	}
	return id
}

func (r *recorder) deltaStream(node string) int64 {
	var id int64
	for _, rq := range r.deltaReqs {
		if rq.node.GetId() == node {
			id = max(id, rq.stream)
		}
	}
	return id
}

func (r *recorder) deltaRespsOn(stream int64) []deltaResp {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []deltaResp
	for _, rs := range r.deltaResps {
		if rs.stream == stream {
			out = append(out, rs)
		}
	}
	return out
}

var allTypes = []string{ClusterType, EndpointType, ListenerType, RouteType, SecretType}

func versions(v string) map[string]string {
	out := map[string]string{}
	for _, typ := range allTypes {
		out[typ] = v
	}
	return out
}

// fixture describes one configuration of the test gateway:
//
//   - clusters: "backend" (EDS, service_name "backend-eds", upstream TLS
//     with SDS "client-cert" and validation context SDS "ca"), "other"
//     (EDS without service_name) and "static-local" (STATIC, referencing
//     the static secret "static-ca" without sds_config, which Envoy does
//     not fetch);
//   - listener "egress": a TLS filter chain (DownstreamTlsContext with SDS
//     "server-cert", when listenerTLS) whose HCM uses RDS routeName, and
//     a default filter chain whose HCM uses RDS "fallback-routes".
type fixture struct {
	version        string
	endpointPort   uint32
	connectTimeout time.Duration
	routeName      string
	listenerTLS    bool
	// extraCluster, if set, names one more (STATIC) cluster.
	extraCluster string
}

func defaultFixture(version string) fixture {
	return fixture{version: version, endpointPort: 8080, connectTimeout: time.Second, routeName: "routes-a", listenerTLS: true}
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func tlsSocket(m proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(m)}}
}

func hcmChain(name, route string) *listenerv3.FilterChain {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads(), RouteConfigName: route,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.FilterChain{
		Name: name,
		Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
		}},
	}
}

func socketAddress(port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func cla(name string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(port)}},
			}},
		}},
	}
}

func route(name string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"},
				}},
			}},
		}},
	}
}

func secret(name string) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "-----BEGIN CERTIFICATE-----\n" + name + "\n"}},
	}}}
}

func (f fixture) snapshot() *cachev3.Snapshot {
	edsCluster := func(name, service string) *clusterv3.Cluster {
		return &clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       durationpb.New(f.connectTimeout),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: service},
		}
	}
	backend := edsCluster("backend", "backend-eds")
	backend.TransportSocket = tlsSocket(&tlsv3.UpstreamTlsContext{
		Sni: "backend.example",
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "client-cert", SdsConfig: ads()}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ca", SdsConfig: ads()},
			},
		},
	})
	static := &clusterv3.Cluster{
		Name:                 "static-local",
		ConnectTimeout:       durationpb.New(f.connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       cla("static-local", 9090),
		TransportSocket: tlsSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "static-ca"},
			},
		}}),
	}
	main := hcmChain("egress-tls", f.routeName)
	secrets := []types.Resource{secret("client-cert"), secret("ca")}
	if f.listenerTLS {
		main.TransportSocket = tlsSocket(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "server-cert", SdsConfig: ads()}},
		}})
		secrets = append(secrets, secret("server-cert"))
	}
	listener := &listenerv3.Listener{
		Name:               "egress",
		Address:            socketAddress(10000),
		FilterChains:       []*listenerv3.FilterChain{main},
		DefaultFilterChain: hcmChain("egress-default", "fallback-routes"),
	}
	clusters := []types.Resource{backend, edsCluster("other", ""), static}
	if f.extraCluster != "" {
		clusters = append(clusters, &clusterv3.Cluster{
			Name:                 f.extraCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment:       cla(f.extraCluster, 9091),
		})
	}
	snap, err := cachev3.NewSnapshot(f.version, map[string][]types.Resource{
		ClusterType:  clusters,
		EndpointType: {cla("backend-eds", f.endpointPort), cla("other", 8081)},
		ListenerType: {listener},
		RouteType:    {route(f.routeName), route("fallback-routes")},
		SecretType:   secrets,
	})
	if err != nil {
		panic(err)
	}
	return snap
}

// names returns the resource names of msgs.
func names[T proto.Message](msgs []T) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, resourceName(m))
	}
	return out
}
