package snapshot

import (
	"bytes"
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
