package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
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
		// Addresses (an EDS cluster and its endpoints) or host names
		// (DNS: the same cluster, referencing nothing).
		eps := []string{}
		for i := range 1 + r.IntN(3) {
			if r.IntN(3) == 0 {
				eps = append(eps, fmt.Sprintf("{address: ep%d.example.net}", 1+i+r.IntN(3)))
			} else {
				eps = append(eps, fmt.Sprintf("{address: 192.0.2.%d}", 1+i+r.IntN(3)))
			}
		}
		return fmt.Sprintf("  - {name: %s, host: %s.example.com, ports: [{number: %d, protocol: TCP}], endpoints: [%s], connectionPool: {connectTimeout: %ds}}\n",
			name, name, 10000+r.IntN(2), strings.Join(eps, ", "), 1+r.IntN(3))
	case 1:
		return fmt.Sprintf("  - {name: %s, host: %s.example.com, ports: [{number: 80, protocol: HTTP}], timeout: %ds}\n", name, name, 1+r.IntN(3))
	case 2:
		return fmt.Sprintf("  - {name: %s, host: %s.example.com, ports: [{number: 443, protocol: TLS}], allow: [{cidr: 10.%d.0.0/16}]}\n", name, name, r.IntN(3))
	default:
		return fmt.Sprintf("  - {name: %s, host: %s.example.com, ports: [{number: 443, protocol: TLS}]}\n", name, name)
	}
}

// TestEncoderEquivalence builds random edit sequences with one encoder
// and one translation cache per gateway group, as the builder does, and
// checks each snapshot against one built from scratch: versions, names,
// items, bytes (what proto.Marshal writes), both full lists, what changed
// since the last snapshot, and the reference counts (against
// go-control-plane's reading of every resource). The edits add, remove
// and change destinations, rename them and move them between ConfigMaps
// (a name in two is a conflict the resolver settles), move ConfigMaps
// between gateway groups and switch a group between enforce and audit;
// small value ranges make content return to earlier states. A type's
// version must also tell every content it had apart, and come back with
// it. EGRESS_XDS_EQUIVALENCE_SEEDS=N runs N seeds instead of 8.
func TestEncoderEquivalence(t *testing.T) {
	equivalenceSeeds := 8
	if n, err := strconv.Atoi(os.Getenv("EGRESS_XDS_EQUIVALENCE_SEEDS")); err == nil && n > 0 {
		equivalenceSeeds = n // a longer search, by hand
	}
	for seed := range uint64(equivalenceSeeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			const maps, slots, renames = 3, 5, 2
			dests := make([][]string, maps) // per ConfigMap, per slot ("" none)
			for i := range dests {
				dests[i] = make([]string, slots)
			}
			gateways := make([]string, maps) // per ConfigMap: "", "g" or "h"
			mode := "enforce"
			opts := translate.Options{ForwardProxyPort: 3128, SettingsNamespace: "egress-xds"}
			st := compile.NewStore()
			type group struct {
				tc   *translate.Cache
				enc  *Encoder
				last *GroupSnapshot
				// seen maps each type's content (names, versions and
				// bytes of every item) to its version, and back.
				seen, byVersion map[string]string
			}
			groups := map[string]*group{}
			for _, g := range []string{"g", "h"} {
				groups[g] = &group{tc: translate.NewCache(), enc: NewEncoder(), seen: map[string]string{}, byVersion: map[string]string{}}
			}
			defer func() {
				for _, g := range groups {
					if g.last != nil {
						g.last.release()
					}
				}
			}()
			for step := range 60 {
				for range 1 + r.IntN(3) {
					m, s := r.IntN(maps), r.IntN(slots)
					switch k := r.IntN(12); {
					case k < 3:
						dests[m][s] = ""
					case k == 3:
						gateways[m] = []string{"", "g", "h"}[r.IntN(3)]
					case k == 4:
						mode = map[string]string{"enforce": "audit", "audit": "enforce"}[mode]
					default:
						// Slots keep a ConfigMap's names apart; the
						// same name in another ConfigMap is a move, or
						// a conflict over its host.
						dests[m][s] = randomDestination(r, fmt.Sprintf("d%d-%d", s, r.IntN(renames)))
					}
				}
				var cms []compile.ConfigMap
				for m, ds := range dests {
					doc := "destinations:\n" + strings.Join(ds, "")
					if doc == "destinations:\n" {
						doc = "destinations: []\n"
					}
					if gateways[m] != "" {
						doc = "gateways: [" + gateways[m] + "]\n" + doc
					}
					cms = append(cms, compile.ConfigMap{ConfigMap: &corev1.ConfigMap{
						ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("cm", m), Labels: map[string]string{intent.LabelKey: "true"}},
						Data:       map[string]string{"egress.yaml": doc},
					}})
				}
				cms = append(cms, settingsCM("egress-xds", mode))
				cms[len(cms)-1].ConfigMap.Data = map[string]string{"settings.yaml": "groups: [{name: g, mode: " + mode + "}]"}
				intents, _ := st.Update(cms, opts.ResolveOptions())
				for _, name := range []string{"g", "h"} {
					g := groups[name]
					where := fmt.Sprintf("step %d, group %s", step, name)
					cached, _, err := compile.GroupCached(g.tc, intents, name, nil, opts)
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					fresh, _, err := compile.Group(intents, name, nil, opts)
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					before := listsOf(g.last)
					got, err := g.enc.NewGroupSnapshot(cached)
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					checkListsKept(t, where, g.last, before, got)
					want, err := NewGroupSnapshot(fresh)
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					checkSnapshot(t, where, got, want, g.last)
					checkRefs(t, where, g.enc, got)
					checkVersionsTellContents(t, where, got, g.seen, g.byVersion)
					// Published as SetSnapshot does: the codec then serves
					// lists patched from encoded ones.
					if g.last != nil {
						g.last.release()
					}
					got.publish()
					checkCodec(t, where, got)
					g.last = got
				}
			}
		})
	}
}

// checkCodec checks that the codec sends each full list of a published
// snapshot as gRPC's proto codec would, byte for byte but for field order:
// what the message decodes to, and the bytes of every resource.
func checkCodec(t *testing.T, where string, gs *GroupSnapshot) {
	t.Helper()
	for _, typ := range gs.TypeURLs() {
		ts := gs.Type(typ)
		if len(ts.all) == 0 {
			continue
		}
		for _, msg := range []proto.Message{
			&discovery.DiscoveryResponse{VersionInfo: ts.Version, Resources: ts.all, TypeUrl: typ, Nonce: "1"},
			&discovery.DeltaDiscoveryResponse{SystemVersionInfo: ts.Version, Resources: ts.deltaAll, TypeUrl: typ, Nonce: "2"},
		} {
			data, err := Codec{}.Marshal(msg)
			if err != nil {
				t.Fatalf("%s: %s: %v", where, typ, err)
			}
			if len(data) != 2 {
				t.Fatalf("%s: %s: %T: the shared list was not used", where, typ, msg)
			}
			got := msg.ProtoReflect().New().Interface()
			if err := (Codec{}).Unmarshal(data, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, msg) {
				t.Fatalf("%s: %s: %T: the codec sent other content than the list", where, typ, msg)
			}
		}
	}
}

// typeLists are copies of a snapshot's full lists, by type.
type typeLists map[string][2][]any

func listsOf(gs *GroupSnapshot) typeLists {
	if gs == nil {
		return nil
	}
	out := typeLists{}
	for typ, ts := range gs.types {
		var l [2][]any
		for _, a := range ts.all {
			l[0] = append(l[0], a)
		}
		for _, d := range ts.deltaAll {
			l[1] = append(l[1], d)
		}
		out[typ] = l
	}
	return out
}

// checkListsKept checks that building next left last's full lists as
// they were (streams and the codec serve them under last's versions),
// and that next shares a list's backing array with last only as the same
// list (the codec keys an encoding by that array and length).
func checkListsKept(t *testing.T, where string, last *GroupSnapshot, before typeLists, next *GroupSnapshot) {
	t.Helper()
	if last == nil {
		return
	}
	if now := listsOf(last); fmt.Sprint(now) != fmt.Sprint(before) {
		t.Fatalf("%s: building the next snapshot changed the last one's lists", where)
	}
	for typ, ts := range next.types {
		old := last.Type(typ)
		if len(ts.all) > 0 && len(old.all) > 0 && &ts.all[0] == &old.all[0] && len(ts.all) != len(old.all) {
			t.Fatalf("%s: %s: the SotW list is in the last one's array, with %d items instead of %d", where, typ, len(ts.all), len(old.all))
		}
		if len(ts.deltaAll) > 0 && len(old.deltaAll) > 0 && &ts.deltaAll[0] == &old.deltaAll[0] && len(ts.deltaAll) != len(old.deltaAll) {
			t.Fatalf("%s: %s: the delta list is in the last one's array, with %d items instead of %d", where, typ, len(ts.deltaAll), len(old.deltaAll))
		}
	}
}

// checkVersionsTellContents checks that each type's version names one
// content (its items' names, versions and bytes) across the snapshots
// seen, and that a content seen before has the version it had.
func checkVersionsTellContents(t *testing.T, where string, gs *GroupSnapshot, seen, byVersion map[string]string) {
	t.Helper()
	for _, typ := range gs.TypeURLs() {
		ts := gs.Type(typ)
		h := sha256.New()
		for _, it := range ts.list {
			fmt.Fprintf(h, "%q %q %d:", it.Name, it.Version, len(it.Bytes()))
			h.Write(it.Bytes())
		}
		content := typ + " " + hex.EncodeToString(h.Sum(nil))
		if v, ok := seen[content]; ok && v != ts.Version {
			t.Fatalf("%s: %s: the same content as before under version %s, was %s", where, typ, ts.Version, v)
		}
		if c, ok := byVersion[typ+" "+ts.Version]; ok && c != content {
			t.Fatalf("%s: %s: version %s names two contents", where, typ, ts.Version)
		}
		seen[content], byVersion[typ+" "+ts.Version] = ts.Version, content
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
			// The bytes are the resource's, as proto.Marshal writes them:
			// assembled parts, and a resource kept whole, included.
			if b, err := marshal.Marshal(gi.Resource); err != nil || !bytes.Equal(gi.Bytes(), b) {
				t.Fatalf("%s: %s %s: served bytes are not the resource's (%v)", where, typ, name, err)
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
	// The names referenced are those go-control-plane reads in the whole
	// resources, and each is served.
	all := map[string]types.ResourceWithTTL{}
	for _, typ := range referencing {
		for _, it := range gs.Type(typ).list {
			all[typ+"/"+it.Name] = types.ResourceWithTTL{Resource: it.Resource}
		}
	}
	read := cachev3.GetResourceReferences(all)
	for _, typ := range referenced {
		if len(read[typ]) != len(e.refs[typ]) || len(read[typ]) != len(gs.Type(typ).Names) {
			t.Fatalf("%s: %s: go-control-plane reads %d references, %d counted, %d served", where, typ, len(read[typ]), len(e.refs[typ]), len(gs.Type(typ).Names))
		}
		for n := range read[typ] {
			if e.refs[typ][n] == 0 || gs.Type(typ).Items[n] == nil {
				t.Fatalf("%s: %s %s: referenced, counted %d", where, typ, n, e.refs[typ][n])
			}
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

// A listener's header (what is not a filter chain: the default chain
// here) references route configurations as its chains do: a new
// reference there, with every chain kept, moves the counts.
func TestEncoderHeaderReferences(t *testing.T) {
	hcm := func(route string) *listenerv3.FilterChain {
		cfg, err := anypb.New(&hcmv3.HttpConnectionManager{StatPrefix: "s", RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: route}}})
		if err != nil {
			t.Fatal(err)
		}
		return &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg}}}}
	}
	chains := []*listenerv3.FilterChain{hcm("a"), {Name: "tcp"}}
	e := NewEncoder()
	var last *GroupSnapshot
	for i, def := range []string{"b", "c", "c", "b"} {
		res := &translate.Resources{
			Listeners: []*listenerv3.Listener{{Name: "l", FilterChains: chains, DefaultFilterChain: hcm(def)}},
			Routes:    []*routev3.RouteConfiguration{{Name: "a"}, {Name: def}},
		}
		got, err := e.NewGroupSnapshot(res)
		if err != nil {
			t.Fatalf("default chain %s: %v", def, err)
		}
		want, err := NewGroupSnapshot(res)
		if err != nil {
			t.Fatal(err)
		}
		checkSnapshot(t, fmt.Sprint("step ", i), got, want, last)
		checkRefs(t, fmt.Sprint("step ", i), e, got)
		last = got
	}
}

// matchParts, past long runs of replaced parts too (its index): every part
// encoded as proto.Marshal writes it, each reused one the same message,
// and what it reports added and gone is the difference of the two lists.
func TestMatchPartsLongRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	pool := make([]proto.Message, 40)
	for i := range pool {
		pool[i] = &listenerv3.FilterChain{Name: fmt.Sprint("fc", i)}
	}
	var last []*encodedPart
	for step := range 30 {
		var parts []proto.Message
		for range r.IntN(800) {
			if r.IntN(3) == 0 {
				parts = append(parts, &listenerv3.FilterChain{Name: fmt.Sprint("new", r.IntN(5))})
			} else {
				parts = append(parts, pool[r.IntN(len(pool))])
			}
		}
		out, change, err := matchParts(last, parts)
		if err != nil {
			t.Fatal(err)
		}
		count := map[*encodedPart]int{}
		for _, p := range last {
			count[p]++
		}
		for _, p := range change.gone {
			count[p]--
		}
		for _, p := range change.added {
			count[p]++
		}
		for i, p := range out {
			b, _ := marshal.Marshal(parts[i])
			if p.msg != parts[i] || !bytes.Equal(p.enc, b) || p.sum != sha256.Sum256(b) {
				t.Fatalf("step %d: part %d is not its message's", step, i)
			}
			count[p]--
		}
		for p, c := range count {
			if c != 0 {
				t.Fatalf("step %d: %s counted %d times too many as added or too few as gone", step, p.msg, c)
			}
		}
		last = out
	}
}
