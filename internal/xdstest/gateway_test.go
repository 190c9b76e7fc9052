package xdstest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

func dialGateway(t *testing.T, ts *testServer, mode Mode, named map[string][]string) *Gateway {
	return dialGatewayAs(t, ts, node, mode, named)
}

// dialGatewayAs is dialGateway with the node ID id.
func dialGatewayAs(t *testing.T, ts *testServer, id string, mode Mode, named map[string][]string) *Gateway {
	t.Helper()
	cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	g, err := DialGateway(context.Background(), GatewayOptions{Conn: cc, NodeID: id, NodeCluster: "group-a", Mode: mode, Named: named})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// sameAsClient checks that the gateway subscribed what the client did and
// accepted the same versions and, for the types in same, the same last
// response (a delta server may split a change of subscription into
// responses in other ways for another stream).
func sameAsClient(t *testing.T, c *Client, g *Gateway, same ...string) {
	t.Helper()
	st := c.State()
	for _, typ := range allTypes {
		gt, ct := g.Type(typ), st.Type(typ)
		if !slices.Equal(gt.Names, ct.Names) || gt.Wildcard != ct.Wildcard {
			t.Errorf("%s: gateway subscribed %v (wildcard %v), client %v (wildcard %v)", ShortType(typ), gt.Names, gt.Wildcard, ct.Names, ct.Wildcard)
		}
		if gt.Version != ct.Version {
			t.Errorf("%s: gateway accepted %q, client %q", ShortType(typ), gt.Version, ct.Version)
		}
		if !slices.Contains(same, typ) {
			continue
		}
		if err := SameLast(typ, ct, gt); err != nil {
			t.Error(err)
		}
		if gt.NACKs != 0 {
			t.Errorf("%s: gateway NACKed: %s", ShortType(typ), gt.LastError)
		}
	}
}

func TestGatewayBehavesAsClient(t *testing.T) {
	for _, mode := range []Mode{SotW, Delta} {
		t.Run(mode.String(), func(t *testing.T) {
			ts := newTestServer(t)
			ts.set(t, node, defaultFixture("1").snapshot())
			opts := baseOptions(ts, mode)
			c := dial(t, opts)
			g := dialGateway(t, ts, mode, nil)
			ctx := waitCtx(t)
			if err := c.WaitForVersions(ctx, versions("1")); err != nil {
				t.Fatal(err)
			}
			if err := g.WaitFor(ctx, GatewayHasVersions(versions("1"))); err != nil {
				t.Fatal(err)
			}
			// A delta server may split the named types' first responses
			// otherwise for another stream, as their subscriptions come.
			same := allTypes
			if mode == Delta {
				same = []string{ClusterType, ListenerType}
			}
			sameAsClient(t, c, g, same...)

			// A new route name and endpoint port, without listener TLS:
			// RDS and SDS subscriptions move.
			f := defaultFixture("2")
			f.routeName, f.endpointPort, f.listenerTLS, f.connectTimeout = "routes-b", 9999, false, 2*time.Second
			ts.set(t, node, f.snapshot())
			if err := c.WaitForVersions(ctx, versions("2")); err != nil {
				t.Fatal(err)
			}
			if err := g.WaitFor(ctx, GatewayHasVersions(versions("2"))); err != nil {
				t.Fatal(err)
			}
			sameAsClient(t, c, g, same...)
			if got := g.Type(RouteType).Names; !slices.Equal(got, []string{"fallback-routes", "routes-b"}) {
				t.Errorf("RDS subscription %v", got)
			}
		})
	}
}

func TestGatewayDeclaredNames(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	g := dialGateway(t, ts, SotW, map[string][]string{RouteType: {"routes-a", "fallback-routes"}})
	ctx := waitCtx(t)
	if err := g.WaitFor(ctx, GatewayHasVersions(map[string]string{ClusterType: "1", ListenerType: "1", RouteType: "1"})); err != nil {
		t.Fatal(err)
	}
	if got := g.Type(RouteType); !slices.Equal(got.Names, []string{"fallback-routes", "routes-a"}) || got.LastResources != 2 {
		t.Errorf("RDS: subscribed %v, last response of %d", got.Names, got.LastResources)
	}
	if got := g.Type(EndpointType); got.Subscribed {
		t.Errorf("EDS subscribed %v, not declared", got.Names)
	}
}

// A response Envoy rejects is NACKed by the gateway as by the client, and
// the previous version stays accepted.
func TestGatewayNACKs(t *testing.T) {
	for _, mode := range []Mode{SotW, Delta} {
		t.Run(mode.String(), func(t *testing.T) {
			ts := newTestServer(t)
			ts.set(t, node, defaultFixture("1").snapshot())
			c := dial(t, baseOptions(ts, mode))
			g := dialGateway(t, ts, mode, nil)
			ctx := waitCtx(t)
			if err := g.WaitFor(ctx, GatewayHasVersions(versions("1"))); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitForVersions(ctx, versions("1")); err != nil {
				t.Fatal(err)
			}
			bad := defaultFixture("2").snapshot()
			// A listener without a name.
			listeners := []types.Resource{&listenerv3.Listener{Address: socketAddress(10001)}}
			snap, err := cachev3.NewSnapshot("2", map[string][]types.Resource{
				ClusterType:  resources(bad, types.Cluster),
				EndpointType: resources(bad, types.Endpoint),
				ListenerType: listeners,
				RouteType:    resources(bad, types.Route),
				SecretType:   resources(bad, types.Secret),
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := ts.cache.SetSnapshot(context.Background(), node, snap); err != nil {
				t.Fatal(err)
			}
			nacked := func(s *GatewayState) bool { return s.Type(ListenerType).NACKs > 0 }
			if err := g.WaitFor(ctx, nacked); err != nil {
				t.Fatalf("%v; last LDS response of %d", err, g.Type(ListenerType).LastResources)
			}
			if err := c.WaitFor(ctx, func(s *State) bool { return s.Type(ListenerType).NACKs > 0 }); err != nil {
				t.Fatal(err)
			}
			lt := g.Type(ListenerType)
			if lt.Version != "1" || !strings.Contains(lt.LastError, "without a name") {
				t.Errorf("LDS version %q after NACK %q", lt.Version, lt.LastError)
			}
			if ct := c.State().Type(ListenerType); ct.Version != lt.Version {
				t.Errorf("client kept %q, gateway %q", ct.Version, lt.Version)
			}
		})
	}
}

func resources(s *cachev3.Snapshot, typ types.ResponseType) []types.Resource {
	var out []types.Resource
	for _, r := range s.Resources[typ].Items {
		out = append(out, r.Resource)
	}
	return out
}

// The references read off the wire are those Client decodes.
func TestWireRefs(t *testing.T) {
	snap := defaultFixture("1").snapshot()
	for typ, rt := range map[string]types.ResponseType{ClusterType: types.Cluster, ListenerType: types.Listener} {
		for name, r := range snap.Resources[rt].Items {
			b, err := proto.Marshal(r.Resource)
			if err != nil {
				t.Fatal(err)
			}
			want, err := resourceRefs(r.Resource)
			if err != nil {
				t.Fatal(err)
			}
			var got refs
			if _, ok := r.Resource.(*clusterv3.Cluster); ok {
				err = wireClusterRefs(b, &got)
			} else {
				err = wireListenerRefs(b, &got)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.eds, want.eds) || !slices.Equal(got.rds, want.rds) || !slices.Equal(got.sds, want.sds) {
				t.Errorf("%s %s: wire refs %+v, decoded %+v", ShortType(typ), name, got, want)
			}
		}
	}
}

// A gateway whose last response differs from the client's is told apart.
func TestSameLastTellsADifference(t *testing.T) {
	ct := &TypeState{Version: "2", LastResources: 3, LastDigest: 7, ACKs: 2, AcceptedDigest: 9}
	gt := GatewayType{Version: "2", LastResources: 3, LastDigest: 7, ACKs: 2, AcceptedDigest: 9}
	if err := SameLast(ClusterType, ct, gt); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []GatewayType{
		{Version: "1", LastResources: 3, LastDigest: 7, ACKs: 2, AcceptedDigest: 9},
		{Version: "2", LastResources: 2, LastDigest: 7, ACKs: 2, AcceptedDigest: 9},
		{Version: "2", LastResources: 3, LastDigest: 8, ACKs: 2, AcceptedDigest: 9},
		{Version: "2", LastResources: 3, LastDigest: 7, ACKs: 3, AcceptedDigest: 9},
		{Version: "2", LastResources: 3, LastDigest: 7, ACKs: 2, AcceptedDigest: 10},
	} {
		if SameLast(ClusterType, ct, bad) == nil {
			t.Errorf("%+v taken for %+v", bad, ct)
		}
	}
}

// A server that sends a gateway other content under the same version is
// caught: the gateway's digest is not the client's.
func TestGatewayCatchesWrongContent(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	wrong := defaultFixture("1")
	wrong.connectTimeout = 3 * time.Second
	ts.set(t, "gw-2", wrong.snapshot())
	c := dial(t, baseOptions(ts, SotW))
	g := dialGatewayAs(t, ts, "gw-2", SotW, nil)
	ctx := waitCtx(t)
	if err := c.WaitForVersions(ctx, versions("1")); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitFor(ctx, GatewayHasVersions(versions("1"))); err != nil {
		t.Fatal(err)
	}
	if err := SameLast(ClusterType, c.State().Type(ClusterType), g.Type(ClusterType)); err == nil {
		t.Fatal("clusters with another connect timeout taken for the client's")
	}
	if err := SameLast(ListenerType, c.State().Type(ListenerType), g.Type(ListenerType)); err != nil {
		t.Errorf("the same listeners told apart: %v", err)
	}
}

// A delta server that sent a gateway an update the client was not sent
// (here a cluster more) is caught even when their last responses are the
// same: the gateway holds that cluster still.
func TestGatewayCatchesAnExtraDeltaUpdate(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	ts.set(t, "gw-2", defaultFixture("1").snapshot())
	c := dial(t, baseOptions(ts, Delta))
	g := dialGatewayAs(t, ts, "gw-2", Delta, nil)
	ctx := waitCtx(t)
	if err := g.WaitFor(ctx, GatewayHasVersions(versions("1"))); err != nil {
		t.Fatal(err)
	}
	extra := defaultFixture("1b")
	extra.extraCluster = "intruder"
	ts.set(t, "gw-2", extra.snapshot())
	if err := g.WaitFor(ctx, GatewayHasVersions(map[string]string{ClusterType: "1b"})); err != nil {
		t.Fatal(err)
	}
	// Version 2 moves every cluster but the extra one, which the gateway
	// keeps: its last response is the client's.
	next := defaultFixture("2")
	next.connectTimeout = 2 * time.Second
	ts.set(t, node, next.snapshot())
	next.extraCluster = "intruder"
	ts.set(t, "gw-2", next.snapshot())
	if err := c.WaitForVersions(ctx, map[string]string{ClusterType: "2"}); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitFor(ctx, GatewayHasVersions(map[string]string{ClusterType: "2"})); err != nil {
		t.Fatal(err)
	}
	ct, gt := c.State().Type(ClusterType), g.Type(ClusterType)
	if gt.LastDigest != ct.LastDigest || gt.LastResources != ct.LastResources {
		t.Fatalf("the last responses differ (gateway %d resources, digest %x; client %d, %x): not the case under test", gt.LastResources, uint64(gt.LastDigest), ct.LastResources, uint64(ct.LastDigest))
	}
	if err := SameLast(ClusterType, ct, gt); err == nil {
		t.Fatal("a gateway holding a cluster more taken for the client")
	}
}
