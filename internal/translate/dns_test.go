package translate_test

import (
	"net/netip"
	"slices"
	"testing"

	dnsclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	dnscachev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/dynamic_forward_proxy/v3"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// With --dns-resolver, every DNS cluster and every user of the dynamic
// forward proxy's DNS cache (Envoy refuses a cache name configured two
// ways) name the same c-ares resolvers, in order; sidecars keep their
// system resolver, which knows the gateways' cluster-internal name.
func TestDNSResolvers(t *testing.T) {
	opts := caseOptions(t, "testdata/dns-resolver")
	want := []string{"10.0.0.10:53", "[fd00::53]:5353"}
	res, _ := translateFile(t, "testdata/dns-resolver/in.yaml", opts)
	clusters, caches := dnsUsers(t, res)
	if len(clusters) != 2 || len(caches) != 5 {
		t.Fatalf("%d DNS clusters and %d DNS cache users, want the strict and logical clusters, and the HTTP filter, SNI filter and 3 clusters of the forward proxy", len(clusters), len(caches))
	}
	for _, c := range clusters {
		if got := resolvers(t, c.GetTypedDnsResolverConfig()); !slices.Equal(got, want) {
			t.Errorf("DNS cluster resolvers %v, want %v", got, want)
		}
	}
	for _, c := range caches {
		if !proto.Equal(c, caches[0]) {
			t.Errorf("DNS cache configured two ways:\n%v\n%v", caches[0], c)
		}
	}
	if got := resolvers(t, caches[0].GetTypedDnsResolverConfig()); !slices.Equal(got, want) {
		t.Errorf("DNS cache resolvers %v, want %v", got, want)
	}

	// No option: Envoy's default resolver everywhere.
	opts.DNSResolvers = nil
	res, _ = translateFile(t, "testdata/dns-resolver/in.yaml", opts)
	clusters, caches = dnsUsers(t, res)
	for _, c := range clusters {
		if c.GetTypedDnsResolverConfig() != nil {
			t.Errorf("without resolvers, a DNS cluster has %v", c.GetTypedDnsResolverConfig())
		}
	}
	for _, c := range caches {
		if c.GetTypedDnsResolverConfig() != nil {
			t.Errorf("without resolvers, the DNS cache has %v", c.GetTypedDnsResolverConfig())
		}
	}

	sidecar := caseOptions(t, "testdata/sidecar")
	sidecar.DNSResolvers = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.10:53")}
	res, _ = translateFile(t, "testdata/sidecar/in.yaml", sidecar)
	clusters, _ = dnsUsers(t, res)
	if len(clusters) == 0 {
		t.Fatal("the sidecar case has no DNS cluster (its gateways' address)")
	}
	for _, c := range clusters {
		if c.GetTypedDnsResolverConfig() != nil {
			t.Errorf("a sidecar resolves its gateways with %v, want its system resolver", c.GetTypedDnsResolverConfig())
		}
	}
}

// dnsUsers are the DNS cluster configurations and every DNS cache
// configuration of the resources (clusters, then listeners).
func dnsUsers(t *testing.T, res *translate.Resources) (clusters []*dnsclusterv3.DnsCluster, caches []*dnscachev3.DnsCacheConfig) {
	t.Helper()
	collect := func(m proto.Message) {
		switch v := m.(type) {
		case *dnsclusterv3.DnsCluster:
			clusters = append(clusters, v)
		case *dnscachev3.DnsCacheConfig:
			caches = append(caches, v)
		}
	}
	for _, c := range res.Clusters {
		visit(t, c.ProtoReflect(), collect)
	}
	for _, l := range res.Listeners {
		visit(t, l.ProtoReflect(), collect)
	}
	return clusters, caches
}

func resolvers(t *testing.T, cfg interface {
	GetName() string
	GetTypedConfig() *anypb.Any
}) []string {
	t.Helper()
	if cfg.GetName() != "envoy.network.dns_resolver.cares" {
		t.Fatalf("resolver %q, want c-ares", cfg.GetName())
	}
	c := &caresv3.CaresDnsResolverConfig{}
	if err := cfg.GetTypedConfig().UnmarshalTo(c); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range c.GetResolvers() {
		sa := a.GetSocketAddress()
		out = append(out, netip.AddrPortFrom(netip.MustParseAddr(sa.GetAddress()), uint16(sa.GetPortValue())).String())
	}
	return out
}

// visit calls f on every message inside m, typed configs unpacked.
func visit(t *testing.T, m protoreflect.Message, f func(proto.Message)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("%s: %v", a.GetTypeUrl(), err)
		}
		m = inner.ProtoReflect()
	}
	f(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				visit(t, v.List().Get(i).Message(), f)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
					visit(t, v.Message(), f)
					return true
				})
			}
		default:
			visit(t, v.Message(), f)
		}
		return true
	})
}
