package snapshot

import (
	"bytes"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// The shared encoding must decode to exactly the message gRPC's default
// codec would have sent.
func TestCodecSharedListsDecodeIdentically(t *testing.T) {
	gs := groupSnapshot(t, "a.example", "b.example", "c.example")
	gs.publish()
	defer gs.release()
	ts := gs.Type(resourcev3.ClusterType)
	sotw := &discovery.DiscoveryResponse{VersionInfo: ts.Version, Resources: ts.all, TypeUrl: resourcev3.ClusterType, Nonce: "7"}
	delta := &discovery.DeltaDiscoveryResponse{SystemVersionInfo: ts.Version, Resources: ts.deltaAll, TypeUrl: resourcev3.ClusterType, Nonce: "8"}
	for _, msg := range []proto.Message{sotw, delta} {
		data, err := Codec{}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != 2 {
			t.Fatalf("%T: the shared list was not used (%d buffers)", msg, len(data))
		}
		got := msg.ProtoReflect().New().Interface()
		if err := (Codec{}).Unmarshal(data, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, msg) {
			t.Fatalf("%T decodes differently:\n%v\nwant\n%v", msg, got, msg)
		}
	}
	// A subset is encoded normally.
	sub := &discovery.DiscoveryResponse{Resources: ts.all[:1], TypeUrl: resourcev3.ClusterType}
	if data, err := (Codec{}).Marshal(sub); err != nil || len(data) != 1 {
		t.Fatalf("subset: %v, %d buffers", err, len(data))
	}
}

// A list patched from an encoded one copies what they share, and is
// encoded exactly as from scratch; the one before is then let go.
func TestCodecPatchedListsEncodeIdentically(t *testing.T) {
	e := NewEncoder()
	a, b := cluster("a", false, 1), cluster("b", false, 1)
	first, err := e.NewGroupSnapshot(&translate.Resources{Clusters: []*clusterv3.Cluster{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range []*TypeSnapshot{first.Type(resourcev3.ClusterType)} {
		if _, err := ts.allList.bytes(); err != nil {
			t.Fatal(err)
		}
		if _, err := ts.deltaList.bytes(); err != nil {
			t.Fatal(err)
		}
	}
	next, err := e.NewGroupSnapshot(&translate.Resources{Clusters: []*clusterv3.Cluster{a, cluster("b", false, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	ts := next.Type(resourcev3.ClusterType)
	if ts.allList.base == nil || ts.deltaList.base == nil {
		t.Fatal("the patched lists were not based on the encoded ones")
	}
	got, err := ts.allList.bytes()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := (&sharedList[*anypb.Any]{items: ts.all}).bytes()
	if !bytes.Equal(got, want) {
		t.Fatal("the patched SotW list is encoded differently")
	}
	got, err = ts.deltaList.bytes()
	if err != nil {
		t.Fatal(err)
	}
	want, _ = (&sharedList[*discovery.Resource]{items: ts.deltaAll}).bytes()
	if !bytes.Equal(got, want) {
		t.Fatal("the patched delta list is encoded differently")
	}
	if ts.allList.base != nil || ts.deltaList.base != nil {
		t.Fatal("an encoded list still holds the one it was patched from")
	}
	// Not encoded: the next list is encoded from scratch, not chained.
	third, _ := e.NewGroupSnapshot(&translate.Resources{Clusters: []*clusterv3.Cluster{a, cluster("b", false, 3)}})
	fourth, _ := e.NewGroupSnapshot(&translate.Resources{Clusters: []*clusterv3.Cluster{a, cluster("b", false, 4)}})
	if third.Type(resourcev3.ClusterType).allList.base == nil || fourth.Type(resourcev3.ClusterType).allList.base != nil {
		t.Fatal("lists based on lists not encoded")
	}
}

// What changed since the replaced snapshot, the response of every delta
// stream that held it, is encoded once and shared while the snapshot is
// current; a list that is not that one (another array holding the same
// first resource and as many, a part of it, the list of a snapshot since
// replaced, another group's) is encoded on its own, so that no stream is
// sent another list's bytes.
func TestCodecSharesDiffsOfTheCurrentSnapshotOnly(t *testing.T) {
	c := NewCache(nil, nil)
	e := NewEncoder()
	c.SetSnapshot("g", groupSnapshotWith(t, nil, e, "a.example", "b.example", "c.example"))
	next := groupSnapshotWith(t, nil, e, "a.example", "b2.example", "c2.example")
	c.SetSnapshot("g", next)
	d := next.Type(resourcev3.ClusterType).diff
	if d == nil || len(d.changed) != 2 {
		t.Fatalf("diff %+v, want two changed clusters", d)
	}
	other := groupSnapshotWith(t, nil, NewEncoder(), "x.example", "y.example", "z.example")
	ots := other.Type(resourcev3.ClusterType)
	mixed := []*discovery.Resource{d.changed[0], ots.deltaAll[0]} // same first item, as many
	// encode marshals a delta response of list with the codec: it must
	// decode to exactly that message; shared tells whether the codec
	// used a registered encoding.
	encode := func(list []*discovery.Resource) (shared bool) {
		t.Helper()
		msg := &discovery.DeltaDiscoveryResponse{SystemVersionInfo: "v", Resources: list, TypeUrl: resourcev3.ClusterType, Nonce: "3"}
		data, err := Codec{}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		got := &discovery.DeltaDiscoveryResponse{}
		if err := (Codec{}).Unmarshal(data, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, msg) {
			t.Fatalf("the codec sent %v, want %v", names(got.Resources), names(msg.Resources))
		}
		return len(data) == 2
	}
	if !encode(d.changed) {
		t.Error("the current snapshot's difference was not shared")
	}
	for what, list := range map[string][]*discovery.Resource{
		"another list with the same first resource": mixed,
		"a part of the difference":                  d.changed[:1],
		"a copy of the difference":                  slices.Clone(d.changed),
	} {
		if encode(list) {
			t.Errorf("%s was sent a shared encoding", what)
		}
	}
	// Replaced: the old difference is no longer shared, the new one is.
	c.SetSnapshot("g", groupSnapshotWith(t, nil, e, "a.example", "b3.example", "c2.example"))
	if encode(d.changed) {
		t.Error("a replaced snapshot's difference is still shared")
	}
	if !encode(c.Snapshot("g").Type(resourcev3.ClusterType).diff.changed) {
		t.Error("the new difference is not shared")
	}
	// Pruned: nothing of the group's is shared.
	last := c.Snapshot("g").Type(resourcev3.ClusterType).diff.changed
	c.Prune(nil)
	if encode(last) {
		t.Error("a pruned group's difference is still shared")
	}
}

// A registered list whose last item is written in place (published lists
// never are) is encoded afresh, never served from what it held.
func TestCodecListWrittenInPlaceIsEncodedAfresh(t *testing.T) {
	gs := groupSnapshot(t, "a.example", "b.example")
	gs.publish()
	defer gs.release()
	ts := gs.Type(resourcev3.ClusterType)
	msg := &discovery.DiscoveryResponse{VersionInfo: ts.Version, Resources: ts.all, TypeUrl: resourcev3.ClusterType}
	if data, err := (Codec{}).Marshal(msg); err != nil || len(data) != 2 {
		t.Fatalf("the shared list was not used: %v, %d buffers", err, len(data))
	}
	last := len(ts.all) - 1
	kept := ts.all[last]
	defer func() { ts.all[last] = kept }()
	other, err := anypb.New(&clusterv3.Cluster{Name: "written-in-place"})
	if err != nil {
		t.Fatal(err)
	}
	ts.all[last] = other
	data, err := Codec{}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	got := &discovery.DiscoveryResponse{}
	if err := (Codec{}).Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, msg) {
		t.Fatalf("served the encoding of what the list held:\n%v", got.Resources[last])
	}
}
