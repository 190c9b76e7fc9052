// Package snapshot turns translated resources into go-control-plane
// snapshots and publishes them per gateway group.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// Types are the xDS types a gateway is served, in the order ADS sends them
// (clusters before endpoints, listeners before routes, secrets first so
// that nothing warms waiting for them).
var Types = []string{
	resourcev3.SecretType,
	resourcev3.ClusterType,
	resourcev3.EndpointType,
	resourcev3.ListenerType,
	resourcev3.RouteType,
}

// New builds a snapshot whose version, per type, is a hash of that type's
// content: identical input gives identical versions on every replica and
// after every restart, and a change to one type moves only that type's
// version, so Envoy is not re-sent what it already has.
func New(res *translate.Resources) (*cachev3.Snapshot, error) {
	byType := ByType(res)
	snap := &cachev3.Snapshot{}
	for _, typ := range Types {
		items := byType[typ]
		v, err := Version(items)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		snap.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(v, items)
	}
	if err := snap.Consistent(); err != nil {
		return nil, err
	}
	return snap, nil
}

// ByType indexes resources by xDS type URL.
func ByType(res *translate.Resources) map[string][]types.Resource {
	out := map[string][]types.Resource{}
	for _, r := range res.Listeners {
		out[resourcev3.ListenerType] = append(out[resourcev3.ListenerType], r)
	}
	for _, r := range res.Routes {
		out[resourcev3.RouteType] = append(out[resourcev3.RouteType], r)
	}
	for _, r := range res.Clusters {
		out[resourcev3.ClusterType] = append(out[resourcev3.ClusterType], r)
	}
	for _, r := range res.Endpoints {
		out[resourcev3.EndpointType] = append(out[resourcev3.EndpointType], r)
	}
	for _, r := range res.Secrets {
		out[resourcev3.SecretType] = append(out[resourcev3.SecretType], r)
	}
	return out
}

// Version hashes resources, in their (sorted) order, with deterministic
// marshalling. An empty set has a fixed version too, so a group without
// intent is served a valid, empty configuration instead of nothing.
func Version(items []types.Resource) (string, error) {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	for _, r := range items {
		var err error
		buf, err = opts.MarshalAppend(buf[:0], r)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%d:", len(buf))
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
