// Package snapshot turns translated resources into go-control-plane
// snapshots and publishes them per gateway group.
package snapshot

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/egress-xds/egress-xds/internal/compile"
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

// RateLimitTypes are what the rate limit service is served
// (translate.RoleRateLimit): its configuration alone.
var RateLimitTypes = []string{resourcev3.RateLimitConfigType}

// TypesFor lists the types of a snapshot key's proxies, in ADS order.
func TypesFor(key string) []string {
	if role, _ := compile.SplitKey(key); role == translate.RoleRateLimit {
		return RateLimitTypes
	}
	return Types
}

// typesOf lists the types of a translation's resources.
func typesOf(res *translate.Resources) []string {
	if len(res.RateLimitConfigs) > 0 {
		return RateLimitTypes
	}
	return Types
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
	for _, r := range res.RateLimitConfigs {
		out[resourcev3.RateLimitConfigType] = append(out[resourcev3.RateLimitConfigType], r)
	}
	return out
}
