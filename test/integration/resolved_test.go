package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	dnsclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	dfpclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dynamic_forward_proxy/v3"
	dnscachev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/dynamic_forward_proxy/v3"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"

	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// The scenarios that resolve through DNS reach the fake services by names
// only the test DNS server knows (fakeservices.DNSZone): local gateways
// ask it (xds-server --dns-resolver). The names' A records are other
// loopback addresses (all of 127/8 is loopback on Linux), where the fake
// TLS, HTTP and database services run again, one port per service on
// every address, so the records alone pick the instance a connection
// reaches, and the instance's address proves the name was resolved.

// Upstreams of the DNS scenarios, by Env.Upstreams key: the fake services
// on the resolved addresses (Host is the first; every address has the
// same port).
const (
	altTLS  = "tls-resolved"
	altHTTP = "http-resolved"
	altDB   = "db-resolved"
)

// resolvedAddrs are the addresses the test DNS gives the scenarios' names.
var resolvedAddrs = [2]string{"127.0.0.2", "127.0.0.3"}

// Names of the DNS scenarios, all under fakeservices.DNSZone.
var (
	dnsWebHost     = dnsName("web")     // DNS: both addresses
	dnsRRHost      = dnsName("rr")      // DNS_ROUND_ROBIN: both addresses
	dnsPortsHost   = dnsName("ports")   // targetPort, TLS and TCP
	dnsOriginHost  = dnsName("origin")  // tls.port
	dnsBothHost    = dnsName("both")    // one host on a TLS and an HTTP port
	dnsDynamicHost = dnsName("dynamic") // DYNAMIC, exact
	dnsAppsDomain  = dnsName("apps")    // *.apps: wildcard HTTP
	dnsSNIDomain   = dnsName("sni")     // *.sni: wildcard TLS
	dnsOtherHost   = dnsName("other")   // resolvable, declared by no intent
)

func dnsName(label string) string { return label + "." + fakeservices.DNSZone }

// dnsZone is what the test DNS server answers: every name of the DNS
// scenarios, a wildcard's bare domain and an undeclared name included
// (so a refusal is the gateway's, not a resolution failure).
func dnsZone() map[string][]netip.Addr {
	a, b := netip.MustParseAddr(resolvedAddrs[0]), netip.MustParseAddr(resolvedAddrs[1])
	return map[string][]netip.Addr{
		dnsWebHost: {a, b}, dnsRRHost: {a, b},
		dnsPortsHost: {a}, dnsOriginHost: {b}, dnsBothHost: {a}, dnsDynamicHost: {a}, dnsOtherHost: {a},
		"*." + dnsAppsDomain: {b}, dnsSNIDomain: {b}, "*." + dnsSNIDomain: {b},
	}
}

// startResolved runs the fake services on resolvedAddrs and the test DNS
// server on 127.0.0.1 until the test ends, and points env at them.
func startResolved(t *testing.T, env *Env, ca *fakeservices.CA) *fakeservices.DNS {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stop []func()
	t.Cleanup(func() {
		cancel()
		for _, wait := range stop {
			wait()
		}
	})
	ports := commonPorts(t, resolvedAddrs[:], 3)
	for _, host := range resolvedAddrs {
		at := func(p uint32) string { return net.JoinHostPort(host, strconv.Itoa(int(p))) }
		s, err := fakeservices.Start(ctx, fakeservices.Config{CA: ca, TLSAddr: at(ports[0]), HTTPAddr: at(ports[1]),
			DBAddrs: map[string]string{host: at(ports[2])}})
		if err != nil {
			t.Fatal(err)
		}
		stop = append(stop, s.Wait)
	}
	dns, err := fakeservices.StartDNS(ctx, "127.0.0.1", dnsZone())
	if err != nil {
		t.Fatal(err)
	}
	stop = append(stop, dns.Wait)
	env.Upstreams[altTLS] = hostPort{resolvedAddrs[0], ports[0]}
	env.Upstreams[altHTTP] = hostPort{resolvedAddrs[0], ports[1]}
	env.Upstreams[altDB] = hostPort{resolvedAddrs[0], ports[2]}
	env.DNSResolver = dns.Addr
	return dns
}

// commonPorts returns n TCP ports free on every one of hosts.
func commonPorts(t *testing.T, hosts []string, n int) []uint32 {
	t.Helper()
	var out []uint32
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries == 50 {
			t.Fatalf("no port free on all of %v", hosts)
		}
		first, err := net.Listen("tcp", net.JoinHostPort(hosts[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{first}
		for _, h := range hosts[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		held = append(held, ls...)
		if len(ls) == len(hosts) {
			out = append(out, uint32(port))
		}
	}
	return out
}

// at is a resolved upstream on another of resolvedAddrs.
func (e *Env) at(name, host string) string {
	return hostPort{host, e.Upstreams[name].Port}.String()
}

// needsDNS skips the traffic of a scenario that resolves through the test
// DNS where it does not run (the compose stack resolves with Docker's).
func (g *Traffic) needsDNS(t *testing.T) {
	t.Helper()
	if g.dns == nil {
		t.Skipf("the names under %s resolve only through the test DNS server, which runs with local gateways", fakeservices.DNSZone)
	}
}

// resolvers are the DNS servers the env's gateways are told to ask; nil
// for their system resolver.
func (e *Env) resolvers() []string {
	if e.DNSResolver == "" {
		return nil
	}
	return []string{e.DNSResolver}
}

// dnsClusterConfig is the DNS cluster extension's configuration of a
// cluster.
func dnsClusterConfig(c *check, k *clusterv3.Cluster) *dnsclusterv3.DnsCluster {
	if name := k.GetClusterType().GetName(); name != "envoy.cluster.dns" {
		c.fail("cluster %s is of type %q, want envoy.cluster.dns", k.GetName(), name)
		return nil
	}
	return unpack[*dnsclusterv3.DnsCluster](c, k.GetClusterType().GetTypedConfig())
}

// dfpCache is the DNS cache of a dynamic forward proxy cluster.
func dfpCache(c *check, k *clusterv3.Cluster) *dnscachev3.DnsCacheConfig {
	if name := k.GetClusterType().GetName(); name != "envoy.clusters.dynamic_forward_proxy" {
		c.fail("cluster %s is of type %q, want the dynamic forward proxy", k.GetName(), name)
		return nil
	}
	return unpack[*dfpclusterv3.ClusterConfig](c, k.GetClusterType().GetTypedConfig()).GetDnsCacheConfig()
}

// resolverAddrs are the servers of a c-ares resolver configuration; nil
// for none (Envoy's default resolver).
func resolverAddrs(c *check, r *corev3.TypedExtensionConfig) []string {
	if r == nil {
		return nil
	}
	if r.GetName() != "envoy.network.dns_resolver.cares" {
		c.fail("DNS resolver %q, want c-ares", r.GetName())
		return nil
	}
	var out []string
	for _, a := range unpack[*caresv3.CaresDnsResolverConfig](c, r.GetTypedConfig()).GetResolvers() {
		sa := a.GetSocketAddress()
		out = append(out, hostPort{sa.GetAddress(), sa.GetPortValue()}.String())
	}
	return out
}

// clusterHosts are the addresses of a cluster's hosts as a gateway holds
// them (its admin /clusters).
func (g *Traffic) clusterHosts(t *testing.T, gw gateway, cluster string) []string {
	t.Helper()
	hosts, err := clusterHosts(gw, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return hosts
}

func clusterHosts(gw gateway, cluster string) ([]string, error) {
	body, err := gw.admin("/clusters?format=json")
	if err != nil {
		return nil, err
	}
	var out struct {
		Clusters []struct {
			Name  string `json:"name"`
			Hosts []struct {
				Address struct {
					Socket struct {
						Address string `json:"address"`
						Port    uint32 `json:"port_value"`
					} `json:"socket_address"`
				} `json:"address"`
			} `json:"host_statuses"`
		} `json:"cluster_statuses"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("/clusters: %w", err)
	}
	for _, c := range out.Clusters {
		if c.Name == cluster {
			hosts := []string{}
			for _, h := range c.Hosts {
				hosts = append(hosts, hostPort{h.Address.Socket.Address, h.Address.Socket.Port}.String())
			}
			slices.Sort(hosts)
			return hosts, nil
		}
	}
	return nil, fmt.Errorf("%s holds no cluster %s", gw.name(), cluster)
}

// clusterHostsAre checks a cluster's hosts, in any order.
func (g *Traffic) clusterHostsAre(gw gateway, cluster string, want []string) error {
	got, err := clusterHosts(gw, cluster)
	if err != nil {
		return err
	}
	w := slices.Sorted(slices.Values(want))
	if !slices.Equal(got, w) {
		return fmt.Errorf("%s hosts %v, want %v", cluster, got, w)
	}
	return nil
}
