package intent

import (
	"strings"
	"testing"
	"time"
)

// newcomers are candidates of which none is served: a cold start.
func newcomers(ins ...*Intent) []Candidate {
	out := make([]Candidate, len(ins))
	for i, in := range ins {
		out[i] = Candidate{Current: in}
	}
	return out
}

// served are candidates served as they are now.
func served(ins ...*Intent) []Candidate {
	out := make([]Candidate, len(ins))
	for i, in := range ins {
		out[i] = Candidate{Current: in, Served: in}
	}
	return out
}

func names(ins []*Intent) string {
	var out []string
	for _, in := range ins {
		out = append(out, in.Origin.ConfigMap())
	}
	return strings.Join(out, ",")
}

const (
	githubAllowed = `destinations: [{name: gh, host: api.github.com, ports: [{number: 443, protocol: TLS}], allow: [{cidr: 10.1.0.0/16}]}]`
	githubOpen    = `destinations: [{name: gh, host: api.github.com, ports: [{number: 443, protocol: TLS}]}]`
	dbOpen        = `destinations: [{name: db, host: db.example.com, endpoints: [{address: 192.0.2.1}], ports: [{number: 5432, protocol: TCP}]}]`
	docsOpen      = `destinations: [{name: docs, host: docs.example.com, ports: [{number: 443, protocol: TLS}]}]`
)

// A newcomer never takes a served claim, whatever its name or creation
// time: folder ConfigMaps carry no creation time, and one sorting first
// took over an allow-listed destination and opened it to every source.
func TestServedClaimIsNeverTakenOver(t *testing.T) {
	incumbent := intentOf(t, "z-team", "egress", time.Time{}, githubAllowed+"\n")
	newcomer := intentOf(t, "a-team", "egress", time.Time{}, githubOpen)
	db := intentOf(t, "z-team", "db", time.Time{}, dbOpen)
	dbNew := intentOf(t, "a-team", "db", time.Time{}, dbOpen)
	cands := append(served(incumbent, db), newcomers(newcomer, dbNew)...)
	accepted, diags := Resolve(cands, ResolveOptions{})
	if got := names(accepted); got != "z-team/db,z-team/egress" {
		t.Fatalf("accepted %s\n%v", got, diags)
	}
	for _, want := range []string{
		"a-team/egress: egress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by z-team/egress (egress.yaml: destinations[0].ports[0]), which is served and keeps it",
		"a-team/db: egress.yaml: destinations[0].ports[0]: TCP port 5432",
	} {
		if !strings.Contains(diags.Error(), want) {
			t.Errorf("want %q in\n%v", want, diags)
		}
	}
	// On a cold start the same input resolves by name: the difference is
	// what was served.
	accepted, _ = Resolve(newcomers(incumbent, newcomer), ResolveOptions{})
	if got := names(accepted); got != "a-team/egress" {
		t.Fatalf("cold start: %s", got)
	}
}

// An edit of a served ConfigMap that claims what another one serves is
// refused like an invalid edit: the served version stays, and the other
// keeps its claim.
func TestConflictingEditKeepsServedVersion(t *testing.T) {
	old := intentOf(t, "a", "x", time.Time{}, docsOpen)
	edited := intentOf(t, "a", "x", time.Time{}, `destinations:
  - {name: docs, host: docs.example.com, ports: [{number: 443, protocol: TLS}]}
  - {name: gh, host: api.github.com, ports: [{number: 443, protocol: TLS}]}`)
	holder := intentOf(t, "b", "y", time.Time{}, githubAllowed)
	cands := append([]Candidate{{Current: edited, Served: old}}, served(holder)...)
	accepted, diags := Resolve(cands, ResolveOptions{})
	if len(accepted) != 2 || accepted[0] != old || accepted[1] != holder {
		t.Fatalf("accepted %s\n%v", names(accepted), diags)
	}
	text := diags.Error()
	for _, want := range []string{"a/x: egress.yaml: destinations[1].ports[0]: host api.github.com port 443 is already declared by b/y", "a/x: warning: keeping the served version of this ConfigMap until its conflicts are resolved"} {
		if !strings.Contains(text, want) {
			t.Errorf("want %q in\n%s", want, text)
		}
	}
}

// A claim one served ConfigMap gives up is free for another in the same
// rebuild, whichever sorts first.
func TestClaimGivenUpMovesInOneRebuild(t *testing.T) {
	aOld := intentOf(t, "a", "x", time.Time{}, docsOpen)
	aNew := intentOf(t, "a", "x", time.Time{}, `destinations:
  - {name: docs, host: docs.example.com, ports: [{number: 443, protocol: TLS}]}
  - {name: gh, host: api.github.com, ports: [{number: 443, protocol: TLS}]}`)
	bOld := intentOf(t, "b", "y", time.Time{}, githubAllowed)
	bNew := intentOf(t, "b", "y", time.Time{}, dbOpen) // gives api.github.com up
	accepted, diags := Resolve([]Candidate{{Current: aNew, Served: aOld}, {Current: bNew, Served: bOld}}, ResolveOptions{})
	if len(accepted) != 2 || accepted[0] != aNew || accepted[1] != bNew || diags.HasErrors() {
		t.Fatalf("accepted %s\n%v", names(accepted), diags)
	}
}

// A served version the server's options no longer allow (a port now
// reserved) is not served; the current version competes as a newcomer.
func TestServedVersionRecheckedAgainstOptions(t *testing.T) {
	in := intentOf(t, "a", "x", time.Time{}, `destinations: [{name: p, host: p.example.com, ports: [{number: 3128, protocol: TLS}]}]`)
	accepted, diags := Resolve(served(in), ResolveOptions{ReservedPorts: map[uint32]string{3128: "forward proxy"}})
	if len(accepted) != 0 || !strings.Contains(diags.Error(), "listener port 3128 is reserved") {
		t.Fatalf("accepted %s\n%v", names(accepted), diags)
	}
}

// Newcomers and served versions together give the same result whatever
// the order they are given in.
func TestResolveIgnoresInputOrder(t *testing.T) {
	a := intentOf(t, "a", "x", time.Time{}, githubOpen)
	b := intentOf(t, "b", "x", time.Time{}, githubAllowed)
	c := intentOf(t, "c", "x", time.Time{}, dbOpen)
	d := intentOf(t, "d", "x", time.Time{}, dbOpen)
	base := []Candidate{{Current: a}, {Current: b, Served: b}, {Current: d}, {Current: c, Served: c}}
	want, _ := Resolve(base, ResolveOptions{})
	if names(want) != "b/x,c/x" {
		t.Fatalf("accepted %s", names(want))
	}
	for i := range base {
		rot := append(append([]Candidate(nil), base[i:]...), base[:i]...)
		got, _ := Resolve(rot, ResolveOptions{})
		if names(got) != names(want) {
			t.Fatalf("order %d: %s, want %s", i, names(got), names(want))
		}
	}
}

// A conflict is a problem of one document like any other: its origin
// names the data key, its path is the field path alone, so every
// consumer (the log, /debug/config, Events, the webhook) shows
// "key: path: message" once, and /debug/config's key and field are right.
func TestConflictDiagnosticNamesKeyAndPath(t *testing.T) {
	winner := intentOf(t, "a", "x", time.Time{}, githubOpen)
	in, diags := ParseConfigMap(Origin{Namespace: "b", Name: "y"}, time.Time{}, map[string]string{"z.yaml": docsOpen, "gh.yaml": githubOpen})
	if in == nil {
		t.Fatal(diags)
	}
	_, diags = Resolve(append(served(winner), newcomers(in)...), ResolveOptions{})
	if len(diags) != 1 {
		t.Fatalf("want one conflict:\n%v", diags)
	}
	d := diags[0]
	want := Diagnostic{Origin: Origin{Namespace: "b", Name: "y", Key: "gh.yaml"}, Path: "destinations[0].ports[0]", Severity: SeverityError,
		Message: "host api.github.com port 443 is already declared by a/x (egress.yaml: destinations[0].ports[0]), which is served and keeps it: a served claim is never taken over"}
	if d != want {
		t.Fatalf("got  %#v\nwant %#v", d, want)
	}
	if !IsConflict(d) {
		t.Error("IsConflict is false")
	}
}

// A ResolveCache gives Resolve's result whatever the options did since
// its last call: each option that own reads is moved and moved back, so
// a cache keyed without one of them serves a stale result here.
func TestResolveCacheFollowsOptions(t *testing.T) {
	ins := []*Intent{
		intentOf(t, "a", "x", time.Time{}, `destinations: [{name: p, host: p.example.com, ports: [{number: 3128, protocol: TLS}], allow: [{namespace: apps}]}]`),
		intentOf(t, "b", "y", time.Time{}, `destinations: [{name: q, host: q.example.com, ports: [{number: 8443, protocol: TLS}], rateLimit: {global: {requests: 10, per: second}}}]`),
		intentOf(t, "c", "z", time.Time{}, `destinations: [{name: r, host: r.example.com, ports: [{number: 443, protocol: HTTP}]}]`),
		intentOf(t, "d", "w", time.Time{}, `destinations: [{name: s, host: s.example.com, ports: [{number: 8443, protocol: TLS}]}]`),
		settingsIntent(t, "egress-xds", "settings", time.Time{}, `groups: [{name: g, mode: audit}]`),
	}
	steps := []ResolveOptions{
		{},
		{ReservedPorts: map[uint32]string{3128: "forward proxy"}},
		{},
		{PortMap: map[uint32]uint32{443: 8443}},
		{},
		{TrustDomain: "cluster.local"},
		{},
		{RateLimitService: true},
		{},
		{SettingsNamespace: "egress-xds"},
		{},
	}
	rc := &ResolveCache{}
	for i, opts := range steps {
		want, wdiags := Resolve(newcomers(ins...), opts)
		got, gdiags := rc.Resolve(newcomers(ins...), opts)
		if names(got) != names(want) || gdiags.Error() != wdiags.Error() {
			t.Fatalf("step %d (%+v): cached %s\n%v\nfresh %s\n%v", i, opts, names(got), gdiags, names(want), wdiags)
		}
	}
	// The caller's map changed in place between two calls.
	pm := map[uint32]uint32{}
	rc.Resolve(newcomers(ins...), ResolveOptions{PortMap: pm})
	pm[443] = 8443
	want, wdiags := Resolve(newcomers(ins...), ResolveOptions{PortMap: pm})
	if got, gdiags := rc.Resolve(newcomers(ins...), ResolveOptions{PortMap: pm}); names(got) != names(want) || gdiags.Error() != wdiags.Error() {
		t.Fatalf("a port map changed in place: cached %s\n%v\nfresh %s\n%v", names(got), gdiags, names(want), wdiags)
	}
}
