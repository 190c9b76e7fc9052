package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// --dns-resolver reaches the translation as the gateways' DNS servers, in
// order, port 53 by default; malformed lists stop the command.
func TestDNSResolverFlag(t *testing.T) {
	parse := func(args ...string) ([]netip.AddrPort, string) {
		var tf translateFlags
		var errOut strings.Builder
		c := newCmdLine("validate", &errOut, &errOut)
		tf.register(c.FlagSet)
		opts, _, ok := parseTranslateFlags(c, args, &tf)
		if !ok {
			return nil, "refused: " + errOut.String()
		}
		return opts.DNSResolvers, ""
	}
	if got, _ := parse(); got != nil {
		t.Errorf("no flag: %v, want none (the system resolver)", got)
	}
	got, errs := parse("--dns-resolver", "10.0.0.10, 127.0.0.1:5353,[fd00::53]:53,fd00::54,::ffff:10.0.0.11")
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.10:53"), netip.MustParseAddrPort("127.0.0.1:5353"),
		netip.MustParseAddrPort("[fd00::53]:53"), netip.MustParseAddrPort("[fd00::54]:53"), netip.MustParseAddrPort("10.0.0.11:53")}
	if !slices.Equal(got, want) {
		t.Errorf("got %v %s, want %v", got, errs, want)
	}
	for _, bad := range []string{"", ",", "dns.example.com", "10.0.0.10:0", "10.0.0.10:70000", "10.0.0.10,10.0.0.10:53", "fe80::1%eth0", "[fe80::1%eth0]:53"} {
		if got, errs := parse("--dns-resolver", bad); errs == "" {
			t.Errorf("--dns-resolver %q: accepted as %v", bad, got)
		}
	}
}

func TestDNSResolverFromEnvironment(t *testing.T) {
	t.Setenv("EGRESS_XDS_DNS_RESOLVER", "not-an-ip")
	code, _, errOut := runCmd("validate", "../../examples")
	if code != 2 || !strings.Contains(errOut, `"not-an-ip" is not a DNS server address`) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	t.Setenv("EGRESS_XDS_DNS_RESOLVER", "10.0.0.10:53")
	if code, out, errOut := runCmd("validate", "--xds-client-auth", "../../examples"); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}
