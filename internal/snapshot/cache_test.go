package snapshot

import (
	"fmt"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	status "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func groupSnapshot(t *testing.T, hosts ...string) *GroupSnapshot {
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
	if err != nil {
		t.Fatal(err)
	}
	gs, err := NewGroupSnapshot(res)
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
	nack.ErrorDetail = &status.Status{Code: 3, Message: "rejected"}
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

// A delta stream two versions behind gets the full difference, not only
// the last step's.
func TestDeltaLaggingStreamGetsEverything(t *testing.T) {
	c := NewCache(nil, nil)
	c.SetSnapshot("g", groupSnapshot(t, "a.example", "b.example", "c.example"))
	sub := stream.NewDeltaSubscription(nil, nil, nil, true)
	ch := make(chan cachev3.DeltaResponse, 1)
	if _, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}, &sub, ch); err != nil {
		t.Fatal(err)
	}
	sub.SetReturnedResources((<-ch).GetReturnedResources())
	c.SetSnapshot("g", groupSnapshot(t, "a.example", "x.example", "c.example")) // db changes
	c.SetSnapshot("g", groupSnapshot(t, "y.example", "x.example"))              // da changes, dc goes
	ack := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: "1"}
	if _, err := c.CreateDeltaWatch(ack, &sub, ch); err != nil {
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

// A delta stream further behind than the history kept still loses the
// resources that are gone.
func TestDeltaStreamBeyondHistoryGetsRemovals(t *testing.T) {
	c := NewCache(nil, nil)
	c.SetSnapshot("g", groupSnapshot(t, "a.example", "b.example", "c.example"))
	sub := stream.NewDeltaSubscription(nil, nil, nil, true)
	ch := make(chan cachev3.DeltaResponse, 1)
	if _, err := c.CreateDeltaWatch(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}, &sub, ch); err != nil {
		t.Fatal(err)
	}
	sub.SetReturnedResources((<-ch).GetReturnedResources())
	for i := 0; i <= historySize+1; i++ {
		c.SetSnapshot("g", groupSnapshot(t, fmt.Sprintf("v%d.example", i)))
	}
	ack := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: "1"}
	if _, err := c.CreateDeltaWatch(ack, &sub, ch); err != nil {
		t.Fatal(err)
	}
	out, _ := (<-ch).GetDeltaDiscoveryResponse()
	if got := names(out.Resources); len(got) != 1 || got[0] != "ns/cm/da/443" {
		t.Fatalf("changed: %v", got)
	}
	if len(out.RemovedResources) != 2 || out.RemovedResources[0] != "ns/cm/db/443" || out.RemovedResources[1] != "ns/cm/dc/443" {
		t.Fatalf("removed: %v", out.RemovedResources)
	}
}
