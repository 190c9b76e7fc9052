package snapshot

import (
	"fmt"
	"runtime"
	"testing"
	"weak"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func groupSnapshot(t *testing.T, hosts ...string) *GroupSnapshot {
	t.Helper()
	return groupSnapshotWith(t, nil, NewEncoder(), hosts...)
}

// groupSnapshotWith is groupSnapshot translated with tc (nil: none) and
// encoded by enc.
func groupSnapshotWith(t *testing.T, tc *translate.Cache, enc *Encoder, hosts ...string) *GroupSnapshot {
	t.Helper()
	doc := "destinations:\n"
	for i, h := range hosts {
		doc += "  - {name: d" + string(rune('a'+i)) + ", host: " + h + ", ports: [{number: 443, protocol: TLS}]}\n"
	}
	cm := compile.ConfigMap{ConfigMap: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm", Labels: map[string]string{intent.LabelKey: "true"}},
		Data:       map[string]string{"egress.yaml": doc},
	}}
	opts := translate.Options{ForwardProxyPort: 3128}
	intents, diags := compile.NewStore().Update([]compile.ConfigMap{cm}, opts.ResolveOptions())
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	res, _, err := compile.Group(intents, "g", nil, opts)
	if tc != nil {
		res, _, err = compile.GroupCached(tc, intents, "g", nil, opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	gs, err := enc.NewGroupSnapshot(res)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

var node = &core.Node{Id: "n1", Cluster: "g"}

func sotwRequest(typeURL, version string) *cachev3.Request {
	return &discovery.DiscoveryRequest{Node: node, TypeUrl: typeURL, VersionInfo: version}
}

func recv(t *testing.T, ch chan cachev3.Response) cachev3.Response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	default:
		return nil
	}
}

func TestSotwFirstRequestIsAnswered(t *testing.T) {
	c := NewCache(nil, nil)
	gs := groupSnapshot(t, "a.example")
	c.SetSnapshot("g", gs)
	sub := stream.NewSotwSubscription(nil, true)
	ch := make(chan cachev3.Response, 1)
	if _, err := c.CreateWatch(sotwRequest(resourcev3.ClusterType, ""), &sub, ch); err != nil {
		t.Fatal(err)
	}
	r := recv(t, ch)
	if r == nil {
		t.Fatal("no response to the first request")
	}
	out, _ := r.GetDiscoveryResponse()
	if out.VersionInfo != gs.Type(resourcev3.ClusterType).Version || len(out.Resources) != 1 {
		t.Fatalf("got version %s with %d resources", out.VersionInfo, len(out.Resources))
	}
}

// A proxy reconnecting with the version it holds is sent nothing: the
// version is a hash of the group's whole type.
func TestSotwReconnectWithCurrentVersionGetsNothing(t *testing.T) {
	c := NewCache(nil, nil)
	gs := groupSnapshot(t, "a.example")
	c.SetSnapshot("g", gs)
	sub := stream.NewSotwSubscription(nil, true)
	ch := make(chan cachev3.Response, 1)
	v := gs.Type(resourcev3.ClusterType).Version
	if _, err := c.CreateWatch(sotwRequest(resourcev3.ClusterType, v), &sub, ch); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, ch); r != nil {
		t.Fatal("reconnecting proxy was re-sent what it has")
	}
	// A change reaches the held watch.
	c.SetSnapshot("g", groupSnapshot(t, "a.example", "b.example"))
	if r := recv(t, ch); r == nil {
		t.Fatal("held watch not answered on change")
	}
}

// A NACK of the current version is not answered with the same version
// (that would loop); the next version is sent.
func TestSotwNACKDoesNotLoop(t *testing.T) {
	c := NewCache(nil, nil)
	gs := groupSnapshot(t, "a.example")
	c.SetSnapshot("g", gs)
	sub := stream.NewSotwSubscription(nil, true)
	ch := make(chan cachev3.Response, 1)
	if _, err := c.CreateWatch(sotwRequest(resourcev3.ListenerType, ""), &sub, ch); err != nil {
		t.Fatal(err)
	}
	r := recv(t, ch)
	sub.SetReturnedResources(r.GetReturnedResources())
	nack := sotwRequest(resourcev3.ListenerType, "")
	nack.ResponseNonce = "1"
	nack.ErrorDetail = &rpcstatus.Status{Code: 3, Message: "rejected"}
	if _, err := c.CreateWatch(nack, &sub, ch); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, ch); r != nil {
		t.Fatal("the rejected version was sent again")
	}
	c.SetSnapshot("g", groupSnapshot(t, "b.example"))
	if r := recv(t, ch); r == nil {
		t.Fatal("the next version was not sent after a NACK")
	}
}

// Delta sends only what changed, and removals.
func TestDeltaSendsOnlyChanges(t *testing.T) {
	c := NewCache(nil, nil)
	gs := groupSnapshot(t, "a.example", "b.example")
	c.SetSnapshot("g", gs)
	sub := stream.NewDeltaSubscription(nil, nil, nil, true)
	ch := make(chan cachev3.DeltaResponse, 1)
	req := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}
	if _, err := c.CreateDeltaWatch(req, &sub, ch); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	out, _ := r.GetDeltaDiscoveryResponse()
	if len(out.Resources) != 2 {
		t.Fatalf("initial delta: %d resources", len(out.Resources))
	}
	sub.SetReturnedResources(r.GetReturnedResources())
	ack := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: "1"}
	if _, err := c.CreateDeltaWatch(ack, &sub, ch); err != nil {
		t.Fatal(err)
	}
	c.SetSnapshot("g", groupSnapshot(t, "a.example", "c.example"))
	r = <-ch
	out, _ = r.GetDeltaDiscoveryResponse()
	if len(out.Resources) != 1 || out.Resources[0].Name != "ns/cm/db/443" {
		t.Fatalf("want only the changed cluster ns/cm/db/443, got %v", names(out.Resources))
	}
	if len(out.RemovedResources) != 0 {
		t.Fatalf("nothing was removed (db kept its name), got %v", out.RemovedResources)
	}
	sub.SetReturnedResources(r.GetReturnedResources())
	if _, err := c.CreateDeltaWatch(ack, &sub, ch); err != nil {
		t.Fatal(err)
	}
	c.SetSnapshot("g", groupSnapshot(t, "a.example"))
	r = <-ch
	out, _ = r.GetDeltaDiscoveryResponse()
	if len(out.Resources) != 0 || len(out.RemovedResources) != 1 || out.RemovedResources[0] != "ns/cm/db/443" {
		t.Fatalf("want the removal of ns/cm/db/443 only, got %v removed %v", names(out.Resources), out.RemovedResources)
	}
}

// A group nobody built yet asks the builder, and is answered once built.
func TestNewGroupTriggersBuild(t *testing.T) {
	asked := ""
	c := NewCache(nil, func(g string) { asked = g })
	sub := stream.NewSotwSubscription(nil, true)
	ch := make(chan cachev3.Response, 1)
	if _, err := c.CreateWatch(sotwRequest(resourcev3.ClusterType, ""), &sub, ch); err != nil {
		t.Fatal(err)
	}
	if asked != "g" {
		t.Fatalf("new group not reported, got %q", asked)
	}
	res, _, err := compile.Group(nil, "g", nil, translate.Options{ForwardProxyPort: 3128})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := NewGroupSnapshot(res)
	if err != nil {
		t.Fatal(err)
	}
	c.SetSnapshot("g", gs)
	if r := recv(t, ch); r == nil {
		t.Fatal("the empty (deny-all) snapshot was not sent")
	}
}

func names(rs []*discovery.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

// deltaStreamHolding publishes a snapshot of hosts for group g and returns
// a wildcard CDS delta stream that holds it.
func deltaStreamHolding(t *testing.T, c *Cache, hosts ...string) (*stream.Subscription, chan cachev3.DeltaResponse) {
	t.Helper()
	c.SetSnapshot("g", groupSnapshot(t, hosts...))
	sub := stream.NewDeltaSubscription(nil, nil, nil, true)
	ch := make(chan cachev3.DeltaResponse, 1)
	if _, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}, &sub, ch); err != nil {
		t.Fatal(err)
	}
	sub.SetReturnedResources((<-ch).GetReturnedResources())
	return &sub, ch
}

// A delta stream two versions behind gets the full difference, not only
// the last step's.
func TestDeltaLaggingStreamGetsEverything(t *testing.T) {
	c := NewCache(nil, nil)
	sub, ch := deltaStreamHolding(t, c, "a.example", "b.example", "c.example")
	c.SetSnapshot("g", groupSnapshot(t, "a.example", "x.example", "c.example")) // db changes
	c.SetSnapshot("g", groupSnapshot(t, "y.example", "x.example"))              // da changes, dc goes
	ack := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: "1"}
	if _, err := c.CreateDeltaWatch(ack, sub, ch); err != nil {
		t.Fatal(err)
	}
	out, _ := (<-ch).GetDeltaDiscoveryResponse()
	got := names(out.Resources)
	if len(got) != 2 || got[0] != "ns/cm/da/443" || got[1] != "ns/cm/db/443" {
		t.Fatalf("changed: %v", got)
	}
	if len(out.RemovedResources) != 1 || out.RemovedResources[0] != "ns/cm/dc/443" {
		t.Fatalf("removed: %v", out.RemovedResources)
	}
}

func TestPruneForgetsUnwatchedGroups(t *testing.T) {
	c := NewCache(nil, nil)
	c.SetSnapshot("gone", groupSnapshot(t, "a.example"))
	c.SetSnapshot("kept", groupSnapshot(t, "a.example"))
	sub := stream.NewSotwSubscription(nil, true)
	ch := make(chan cachev3.Response, 1)
	req := sotwRequest(resourcev3.ClusterType, "")
	req.Node = &core.Node{Id: "n", Cluster: "watched"}
	if _, err := c.CreateWatch(req, &sub, ch); err != nil {
		t.Fatal(err)
	}
	c.Prune(map[string]bool{"kept": true})
	got := map[string]bool{}
	for _, g := range c.Groups() {
		got[g] = true
	}
	if got["gone"] || !got["kept"] || !got["watched"] {
		t.Fatalf("groups after prune: %v", got)
	}
}

// A delta stream ten versions behind gets the exact difference from the
// names the changes touched; one further behind than the history kept is
// ended, so that it reconnects saying what it holds.
func TestDeltaStreamBehindHistory(t *testing.T) {
	for _, tc := range []struct {
		name       string
		limitSteps int
		ended      bool
	}{{"within", maxSteps, false}, {"beyond", 4, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCache(nil, nil)
			c.limitSteps = tc.limitSteps
			sub, ch := deltaStreamHolding(t, c, "a.example", "b.example", "c.example")
			for i := 0; i < 10; i++ {
				c.SetSnapshot("g", groupSnapshot(t, fmt.Sprintf("v%d.example", i)))
			}
			ack := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: "1"}
			if _, err := c.CreateDeltaWatch(ack, sub, ch); err != nil {
				t.Fatal(err)
			}
			out, err := (<-ch).GetDeltaDiscoveryResponse()
			if tc.ended {
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("the stream is not ended: %v, %v", out, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(out.Resources); len(got) != 1 || got[0] != "ns/cm/da/443" {
				t.Fatalf("changed: %v", got)
			}
			if len(out.RemovedResources) != 2 || out.RemovedResources[0] != "ns/cm/db/443" || out.RemovedResources[1] != "ns/cm/dc/443" {
				t.Fatalf("removed: %v", out.RemovedResources)
			}
		})
	}
}

// After many changes the cache holds the current snapshot alone: replaced
// ones are neither shared with the codec nor reachable (a leak here grew
// the heap by a whole snapshot per edit, 130 MB at 10,000 destinations),
// and the history stays within its bounds.
func TestCacheKeepsNoReplacedSnapshot(t *testing.T) {
	t.Run("encoders=fresh", func(t *testing.T) { testCacheKeepsNoReplacedSnapshot(t, false) })
	// One encoder, as the builder has: items are shared by the snapshots
	// that serve them, the snapshots themselves must still be collected.
	t.Run("encoders=one", func(t *testing.T) { testCacheKeepsNoReplacedSnapshot(t, true) })
}

func testCacheKeepsNoReplacedSnapshot(t *testing.T, shared bool) {
	tc, enc := translate.NewCache(), NewEncoder()
	build := func(hosts ...string) *GroupSnapshot {
		if shared {
			return groupSnapshotWith(t, tc, enc, hosts...)
		}
		return groupSnapshot(t, hosts...)
	}
	const edits = 30
	c := NewCache(nil, nil)
	c.limitSteps = 10
	var replaced []weak.Pointer[GroupSnapshot]
	type list struct {
		typeURL string
		key     any
	}
	var lists []list // every full list published
	for i := 0; i < edits; i++ {
		gs := build("a.example", fmt.Sprintf("v%d.example", i))
		for _, typ := range gs.TypeURLs() {
			if all := gs.Type(typ).all; len(all) > 0 {
				lists = append(lists, list{typ, listKey(all)})
			}
		}
		replaced = append(replaced, weak.Make(gs))
		c.SetSnapshot("g", gs)
	}
	current := c.Snapshot("g")
	registered := 0
	seen := map[any]bool{}
	for _, l := range lists {
		if seen[l.key] {
			continue // a list shared by snapshots whose type did not change
		}
		seen[l.key] = true
		if shared, ok := sharedLists.Load(l.key); ok {
			if &shared.(*sharedList[*anypb.Any]).items[0] != &current.Type(l.typeURL).all[0] {
				t.Errorf("a replaced %s list is still shared with the codec", l.typeURL)
			}
			registered++
		}
	}
	if registered == 0 || registered > len(Types) {
		t.Errorf("%d lists shared with the codec, want the current snapshot's (at most %d)", registered, len(Types))
	}
	st := c.groups["g"]
	for typ, steps := range st.steps {
		if len(steps) > c.limitSteps {
			t.Errorf("%s: %d steps kept, limit %d", typ, len(steps), c.limitSteps)
		}
	}
	current = nil
	// Collection is exact for objects nothing references: two cycles are
	// more than enough, a few more rule out a slow sweep.
	alive := 0
	for try := 0; try < 5; try++ {
		runtime.GC()
		alive = 0
		for _, w := range replaced[:edits-1] {
			if w.Value() != nil {
				alive++
			}
		}
		if alive == 0 {
			break
		}
	}
	if alive > 0 {
		t.Fatalf("%d of %d replaced snapshots are still reachable", alive, edits-1)
	}
	if replaced[edits-1].Value() == nil {
		t.Fatal("the current snapshot was collected")
	}
	runtime.KeepAlive(c)
	runtime.KeepAlive(enc)
}

// A snapshot whose types did not move answers no held watch (SetSnapshot
// does not even look at them); one that moved answers them.
func TestSetSnapshotAnswersWatchesOfMovedTypes(t *testing.T) {
	c := NewCache(nil, nil)
	gs := groupSnapshot(t, "a.example")
	c.SetSnapshot("g", gs)
	var chans []chan cachev3.Response
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		sub := stream.NewSotwSubscription(nil, true)
		ch := make(chan cachev3.Response, 1)
		if _, err := c.CreateWatch(sotwRequest(typ, ""), &sub, ch); err != nil {
			t.Fatal(err)
		}
		r := recv(t, ch)
		sub.SetReturnedResources(r.GetReturnedResources())
		ack := sotwRequest(typ, gs.Type(typ).Version)
		ack.ResponseNonce = "1"
		if _, err := c.CreateWatch(ack, &sub, ch); err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	dsub := stream.NewDeltaSubscription(nil, nil, nil, true)
	dch := make(chan cachev3.DeltaResponse, 1)
	if _, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}, &dsub, dch); err != nil {
		t.Fatal(err)
	}
	dsub.SetReturnedResources((<-dch).GetReturnedResources())
	if _, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: "1"}, &dsub, dch); err != nil {
		t.Fatal(err)
	}
	if sent := c.SetSnapshot("g", groupSnapshot(t, "a.example")); sent != 0 {
		t.Fatalf("the same content answered %d watches", sent)
	}
	if sent := c.SetSnapshot("g", groupSnapshot(t, "b.example")); sent != 3 {
		t.Fatalf("a change answered %d watches, want 3", sent)
	}
	for _, ch := range chans {
		if recv(t, ch) == nil {
			t.Fatal("a held SotW watch was not answered")
		}
	}
	if len(dch) != 1 {
		t.Fatal("the held delta watch was not answered")
	}
}
