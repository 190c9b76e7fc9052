package server_test

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

// go-control-plane numbers SotW and delta streams with two counters that
// both start at 1. An attacker holding SotW streams authorized for its own
// group, while the victim's gateway opens delta streams with the same
// numbers, must not pass authorization for the victim's group: it asks
// for the victim's secrets (the examples hold a private key) and is
// refused on every stream.
func TestStreamIDsOfSotWAndDeltaShareNoAuthorization(t *testing.T) {
	p := newPKI(t)
	r := startTLS(t, examples(t), p.opts)
	attacker := p.conn(t, r, clientCert(t, p.clientCA, translate.GatewaySPIFFEID(trustDomain, "payments")))
	victim := clientCert(t, p.clientCA, translate.GatewaySPIFFEID(trustDomain, group))
	ctx := timeout(t)

	const n = 4 // streams of each side: IDs 1..n collide whatever came before
	ads := discoverypb.NewAggregatedDiscoveryServiceClient(attacker)
	var streams []grpc.BidiStreamingClient[discoverypb.DiscoveryRequest, discoverypb.DiscoveryResponse]
	for i := range n {
		s, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		own := &corev3.Node{Id: fmt.Sprintf("attacker-%d", i), Cluster: "payments"}
		if err := s.Send(&discoverypb.DiscoveryRequest{Node: own, TypeUrl: resourcev3.ListenerType}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("the attacker's own group: %v", err)
		}
		streams = append(streams, s)
	}
	for i := range n {
		c := dial(t, r, xdstest.Delta, fmt.Sprintf("victim-%d", i), func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, victim) })
		if err := c.WaitFor(ctx, xdstest.Synced); err != nil {
			t.Fatalf("victim %d: %v", i, err)
		}
		if len(c.State().Type(resourcev3.SecretType).Resources) == 0 {
			t.Fatal("the victim's group serves no secret: the test proves nothing")
		}
	}
	for i, s := range streams {
		victimNode := &corev3.Node{Id: fmt.Sprintf("attacker-%d", i), Cluster: group}
		if err := s.Send(&discoverypb.DiscoveryRequest{Node: victimNode, TypeUrl: resourcev3.SecretType}); err != nil {
			t.Fatal(err)
		}
		for {
			resp, err := s.Recv()
			if err != nil {
				wantStatus(t, err, codes.PermissionDenied, `gateway group "egress-gateway"`, `entitles gateway group "payments" only`)
				break
			}
			if resp.GetTypeUrl() == resourcev3.SecretType {
				t.Fatalf("stream %d: the attacker received %d secrets of the victim's group", i, len(resp.GetResources()))
			}
		}
	}
}

// SotW and delta streams with the same numbers are separate proxies in
// the registry, the connected-proxies gauge and the status, and an abrupt
// end of one side's connections leaves the other side's entries intact.
func TestStreamRegistryKeepsSotWAndDeltaApart(t *testing.T) {
	r := start(t, examples(t))
	const n = 5
	var sotwConns []*grpc.ClientConn
	for _, mode := range modes {
		for i := range n {
			cc, err := grpc.NewClient(r.XDSAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cc.Close() })
			if mode == xdstest.SotW {
				sotwConns = append(sotwConns, cc)
			}
			c := dial(t, r, mode, fmt.Sprintf("gw-%s-%d", mode, i), func(o *xdstest.Options) { o.Address, o.Conn = "", cc })
			if err := c.WaitFor(timeout(t), xdstest.Synced); err != nil {
				t.Fatal(err)
			}
		}
	}
	gauge := func(protocol string) float64 {
		return testutil.ToFloat64(r.Metrics.ConnectedProxies.WithLabelValues(group, protocol))
	}
	nodes := func() map[string]string {
		out := map[string]string{}
		for _, p := range r.XDS.Proxies.List() {
			out[p.NodeID] = p.Protocol
		}
		return out
	}
	waitFor(t, "every stream registered", func() bool { return len(r.XDS.Proxies.List()) == 2*n })
	if got := nodes(); len(got) != 2*n {
		t.Fatalf("registry: %v", got)
	}
	if gauge("sotw") != n || gauge("delta") != n {
		t.Fatalf("gauge: sotw %v, delta %v, want %d each", gauge("sotw"), gauge("delta"), n)
	}
	if st := status(t, r, ""); len(st) != 2*n {
		t.Fatalf("status lists %d proxies, want %d", len(st), 2*n)
	}

	for _, cc := range sotwConns { // the SotW side dies without ending its streams
		_ = cc.Close()
	}
	waitMetric(t, func() float64 { return gauge("sotw") }, 0)
	waitMetric(t, func() float64 { return gauge("delta") }, n)
	waitFor(t, "only the delta proxies left", func() bool {
		got := nodes()
		for _, p := range got {
			if p != "delta" {
				return false
			}
		}
		return len(got) == n
	})
	var synced int
	for _, ps := range status(t, r, "") {
		if ps.Protocol != "delta" {
			t.Errorf("status still lists %s (%s)", ps.Node, ps.Protocol)
		}
		if states(ps)["Cluster"] == xds.Synced {
			synced++
		}
	}
	if synced != n {
		t.Errorf("%d delta proxies SYNCED, want %d", synced, n)
	}
}
