package intent

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A duplicate key is reported once, with its path, and the first value is
// still checked: no false "is required" follow-ons, and the first value's
// own problems are found.
func TestDuplicateKeyNoFollowOns(t *testing.T) {
	doc := `destinations:
- name: a
  name: b
  host: a.example.com
  ports: [{number: 70000, protocol: TLS}]
  ports: [{number: 443, protocol: TLS}]
  ports: []
`
	_, diags := ParseDocument(origin, []byte(doc))
	var got []string
	for _, d := range diags {
		got = append(got, d.Path+": "+d.Message)
	}
	want := []string{
		"destinations[0].name: is defined twice (lines 2 and 3 of data key egress.yaml); checking the first",
		"destinations[0].ports: is defined 3 times (lines 5, 6 and 7 of data key egress.yaml); checking the first",
		"destinations[0].ports[0].number: 70000 is not a valid port",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Wildcards at or above a public suffix (ICANN or private section) are
// refused; exact names, and wildcards under one owner's domain, are not.
func TestPublicSuffixWildcards(t *testing.T) {
	refused := map[string]string{
		"*.com":                   `"*.com" would admit every name under the public suffix "com" (anyone can register a name under it)`,
		"*.co.uk":                 `"*.co.uk" would admit every name under the public suffix "co.uk"`,
		"*.COM.":                  `"*.com" would admit every name under the public suffix "com"`,
		"*.github.io":             `"*.github.io" would admit every name under the public suffix "github.io" (listed in the private section of the Public Suffix List`,
		"*.s3.amazonaws.com":      `"*.s3.amazonaws.com" would admit every name under the public suffix "s3.amazonaws.com"`,
		"*.compute.amazonaws.com": `"*.compute.amazonaws.com" would admit every name under "compute.amazonaws.com", whose subdomains are all public suffixes`,
		"*.kawasaki.jp":           `"*.kawasaki.jp" would admit every name under "kawasaki.jp", whose subdomains are all public suffixes (anyone can register a name under it)`,
	}
	for host, want := range refused {
		doc := fmt.Sprintf(`destinations: [{name: a, host: %q, ports: [{number: 443, protocol: TLS}]}]`, host)
		d, diags := ParseDocument(origin, []byte(doc))
		if d != nil || !strings.Contains(diags.Error(), "destinations[0].host: "+want) {
			t.Errorf("%s: want %q in:\n%v", host, want, diags)
		}
	}
	for _, host := range []string{"*.example.com", "*.docs.github.io", "*.cluster.local", "*.corp", "*.amazonaws.com", "com", "github.io", "co.uk"} {
		doc := fmt.Sprintf(`destinations: [{name: a, host: %q, ports: [{number: 443, protocol: TLS}]}]`, host)
		if _, diags := ParseDocument(origin, []byte(doc)); len(diags) != 0 {
			t.Errorf("%s refused: %v", host, diags)
		}
	}
}

// An over-long host says that length is why, with the limit and the length.
func TestLongHostSaysWhy(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + ".example.com" // 256
	label := strings.Repeat("x", 64) + ".example.com"
	cases := map[string]string{
		long:        fmt.Sprintf("is %d characters long: a DNS name has at most 253", len(long)),
		"*." + long: fmt.Sprintf("is %d characters long: a DNS name has at most 253", len(long)+2),
		label:       "has a label of 64 characters (\"" + strings.Repeat("x", 64) + "\"): a DNS label has at most 63",
	}
	for host, want := range cases {
		doc := fmt.Sprintf(`destinations: [{name: a, host: %q, ports: [{number: 443, protocol: TLS}]}]`, host)
		if _, diags := ParseDocument(origin, []byte(doc)); !strings.Contains(diags.Error(), want) {
			t.Errorf("want %q in:\n%v", want, diags)
		}
	}
}

// A ConfigMap lists its first MaxDiagnosticsPerConfigMap problems and one
// summary counting the rest, however broken it is, and stays rejected.
func TestDiagnosticsCappedPerConfigMap(t *testing.T) {
	var b strings.Builder
	b.WriteString("destinations:\n")
	for range 1000 {
		b.WriteString("- {}\n") // name, host and ports missing: 3 errors each
	}
	in, diags := ParseConfigMap(Origin{Namespace: "ns", Name: "cm"}, time.Time{}, map[string]string{"a.yaml": b.String(), "b.txt": "x"})
	if in != nil {
		t.Fatal("accepted")
	}
	if len(diags) != MaxDiagnosticsPerConfigMap+1 {
		t.Fatalf("%d diagnostics", len(diags))
	}
	last := diags[len(diags)-1]
	want := "ns/cm: … and 2951 more problems in this ConfigMap (2950 errors, 1 warnings), not listed: only the first 50 are"
	if last.Error() != want || last.Severity != SeverityError {
		t.Fatalf("summary %q (%s), want %q", last.Error(), last.Severity, want)
	}
	// Capping again adds up: the summary is not one more problem.
	extra := append(diags, Diagnostic{Origin: Origin{Namespace: "ns", Name: "cm"}, Message: "conflict", Severity: SeverityError})
	again := extra.Capped(MaxDiagnosticsPerConfigMap)
	if len(again) != len(diags) || !strings.Contains(again[len(again)-1].Message, "… and 2952 more problems in this ConfigMap (2951 errors, 1 warnings)") {
		t.Fatalf("capped again: %d, last %q", len(again), again[len(again)-1].Message)
	}
}

// A huge broken ConfigMap keeps its list of problems short: past the cap
// they are only counted, not kept.
func TestHugeBrokenConfigMapStaysCapped(t *testing.T) {
	n := (MaxConfigMapBytes / 4) / 5
	data := "destinations:\n" + strings.Repeat("- {}\n", n)
	_, diags := ParseConfigMap(Origin{Namespace: "ns", Name: "cm"}, time.Time{}, map[string]string{"a.yaml": data})
	if len(diags) != MaxDiagnosticsPerConfigMap+1 {
		t.Fatalf("%d diagnostics", len(diags))
	}
	if e, _ := diags[len(diags)-1].Counts(); e != 3*n-MaxDiagnosticsPerConfigMap {
		t.Fatalf("summary counts %d errors, want %d", e, 3*n-MaxDiagnosticsPerConfigMap)
	}
}

// Capped keeps n per ConfigMap (per file for file problems), in order, and
// puts each summary after the last kept one of its ConfigMap.
func TestCapped(t *testing.T) {
	var ds Diagnostics
	for i := range 4 {
		ds = append(ds, Diagnostic{Origin: Origin{Namespace: "a", Name: "x", Key: "k.yaml"}, Path: fmt.Sprint(i), Message: "m", Severity: SeverityWarning})
	}
	ds = append(ds, Diagnostic{Origin: Origin{File: "f.yaml"}, Message: "bad file", Severity: SeverityError})
	ds = append(ds, Diagnostic{Origin: Origin{Namespace: "b", Name: "y"}, Message: "one", Severity: SeverityError})
	var got []string
	for _, d := range ds.Capped(2) {
		got = append(got, d.Error())
	}
	want := []string{
		"a/x: k.yaml: warning: 0: m",
		"a/x: k.yaml: warning: 1: m",
		"a/x: warning: … and 2 more problems in this ConfigMap (0 errors, 2 warnings), not listed: only the first 2 are",
		"f.yaml: bad file",
		"b/y: one",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(Diagnostics(nil).Capped(2)); n != 0 {
		t.Fatal(n)
	}
}

// The data of a ConfigMap is bounded as Kubernetes bounds it (keys and
// values, 1 MiB), in both modes, with the size and the limit named.
func TestConfigMapSizeBound(t *testing.T) {
	doc := "destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}]}]\n#"
	pad := func(n int) map[string]string {
		return map[string]string{"a.yaml": doc + strings.Repeat("x", n-len("a.yaml")-len(doc))}
	}
	if in, diags := ParseConfigMap(Origin{Namespace: "ns", Name: "cm"}, time.Time{}, pad(MaxConfigMapBytes)); in == nil {
		t.Fatalf("1 MiB refused: %v", diags)
	}
	in, diags := ParseConfigMap(Origin{File: "f.yaml", Namespace: "ns", Name: "cm"}, time.Time{}, pad(MaxConfigMapBytes+1))
	want := "f.yaml: ns/cm: data is 1048577 bytes (keys and values), over the 1048576 bytes (1 MiB) Kubernetes allows a ConfigMap: not parsed"
	if in != nil || len(diags) != 1 || !strings.HasPrefix(diags[0].Error(), want) {
		t.Fatalf("got %v", diags)
	}
}
