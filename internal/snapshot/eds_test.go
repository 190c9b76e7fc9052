package snapshot

import (
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// staticSnapshot is group g with one STATIC destination; fields are more
// YAML flow fields of it.
func staticSnapshot(t *testing.T, fields string) *GroupSnapshot {
	t.Helper()
	doc := "destinations:\n  - {name: db, host: db.example.com, ports: [{number: 443, protocol: TLS}], endpoints: [{address: 10.0.0.1}]" + fields + "}\n"
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

// An endpoint set's version moves with its cluster's, though its content
// does not: Envoy re-creates the cluster and waits for the endpoints
// again. A change elsewhere leaves the endpoints' version alone.
func TestEndpointsVersionCoversCluster(t *testing.T) {
	const name = "ns/cm/db/443"
	a := staticSnapshot(t, "")
	b := staticSnapshot(t, ", connectionPool: {connectTimeout: 2s}")
	c := staticSnapshot(t, ", rateLimit: {maxTokens: 5, fillInterval: 1s}")
	claA, claB := a.Type(resourcev3.EndpointType).Items[name], b.Type(resourcev3.EndpointType).Items[name]
	if claA == nil || claB == nil {
		t.Fatalf("no endpoints %s: %v", name, a.Type(resourcev3.EndpointType).Names)
	}
	if string(claA.any.Value) != string(claB.any.Value) {
		t.Fatal("the endpoints themselves changed: the test proves nothing")
	}
	if a.Type(resourcev3.ClusterType).Version == b.Type(resourcev3.ClusterType).Version {
		t.Fatal("the cluster did not change")
	}
	if claA.Version == claB.Version || a.Type(resourcev3.EndpointType).Version == b.Type(resourcev3.EndpointType).Version {
		t.Error("the cluster changed and its endpoints kept their version: Envoy would wait for them")
	}
	if a.Type(resourcev3.ClusterType).Version != c.Type(resourcev3.ClusterType).Version ||
		a.Type(resourcev3.ListenerType).Version == c.Type(resourcev3.ListenerType).Version {
		t.Fatal("a rate limit should change the listener, not the cluster")
	}
	if a.Type(resourcev3.EndpointType).Version != c.Type(resourcev3.EndpointType).Version {
		t.Error("a listener change moved the endpoints' version")
	}
}

// A new snapshot answers a proxy's held watches in Types order whatever
// order they were opened in: on one ADS stream (one channel) the cluster
// reaches Envoy before the endpoints it will wait for.
func TestSetSnapshotAnswersInTypeOrder(t *testing.T) {
	c := NewCache(nil, nil)
	a := staticSnapshot(t, "")
	c.SetSnapshot("g", a)
	ch := make(chan cachev3.Response, len(Types))
	for _, typ := range []string{resourcev3.RouteType, resourcev3.ListenerType, resourcev3.EndpointType, resourcev3.ClusterType, resourcev3.SecretType} {
		sub := stream.NewSotwSubscription(nil, true)
		sub.SetReturnedResources(map[string]string{"*": a.Type(typ).Version})
		if _, err := c.CreateWatch(sotwRequest(typ, a.Type(typ).Version), &sub, ch); err != nil {
			t.Fatal(err)
		}
	}
	if len(ch) != 0 {
		t.Fatal("a watch holding the current version was answered")
	}
	c.SetSnapshot("g", staticSnapshot(t, ", connectionPool: {connectTimeout: 2s}"))
	var got []string
	for len(ch) > 0 {
		got = append(got, (<-ch).GetRequest().GetTypeUrl())
	}
	want := []string{resourcev3.ClusterType, resourcev3.EndpointType}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("answered %v, want %v in that order", got, want)
	}
}
