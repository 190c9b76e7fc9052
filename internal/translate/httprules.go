package translate

import (
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Method and path rules (intent.Destination.Methods, Paths, and those of
// allow entries) are a second RBAC filter after the allow list's: the
// first refuses sources the destination does not admit
// (rbac_access_denied_matched_policy[none]), this one the requests an
// admitted source may not make, with a policy of its own name in the
// access log's response_code_details:
// rbac_access_denied_matched_policy[method_or_path_not_allowed]. Both run
// before the rate limits, so a refused request spends no token.
//
// The policy is a DENY of every request that no allow entry admits with
// its rules: not (entry_1 or entry_2 ...), each entry its source and its
// methods and paths, all matched as RBAC principals (headers and url_path
// are principals as well as permissions). An entry with no rules admits
// whatever its source asks; without an allow list the destination's rules
// are the one entry.
//
// In audit (a group's mode: audit) nothing here refuses: the policy joins
// the allow list's shadow rules on the first RBAC filter
// (auditRBACPerRoute), so a request outside the rules passes and is
// logged with "audit": "method_or_path_not_allowed".

const (
	operationsRBACFilter = "envoy.filters.http.rbac.operations"
	// OperationNotAllowedPolicy names the policy that refuses methods and
	// paths outside a destination's rules; Envoy logs it in
	// response_code_details.
	OperationNotAllowedPolicy = "method_or_path_not_allowed"
)

// operationsFilters is the connection manager's rules filter when one of
// its destinations has rules: no rules of its own, so it enforces only the
// per-route ones. Gateways only: sidecars leave authorization to them;
// none in audit, whose rules are shadow rules of the allow list's filter.
func (t *translator) operationsFilters(tr *portTraits) []*hcmv3.HttpFilter {
	if t.opts.Role != RoleGateway || t.audit() || !tr.httpRules {
		return nil
	}
	return []*hcmv3.HttpFilter{{Name: operationsRBACFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(&rbachttpv3.RBAC{})}}}
}

// normalizePaths makes the connection manager normalize request paths
// (RFC 3986 dot segments, repeated slashes) and refuse escaped slashes
// (400) when one of its destinations matches paths: otherwise
// /repos/../admin would match the prefix /repos/ and reach /admin
// upstream. The normalized path is the one sent upstream.
func normalizePaths(hcm *hcmv3.HttpConnectionManager, tr *portTraits) {
	if !tr.pathRules {
		return
	}
	hcm.NormalizePath = wrapperspb.Bool(true)
	hcm.MergeSlashes = true
	hcm.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_REJECT_REQUEST
}

// operationsPerRoute is a destination's rules policy, nil without rules.
// Destinations with the same rules share one packed config.
func (t *translator) operationsPerRoute(dp *destPort) *anypb.Any {
	d := dp.dest
	if t.opts.Role != RoleGateway || t.audit() || !d.HasHTTPRules() {
		return nil
	}
	key := rulesKey(d)
	if a, ok := t.opsPerRoute[key]; ok {
		return a
	}
	a := t.pack(&rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{Rules: t.operationsRules(d)}})
	if t.opsPerRoute == nil {
		t.opsPerRoute = map[string]*anypb.Any{}
	}
	t.opsPerRoute[key] = a
	return a
}

// operationsRules denies what no allow entry admits with its rules.
func (t *translator) operationsRules(d *intent.Destination) *rbacv3.RBAC {
	return &rbacv3.RBAC{
		Action:   rbacv3.RBAC_DENY,
		Policies: map[string]*rbacv3.Policy{OperationNotAllowedPolicy: t.operationsPolicy(d)},
	}
}

// operationsPolicy matches the requests no allow entry admits with its
// rules.
func (t *translator) operationsPolicy(d *intent.Destination) *rbacv3.Policy {
	var entries []*rbacv3.Principal
	if d.Allow == nil {
		entries = append(entries, operations(d.Methods, d.Paths))
	} else {
		for _, s := range *d.Allow {
			src := t.sourcePrincipal(s)
			if src == nil {
				continue
			}
			methods, paths := d.RulesFor(s)
			entries = append(entries, andIDs(src, operations(methods, paths)))
		}
	}
	refused := &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	if len(entries) > 0 {
		refused = &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: orIDs(entries...)}}
	}
	return &rbacv3.Policy{
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
		Principals:  []*rbacv3.Principal{refused},
	}
}

// sourcePrincipal matches one allow entry's source, as the allow list's
// own filter does (rbacRules); nil when the gateway cannot match it (a
// namespace without the mesh).
func (t *translator) sourcePrincipal(s intent.Source) *rbacv3.Principal {
	switch {
	case s.CIDR != "":
		pfx, err := intent.ParseCIDR(s.CIDR)
		if err != nil {
			return nil
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidrRange(pfx.Addr().String(), pfx.Bits())}}
	case s.Principal != "":
		return authenticated(exact(s.Principal))
	case s.Namespace != "" && t.opts.Mesh != nil:
		return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{
			Prefix: "spiffe://" + t.opts.Mesh.TrustDomain + "/ns/" + s.Namespace + "/sa/",
		}})
	}
	return nil
}

// operations matches the requests the rules admit: a listed method (any
// when none is) and a listed path (any when none is). Paths are matched
// without the query string.
func operations(methods []string, paths []intent.PathRule) *rbacv3.Principal {
	var parts []*rbacv3.Principal
	if len(methods) > 0 {
		var ms []*rbacv3.Principal
		for _, m := range methods {
			ms = append(ms, &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: &routev3.HeaderMatcher{
				Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact(m)},
			}}})
		}
		parts = append(parts, orIDs(ms...))
	}
	if len(paths) > 0 {
		var ps []*rbacv3.Principal
		for _, p := range paths {
			m := exact(p.Exact)
			if p.Prefix != "" {
				m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p.Prefix}}
			}
			ps = append(ps, &rbacv3.Principal{Identifier: &rbacv3.Principal_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: m},
			}}})
		}
		parts = append(parts, orIDs(ps...))
	}
	if len(parts) == 0 {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	}
	return andIDs(parts...)
}

// orIDs and andIDs combine principals; one needs no set (Envoy requires
// sets to hold at least one).
func orIDs(ps ...*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func andIDs(ps ...*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ps}}}
}

// rulesKey is everything operationsRules depends on.
func rulesKey(d *intent.Destination) string {
	var b strings.Builder
	rules := func(methods []string, paths []intent.PathRule) {
		b.WriteString(strings.Join(methods, ","))
		b.WriteByte('|')
		for _, p := range paths {
			b.WriteString(p.Prefix)
			b.WriteByte('>')
			b.WriteString(p.Exact)
			b.WriteByte(',')
		}
		b.WriteByte(';')
	}
	if d.Allow == nil {
		rules(d.Methods, d.Paths)
		return b.String()
	}
	b.WriteString("allow:")
	for _, s := range *d.Allow {
		b.WriteString(s.CIDR + "|" + s.Principal + "|" + s.Namespace + "|")
		rules(d.RulesFor(s))
	}
	return b.String()
}
