package intent

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// The parse and validation rules of one intent document, each with the
// exact problems it reports: severity, field path and message. A change of
// a rule or of its wording shows here, beside the code.
func TestDocumentRules(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		want      []string // "severity|path|message", in order
	}{
		{`gateways bad name`, `gateways: ["a b"]
destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|gateways[0]|"a b" is not a valid gateway group name (letters, digits, '-', '_', '.')`}},
		{`gateways twice`, `gateways: [g, g]
destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|gateways[1]|"g" is listed twice`}},
		{`no destinations`, `destinations: []`, []string{`error|destinations|at least one destination is required`}},
		{`name missing`, `destinations: [{host: a.example.com, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].name|is required`}},
		{`name not a label`, `destinations: [{name: A_b, host: a.example.com, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].name|"A_b" must be a DNS label: lowercase letters, digits and '-', at most 63 characters`}},
		{`name twice`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}]}, {name: a, host: b.example.com, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[1].name|"a" is already the name of destinations[0]`}},
		{`host missing`, `destinations: [{name: a, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].host|is required`}},
		{`host IP`, `destinations: [{name: a, host: 10.1.2.3, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].host|"10.1.2.3" is an IP address: give the destination a DNS name and list the address under endpoints`}},
		{`host inner wildcard`, `destinations: [{name: a, host: "a.*.example.com", ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].host|"a.*.example.com" is not a DNS name (a wildcard may only be a leading "*.")`}},
		{`host bad chars`, `destinations: [{name: a, host: "a_b.example.com", ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].host|"a_b.example.com" is not a DNS name (lowercase letters, digits and '-' in labels separated by '.')`}},
		{`host long label`, `destinations: [{name: a, host: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com", ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].host|"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"… (76 bytes) has a label of 64 characters ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"): a DNS label has at most 63`}},
		{`wildcard public suffix`, `destinations: [{name: a, host: "*.com", ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].host|"*.com" would admit every name under the public suffix "com" (anyone can register a name under it): list the hosts, or use a wildcard under a domain of one owner (e.g. "*.example.com")`}},
		{`wildcard private suffix`, `destinations: [{name: a, host: "*.github.io", ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].host|"*.github.io" would admit every name under the public suffix "github.io" (listed in the private section of the Public Suffix List: its owner gives the names under it to unrelated users): list the hosts, or use a wildcard under a domain of one owner (e.g. "*.example.com")`}},
		{`no ports`, `destinations: [{name: a, host: a.example.com, ports: []}]`, []string{`error|destinations[0].ports|at least one port is required`}},
		{`port zero`, `destinations: [{name: a, host: a.example.com, ports: [{number: 0, protocol: TLS}]}]`, []string{`error|destinations[0].ports[0].number|0 is not a valid port`}},
		{`port twice`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}, {number: 443, protocol: HTTP}]}]`, []string{`error|destinations[0].ports[1].number|port 443 is already declared by ports[0]`}},
		{`protocol missing`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443}]}]`, []string{`error|destinations[0].ports[0].protocol|is required (TLS, HTTPS, HTTP or TCP)`}},
		{`protocol unknown`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: UDP}]}]`, []string{`error|destinations[0].ports[0].protocol|"UDP" is not one of TLS, HTTPS, HTTP, TCP`}},
		{`targetPort invalid`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS, targetPort: 70000}]}]`, []string{`error|destinations[0].ports[0].targetPort|70000 is not a valid port`}},
		{`targetPort with origination`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP, targetPort: 8443}], tls: {mode: SIMPLE}}]`, []string{`error|destinations[0].ports[0].targetPort|is not used with TLS origination: set tls.port instead`}},
		{`resolution unknown`, `destinations: [{name: a, host: a.example.com, resolution: MAGIC, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].resolution|"MAGIC" is not one of DNS, DNS_ROUND_ROBIN, STATIC, DYNAMIC`}},
		{`DNS for wildcard`, `destinations: [{name: a, host: "*.example.com", resolution: DNS, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].resolution|DNS cannot resolve the wildcard host "*.example.com": use DYNAMIC (resolve each requested name) or STATIC`}},
		{`round robin two endpoints`, `destinations: [{name: a, host: a.example.com, resolution: DNS_ROUND_ROBIN, endpoints: [{address: a1.example.com}, {address: a2.example.com}], ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].endpoints|DNS_ROUND_ROBIN takes at most one endpoint, got 2`}},
		{`static without endpoints`, `destinations: [{name: a, host: a.example.com, resolution: STATIC, ports: [{number: 5432, protocol: TCP}]}]`, []string{`error|destinations[0].endpoints|resolution STATIC needs at least one endpoint`}},
		{`static with a name`, `destinations: [{name: a, host: a.example.com, resolution: STATIC, endpoints: [{address: db.example.com}], ports: [{number: 5432, protocol: TCP}]}]`, []string{`error|destinations[0].endpoints[0].address|"db.example.com" is not an IP address (resolution STATIC)`}},
		{`dynamic with endpoints`, `destinations: [{name: a, host: "*.example.com", endpoints: [{address: 192.0.2.1}], resolution: DYNAMIC, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].endpoints|resolution DYNAMIC resolves the requested name and takes no endpoints`}},
		{`dynamic TCP`, `destinations: [{name: a, host: "*.example.com", ports: [{number: 5432, protocol: TCP}]}]`, []string{`error|destinations[0].resolution|DYNAMIC needs a name per connection (SNI or Host), which plain TCP ports do not carry`}},
		{`endpoint address missing`, `destinations: [{name: a, host: a.example.com, endpoints: [{port: 1}], ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].endpoints[0].address|is required`}},
		{`endpoint bad address`, `destinations: [{name: a, host: a.example.com, endpoints: [{address: "not a name"}], ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].endpoints[0].address|"not a name" is neither an IP address nor a DNS name`}},
		{`endpoint port and weight`, `destinations: [{name: a, host: a.example.com, endpoints: [{address: 192.0.2.1, port: 70000, weight: 70000}], ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].endpoints[0].port|70000 is not a valid port`, `error|destinations[0].endpoints[0].weight|70000 is more than 65536`}},
		{`endpoint empty label key`, `destinations: [{name: a, host: a.example.com, endpoints: [{address: 192.0.2.1, labels: {"": x}}], ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].endpoints[0].labels|label keys must be 1 to 317 characters`}},
		{`tls on a TLS port`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], tls: {mode: SIMPLE}}]`, []string{`error|destinations[0].tls|TLS origination applies to HTTP ports, and this destination has none (TLS and HTTPS ports are passed through untouched)`}},
		{`tls mode missing`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {}}]`, []string{`error|destinations[0].tls.mode|is required (SIMPLE or MUTUAL)`}},
		{`tls mode unknown`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: PERMISSIVE}}]`, []string{`error|destinations[0].tls.mode|"PERMISSIVE" is not one of SIMPLE, MUTUAL`}},
		{`tls port invalid`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, port: 70000}}]`, []string{`error|destinations[0].tls.port|70000 is not a valid port`}},
		{`tls sni for wildcard`, `destinations: [{name: a, host: "*.example.com", ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, sni: a.example.com}}]`, []string{`error|destinations[0].tls.sni|cannot be set for a wildcard host: the gateway sends each request's own host name`}},
		{`tls sni not a name`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, sni: "a b"}}]`, []string{`error|destinations[0].tls.sni|"a b" is not a DNS name`}},
		{`mutual without certificate`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: MUTUAL}}]`, []string{`error|destinations[0].tls.clientCertificate|is required for mode MUTUAL`}},
		{`simple with certificate`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, clientCertificate: {secret: c}}}]`, []string{`error|destinations[0].tls.clientCertificate|is only used with mode MUTUAL`}},
		{`secret name invalid`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, caCertificates: {secret: "Bad_Name"}}}]`, []string{`error|destinations[0].tls.caCertificates.secret|"Bad_Name" is not a valid Secret name`}},
		{`san not a name`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, subjectAltNames: ["a b"]}}]`, []string{`error|destinations[0].tls.subjectAltNames[0]|"a b" is not a DNS name`}},
		{`insecure`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, insecureSkipVerify: true}}]`, []string{`warning|destinations[0].tls.insecureSkipVerify|server certificate verification is OFF for a.example.com: anyone on the path can impersonate it`}},
		{`insecure with CA`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: {secret: ca}}}]`, []string{`error|destinations[0].tls.insecureSkipVerify|contradicts caCertificates/subjectAltNames: verification is either on or off`, `warning|destinations[0].tls.insecureSkipVerify|server certificate verification is OFF for a.example.com: anyone on the path can impersonate it`}},
		{`allow empty`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], allow: []}]`, []string{`error|destinations[0].allow|an empty list would refuse every source: list the sources allowed, remove allow to admit every source that reaches the gateway, or remove the destination to refuse everyone`}},
		{`allow two kinds`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], allow: [{cidr: 10.0.0.0/8, namespace: x}]}]`, []string{`error|destinations[0].allow[0]|exactly one of cidr, principal, namespace must be set`}},
		{`allow none set`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], allow: [{}]}]`, []string{`error|destinations[0].allow[0]|exactly one of cidr, principal, namespace must be set`}},
		{`allow bad cidr`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], allow: [{cidr: 10.0.0.0/33}]}]`, []string{`error|destinations[0].allow[0].cidr|"10.0.0.0/33" is not a CIDR (e.g. 10.0.0.0/8) or an IP address`}},
		{`allow bad principal`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], allow: [{principal: "spiffe://cluster.local/ns/x"}]}]`, []string{`error|destinations[0].allow[0].principal|"spiffe://cluster.local/ns/x" does not name a workload: the path must be /ns/<namespace>/sa/<service-account>`}},
		{`allow bad namespace`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], allow: [{namespace: Billing}]}]`, []string{`error|destinations[0].allow[0].namespace|"Billing" is not a Kubernetes namespace name (a DNS label)`}},
		{`rate limit incomplete`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], rateLimit: {}}]`, []string{`error|destinations[0].rateLimit|set a local token bucket (maxTokens, fillInterval), a global limit (global), or both`}},
		{`rate limit local incomplete`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], rateLimit: {tokensPerFill: 2}}]`, []string{`error|destinations[0].rateLimit.maxTokens|must be at least 1`, `error|destinations[0].rateLimit.fillInterval|is required`}},
		{`rate limit too fast`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], rateLimit: {maxTokens: 1, fillInterval: 10ms}}]`, []string{`error|destinations[0].rateLimit.fillInterval|10ms is below Envoy's minimum of 50ms`}},
		{`timeout on TLS`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], timeout: 1s}]`, []string{`error|destinations[0].timeout|applies to HTTP ports only, and this destination has none`}},
		{`timeout not positive`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], timeout: 0s}]`, []string{`error|destinations[0].timeout|0s must be positive`}},
		{`retries on TLS`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], retries: {attempts: 1}}]`, []string{`error|destinations[0].retries|applies to HTTP ports only, and this destination has none`}},
		{`retries attempts and on`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], retries: {attempts: 11, perTryTimeout: -1s, on: [5xx, sometimes]}}]`, []string{`error|destinations[0].retries.attempts|11 must be between 1 and 10`, `error|destinations[0].retries.perTryTimeout|-1s must be positive`, `error|destinations[0].retries.on[1]|"sometimes" is not one of 5xx, connect-failure, envoy-ratelimited, gateway-error, http3-post-connect-failure, refused-stream, reset, reset-before-request, retriable-4xx`}},
		{`connection pool timeouts`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], connectionPool: {connectTimeout: 0s, idleTimeout: -1s}}]`, []string{`error|destinations[0].connectionPool.connectTimeout|0s must be positive`, `error|destinations[0].connectionPool.idleTimeout|-1s must be positive`}},
		{`max requests per connection on TCP`, `destinations: [{name: a, host: a.example.com, ports: [{number: 5432, protocol: TCP}], connectionPool: {maxRequestsPerConnection: 1}}]`, []string{`warning|destinations[0].connectionPool.maxRequestsPerConnection|applies to HTTP ports only; ignored on this destination's TLS and TCP ports`}},
		{`outlier detection`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], outlierDetection: {consecutive5xxErrors: 0, interval: 0s, baseEjectionTime: 0s, maxEjectionPercent: 101}}]`, []string{`error|destinations[0].outlierDetection.consecutive5xxErrors|must be at least 1 (omit it to keep Envoy's default)`, `error|destinations[0].outlierDetection.interval|0s must be positive`, `error|destinations[0].outlierDetection.baseEjectionTime|0s must be positive`, `error|destinations[0].outlierDetection.maxEjectionPercent|101 is more than 100`}},
		{`load balancer unknown`, `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}], loadBalancer: FASTEST}]`, []string{`error|destinations[0].loadBalancer|"FASTEST" is not one of ROUND_ROBIN, LEAST_REQUEST, RANDOM`}},
		{`load balancer with dynamic`, `destinations: [{name: a, host: "*.example.com", ports: [{number: 443, protocol: TLS}], loadBalancer: RANDOM}]`, []string{`error|destinations[0].loadBalancer|cannot be set with resolution DYNAMIC: the forward proxy connects to the address it resolves`}},
		{`unknown field`, `destinations: [{name: a, hots: a.example.com, ports: [{number: 443, protocol: TLS}]}]`, []string{`error|destinations[0].hots|unknown field (known: allow, connectionPool, endpoints, host, loadBalancer, methods, name, outlierDetection, paths, ports, rateLimit, resolution, retries, timeout, tls)`, `error|destinations[0].host|is required`}},
		{`wrong type`, `destinations: [{name: a, host: a.example.com, ports: [{number: "443", protocol: TLS}]}]`, []string{`error|destinations[0].ports[0].number|"443" is not a valid non-negative integer`}},
		{`not a list`, `destinations: {name: a}`, []string{`error|destinations|must be a list, got a mapping`}},
		{`not a mapping`, `- a`, []string{`error||must be a mapping with gateways and destinations, got a list`}},
		{`empty document`, `# nothing`, []string{`error||empty intent document`}},
		{`duplicate key`, `destinations: []
destinations: []`, []string{`error|destinations|is defined twice (lines 1 and 2 of data key egress.yaml); checking the first`, `error|destinations|at least one destination is required`}},
		{`alias`, `x: &a [1]
destinations: *a`, []string{`error|x|unknown field (known: destinations, gateways)`, `error|destinations|YAML aliases are not supported`}},
		{`bad duration`, `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], timeout: 5}]`, []string{`error|destinations[0].timeout|"5" is not a valid duration (e.g. "10s", "250ms")`}},
		{`syntax error`, `destinations: [{name: a`, []string{`error||invalid YAML at line 1 of data key egress.yaml: did not find expected ',' or '}'`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc, diags := ParseDocument(origin, []byte(c.doc))
			var got []string
			for _, d := range diags {
				if d.Origin != origin {
					t.Errorf("origin %+v, want %+v", d.Origin, origin)
				}
				got = append(got, string(d.Severity)+"|"+d.Path+"|"+d.Message)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if errs := strings.Contains(strings.Join(c.want, "\n"), "error|"); errs != (doc == nil) {
				t.Errorf("errors %v, but document accepted %v", errs, doc != nil)
			}
		})
	}
}

// A valid document is accepted without a problem, with its defaults.
func TestDocumentValid(t *testing.T) {
	doc, diags := ParseDocument(origin, []byte(`gateways: [egress-gateway]
destinations:
  - {name: gh, host: API.GitHub.com., ports: [{number: 443, protocol: TLS}], allow: [{cidr: 10.0.0.0/8}, {cidr: 192.0.2.1}]}
  - {name: web, host: web.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE}, retries: {attempts: 2}, rateLimit: {maxTokens: 5, fillInterval: 1s}}
  - {name: db, host: db.example.com, endpoints: [{address: 192.0.2.10}], ports: [{number: 5432, protocol: TCP}]}
  - {name: docs, host: "*.docs.example.com", ports: [{number: 443, protocol: TLS}]}
`))
	if doc == nil || len(diags) > 0 {
		t.Fatalf("rejected:\n%v", diags)
	}
	d := doc.Destinations
	for _, c := range []struct{ what, got, want string }{
		{"host lowercased, trailing dot dropped", d[0].Host, "api.github.com"},
		{"default resolution, exact host", string(d[0].Resolution), "DNS"},
		{"default load balancer", string(d[0].LoadBalancer), "ROUND_ROBIN"},
		{"default TLS port", strconv.Itoa(int(d[1].TLS.Port)), "443"},
		{"default SNI", d[1].TLS.SNI, "web.example.com"},
		{"default retry_on", strings.Join(d[1].Retries.On, ","), "connect-failure,refused-stream,reset,5xx"},
		{"default tokens per fill", strconv.Itoa(int(d[1].RateLimit.TokensPerFill)), "1"},
		{"IP endpoints: STATIC", string(d[2].Resolution), "STATIC"},
		{"wildcard: DYNAMIC", string(d[3].Resolution), "DYNAMIC"},
		{"no load balancer with DYNAMIC", string(d[3].LoadBalancer), ""},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
}

// Lines in messages are the file's when the value's lines are (a literal
// block of a manifest file), else counted within the data key, saying so.
func TestLinesInMessages(t *testing.T) {
	data := map[string]string{
		"a.yaml": "destinations:\n  - name: x\n    host: [unclosed\n",
		"b.yaml": "destinations: []\ndestinations: []\n",
	}
	file := Origin{File: "cm.yaml", Namespace: "ns", Name: "cm"}
	for _, c := range []struct {
		name   string
		origin Origin
		lines  map[string]int
		want   []string
	}{
		{"folder, literal blocks", file, map[string]int{"a.yaml": 11, "b.yaml": 20}, []string{
			"cm.yaml: ns/cm: a.yaml: invalid YAML at cm.yaml:13 (line 3 of data key a.yaml): did not find expected ',' or ']'",
			"cm.yaml: ns/cm: b.yaml: destinations: at least one destination is required",
			"cm.yaml: ns/cm: b.yaml: destinations: is defined twice (lines 20 and 21 of cm.yaml; lines 1 and 2 of data key b.yaml); checking the first",
		}},
		{"folder, a value that is not a literal block", file, map[string]int{"b.yaml": 20}, []string{
			"cm.yaml: ns/cm: a.yaml: invalid YAML at line 3 of data key a.yaml: did not find expected ',' or ']'",
			"cm.yaml: ns/cm: b.yaml: destinations: at least one destination is required",
			"cm.yaml: ns/cm: b.yaml: destinations: is defined twice (lines 20 and 21 of cm.yaml; lines 1 and 2 of data key b.yaml); checking the first",
		}},
		{"Kubernetes: no file", Origin{Namespace: "ns", Name: "cm"}, nil, []string{
			"ns/cm: a.yaml: invalid YAML at line 3 of data key a.yaml: did not find expected ',' or ']'",
			"ns/cm: b.yaml: destinations: at least one destination is required",
			"ns/cm: b.yaml: destinations: is defined twice (lines 1 and 2 of data key b.yaml); checking the first",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, diags := ParseConfigMapLines(c.origin, time.Time{}, data, c.lines)
			if got := diags.Error(); got != strings.Join(c.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(c.want, "\n"))
			}
		})
	}
	// A lone document (no key) names its lines alone.
	if _, diags := Decode(Origin{}, []byte("a: [1,\n")); !strings.HasSuffix(diags.Error(), "invalid YAML at line 1: did not find expected node content") {
		t.Errorf("no key: %v", diags)
	}
}
