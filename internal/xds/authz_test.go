package xds

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
)

func TestIdentityOf(t *testing.T) {
	cert := func(uris ...string) *x509.Certificate {
		c := &x509.Certificate{DNSNames: []string{"gw.example.org"}}
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	for _, tc := range []struct {
		uris    []string
		group   string
		problem string
	}{
		{[]string{"spiffe://example.org/gateway-group/egress-gateway"}, "egress-gateway", ""},
		{nil, "", "no SPIFFE ID"},
		{[]string{"spiffe://example.org/gateway-group/a", "spiffe://example.org/gateway-group/b"}, "", "more than one URI SAN"},
		{[]string{"https://example.org/gateway-group/a"}, "", "not a SPIFFE ID"},
		{[]string{"spiffe://other.org/gateway-group/a"}, "", "trust domain"},
		{[]string{"spiffe://example.org:443/gateway-group/a"}, "", "trust domain"},
		{[]string{"spiffe://user@example.org/gateway-group/a"}, "", "trust domain"},
		{[]string{"spiffe://example.org/ns/egress"}, "", "does not name a workload"},
		{[]string{"spiffe://example.org/other/a"}, "", "names neither a gateway group"},
		{[]string{"spiffe://example.org/gateway-group/"}, "", "does not name a gateway group"},
		{[]string{"spiffe://example.org/gateway-group/a/b"}, "", "does not name a gateway group"},
		{[]string{"spiffe://example.org/gateway-group/a%2Fb"}, "", "does not name a gateway group"},
		{[]string{"spiffe://example.org/gateway-group/a?x=1"}, "", "no query"},
	} {
		id := IdentityOf(cert(tc.uris...), "example.org")
		if id.Group != tc.group || (tc.problem == "") != (id.Problem == "") || !strings.Contains(id.Problem, tc.problem) {
			t.Errorf("%v: got %+v, want group %q, problem %q", tc.uris, id, tc.group, tc.problem)
		}
		if id.Presented == "" {
			t.Errorf("%v: nothing presented", tc.uris)
		}
	}
	if id := IdentityOf(cert("spiffe://example.org/ns/egress/sa/app"), "example.org"); !id.Workload || id.Group != "" || id.Problem != "" {
		t.Errorf("workload identity: got %+v, want a workload entitled to sidecar configuration only", id)
	}
	if id := IdentityOf(cert(), "example.org"); !strings.Contains(id.Presented, "gw.example.org") {
		t.Errorf("a certificate without SPIFFE ID is described as %q, want its DNS names", id.Presented)
	}
}
