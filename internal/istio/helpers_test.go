package istio

import (
	"reflect"
	"strings"
	"testing"
)

// Host patterns decide which destinations a rule names: covering a
// wildcard destination only in part must never count as covering it.
func TestHostCovers(t *testing.T) {
	for _, c := range []struct {
		pattern, host    string
		covers, overlaps bool
	}{
		{"*", "api.example.com", true, false},
		{"*", "*.example.com", true, false},
		{"api.example.com", "api.example.com", true, false},
		{"api.example.com", "*.example.com", false, true},
		{"*.example.com", "api.example.com", true, false},
		{"*.example.com", "*.example.com", true, false},
		{"*.example.com", "*.docs.example.com", true, false},
		{"*.docs.example.com", "*.example.com", false, true},
		{"*.example.com", "example.com", false, false},
		{"*.example.org", "*.example.com", false, false},
	} {
		if got := hostCovers(c.pattern, c.host); got != c.covers {
			t.Errorf("hostCovers(%q, %q) = %v", c.pattern, c.host, got)
		}
		if got := hostOverlaps(c.pattern, c.host); got != c.overlaps {
			t.Errorf("hostOverlaps(%q, %q) = %v", c.pattern, c.host, got)
		}
	}
}

// Sources AND-ed in one Istio source admit what both admit, no more.
func TestIntersect(t *testing.T) {
	p := func(ns, sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }
	for _, c := range []struct {
		a, b, want idset
	}{
		{idset{any: true}, idset{namespaces: []string{"a"}}, idset{namespaces: []string{"a"}}},
		{idset{principals: []string{p("a", "x"), p("b", "y")}}, idset{namespaces: []string{"a"}}, idset{principals: []string{p("a", "x")}}},
		{idset{namespaces: []string{"a"}}, idset{principals: []string{p("b", "y")}}, idset{}},
		{idset{namespaces: []string{"a", "b"}}, idset{namespaces: []string{"b", "c"}}, idset{namespaces: []string{"b"}}},
	} {
		if got := intersect(c.a, c.b); !reflect.DeepEqual(got, c.want) {
			t.Errorf("intersect(%+v, %+v) = %+v, want %+v", c.a, c.b, got, c.want)
		}
	}
}

// Destination names are DNS labels, stable, and a long one keeps a hash
// of the whole so two long names stay apart.
func TestDNSLabel(t *testing.T) {
	long := strings.Repeat("a", 70)
	for in, want := range map[string]string{
		"github-api":            "github-api",
		"Payment_API.v2":        "payment-api-v2",
		"cnn-*.wikipedia.org":   "cnn-wikipedia-org",
		"---":                   "destination",
		long:                    dnsLabel(long),
		"se-wildcard.docs.com.": "se-wildcard-docs-com",
	} {
		got := dnsLabel(in)
		if got != want || len(got) > 63 || !validLabel(got) {
			t.Errorf("dnsLabel(%q) = %q, want %q (a DNS label)", in, got, want)
		}
	}
	if dnsLabel(long+"x") == dnsLabel(long+"y") {
		t.Error("two long names give one label")
	}
}
