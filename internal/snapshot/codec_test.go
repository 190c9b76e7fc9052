package snapshot

import (
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
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
