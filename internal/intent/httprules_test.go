package intent

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The rules of methods and paths, and of global rate limits, each with the
// exact problems it reports (as TestDocumentRules).
func TestHTTPRulesAndGlobalLimitRules(t *testing.T) {
	const http = `name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}]`
	for _, c := range []struct {
		name, doc string
		want      []string // "severity|path|message", in order
	}{
		{`rules valid`, `destinations: [{` + http + `, methods: [GET, HEAD], paths: [{prefix: /repos/}, {exact: /rate_limit}], allow: [{cidr: 10.0.0.0/8, methods: [POST]}, {cidr: 10.1.0.0/16, paths: [{prefix: /}]}]}]`, nil},
		{`rules with TLS origination`, `destinations: [{` + http + `, tls: {mode: SIMPLE}, methods: [GET]}]`, nil},
		{`methods on TLS`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], methods: [GET]}]`, []string{`error|destinations[0].methods|methods and paths apply to HTTP requests, which the gateway reads on HTTP ports only: on port 443 (TLS, passed through encrypted) it cannot see a method or a path; put the HTTP ports in a destination of their own`}},
		{`paths on TCP`, `destinations: [{name: a, host: a.example.com, endpoints: [{address: 192.0.2.1}], ports: [{number: 5432, protocol: TCP}], allow: [{cidr: 10.0.0.0/8, paths: [{prefix: /x}]}]}]`, []string{`error|destinations[0].allow[0].paths|methods and paths apply to HTTP requests, which the gateway reads on HTTP ports only: on port 5432 (TCP: bytes the gateway does not parse) it cannot see a method or a path; put the HTTP ports in a destination of their own`}},
		{`rules on HTTP and HTTPS`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}, {number: 443, protocol: HTTPS}], paths: [{exact: /x}]}]`, []string{`error|destinations[0].paths|methods and paths apply to HTTP requests, which the gateway reads on HTTP ports only: on port 443 (HTTPS, passed through encrypted) it cannot see a method or a path; put the HTTP ports in a destination of their own`}},
		{`methods empty`, `destinations: [{` + http + `, methods: []}]`, []string{`error|destinations[0].methods|an empty list would refuse every request: list the methods allowed, or remove methods to allow every method`}},
		{`methods lowercase`, `destinations: [{` + http + `, methods: [get]}]`, []string{`error|destinations[0].methods[0]|"get": methods are written in capitals (GET)`}},
		{`methods unknown`, `destinations: [{` + http + `, methods: [FETCH]}]`, []string{`error|destinations[0].methods[0]|"FETCH" is not one of DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE`}},
		{`methods CONNECT`, `destinations: [{` + http + `, methods: [CONNECT]}]`, []string{`error|destinations[0].methods[0]|CONNECT is not a method of an HTTP port (the explicit proxy takes it for TLS and TCP ports); one of DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE`}},
		{`methods twice`, `destinations: [{` + http + `, allow: [{cidr: 10.0.0.0/8, methods: [GET, GET]}]}]`, []string{`error|destinations[0].allow[0].methods[1]|GET is already listed at [0]`}},
		{`paths empty`, `destinations: [{` + http + `, paths: []}]`, []string{`error|destinations[0].paths|an empty list would refuse every request: list the paths allowed, or remove paths to allow every path`}},
		{`path both`, `destinations: [{` + http + `, paths: [{prefix: /a, exact: /a}]}]`, []string{`error|destinations[0].paths[0]|exactly one of prefix, exact must be set`}},
		{`path neither`, `destinations: [{` + http + `, paths: [{}]}]`, []string{`error|destinations[0].paths[0]|exactly one of prefix, exact must be set`}},
		{`path relative`, `destinations: [{` + http + `, paths: [{prefix: repos/}]}]`, []string{`error|destinations[0].paths[0].prefix|"repos/" must start with /`}},
		{`path query`, `destinations: [{` + http + `, paths: [{exact: "/a?b=c"}]}]`, []string{`error|destinations[0].paths[0].exact|"/a?b=c" holds a query or fragment: rules match the path alone`}},
		{`path dot segment`, `destinations: [{` + http + `, paths: [{prefix: /a/../b}]}]`, []string{`error|destinations[0].paths[0].prefix|"/a/../b" holds a "." or ".." segment: the gateway removes them before matching, so it would never match`}},
		{`path double slash`, `destinations: [{` + http + `, paths: [{prefix: //a}]}]`, []string{`error|destinations[0].paths[0].prefix|"//a" holds "//": the gateway merges repeated slashes before matching, so it would never match`}},
		{`path escaped slash`, `destinations: [{` + http + `, paths: [{exact: /a%2Fb}]}]`, []string{`error|destinations[0].paths[0].exact|"/a%2Fb" holds an escaped slash: the gateway refuses such requests (400) before matching`}},
		{`path space`, `destinations: [{` + http + `, paths: [{exact: "/a b"}]}]`, []string{`error|destinations[0].paths[0].exact|"/a b" holds a space or control character, which no request path has`}},
		{`source of rules only`, `destinations: [{` + http + `, allow: [{methods: [GET]}]}]`, []string{`error|destinations[0].allow[0]|exactly one of cidr, principal, namespace must be set (methods and paths for every source go on the destination itself)`}},

		{`global valid`, `destinations: [{` + http + `, rateLimit: {global: {requests: 100, per: minute, perSource: address, failureModeDeny: true}}}]`, nil},
		{`global and local`, `destinations: [{` + http + `, rateLimit: {maxTokens: 5, fillInterval: 1s, global: {requests: 100, per: hour}}}]`, nil},
		{`global on TLS`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], rateLimit: {global: {requests: 10, per: second}}}]`, nil},
		{`global zero`, `destinations: [{` + http + `, rateLimit: {global: {requests: 0, per: minute}}}]`, []string{`error|destinations[0].rateLimit.global.requests|must be at least 1 (remove the destination to refuse everyone)`}},
		{`global no unit`, `destinations: [{` + http + `, rateLimit: {global: {requests: 1}}}]`, []string{`error|destinations[0].rateLimit.global.per|is required (second, minute, hour, day)`}},
		{`global bad unit`, `destinations: [{` + http + `, rateLimit: {global: {requests: 1, per: week}}}]`, []string{`error|destinations[0].rateLimit.global.per|"week" is not one of second, minute, hour, day`}},
		{`global bad source`, `destinations: [{` + http + `, rateLimit: {global: {requests: 1, per: day, perSource: user}}}]`, []string{`error|destinations[0].rateLimit.global.perSource|"user" is not one of principal, namespace, address`}},
		{`global unknown field`, `destinations: [{` + http + `, rateLimit: {global: {requests: 1, per: day, burst: 3}}}]`, []string{`error|destinations[0].rateLimit.global.burst|unknown field (known: failureModeDeny, per, perSource, requests)`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, diags := ParseDocument(origin, []byte(c.doc))
			var got []string
			for _, d := range diags {
				got = append(got, string(d.Severity)+"|"+d.Path+"|"+d.Message)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if errs := len(c.want) > 0; errs != (doc == nil) {
				t.Errorf("errors %v, but document accepted %v", errs, doc != nil)
			}
		})
	}
}

// Rules of an allow entry replace the destination's field by field.
func TestRulesFor(t *testing.T) {
	doc, diags := ParseDocument(origin, []byte(`destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}],
  methods: [GET], paths: [{prefix: /r/}], allow: [{cidr: 10.0.0.0/8}, {cidr: 10.1.0.0/16, methods: [POST]}, {cidr: 10.2.0.0/16, paths: [{exact: /x}]}]}]`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	d := &doc.Destinations[0]
	for i, want := range []string{"[GET] [{/r/ }]", "[POST] [{/r/ }]", "[GET] [{ /x}]"} {
		m, p := d.RulesFor((*d.Allow)[i])
		if got := fmt.Sprint(m) + " " + fmt.Sprint(p); got != want {
			t.Errorf("allow[%d]: %s, want %s", i, got, want)
		}
	}
	if !d.HasHTTPRules() || !d.HasPathRules() {
		t.Error("rules not seen")
	}
}

// Global limits need the rate limit service, and counting per identity
// needs the mesh: without them the ConfigMap is refused with the fix.
func TestGlobalLimitsNeedTheService(t *testing.T) {
	in := intentOf(t, "a", "x", time.Time{}, `destinations: [{name: p, host: p.example.com, ports: [{number: 80, protocol: HTTP}], rateLimit: {global: {requests: 5, per: minute, perSource: namespace}}}]`)
	for _, c := range []struct {
		opts ResolveOptions
		want string
	}{
		{ResolveOptions{}, "destinations[0].rateLimit.global: global rate limits are counted by the rate limit service, which this server does not configure: start it with --ratelimit-address"},
		{ResolveOptions{RateLimitService: true}, "destinations[0].rateLimit.global.perSource: workload identities are carried by mutual TLS from sidecars to the gateway's mesh port, which this server does not serve"},
		{ResolveOptions{RateLimitService: true, TrustDomain: "cluster.local"}, ""},
	} {
		accepted, diags := Resolve(newcomers(in), c.opts)
		if c.want == "" {
			if len(accepted) != 1 || len(diags) != 0 {
				t.Errorf("%+v: accepted %s\n%v", c.opts, names(accepted), diags)
			}
			continue
		}
		if len(accepted) != 0 || !strings.Contains(diags.Error(), c.want) {
			t.Errorf("%+v: accepted %s\n%v\nwant %s", c.opts, names(accepted), diags, c.want)
		}
	}
}
