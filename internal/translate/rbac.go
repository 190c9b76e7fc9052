package translate

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

const (
	httpRBACFilter  = "envoy.filters.http.rbac"
	allowPolicyName = "allowed-sources"
)

// rbacRules admits only the sources a destination allows; nil means every
// source that reaches the gateway. The peer address of the connection is
// what counts (direct_remote_ip): headers such as X-Forwarded-For are
// written by the client and prove nothing.
//
// Workload identities are the SPIFFE ID (URI SAN) of the client
// certificate the sidecar presented on the mesh port: a principal exactly,
// a namespace by its prefix spiffe://<td>/ns/<namespace>/sa/. Connections
// without a verified client certificate (every port but the mesh port)
// match neither, so a destination that allows only identities is reachable
// only through the mesh.
func (t *translator) rbacRules(d *intent.Destination) *rbacv3.RBAC {
	if d.Allow == nil {
		return nil
	}
	var principals []*rbacv3.Principal
	for _, s := range *d.Allow {
		switch {
		case s.CIDR != "":
			pfx, err := intent.ParseCIDR(s.CIDR)
			if err != nil {
				continue
			}
			principals = append(principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{
				DirectRemoteIp: cidrRange(pfx.Addr().String(), pfx.Bits()),
			}})
		case s.Principal != "":
			principals = append(principals, authenticated(exact(s.Principal)))
		case s.Namespace != "" && t.opts.Mesh != nil:
			principals = append(principals, authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{
				Prefix: "spiffe://" + t.opts.Mesh.TrustDomain + "/ns/" + s.Namespace + "/sa/",
			}}))
		}
	}
	if len(principals) == 0 {
		// Nothing the gateway can match: refuse everyone rather than
		// send a policy without principals, which Envoy rejects.
		principals = []*rbacv3.Principal{{Identifier: &rbacv3.Principal_NotId{NotId: &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}}}}
	}
	return &rbacv3.RBAC{
		Action: rbacv3.RBAC_ALLOW,
		Policies: map[string]*rbacv3.Policy{allowPolicyName: {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  principals,
		}},
	}
}

// sourceRanges are the addresses a destination's allow list admits, as
// filter chain source matches (the peer address of the connection).
func sourceRanges(d *intent.Destination) []*corev3.CidrRange {
	var out []*corev3.CidrRange
	for _, s := range *d.Allow {
		if s.CIDR == "" {
			continue
		}
		if pfx, err := intent.ParseCIDR(s.CIDR); err == nil {
			out = append(out, cidrRange(pfx.Addr().String(), pfx.Bits()))
		}
	}
	return out
}

func cidrRange(addr string, bits int) *corev3.CidrRange {
	return &corev3.CidrRange{AddressPrefix: addr, PrefixLen: u32(uint32(bits))}
}

// httpRBACBase is the connection manager's RBAC filter: no rules of its own,
// so it enforces only the per-route policies.
func (t *translator) httpRBACBase() *anypb.Any { return t.pack(&rbachttpv3.RBAC{}) }

// httpRBACPerRoute answers 403 to sources the destination does not allow.
// Destinations with the same allow list share one packed config: it holds
// nothing else.
func (t *translator) httpRBACPerRoute(dp *destPort) *anypb.Any {
	if t.audit() && (dp.dest.Allow != nil || dp.dest.HasHTTPRules()) {
		return t.auditRBACPerRoute(dp)
	}
	if dp.dest.Allow == nil {
		return nil
	}
	key := allowKey(dp.dest)
	if a, ok := t.rbacPerRoute[key]; ok {
		return a
	}
	a := t.pack(&rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{Rules: t.rbacRules(dp.dest)}})
	if t.rbacPerRoute == nil {
		t.rbacPerRoute = map[string]*anypb.Any{}
	}
	t.rbacPerRoute[key] = a
	return a
}

func allowKey(d *intent.Destination) string {
	var b strings.Builder
	for _, s := range *d.Allow {
		b.WriteString(s.CIDR)
		b.WriteByte('|')
		b.WriteString(s.Principal)
		b.WriteByte('|')
		b.WriteString(s.Namespace)
		b.WriteByte(',')
	}
	return b.String()
}

// authenticated matches the verified peer certificate's URI SAN (Envoy
// checks the URI SANs first, then the subject).
func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}
