package snapshot

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
)

// A stream of names (as Envoy asks for endpoints and route
// configurations) is recorded by the version it holds, like a wildcard
// one: over random sequences of snapshots and subscription changes, with
// go-control-plane's subscription bookkeeping, it always ends up holding
// the current version of every name it subscribes that exists, and no name
// it subscribes that is gone, and is sent nothing else; also when it turns
// wildcard or back, and when the history no longer keeps what it holds.
func TestDeltaNamedSubscriptionHoldsWhatItSubscribes(t *testing.T) {
	hosts := []string{"a.example", "b.example", "c.example", "d.example", "e.example"}
	// Destination names follow the position of a host, so names come and
	// go, and one name changes content when another host takes its place.
	var pool []string
	for i := range len(hosts) + 1 {
		pool = append(pool, fmt.Sprintf("ns/cm/d%c/443", 'a'+i))
	}
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 16))
		c := NewCache(nil, nil)
		if seed%3 == 0 {
			// A history of one step: a stream of names a change did
			// not concern soon holds a version it no longer keeps.
			c.limitSteps = 1
		}
		wildcard := false
		snapshot := func() {
			var hs []string
			for _, h := range hosts {
				if rng.IntN(3) > 0 {
					hs = append(hs, h)
				}
			}
			if len(hs) == 0 {
				hs = hosts[:1]
			}
			rng.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
			c.SetSnapshot("g", groupSnapshot(t, hs...))
		}
		snapshot()
		sub := stream.NewDeltaSubscription(pool[:2], nil, nil, false)
		held := map[string]string{}
		ch := make(chan cachev3.DeltaResponse, 1)
		var cancel func()
		watch := func(req *discovery.DeltaDiscoveryRequest) {
			if cancel != nil {
				cancel()
			}
			var err error
			if cancel, err = c.CreateDeltaWatch(req, &sub, ch); err != nil {
				t.Fatal(err)
			}
		}
		// drain applies every response as Envoy does and ACKs it.
		drain := func() {
			for {
				select {
				case r := <-ch:
					out, err := r.GetDeltaDiscoveryResponse()
					if err != nil {
						t.Fatalf("seed %d: %v", seed, err)
					}
					for _, res := range out.Resources {
						if _, ok := sub.SubscribedResources()[res.Name]; !ok && !sub.IsWildcard() {
							t.Fatalf("seed %d: sent %s, which the stream does not subscribe", seed, res.Name)
						}
						held[res.Name] = res.Version
					}
					for _, n := range out.RemovedResources {
						delete(held, n)
					}
					sub.SetReturnedResources(r.GetReturnedResources())
					watch(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: "n"})
				default:
					return
				}
			}
		}
		watch(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: pool[:2]})
		drain()
		for step := range 60 {
			switch rng.IntN(3) {
			case 0:
				snapshot()
			default:
				var subscribe, unsubscribe []string
				for _, n := range pool {
					switch rng.IntN(4) {
					case 0:
						subscribe = append(subscribe, n)
					case 1:
						unsubscribe = append(unsubscribe, n)
					}
				}
				// Now and then the stream turns wildcard, or back.
				switch rng.IntN(8) {
				case 0:
					subscribe, wildcard = append(subscribe, "*"), true
				case 1:
					unsubscribe, wildcard = append(unsubscribe, "*"), false
				}
				sub.UpdateResourceSubscriptions(subscribe, unsubscribe)
				// Envoy forgets what it unsubscribes, unless the wildcard
				// still covers it.
				for _, n := range unsubscribe {
					if !sub.IsWildcard() {
						delete(held, n)
					}
				}
				if !wildcard {
					// Out of the wildcard, it keeps what it subscribes.
					for n := range held {
						if _, ok := sub.SubscribedResources()[n]; !ok {
							delete(held, n)
						}
					}
				}
				watch(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType,
					ResourceNamesSubscribe: subscribe, ResourceNamesUnsubscribe: unsubscribe})
			}
			drain()
			ts := c.Snapshot("g").Type(resourcev3.ClusterType)
			want := maps.Clone(sub.SubscribedResources())
			if wildcard {
				for _, n := range ts.Names {
					want[n] = struct{}{}
				}
			}
			for n := range want {
				it, exists := ts.Items[n]
				v, ok := held[n]
				switch {
				case exists && (!ok || v != it.Version):
					t.Fatalf("seed %d step %d: subscribed %s is at %s, the proxy holds %q (held %v)", seed, step, n, it.Version, v, ok)
				case !exists && ok:
					t.Fatalf("seed %d step %d: subscribed %s is gone, the proxy still holds it", seed, step, n)
				}
			}
		}
		cancel()
	}
}
