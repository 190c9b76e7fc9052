package translate_test

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// In audit, nothing the allow lists or the absence of a declaration would
// refuse is refused: every HTTP RBAC policy built from an allow list is a
// shadow rule, no connection manager enforces rules of its own, no TLS or
// TCP chain closes a source (only held-back destinations'), and the only
// enforced rules are audit's own refusals (names no intent could declare,
// refused upstream networks). The same intents in enforce keep today's
// refusals (the other goldens).
func TestAuditShadowRulesNeverEnforce(t *testing.T) {
	res, diags := translateFile(t, "testdata/audit/in.yaml", caseOptions(t, "testdata/audit"))
	if res == nil {
		t.Fatal(diags)
	}
	var shadow, enforcedOwn int
	for _, rc := range res.Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				for name, a := range r.TypedPerFilterConfig {
					var pr rbachttpv3.RBACPerRoute
					if !a.MessageIs(&pr) {
						continue
					}
					if err := a.UnmarshalTo(&pr); err != nil {
						t.Fatal(err)
					}
					switch {
					case name == "envoy.filters.http.rbac" && pr.GetRbac().GetRules() != nil:
						t.Errorf("route %s/%s/%s enforces RBAC rules in audit", rc.Name, vh.Name, r.Name)
					case name == "envoy.filters.http.rbac":
						shadow++
					case pr.GetRbac().GetRules() != nil:
						for p := range pr.GetRbac().GetRules().GetPolicies() {
							if p != "refused_network" {
								t.Errorf("route %s/%s: %s enforces policy %q", rc.Name, r.Name, name, p)
							}
						}
						if r.GetRoute().GetCluster() != translate.AuditCluster {
							t.Errorf("route %s/%s of cluster %s refuses networks", rc.Name, r.Name, r.GetRoute().GetCluster())
						}
						enforcedOwn++
					}
				}
			}
		}
	}
	// api on http_80, the forward proxy and the mesh port; the audit
	// routes of three connection managers (two on the proxies: CONNECT).
	if shadow < 3+5 || enforcedOwn != 5 {
		t.Errorf("%d shadow policies, %d refused-network policies", shadow, enforcedOwn)
	}
	for _, l := range res.Listeners {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				switch a := f.GetTypedConfig(); {
				case a.MessageIs(&hcmv3.HttpConnectionManager{}):
					var hcm hcmv3.HttpConnectionManager
					if err := a.UnmarshalTo(&hcm); err != nil {
						t.Fatal(err)
					}
					for _, hf := range hcm.HttpFilters {
						var rb rbachttpv3.RBAC
						if hf.GetTypedConfig().MessageIs(&rb) {
							_ = hf.GetTypedConfig().UnmarshalTo(&rb)
							if rb.GetRules() != nil || rb.GetShadowRules() != nil {
								t.Errorf("%s: connection manager filter %s has rules of its own", l.Name, hf.Name)
							}
						}
					}
				case a.MessageIs(&tcpproxyv3.TcpProxy{}):
					var tp tcpproxyv3.TcpProxy
					if err := a.UnmarshalTo(&tp); err != nil {
						t.Fatal(err)
					}
					if tp.GetCluster() == translate.RefusedCluster && !strings.HasSuffix(fc.Name, "/held_back") {
						t.Errorf("%s: chain %s closes connections in audit", l.Name, fc.Name)
					}
				case a.MessageIs(&rbacnetv3.RBAC{}):
					var rb rbacnetv3.RBAC
					if err := a.UnmarshalTo(&rb); err != nil {
						t.Fatal(err)
					}
					for p := range rb.GetRules().GetPolicies() {
						if (p != "not_a_dns_name" && p != "refused_network") || !strings.HasSuffix(fc.Name, "/audit_not_declared") {
							t.Errorf("%s: chain %s enforces network policy %q", l.Name, fc.Name, p)
						}
					}
				}
			}
		}
	}
	// Every TLS listener ends with the audit chain; a chain matching TLS
	// alone is the fallback of every SNI no other chain names.
	for _, l := range res.Listeners {
		if !strings.HasPrefix(l.Name, "tls_") {
			continue
		}
		last := l.FilterChains[len(l.FilterChains)-1]
		if last.Name != l.Name+"/audit_not_declared" || len(last.GetFilterChainMatch().GetServerNames()) != 0 ||
			last.GetFilterChainMatch().GetTransportProtocol() != "tls" {
			t.Errorf("%s: last chain %s %v", l.Name, last.Name, last.GetFilterChainMatch())
		}
		if n := chainsNamed(l, "apps/egress/bank/80/held_back"); n != 0 {
			t.Errorf("an HTTP destination got a held-back TLS chain")
		}
	}
}

func chainsNamed(l *listenerv3.Listener, name string) int {
	n := 0
	for _, fc := range l.FilterChains {
		if fc.Name == name {
			n++
		}
	}
	return n
}
