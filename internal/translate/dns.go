package translate

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
)

// caresResolver is the registered name of Envoy's c-ares DNS resolver, the
// default one on Linux (source/extensions/network/dns_resolver/cares).
const caresResolver = "envoy.network.dns_resolver.cares"

// dnsResolver is the DNS resolver gateways resolve upstream names with:
// c-ares asking Options.DNSResolvers, in order, instead of the servers of
// the gateway's /etc/resolv.conf (its search domains and options still
// apply). nil (Envoy's default resolver, the system's servers) when none
// is configured, and always for sidecars, which resolve only the gateways'
// address, a cluster-internal name. Every DNS cluster and the dynamic
// forward proxy's DNS cache carry the same configuration, packed once per
// translation.
func (t *translator) dnsResolver() *corev3.TypedExtensionConfig {
	if t.opts.Role != RoleGateway || len(t.opts.DNSResolvers) == 0 {
		return nil
	}
	if !t.resolverDone {
		t.resolverDone = true
		cfg := &caresv3.CaresDnsResolverConfig{}
		for _, ap := range t.opts.DNSResolvers {
			if !ap.IsValid() || ap.Port() == 0 {
				t.errs = append(t.errs, fmt.Errorf("DNS resolver %q is not an IP address and port", ap))
				continue
			}
			// c-ares asks over UDP and retries over TCP when an answer
			// is truncated, whatever the address's protocol says.
			cfg.Resolvers = append(cfg.Resolvers, socketAddress(ap.Addr().Unmap().String(), uint32(ap.Port())))
		}
		t.resolver = t.pack(cfg)
	}
	return &corev3.TypedExtensionConfig{Name: caresResolver, TypedConfig: t.resolver}
}
