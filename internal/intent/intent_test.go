package intent

import (
	"strings"
	"testing"
	"time"
)

var origin = Origin{Namespace: "payments", Name: "egress", Key: "egress.yaml"}

func TestParseDocumentErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // each must appear in the diagnostics
	}{
		{"port out of range", `destinations: [{name: a, host: a.example.com, ports: [{number: 70000, protocol: TLS}]}]`,
			[]string{"destinations[0].ports[0].number: 70000 is not a valid port"}},
		{"unknown nested field", `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS, tls: true}]}]`,
			[]string{"destinations[0].ports[0].tls: unknown field"}},
		{"wrong type for a list", `destinations: {name: a}`, []string{"destinations: must be a list"}},
		{"duration", `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], timeout: 5}]`,
			[]string{`destinations[0].timeout: "5" is not a valid duration`}},
		{"duplicate key", "destinations: []\ndestinations: []", []string{"destinations: is defined twice (lines 1 and 2 of data key egress.yaml)"}},
		{"wildcard only leading", `destinations: [{name: a, host: "a.*.example.com", ports: [{number: 443, protocol: TLS}]}]`,
			[]string{`destinations[0].host: "a.*.example.com" is not a DNS name`}},
		{"ip host", `destinations: [{name: a, host: 10.1.2.3, ports: [{number: 443, protocol: TLS}]}]`,
			[]string{"is an IP address"}},
		{"two ports same number", `destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}, {number: 443, protocol: HTTP}]}]`,
			[]string{"destinations[0].ports[1].number: port 443 is already declared by ports[0]"}},
		{"mutual needs client cert", `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: MUTUAL}}]`,
			[]string{"destinations[0].tls.clientCertificate: is required for mode MUTUAL"}},
		{"insecure contradicts CA", `destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, insecureSkipVerify: true, caCertificates: {secret: ca}}}]`,
			[]string{"destinations[0].tls.insecureSkipVerify: contradicts"}},
		{"dynamic tcp", `destinations: [{name: a, host: "*.example.com", ports: [{number: 5432, protocol: TCP}]}]`,
			[]string{"destinations[0].resolution: DYNAMIC needs a name per connection"}},
		{"static needs IPs", `destinations: [{name: a, host: a.example.com, resolution: STATIC, endpoints: [{address: db.example.com}], ports: [{number: 5432, protocol: TCP}]}]`,
			[]string{`destinations[0].endpoints[0].address: "db.example.com" is not an IP address`}},
		{"alias", "x: &a [1]\ndestinations: *a", []string{"aliases are not supported"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc, diags := ParseDocument(origin, []byte(c.doc))
			if doc != nil {
				t.Fatalf("accepted: %+v", doc)
			}
			text := diags.Error()
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("want %q in:\n%s", w, text)
				}
			}
			if !strings.HasPrefix(text, "payments/egress: egress.yaml: ") {
				t.Errorf("diagnostics must name the ConfigMap and key:\n%s", text)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	doc, diags := ParseDocument(origin, []byte(`destinations:
  - {name: api, host: API.Example.com., ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE}, retries: {attempts: 2}, rateLimit: {maxTokens: 5, fillInterval: 1s}}
  - {name: docs, host: "*.docs.example.com", ports: [{number: 443, protocol: TLS}]}
  - {name: db, host: db.example.com, endpoints: [{address: 192.0.2.1}], ports: [{number: 5432, protocol: TCP}]}
`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	api, docs, db := doc.Destinations[0], doc.Destinations[1], doc.Destinations[2]
	if api.Host != "api.example.com" || api.Resolution != ResolutionDNS || api.TLS.Port != 443 || api.TLS.SNI != "api.example.com" ||
		api.LoadBalancer != LBRoundRobin || api.RateLimit.TokensPerFill != 1 || len(api.Retries.On) == 0 {
		t.Errorf("api defaults: %+v %+v", api, api.TLS)
	}
	if docs.Resolution != ResolutionDynamic || docs.LoadBalancer != "" {
		t.Errorf("wildcard defaults: %+v", docs)
	}
	if db.Resolution != ResolutionStatic {
		t.Errorf("IP endpoints imply STATIC: %+v", db)
	}
}

func TestInsecureIsLoud(t *testing.T) {
	doc, diags := ParseDocument(origin, []byte(`destinations: [{name: a, host: a.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, insecureSkipVerify: true}}]`))
	if doc == nil || diags.HasErrors() || len(diags) != 1 || diags[0].Severity != SeverityWarning ||
		!strings.Contains(diags[0].Message, "verification is OFF") {
		t.Fatalf("want one warning, got %v", diags)
	}
}

func intentOf(t *testing.T, ns, name string, created time.Time, doc string) *Intent {
	t.Helper()
	in, diags := ParseConfigMap(Origin{Namespace: ns, Name: name}, created, map[string]string{"egress.yaml": doc})
	if in == nil {
		t.Fatal(diags)
	}
	return in
}

// Conflicts count only between overlapping gateway groups; the older
// ConfigMap wins, ties by namespace/name.
func TestResolveGroupsAndOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	gh := `destinations: [{name: gh, host: api.github.com, ports: [{number: 443, protocol: TLS}]}]`
	a := intentOf(t, "a", "x", t0.Add(time.Hour), "gateways: [one]\n"+gh)
	b := intentOf(t, "b", "x", t0.Add(2*time.Hour), "gateways: [two]\n"+gh) // disjoint: no conflict
	c := intentOf(t, "c", "x", t0, gh)                                      // all groups, oldest: wins over both
	accepted, diags := Resolve(newcomers(a, b, c), ResolveOptions{})
	if len(accepted) != 1 || accepted[0] != c {
		t.Fatalf("accepted %v\n%v", accepted, diags)
	}
	if !strings.Contains(diags.Error(), "a/x: egress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by c/x") {
		t.Fatalf("loser not told who won:\n%v", diags)
	}
	accepted, _ = Resolve(newcomers(a, b), ResolveOptions{})
	if len(accepted) != 2 {
		t.Fatalf("disjoint groups conflict: %v", accepted)
	}
	// Same creation time: namespace/name order decides.
	d := intentOf(t, "d", "x", t0, gh)
	accepted, _ = Resolve(newcomers(d, c), ResolveOptions{})
	if len(accepted) != 1 || accepted[0] != c {
		t.Fatalf("tie not broken by namespace/name: %v", accepted[0].Origin)
	}
}

func TestReservedPorts(t *testing.T) {
	in := intentOf(t, "a", "x", time.Time{}, `destinations: [{name: p, host: p.example.com, ports: [{number: 3128, protocol: TLS}]}]`)
	_, diags := Resolve(newcomers(in), ResolveOptions{ReservedPorts: map[uint32]string{3128: "forward proxy"}})
	if !strings.Contains(diags.Error(), "listener port 3128 is reserved for the gateway's forward proxy") {
		t.Fatal(diags)
	}
}

func TestCheckTrustDomain(t *testing.T) {
	for td, ok := range map[string]bool{"example.org": true, "cluster.local": true, "td_1-a": true, "": false, "Example.org": false, "a/b": false, "a:1": false} {
		if err := CheckTrustDomain(td); (err == nil) != ok {
			t.Errorf("%q: %v", td, err)
		}
	}
}

// A wildcard destination originating TLS may name any upstream port: the
// gateway connects to tls.port whatever the request names.
func TestWildcardOriginationOnAnyPort(t *testing.T) {
	doc, diags := ParseDocument(origin, []byte(`destinations: [{name: a, host: "*.example.com", ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE, port: 8443}}]`))
	if doc == nil || diags.HasErrors() || doc.Destinations[0].TLS.Port != 8443 {
		t.Fatalf("%v", diags)
	}
}
