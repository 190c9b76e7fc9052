package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// Versions are what a proxy trusts to tell contents apart, and tenants
// choose much of the content, so no search within reach may find two
// contents under one version:
//   - an item's version keeps 128 bits of its content hash: with 64, a
//     tenant finds two settings of its own cluster with the same version
//     in about 2^32 hashes (a birthday search: an hour on one machine),
//     and a proxy keeps the first after the edit to the second;
//   - a type's version hashes its items' keys (name and version) in name
//     order. A sum of keys would be a function of the sum alone, and a
//     tenant controlling a few thousand items finds two sets of its own
//     items with the same sum by Wagner's generalized birthday search in
//     about 2^32 work, whatever the other tenants' items are.
//
// Both are pinned here against a plain statement of the construction
// (a collision search itself is out of a test's reach).
func TestVersionsAreHashesOfContent(t *testing.T) {
	var clusters []*clusterv3.Cluster
	var endpoints []*endpointv3.ClusterLoadAssignment
	for i := range 50 {
		clusters = append(clusters, cluster(fmt.Sprintf("c%02d", i), i%2 == 0, int64(1+i%3)))
		if i%2 == 0 {
			endpoints = append(endpoints, &endpointv3.ClusterLoadAssignment{ClusterName: fmt.Sprintf("c%02d", i)})
		}
	}
	e := NewEncoder()
	for step := range 4 {
		if step > 0 {
			// An edit: one cluster changed, one removed.
			clusters[step] = cluster(clusters[step].Name, step%2 == 0, 9)
			clusters = append(clusters[:10+step], clusters[11+step:]...)
		}
		gs, err := e.NewGroupSnapshot(&translate.Resources{Clusters: clusters, Endpoints: endpoints})
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range gs.TypeURLs() {
			ts := gs.Type(typ)
			h := sha256.New()
			for _, it := range ts.list {
				if len(it.Version) != 32 {
					t.Fatalf("%s %s: version %q keeps %d bits, want 128", typ, it.Name, it.Version, 4*len(it.Version))
				}
				key := sha256.Sum256([]byte(it.Name + "\x00" + it.Version))
				h.Write(key[:])
			}
			h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(ts.list))))
			if want := hex.EncodeToString(h.Sum(nil)[:16]); ts.Version != want {
				t.Fatalf("step %d: %s: version %s, want %s (the hash of its items' keys in name order)", step, typ, ts.Version, want)
			}
		}
	}
}

// BenchmarkTypeVersion is what a changed type's version costs at 10,000
// resources.
func BenchmarkTypeVersion(b *testing.B) {
	items := make([]*Item, 10000)
	for i := range items {
		items[i] = &Item{key: itemKey(fmt.Sprint("ns/cm/d", i, "/443"), "0123456789abcdef0123456789abcdef")}
	}
	for b.Loop() {
		typeVersion(items)
	}
}
