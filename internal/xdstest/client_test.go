package xdstest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

const node = "gw-1"

func baseOptions(ts *testServer, mode Mode) Options {
	md, _ := structpb.NewStruct(map[string]any{"gateway": "gw-1"})
	return Options{
		Address:      ts.addr,
		NodeID:       node,
		NodeCluster:  "group-a",
		NodeMetadata: md,
		Mode:         mode,
		Validator:    ProtoValidate,
	}
}

func endpointPort(t *testing.T, c *endpointv3.ClusterLoadAssignment) uint32 {
	t.Helper()
	return c.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
}

// checkFull asserts the client holds everything of defaultFixture and
// subscribed to exactly what Envoy would.
func checkFull(t *testing.T, st *State, routeName string, listenerTLS bool) {
	t.Helper()
	eq := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	routes := slices.Sorted(slices.Values([]string{"fallback-routes", routeName}))
	secrets := []string{"ca", "client-cert"}
	if listenerTLS {
		secrets = append(secrets, "server-cert")
	}
	eq("clusters", names(st.Clusters()), []string{"backend", "other", "static-local"})
	eq("endpoints", names(st.Endpoints()), []string{"backend-eds", "other"})
	eq("listeners", names(st.Listeners()), []string{"egress"})
	eq("routes", names(st.Routes()), routes)
	eq("secrets", names(st.Secrets()), secrets)
	eq("EDS subscription", st.Type(EndpointType).Names, []string{"backend-eds", "other"})
	eq("RDS subscription", st.Type(RouteType).Names, routes)
	// static-ca has no sds_config: a static secret Envoy does not fetch.
	eq("SDS subscription", st.Type(SecretType).Names, secrets)
	for _, typ := range []string{ClusterType, ListenerType} {
		if !st.Type(typ).Wildcard {
			t.Errorf("%s not wildcard", ShortType(typ))
		}
	}
}

func TestSotWSyncACKAndUpdate(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	c := dial(t, baseOptions(ts, SotW))
	ctx := waitCtx(t)

	if err := c.WaitForVersions(ctx, versions("1")); err != nil {
		t.Fatal(err)
	}
	st := c.State()
	checkFull(t, st, "routes-a", true)
	for _, typ := range allTypes {
		tst := st.Type(typ)
		if tst.ACKs == 0 || tst.NACKs != 0 || tst.Versions[slices.Sorted(maps.Keys(tst.Versions))[0]] != "1" {
			t.Errorf("%s: %+v", ShortType(typ), tst)
		}
	}

	// The server saw an ACK (response_nonce of its latest response,
	// version_info, no error_detail) for every type.
	ts.rec.wait(t, ctx, "ACKs of version 1", func() bool { return ts.rec.sotwAcked(node, "1", allTypes...) })
	ts.rec.mu.Lock()
	first := ts.rec.sotwReqs[0]
	ts.rec.mu.Unlock()
	if first.typ != ClusterType || len(first.names) != 0 || first.version != "" || first.nonce != "" {
		t.Errorf("first request = %+v, want wildcard CDS", first)
	}
	if n := first.node; n.GetId() != node || n.GetCluster() != "group-a" || n.GetMetadata().GetFields()["gateway"].GetStringValue() != "gw-1" {
		t.Errorf("node = %v", n)
	}

	// A new snapshot version reaches the client.
	f2 := defaultFixture("2")
	f2.endpointPort = 8082
	ts.set(t, node, f2.snapshot())
	if err := c.WaitForVersions(ctx, versions("2")); err != nil {
		t.Fatal(err)
	}
	if got := endpointPort(t, c.Endpoints()[0]); got != 8082 {
		t.Errorf("endpoint port = %d, want 8082", got)
	}
	ts.rec.wait(t, ctx, "ACKs of version 2", func() bool { return ts.rec.sotwAcked(node, "2", allTypes...) })

	acks := 0
	for _, e := range c.Events() {
		if e.Kind == EventACK && e.Version == "2" {
			acks++
		}
	}
	if acks < len(allTypes) {
		t.Errorf("event log has %d ACKs of version 2:\n%v", acks, c.Events())
	}
}

func TestSotWNACKKeepsPreviousVersion(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	var reject atomic.Bool
	opts := baseOptions(ts, SotW)
	opts.Validator = Validators(ProtoValidate, func(typ string, _ []proto.Message) error {
		if typ == ClusterType && reject.Load() {
			return errors.New("cluster rejected by test")
		}
		return nil
	})
	c := dial(t, opts)
	ctx := waitCtx(t)
	if err := c.WaitForVersions(ctx, versions("1")); err != nil {
		t.Fatal(err)
	}

	reject.Store(true)
	f2 := defaultFixture("2")
	f2.connectTimeout = 2 * time.Second
	ts.set(t, node, f2.snapshot())

	// NACK: version_info is the last accepted version, response_nonce the
	// rejected response's nonce, error_detail INVALID_ARGUMENT.
	ts.rec.wait(t, ctx, "CDS NACK", func() bool {
		for _, rq := range ts.rec.sotwReqs {
			if rq.typ != ClusterType || !rq.hasErr {
				continue
			}
			if rq.version != "1" || rq.errCode != int32(codes.InvalidArgument) || rq.errMsg != "cluster rejected by test" {
				t.Errorf("NACK = %+v", rq)
			}
			for _, rs := range ts.rec.sotwResps {
				if rs.typ == ClusterType && rs.nonce == rq.nonce && rs.version == "2" {
					return true
				}
			}
			t.Errorf("NACK nonce %q does not match a CDS version 2 response", rq.nonce)
		}
		return false
	})
	if err := c.WaitFor(ctx, All(
		func(s *State) bool { return s.Type(ClusterType).NACKs > 0 },
		HasVersions(map[string]string{EndpointType: "2", ListenerType: "2", RouteType: "2", SecretType: "2"}),
	)); err != nil {
		t.Fatal(err)
	}
	st := c.State()
	cds := st.Type(ClusterType)
	if cds.Version != "1" || !cds.Rejected || cds.LastError != "cluster rejected by test" {
		t.Errorf("CDS after NACK: version=%q rejected=%v last_error=%q", cds.Version, cds.Rejected, cds.LastError)
	}
	for _, cl := range st.Clusters() {
		if got := cl.GetConnectTimeout().AsDuration(); got != time.Second {
			t.Errorf("cluster %s connect_timeout = %v: rejected resources were applied", cl.GetName(), got)
		}
	}
	if Synced(st) {
		t.Error("Synced with a rejected CDS response")
	}
	if !slices.ContainsFunc(c.Events(), func(e Event) bool { return e.Kind == EventNACK && e.Error == "cluster rejected by test" }) {
		t.Errorf("no NACK in the event log: %v", c.Events())
	}

	// go-control-plane re-sends a NACKed SotW response straight away (it
	// ignores error_detail), so accepting again converges.
	reject.Store(false)
	if err := c.WaitForVersions(ctx, versions("2")); err != nil {
		t.Fatal(err)
	}
	if got := c.Clusters()[0].GetConnectTimeout().AsDuration(); got != 2*time.Second {
		t.Errorf("connect_timeout = %v after accepting version 2", got)
	}
}

// TestSubscriptionsFollowReferences renames the listener's RDS route and
// drops its TLS: RDS and SDS subscriptions must follow.
func TestSubscriptionsFollowReferences(t *testing.T) {
	for _, mode := range []Mode{SotW, Delta} {
		t.Run(mode.String(), func(t *testing.T) {
			ts := newTestServer(t)
			ts.set(t, node, defaultFixture("1").snapshot())
			c := dial(t, baseOptions(ts, mode))
			ctx := waitCtx(t)
			if err := c.WaitForVersions(ctx, versions("1")); err != nil {
				t.Fatal(err)
			}

			f3 := defaultFixture("3")
			f3.routeName, f3.listenerTLS = "routes-b", false
			ts.set(t, node, f3.snapshot())
			if err := c.WaitFor(ctx, All(Synced, HasResource(RouteType, "routes-b"), func(s *State) bool {
				return len(s.Type(SecretType).Names) == 2
			})); err != nil {
				t.Fatal(err)
			}
			checkFull(t, c.State(), "routes-b", false)

			// The client has sent the requests; wait for the server to see them.
			if mode == SotW {
				ts.rec.wait(t, ctx, "RDS request for [fallback-routes routes-b]", func() bool {
					return slices.ContainsFunc(ts.rec.sotwReqs, func(rq sotwReq) bool {
						return rq.typ == RouteType && slices.Equal(rq.names, []string{"fallback-routes", "routes-b"})
					})
				})
				return
			}
			ts.rec.wait(t, ctx, "RDS request subscribing routes-b and unsubscribing routes-a", func() bool {
				return slices.ContainsFunc(ts.rec.deltaReqs, func(rq deltaReq) bool {
					return rq.typ == RouteType && slices.Equal(rq.sub, []string{"routes-b"}) && slices.Equal(rq.unsub, []string{"routes-a"})
				})
			})
			ts.rec.wait(t, ctx, "SDS request unsubscribing server-cert", func() bool {
				return slices.ContainsFunc(ts.rec.deltaReqs, func(rq deltaReq) bool {
					return rq.typ == SecretType && len(rq.sub) == 0 && slices.Equal(rq.unsub, []string{"server-cert"})
				})
			})
		})
	}
}

func TestDeltaSyncAndIncrementalUpdate(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	c := dial(t, baseOptions(ts, Delta))
	ctx := waitCtx(t)

	if err := c.WaitForVersions(ctx, versions("1")); err != nil {
		t.Fatal(err)
	}
	before := c.State()
	checkFull(t, before, "routes-a", true)
	want := map[string]int{ClusterType: 3, EndpointType: 2, ListenerType: 1, RouteType: 2, SecretType: 3}
	for typ, n := range want {
		if got := before.Type(typ).ResourcesReceived; got != n {
			t.Errorf("%s resources received = %d, want %d", ShortType(typ), got, n)
		}
		for name, v := range before.Type(typ).Versions {
			if v == "" {
				t.Errorf("%s %s has no version", ShortType(typ), name)
			}
		}
	}
	var stream int64
	ts.rec.wait(t, ctx, "delta ACKs", func() bool {
		stream = ts.rec.deltaStream(node)
		return ts.rec.deltaAcked(stream, allTypes...)
	})
	sent := len(ts.rec.deltaRespsOn(stream))

	// Only the ClusterLoadAssignment changes: only it is sent.
	f2 := defaultFixture("2")
	f2.endpointPort = 8082
	ts.set(t, node, f2.snapshot())
	if err := c.WaitFor(ctx, HasVersion(EndpointType, "2")); err != nil {
		t.Fatal(err)
	}
	ts.rec.wait(t, ctx, "EDS ACK", func() bool { return ts.rec.deltaAcked(stream, EndpointType) })
	after := c.State()
	if got := endpointPort(t, after.Endpoints()[0]); got != 8082 {
		t.Errorf("endpoint port = %d, want 8082", got)
	}
	for _, typ := range allTypes {
		b, a := before.Type(typ), after.Type(typ)
		wantN, wantResp := b.ResourcesReceived, b.Responses
		if typ == EndpointType {
			wantN, wantResp = wantN+1, wantResp+1
		}
		if a.ResourcesReceived != wantN || a.Responses != wantResp {
			t.Errorf("%s: received %d resources in %d responses, want %d in %d", ShortType(typ), a.ResourcesReceived, a.Responses, wantN, wantResp)
		}
	}
	if b, a := before.Type(EndpointType).Versions, after.Type(EndpointType).Versions; b["backend-eds"] == a["backend-eds"] || b["other"] != a["other"] {
		t.Errorf("EDS versions %v -> %v: want only backend-eds to change", b, a)
	}
	resps := ts.rec.deltaRespsOn(stream)[sent:]
	if len(resps) != 1 || resps[0].typ != EndpointType || !slices.Equal(resps[0].names, []string{"backend-eds"}) {
		t.Errorf("server sent %+v after the update, want one EDS response with backend-eds", resps)
	}
}

func TestDeltaNACK(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	opts := baseOptions(ts, Delta)
	opts.Validator = func(typ string, res []proto.Message) error {
		for _, m := range res {
			if c, ok := m.(*endpointv3.ClusterLoadAssignment); ok && c.GetClusterName() == "backend-eds" && endpointPort(t, c) == 8080 {
				return errors.New("port 8080 refused")
			}
		}
		return nil
	}
	c := dial(t, opts)
	ctx := waitCtx(t)

	if err := c.WaitFor(ctx, func(s *State) bool { return s.Type(EndpointType).NACKs == 1 }); err != nil {
		t.Fatal(err)
	}
	ts.rec.wait(t, ctx, "EDS NACK", func() bool {
		return slices.ContainsFunc(ts.rec.deltaReqs, func(rq deltaReq) bool {
			return rq.typ == EndpointType && rq.hasErr && rq.nonce != "" &&
				rq.errCode == int32(codes.InvalidArgument) && rq.errMsg == "port 8080 refused"
		})
	})
	if st := c.State(); len(st.Endpoints()) != 0 || Synced(st) {
		t.Fatalf("rejected endpoints applied:\n%s", st)
	}

	// go-control-plane ignores error_detail and considers the rejected
	// resources delivered: after an update only the changed one comes
	// back, and "other" (rejected with it, unchanged since) stays missing.
	f2 := defaultFixture("2")
	f2.endpointPort = 8082
	ts.set(t, node, f2.snapshot())
	if err := c.WaitFor(ctx, All(HasVersion(EndpointType, "2"), HasResource(EndpointType, "backend-eds"))); err != nil {
		t.Fatal(err)
	}
	st := c.State()
	if got := endpointPort(t, st.Endpoints()[0]); got != 8082 {
		t.Errorf("endpoint port = %d", got)
	}
	if _, ok := st.Type(EndpointType).Resources["other"]; ok || Synced(st) {
		t.Errorf("want other still missing (not re-sent after the NACK):\n%s", st)
	}
}

func TestDeltaReconnectWithInitialVersions(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	c1 := dial(t, baseOptions(ts, Delta))
	ctx := waitCtx(t)
	if err := c1.WaitForVersions(ctx, versions("1")); err != nil {
		t.Fatal(err)
	}
	held := c1.State()
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c1.Err(), context.Canceled) {
		t.Errorf("Err after Close = %v", c1.Err())
	}

	opts := baseOptions(ts, Delta)
	opts.Resume = held
	c2 := dial(t, opts)
	if err := c2.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}

	// On the new stream: every type is requested with the versions held;
	// once the server has processed the ACKs of CDS and LDS (sent after
	// all initial requests), every response to those requests was sent.
	var stream int64
	ts.rec.wait(t, ctx, "initial requests and ACKs on the new stream", func() bool {
		stream = ts.rec.deltaStream(node)
		for _, typ := range allTypes {
			if !slices.ContainsFunc(ts.rec.deltaReqs, func(rq deltaReq) bool {
				return rq.stream == stream && rq.typ == typ && rq.nonce == "" && maps.Equal(rq.initial, held.Type(typ).Versions)
			}) {
				return false
			}
		}
		return ts.rec.deltaAcked(stream, ClusterType, ListenerType)
	})
	// go-control-plane answers the first wildcard request even when
	// nothing changed (empty), and the named types not at all.
	resps := ts.rec.deltaRespsOn(stream)
	for _, rs := range resps {
		if len(rs.names) != 0 || len(rs.removed) != 0 || (rs.typ != ClusterType && rs.typ != ListenerType) {
			t.Errorf("server sent %+v after reconnect, want nothing new", rs)
		}
	}
	st := c2.State()
	if n := st.TotalResourcesReceived(); n != 0 {
		t.Errorf("reconnected client received %d resources, want 0:\n%s", n, st)
	}
	checkFull(t, st, "routes-a", true)
	if !maps.EqualFunc(st.ResourceVersions(), held.ResourceVersions(), maps.Equal) {
		t.Errorf("versions after resume %v, want %v", st.ResourceVersions(), held.ResourceVersions())
	}

	// The resumed client still follows changes, one resource at a time.
	f2 := defaultFixture("2")
	f2.endpointPort = 8082
	ts.set(t, node, f2.snapshot())
	if err := c2.WaitFor(ctx, HasVersion(EndpointType, "2")); err != nil {
		t.Fatal(err)
	}
	if n := c2.State().TotalResourcesReceived(); n != 1 {
		t.Errorf("received %d resources after one change, want 1", n)
	}
}

// TestExplicitWildcard: a server built with DeactivateLegacyWildcard only
// serves CDS/LDS to a delta client that subscribes to "*".
func TestExplicitWildcard(t *testing.T) {
	ts := newTestServer(t, config.DeactivateLegacyWildcard())
	ts.set(t, node, defaultFixture("1").snapshot())
	opts := baseOptions(ts, Delta)
	opts.ExplicitWildcard = true
	c := dial(t, opts)
	if err := c.WaitForVersions(waitCtx(t), versions("1")); err != nil {
		t.Fatal(err)
	}
	checkFull(t, c.State(), "routes-a", true)
}

func TestStopsOnContextCancel(t *testing.T) {
	ts := newTestServer(t)
	ts.set(t, node, defaultFixture("1").snapshot())
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Dial(ctx, baseOptions(ts, SotW))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wctx := waitCtx(t)
	if err := c.WaitSynced(wctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-c.Done():
	case <-wctx.Done():
		t.Fatal("client did not stop on context cancel")
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Errorf("Err = %v", c.Err())
	}
	if err := c.WaitFor(wctx, HasVersion(ClusterType, "never")); err == nil {
		t.Error("WaitFor on a stopped client succeeded")
	}
	// State stays readable after stop.
	if len(c.Clusters()) != 3 {
		t.Errorf("clusters after stop: %d", len(c.Clusters()))
	}
}

func TestEventRingIsBounded(t *testing.T) {
	r := eventRing{buf: make([]Event, 3)}
	for i := range 5 {
		r.add(Event{Kind: EventACK, Nonce: string(rune('a' + i))})
	}
	got := r.list()
	if len(got) != 3 || got[0].Seq != 3 || got[2].Seq != 5 || got[2].Nonce != "e" {
		t.Errorf("ring = %v", got)
	}
	var off eventRing
	off.add(Event{})
	if len(off.list()) != 0 {
		t.Error("disabled ring kept events")
	}
}

// TestManyClientsSharedConnNoLeak runs many gateways over one connection
// and checks that Close leaves no goroutine behind.
func TestManyClientsSharedConnNoLeak(t *testing.T) {
	ts := newTestServer(t)
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := waitCtx(t)
	const n = 50
	// Warm the connection so its goroutines are part of the baseline.
	ts.set(t, "warm", defaultFixture("1").snapshot())
	warm := dial(t, Options{Conn: conn, NodeID: "warm", Mode: Delta})
	if err := warm.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()

	clients := make([]*Client, 0, n)
	for i := range n {
		id := fmt.Sprintf("gw-%03d", i)
		ts.set(t, id, defaultFixture("1").snapshot())
		mode := SotW
		if i%2 == 1 {
			mode = Delta
		}
		c, err := Dial(ctx, Options{Conn: conn, NodeID: id, NodeCluster: "group-a", Mode: mode, EventLogSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		if err := c.WaitForVersions(ctx, versions("1")); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if len(c.Events()) != 0 {
			t.Fatal("disabled event log kept events")
		}
	}
	// Stream teardown (client and server side) finishes asynchronously
	// after Close returns; poll until the goroutine count is back.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > baseline {
		select {
		case <-tick.C:
		case <-ctx.Done():
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
	}
}

func BenchmarkDialSync(b *testing.B) {
	for _, mode := range []Mode{SotW, Delta} {
		b.Run(mode.String(), func(b *testing.B) {
			ts := newBenchServer(b)
			conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			if err := ts.cache.SetSnapshot(context.Background(), node, defaultFixture("1").snapshot()); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b.ReportAllocs()
			for b.Loop() {
				c, err := Dial(ctx, Options{Conn: conn, NodeID: node, Mode: mode})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.WaitForVersions(ctx, versions("1")); err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
			}
		})
	}
}
