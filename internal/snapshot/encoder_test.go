package snapshot

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// randomDestination is one destination of a random kind and settings.
func randomDestination(r *rand.Rand, name string) string {
	switch r.IntN(4) {
	case 0:
		eps := []string{}
		for i := range 1 + r.IntN(3) {
			eps = append(eps, fmt.Sprintf("{address: 192.0.2.%d}", 1+i+r.IntN(3)))
		}
		return fmt.Sprintf("  - {name: %s, host: %s.example.com, ports: [{number: %d, protocol: TCP}], endpoints: [%s], connectionPool: {connectTimeout: %ds}}\n",
			name, name, 10000+r.IntN(4), strings.Join(eps, ", "), 1+r.IntN(3))
	case 1:
		return fmt.Sprintf("  - {name: %s, host: %s.example.com, ports: [{number: 80, protocol: HTTP}], timeout: %ds}\n", name, name, 1+r.IntN(3))
	case 2:
		return fmt.Sprintf("  - {name: %s, host: %s.example.com, ports: [{number: 443, protocol: TLS}], allow: [{cidr: 10.%d.0.0/16}]}\n", name, name, r.IntN(3))
	default:
		return fmt.Sprintf("  - {name: %s, host: %s.example.com, ports: [{number: 443, protocol: TLS}]}\n", name, name)
	}
}

// TestEncoderEquivalence builds random edit sequences (destinations added,
// removed and changed, in a few ConfigMaps) with one encoder and a
// translation cache, as the builder does, and checks each snapshot
// against one built from scratch: versions, names, items, both full lists,
// what changed since the last snapshot, and the reference counts.
func TestEncoderEquivalence(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			const maps, slots = 3, 8
			dests := make([][]string, maps) // per ConfigMap, per slot ("" none)
			for i := range dests {
				dests[i] = make([]string, slots)
			}
			opts := translate.Options{ForwardProxyPort: 3128}
			st, tc, enc := compile.NewStore(), translate.NewCache(), NewEncoder()
			var last *GroupSnapshot
			for step := range 40 {
				for range 1 + r.IntN(3) {
					m, s := r.IntN(maps), r.IntN(slots)
					if r.IntN(4) == 0 {
						dests[m][s] = ""
					} else {
						dests[m][s] = randomDestination(r, fmt.Sprintf("d%d-%d", m, s))
					}
				}
				var cms []compile.ConfigMap
				for m, ds := range dests {
					doc := "destinations:\n" + strings.Join(ds, "")
					if doc == "destinations:\n" {
						doc = "destinations: []\n"
					}
					cms = append(cms, compile.ConfigMap{ConfigMap: &corev1.ConfigMap{
						ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("cm", m), Labels: map[string]string{intent.LabelKey: "true"}},
						Data:       map[string]string{"egress.yaml": doc},
					}})
				}
				intents, _ := st.Update(cms, opts.ResolveOptions())
				cached, _, err := compile.GroupCached(tc, intents, "g", nil, opts)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				fresh, _, err := compile.Group(intents, "g", nil, opts)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				got, err := enc.NewGroupSnapshot(cached)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				want, err := NewGroupSnapshot(fresh)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				checkSnapshot(t, fmt.Sprint("step ", step), got, want, last)
				checkRefs(t, fmt.Sprint("step ", step), enc, got)
				last = got
			}
		})
	}
}

// checkSnapshot compares a snapshot built incrementally with one built
// from scratch, and what the encoder found changed since last with what
// comparing every resource gives.
func checkSnapshot(t *testing.T, where string, got, want, last *GroupSnapshot) {
	t.Helper()
	if !slices.Equal(got.TypeURLs(), want.TypeURLs()) {
		t.Fatalf("%s: types %v, want %v", where, got.TypeURLs(), want.TypeURLs())
	}
	for _, typ := range want.TypeURLs() {
		g, w := got.Type(typ), want.Type(typ)
		if g.Version != w.Version || !slices.Equal(g.Names, w.Names) || len(g.Items) != len(w.Names) ||
			len(g.list) != len(w.Names) || len(g.all) != len(w.Names) || len(g.deltaAll) != len(w.Names) {
			t.Fatalf("%s: %s: version %s (want %s), %d names (want %d), %d items, %d listed", where, typ, g.Version, w.Version, len(g.Names), len(w.Names), len(g.Items), len(g.list))
		}
		for i, name := range w.Names {
			gi, wi := g.Items[name], w.Items[name]
			if gi == nil || gi != g.list[i] || gi.Name != name || gi.Version != wi.Version || !bytes.Equal(gi.Bytes(), wi.Bytes()) {
				t.Fatalf("%s: %s %s differs", where, typ, name)
			}
			if g.all[i] != gi.any || g.deltaAll[i] != gi.delta || gi.delta.Name != name || gi.delta.Version != gi.Version || gi.delta.Resource != gi.any || gi.any.TypeUrl != typ {
				t.Fatalf("%s: %s %s: lists disagree with the item", where, typ, name)
			}
		}
		if len(g.all) > 0 && (&g.allList.items[0] != &g.all[0] || &g.deltaList.items[0] != &g.deltaAll[0]) {
			t.Fatalf("%s: %s: shared lists are not the type's", where, typ)
		}
	}
	if last == nil {
		return
	}
	// What the encoder found changed, against comparing everything.
	slow := &GroupSnapshot{typeURLs: got.typeURLs, types: map[string]*TypeSnapshot{}}
	for typ, ts := range got.types {
		c := *ts
		c.built = nil
		slow.types[typ] = &c
	}
	slow.diffFrom(last)
	got.diffFrom(last)
	for typ, ts := range got.types {
		g, w := ts.diff, slow.types[typ].diff
		if (g == nil) != (w == nil) {
			t.Fatalf("%s: %s: diff %v, want %v", where, typ, g, w)
		}
		if g == nil {
			continue
		}
		if g.from != w.from || !slices.Equal(g.removed, w.removed) || !slices.Equal(g.changed, w.changed) {
			t.Fatalf("%s: %s: diff from %s: %d changed, %v removed; want from %s: %d changed, %v removed", where, typ, g.from, len(g.changed), g.removed, w.from, len(w.changed), w.removed)
		}
	}
}

// checkRefs compares the encoder's reference counts with counting every
// reference of the snapshot again.
func checkRefs(t *testing.T, where string, e *Encoder, gs *GroupSnapshot) {
	t.Helper()
	want := map[string]map[string]int{}
	count := func(refs map[string]map[string]bool) {
		for typ, names := range refs {
			if want[typ] == nil {
				want[typ] = map[string]int{}
			}
			for n := range names {
				want[typ][n]++
			}
		}
	}
	for _, typ := range referencing {
		for _, it := range gs.Type(typ).list {
			count(it.enc.refs)
			for _, p := range it.enc.parts {
				count(p.refs)
			}
		}
	}
	for typ, names := range want {
		for n, c := range names {
			if e.refs[typ][n] != c {
				t.Fatalf("%s: %s %s referenced %d times, counted %d", where, typ, n, c, e.refs[typ][n])
			}
		}
	}
	for typ, names := range e.refs {
		if len(names) != len(want[typ]) {
			t.Fatalf("%s: %s: %d names counted, %d referenced", where, typ, len(names), len(want[typ]))
		}
	}
}

func cluster(name string, eds bool, timeout int64) *clusterv3.Cluster {
	c := &clusterv3.Cluster{Name: name, ConnectTimeout: &durationpb.Duration{Seconds: timeout}}
	if eds {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{}
	}
	return c
}

// The encoder sorts what is not in name order, refuses a name twice, and
// a snapshot it refuses leaves it as it was.
func TestEncoderOrderDuplicatesAndRefusals(t *testing.T) {
	a, b, c := cluster("a", true, 1), cluster("b", false, 1), cluster("c", true, 1)
	cla := func(n string) *endpointv3.ClusterLoadAssignment {
		return &endpointv3.ClusterLoadAssignment{ClusterName: n}
	}
	ok := &translate.Resources{Clusters: []*clusterv3.Cluster{a, b, c}, Endpoints: []*endpointv3.ClusterLoadAssignment{cla("a"), cla("c")}}
	e := NewEncoder()
	first, err := e.NewGroupSnapshot(ok)
	if err != nil {
		t.Fatal(err)
	}
	// Out of order, and one changed: the same as from scratch.
	b2 := cluster("b", false, 2)
	unsorted := &translate.Resources{Clusters: []*clusterv3.Cluster{c, b2, a}, Endpoints: ok.Endpoints}
	got, err := e.NewGroupSnapshot(unsorted)
	if err != nil {
		t.Fatal(err)
	}
	want, err := NewGroupSnapshot(unsorted)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, "unsorted", got, want, first)
	checkRefs(t, "unsorted", e, got)
	// Refused: a name twice, an endpoint set no cluster references, a
	// cluster whose endpoint set is missing.
	for _, bad := range []*translate.Resources{
		{Clusters: []*clusterv3.Cluster{a, b, proto.Clone(b).(*clusterv3.Cluster), c}, Endpoints: ok.Endpoints},
		{Clusters: []*clusterv3.Cluster{c, a, a}, Endpoints: ok.Endpoints},
		{Clusters: ok.Clusters, Endpoints: []*endpointv3.ClusterLoadAssignment{cla("a"), cla("b"), cla("c")}},
		{Clusters: ok.Clusters, Endpoints: []*endpointv3.ClusterLoadAssignment{cla("a")}},
		{Clusters: []*clusterv3.Cluster{a, b, c, cluster("d", true, 1)}, Endpoints: ok.Endpoints},
	} {
		_, gerr := e.NewGroupSnapshot(bad)
		_, werr := NewGroupSnapshot(bad)
		if gerr == nil || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("refused with %v, from scratch %v", gerr, werr)
		}
	}
	for _, msg := range []string{"defined twice", "mismatched", "not listed"} {
		found := false
		for _, bad := range []*translate.Resources{
			{Clusters: []*clusterv3.Cluster{a, b, b2, c}, Endpoints: ok.Endpoints},
			{Clusters: ok.Clusters, Endpoints: []*endpointv3.ClusterLoadAssignment{cla("a"), cla("b"), cla("c")}},
			{Clusters: []*clusterv3.Cluster{a, b, c, cluster("d", true, 1)}, Endpoints: []*endpointv3.ClusterLoadAssignment{cla("a"), cla("c"), cla("e")}},
		} {
			if _, err := e.NewGroupSnapshot(bad); err != nil && strings.Contains(err.Error(), msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("no refusal says %q", msg)
		}
	}
	again, err := e.NewGroupSnapshot(ok)
	if err != nil {
		t.Fatal(err)
	}
	want, _ = NewGroupSnapshot(ok)
	checkSnapshot(t, "after refusals", again, want, got)
	checkRefs(t, "after refusals", e, again)
	if again.Type(resourcev3.ClusterType).Version != first.Type(resourcev3.ClusterType).Version {
		t.Fatal("the same resources, another version")
	}
}

// An endpoint set's version follows its cluster's even when the endpoint
// set itself is the same message (envoyproxy/envoy#13009).
func TestEncoderEndpointsFollowTheirCluster(t *testing.T) {
	cla := []*endpointv3.ClusterLoadAssignment{{ClusterName: "a"}, {ClusterName: "b"}}
	e := NewEncoder()
	first, err := e.NewGroupSnapshot(&translate.Resources{Clusters: []*clusterv3.Cluster{cluster("a", true, 1), cluster("b", true, 1)}, Endpoints: cla})
	if err != nil {
		t.Fatal(err)
	}
	res := &translate.Resources{Clusters: []*clusterv3.Cluster{first.Type(resourcev3.ClusterType).Items["a"].Resource.(*clusterv3.Cluster), cluster("b", true, 2)}, Endpoints: cla}
	got, err := e.NewGroupSnapshot(res)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := NewGroupSnapshot(res)
	checkSnapshot(t, "cluster b changed", got, want, first)
	before, after := first.Type(resourcev3.EndpointType), got.Type(resourcev3.EndpointType)
	if before.Items["b"].Version == after.Items["b"].Version || before.Items["a"] != after.Items["a"] {
		t.Fatalf("endpoint versions: b %s -> %s; a kept: %t", before.Items["b"].Version, after.Items["b"].Version, before.Items["a"] == after.Items["a"])
	}
}
