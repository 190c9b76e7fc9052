package discover

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/watch"
)

var update = flag.Bool("update", false, "rewrite testdata/proposed.txt")

// resolveOptions judge as a server with the forward proxy on 3128 and the
// mesh (trust domain cluster.local) would.
var resolveOptions = intent.ResolveOptions{ReservedPorts: map[uint32]string{3128: "forward proxy"}, TrustDomain: "cluster.local", SettingsNamespace: "egress-xds"}

func testOptions() Options {
	return Options{TrustDomain: "cluster.local", WildcardThreshold: 3}
}

func current(t testing.TB) []compile.ConfigMap {
	t.Helper()
	state, err := watch.LoadDir("testdata/current")
	if err != nil {
		t.Fatal(err)
	}
	cms, _, diags := compile.FromFolder(state)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cms
}

func render(res Result) string {
	var b strings.Builder
	for _, p := range res.Proposals {
		fmt.Fprintf(&b, "=== %s (%s, widening %v)\n%s", p.File, p.ConfigMap, p.Widening, p.Manifest)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

func propose(t testing.TB, lines []byte, cur []compile.ConfigMap) (Result, Stats) {
	t.Helper()
	c := NewCollector(testOptions())
	if err := c.Read(bytes.NewReader(lines)); err != nil {
		t.Fatal(err)
	}
	return c.Propose(cur, resolveOptions), c.Stats
}

// testdata/audit.log holds every kind of audit line (TLS by SNI, HTTP by
// Host, CONNECT as TLS and TCP, absolute-form, the mesh with an identity,
// lines wrapped by log collectors, a refused one, a source outside an
// allow list, one whose destination has per-entry methods, a request
// outside its destination's methods and paths) and hostile ones (an IP
// SNI, another trust domain, a group and a host that try to inject YAML,
// a wildcard at a public suffix, a CONNECT to the forward proxy's own
// port). The proposals are testdata/proposed.txt (go test -update
// rewrites it).
func TestProposeGolden(t *testing.T) {
	lines, err := os.ReadFile("testdata/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	res, stats := propose(t, lines, current(t))
	got := render(res) + fmt.Sprintf("stats: %+v\n", stats)
	path := filepath.Join("testdata", "proposed.txt")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("proposals differ from %s (go test ./internal/discover -update rewrites it):\n%s", path, got)
	}
	for _, must := range []string{"api.new-service.com", "db.partner.example", "plain.partner.example", "wildcard.cdn.example.net", "widen.apps.web.yaml"} {
		if !strings.Contains(got, must) {
			t.Errorf("nothing proposed for %s", must)
		}
	}
	for _, never := range []string{"127.0.0.1", "injected", "0.0.0.0/0", "other.domain", "*.co.uk", "proxy.example.org:"} {
		if strings.Contains(got, "\n      "+never) || strings.Contains(manifests(res), never) {
			t.Errorf("%q reached a proposal", never)
		}
	}
	accepted(t, res, current(t))
}

func manifests(res Result) string {
	var b strings.Builder
	for _, p := range res.Proposals {
		b.Write(p.Manifest)
	}
	return b.String()
}

// accepted fails unless every proposal, applied over cur, is accepted by
// the server's rules without an error: what xds-server validate checks.
func accepted(t testing.TB, res Result, cur []compile.ConfigMap) {
	t.Helper()
	byKey := map[string]compile.ConfigMap{}
	for _, cm := range cur {
		byKey[cm.Origin().ConfigMap()] = cm
	}
	for _, p := range res.Proposals {
		objs, _, err := watch.ParseManifests(p.Manifest)
		if err != nil || len(objs) != 1 {
			t.Fatalf("%s does not parse: %v\n%s", p.File, err, p.Manifest)
		}
		byKey[p.ConfigMap] = compile.ConfigMap{File: p.File, ConfigMap: &objs[0]}
	}
	var all []compile.ConfigMap
	for _, cm := range byKey {
		all = append(all, cm)
	}
	intents, diags := compile.NewStore().Update(all, resolveOptions)
	if diags.HasErrors() {
		t.Fatalf("proposals refused:\n%s", diags.Error())
	}
	if len(intents) != len(all) {
		t.Fatalf("%d of %d ConfigMaps accepted", len(intents), len(all))
	}
}

// The same lines in another order give the same proposals: counts, first
// and last seen are order-free, names and files sorted.
func TestProposeDeterministic(t *testing.T) {
	lines, err := os.ReadFile("testdata/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	ls := bytes.SplitAfter(lines, []byte("\n"))
	rev := make([][]byte, 0, len(ls))
	for i := len(ls) - 1; i >= 0; i-- {
		l := ls[i]
		if len(l) > 0 && l[len(l)-1] != '\n' {
			l = append(append([]byte(nil), l...), '\n')
		}
		rev = append(rev, l)
	}
	a, _ := propose(t, lines, current(t))
	b, _ := propose(t, bytes.Join(rev, nil), current(t))
	if render(a) != render(b) {
		t.Fatalf("order changed the proposals:\n%s\n---\n%s", render(a), render(b))
	}
}

// Without current intents every audited destination is proposed, and
// sources outside allow lists are only noted: there is nothing to widen.
func TestProposeWithoutCurrent(t *testing.T) {
	lines, err := os.ReadFile("testdata/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	res, _ := propose(t, lines, nil)
	for _, p := range res.Proposals {
		if p.Widening {
			t.Errorf("widening %s without current intents", p.File)
		}
	}
	if !strings.Contains(render(res), "no current intent (--config-dir) declares it") {
		t.Errorf("the refused source is not noted:\n%s", render(res))
	}
	if !strings.Contains(manifests(res), `host: "web.example.com"`) {
		t.Errorf("without current intents, the declared host is proposed too")
	}
	accepted(t, res, nil)
}

func TestParseLine(t *testing.T) {
	ours := `{"listener":"tls_443","audit":"not_declared","sni":"a.example.com"}`
	for _, c := range []struct {
		name, line string
		ok         bool
	}{
		{"ours", ours, true},
		{"not audited", `{"listener":"tls_443","sni":"a.example.com"}`, false},
		{"docker json-file", `{"log":` + quote(ours+"\n") + `,"stream":"stdout","time":"x"}`, true},
		{"fluent-bit", `{"kubernetes":{"pod":"p"},"message":` + quote(ours) + `}`, true},
		{"CRI prefix", `2026-12-01T10:00:00Z stdout F ` + ours, true},
		{"truncated", ours[:30], false},
		{"not JSON", `audit: yes`, false},
		{"number listener", `{"listener":1,"audit":"x"}`, false},
		{"wrapped twice", `{"log":` + quote(`{"log":`+quote(ours)+`}`) + `}`, false},
	} {
		if _, ok := parseLine([]byte(c.line)); ok != c.ok {
			t.Errorf("%s: ok %v, want %v", c.name, ok, c.ok)
		}
	}
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"API.Example.com.": "api.example.com", "a.b": "a.b", "localhost": "", "a.localhost": "", "1.2.3.4": "",
		"0x7f.1": "", "a..b": "", "-a.com": "", "a_b.com": "", "a.1com": "", "xn--bcher-kva.example": "xn--bcher-kva.example",
		strings.Repeat("a", 64) + ".com": "", "": "", "*.example.com": "",
	} {
		if got, _ := hostName(in); got != want {
			t.Errorf("hostName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Addresses of one /CIDRBits become the narrowest CIDR covering them.
func TestCIDRAggregation(t *testing.T) {
	c := NewCollector(Options{CIDRBits: 24})
	for _, a := range []string{"10.0.0.5", "10.0.0.9", "10.0.1.200", "2001:db8::1", "2001:db8::ff"} {
		c.Add([]byte(`{"listener":"tls_443","audit":"not_declared","group":"g","port":"443","sni":"a.example.com","downstream_address":"` + strings.Replace(a, "2001", "[2001", 1) + map[bool]string{true: "]:1", false: ":1"}[strings.Contains(a, ":")] + `"}`))
	}
	var got []string
	for _, e := range allowEntries(c.dests[destKey{"g", "a.example.com", 443, intent.ProtocolTLS}].sources) {
		got = append(got, e.value)
	}
	want := "10.0.0.0/28 10.0.1.200/32 2001:db8::/120"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

// A request outside its destination's methods and paths is counted apart,
// neither proposed (widening rules is for a person) nor unusable.
func TestOutsideRulesCounted(t *testing.T) {
	c := NewCollector(Options{})
	c.Add([]byte(`{"listener":"http_80","audit":"method_or_path_not_allowed","group":"g","port":"80","destination":"apps/egress/web/80","authority":"web.example.com","method":"POST","downstream_address":"10.0.0.5:1"}`))
	if c.Stats.OutsideRules != 1 || c.Stats.Unusable != 0 || len(c.dests) != 0 || len(c.widen) != 0 {
		t.Fatalf("stats %+v, %d destinations, %d widenings", c.Stats, len(c.dests), len(c.widen))
	}
	if res := c.Propose(nil, intent.ResolveOptions{}); len(res.Proposals) != 0 {
		t.Fatalf("proposed %v", res.Proposals)
	}
}
