package translate_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// TestCacheCheck proves that a Cache's Check reports what Check does,
// over random sequences of broken and repaired resources of each golden
// case: a cluster, endpoint set or route configuration taken away (its
// references then miss), a resource listed twice, a filter chain or
// virtual host replaced by an invalid one or one referencing a cluster
// that does not exist, a cluster replaced by an invalid one or one
// referencing a secret that does not exist, and the original set again, with the resources and
// parts the last check saw kept by identity where they are unchanged.
func TestCacheCheck(t *testing.T) {
	cases, _ := filepath.Glob("testdata/*/in.yaml")
	for ci, in := range cases {
		orig, _ := translateFile(t, in, caseOptions(t, filepath.Dir(in)))
		if orig == nil {
			continue
		}
		t.Run(filepath.Base(filepath.Dir(in)), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ci), 7))
			cache := translate.NewCache()
			r := copyResources(orig)
			for step := 0; step < 40; step++ {
				mutate(rng, r, orig)
				want, got := fmt.Sprint(translate.Check(r)), fmt.Sprint(cache.Check(r))
				if want != got {
					t.Fatalf("step %d: cached check:\n%s\ncheck:\n%s", step, got, want)
				}
			}
		})
	}
}

func copyResources(r *translate.Resources) *translate.Resources {
	return &translate.Resources{Listeners: slices.Clone(r.Listeners), Routes: slices.Clone(r.Routes), Clusters: slices.Clone(r.Clusters),
		Endpoints: slices.Clone(r.Endpoints), Secrets: slices.Clone(r.Secrets)}
}

// mutate changes r's lists, each into a new one: the last check's lists
// and resources are never modified (as translations never do).
func mutate(rng *rand.Rand, r, orig *translate.Resources) {
	drop := func(n int) int { return rng.IntN(n) }
	switch k := rng.IntN(10); {
	case k == 0:
		*r = *copyResources(orig)
	case k == 1 && len(r.Clusters) > 0:
		i := drop(len(r.Clusters))
		r.Clusters = slices.Delete(slices.Clone(r.Clusters), i, i+1)
	case k == 2 && len(r.Endpoints) > 0:
		i := drop(len(r.Endpoints))
		r.Endpoints = slices.Delete(slices.Clone(r.Endpoints), i, i+1)
	case k == 3 && len(r.Routes) > 0:
		i := drop(len(r.Routes))
		r.Routes = slices.Delete(slices.Clone(r.Routes), i, i+1)
	case k == 4 && len(r.Listeners) > 0:
		r.Listeners = append(slices.Clone(r.Listeners), r.Listeners[drop(len(r.Listeners))])
	case k == 5 && len(r.Listeners) > 0:
		// A chain replaced: invalid, or sending to no cluster.
		i := drop(len(r.Listeners))
		l := proto.Clone(r.Listeners[i]).(*listenerv3.Listener)
		l.FilterChains = slices.Clone(r.Listeners[i].FilterChains)
		if len(l.FilterChains) > 0 {
			j := drop(len(l.FilterChains))
			fc := proto.Clone(l.FilterChains[j]).(*listenerv3.FilterChain)
			if rng.IntN(2) == 0 {
				fc.Filters = append(fc.Filters, &listenerv3.Filter{}) // no name: invalid
			} else {
				fc.Filters = []*listenerv3.Filter{translateTCPProxyTo("no-such-cluster")}
			}
			l.FilterChains[j] = fc
		}
		r.Listeners = slices.Clone(r.Listeners)
		r.Listeners[i] = l
	case k == 6 && len(r.Routes) > 0:
		// A virtual host replaced: invalid, or sending to no cluster.
		i := drop(len(r.Routes))
		rc := proto.Clone(r.Routes[i]).(*routev3.RouteConfiguration)
		rc.VirtualHosts = slices.Clone(r.Routes[i].VirtualHosts)
		if len(rc.VirtualHosts) > 0 {
			j := drop(len(rc.VirtualHosts))
			vh := proto.Clone(rc.VirtualHosts[j]).(*routev3.VirtualHost)
			if rng.IntN(2) == 0 {
				vh.Domains = nil // invalid
			} else {
				vh.Routes = []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "no-such-cluster"}}}}}
			}
			rc.VirtualHosts[j] = vh
		}
		r.Routes = slices.Clone(r.Routes)
		r.Routes[i] = rc
	case k == 7 && len(r.Secrets) > 0:
		r.Secrets = r.Secrets[1:]
	case k == 8 && len(r.Clusters) > 0:
		// A cluster replaced under its name: invalid, or naming a
		// secret that does not exist (no name comes or goes).
		i := drop(len(r.Clusters))
		c := proto.Clone(r.Clusters[i]).(*clusterv3.Cluster)
		if rng.IntN(2) == 0 {
			c.ConnectTimeout = &durationpb.Duration{Seconds: -1} // invalid
		} else {
			c.TransportSocket = upstreamTLSWithSecret("no-such-secret")
		}
		r.Clusters = slices.Clone(r.Clusters)
		r.Clusters[i] = c
	default:
		// The last check's resources again, in a new order.
		r.Clusters = slices.Clone(r.Clusters)
		rng.Shuffle(len(r.Clusters), func(i, j int) { r.Clusters[i], r.Clusters[j] = r.Clusters[j], r.Clusters[i] })
	}
}

func translateTCPProxyTo(cluster string) *listenerv3.Filter {
	a, err := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: "test", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}})
	if err != nil {
		panic(err)
	}
	return &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}
}

func upstreamTLSWithSecret(name string) *corev3.TransportSocket {
	a, err := anypb.New(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: name}},
	}})
	if err != nil {
		panic(err)
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}
