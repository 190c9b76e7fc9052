package compile_test

import (
	"fmt"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// opts are a server with authenticated xDS: private keys may go inline.
var opts = translate.Options{ForwardProxyPort: 3128, PrivateKeysInline: true}

func intentCM(ns, name, doc string) compile.ConfigMap {
	return compile.ConfigMap{ConfigMap: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{intent.LabelKey: "true"}},
		Data:       map[string]string{"egress.yaml": doc},
	}}
}

// TestExamples proves every example the README shows translates cleanly for
// the gateway group they name, into resources that pass every check, with
// no warning either: an example is copied, and warns on every start.
func TestExamples(t *testing.T) {
	state, err := watch.LoadDir("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	if len(state.Files) < 5 {
		t.Fatalf("expected the examples, found %d files", len(state.Files))
	}
	var cms []compile.ConfigMap
	var secrets []corev1.Secret
	for _, f := range state.Files {
		if f.Err != nil {
			t.Errorf("%s: %v", f.Path, f.Err)
		}
		for i := range f.ConfigMaps {
			cms = append(cms, compile.ConfigMap{File: f.Path, ConfigMap: &f.ConfigMaps[i]})
		}
		secrets = append(secrets, f.Secrets...)
	}
	intents, diags := compile.NewStore().Update(cms, opts.ResolveOptions())
	if len(diags) > 0 {
		t.Fatalf("examples have problems:\n%v", diags)
	}
	if len(intents) != len(cms) {
		t.Fatalf("accepted %d of %d example ConfigMaps", len(intents), len(cms))
	}
	res, tdiags, err := compile.Group(intents, "egress-gateway", compile.Secrets(secrets), opts)
	if err != nil || len(tdiags) > 0 {
		t.Fatalf("translation: %v\n%v", err, tdiags)
	}
	if err := translate.CheckDeep(res); err != nil {
		t.Fatalf("CheckDeep: %v", err)
	}
	if _, err := snapshot.NewGroupSnapshot(res); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// Every example destination is served.
	for _, in := range intents {
		for _, d := range in.Docs {
			for _, dest := range d.Destinations {
				id := translate.DestinationID(d.Origin, dest.Name)
				if !hasClusterPrefix(res, id+"/") {
					t.Errorf("destination %s has no cluster", id)
				}
			}
		}
	}
}

func hasClusterPrefix(res *translate.Resources, prefix string) bool {
	for _, c := range res.Clusters {
		if strings.HasPrefix(c.Name, prefix) {
			return true
		}
	}
	return false
}

// TestResolveIsOrderIndependent: replicas see ConfigMaps in any order and
// must serve the same thing.
func TestResolveIsOrderIndependent(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var cms []compile.ConfigMap
	for i := 0; i < 12; i++ {
		cm := intentCM(fmt.Sprintf("team-%d", i%4), fmt.Sprintf("egress-%d", i), fmt.Sprintf(`
destinations:
  - name: shared
    host: api.shared.example
    ports: [{number: 443, protocol: TLS}]
  - name: own
    host: own-%d.example
    ports: [{number: %d, protocol: TCP}]
`, i, 6000+i%3))
		cm.CreationTimestamp = metav1.NewTime(base.Add(time.Duration(i%5) * time.Hour))
		cms = append(cms, cm)
	}
	var want string
	for round := 0; round < 20; round++ {
		shuffled := append([]compile.ConfigMap(nil), cms...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		intents, diags := compile.NewStore().Update(shuffled, opts.ResolveOptions())
		res, _, err := compile.Group(intents, "g", nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := snapshot.NewGroupSnapshot(res)
		if err != nil {
			t.Fatal(err)
		}
		got := diags.Error()
		for _, typ := range snapshot.Types {
			got += "\n" + snap.Type(typ).Version
		}
		if round == 0 {
			want = got
			continue
		}
		if got != want {
			t.Fatalf("round %d differs:\n%s\nwant:\n%s", round, got, want)
		}
	}
	if !strings.Contains(want, "team-0/egress-0") {
		t.Fatalf("the oldest ConfigMap, team-0/egress-0, should be named as the winner:\n%s", want)
	}
}

// TestLastGoodStays: an edit that breaks a ConfigMap keeps its previous
// version served; deleting the ConfigMap removes it.
func TestLastGoodStays(t *testing.T) {
	s := compile.NewStore()
	good := intentCM("apps", "github", "destinations: [{name: github, host: api.github.com, ports: [{number: 443, protocol: TLS}]}]")
	intents, diags := s.Update([]compile.ConfigMap{good}, opts.ResolveOptions())
	if len(intents) != 1 || diags.HasErrors() {
		t.Fatalf("good: %v %v", intents, diags)
	}
	bad := intentCM("apps", "github", "destinations: [{name: github, host: api.github.com, ports: [{number: 99999, protocol: TLS}]}]")
	intents, diags = s.Update([]compile.ConfigMap{bad}, opts.ResolveOptions())
	if len(intents) != 1 || intents[0].Docs[0].Destinations[0].Ports[0].Number != 443 {
		t.Fatalf("the last good version should stay: %v", intents)
	}
	if !strings.Contains(diags.Error(), "destinations[0].ports[0].number: 99999 is not a valid port") ||
		!strings.Contains(diags.Error(), "keeping the last valid version") {
		t.Fatalf("diagnostics: %v", diags)
	}
	intents, _ = s.Update(nil, opts.ResolveOptions())
	if len(intents) != 0 {
		t.Fatalf("deleted ConfigMap still served: %v", intents)
	}
	// After a deletion there is no last good version to fall back to.
	intents, _ = s.Update([]compile.ConfigMap{bad}, opts.ResolveOptions())
	if len(intents) != 0 {
		t.Fatalf("a ConfigMap that never parsed is served: %v", intents)
	}
}

// TestServedIsWhatWasParsed: the ConfigMaps Served returns (what a
// restart restores) are the versions served, even when the caller then
// edits the objects it gave in place (a broken edit): a restart must not
// read the broken data as the served version and serve less.
func TestServedIsWhatWasParsed(t *testing.T) {
	s := compile.NewStore()
	const valid = "destinations: [{name: github, host: api.github.com, ports: [{number: 443, protocol: TLS}]}]"
	cm := intentCM("apps", "github", valid)
	if intents, diags := s.Update([]compile.ConfigMap{cm}, opts.ResolveOptions()); len(intents) != 1 || diags.HasErrors() {
		t.Fatalf("good: %v %v", intents, diags)
	}
	cm.Data["egress.yaml"] = "destinations: [{name: github, host: api.github.com, ports: [{number: 99999, protocol: TLS}]}]"
	cm.Labels["extra"] = "x"
	if intents, _ := s.Update([]compile.ConfigMap{cm}, opts.ResolveOptions()); len(intents) != 1 {
		t.Fatalf("the served version should stay: %v", intents)
	}
	saved := s.Served()
	if len(saved) != 1 || saved[0].Data["egress.yaml"] != valid || saved[0].Labels["extra"] != "" {
		t.Fatalf("Served is not the served version: %v", saved)
	}
	restarted := compile.NewStore()
	if diags := restarted.Restore(saved); len(diags) > 0 {
		t.Fatalf("restore: %v", diags)
	}
	if intents, _ := restarted.Update([]compile.ConfigMap{cm}, opts.ResolveOptions()); len(intents) != 1 {
		t.Fatalf("a restart serves less: %v", intents)
	}
}

// TestServedGeneration: the generation (which decides when the served
// versions are saved) moves when what is served changes, and only then.
func TestServedGeneration(t *testing.T) {
	s := compile.NewStore()
	gen := s.ServedGeneration()
	step := func(what string, changes bool, cms ...compile.ConfigMap) {
		t.Helper()
		s.Update(cms, opts.ResolveOptions())
		if moved := s.ServedGeneration() != gen; moved != changes {
			t.Fatalf("%s: generation moved %t, want %t", what, moved, changes)
		}
		gen = s.ServedGeneration()
	}
	a := intentCM("apps", "a", "destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}]}]")
	b := intentCM("apps", "b", "destinations: [{name: b, host: b.example.com, ports: [{number: 443, protocol: TLS}]}]")
	step("first served", true, a)
	step("the same again", false, a)
	step("another served", true, a, b)
	step("a broken edit keeps what is served", false, a, intentCM("apps", "b", "destinations: [{name: b, host: b.example.com, ports: [{number: 99999, protocol: TLS}]}]"))
	step("an edit served", true, a, intentCM("apps", "b", "destinations: [{name: b, host: c.example.com, ports: [{number: 443, protocol: TLS}]}]"))
	step("a deletion", true, a)
}

// TestEmptyGroupIsValid: a group nobody declared anything for gets a valid,
// deny-all configuration (the forward proxy answering 403), never nothing.
func TestEmptyGroupIsValid(t *testing.T) {
	res, _, err := compile.Group(nil, "nobody", nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners) != 1 || len(res.Clusters) != 0 {
		t.Fatalf("want only the forward proxy listener, got %d listeners, %d clusters", len(res.Listeners), len(res.Clusters))
	}
	if _, err := snapshot.NewGroupSnapshot(res); err != nil {
		t.Fatal(err)
	}
}

// TestPortMap: declared ports can listen elsewhere (443 -> 8443), and two
// declared ports mapped onto one listener port are a conflict.
func TestPortMap(t *testing.T) {
	o := translate.Options{PortMap: map[uint32]uint32{443: 8443, 80: 8080}}
	cms := []compile.ConfigMap{
		intentCM("a", "tls", "destinations: [{name: gh, host: api.github.com, ports: [{number: 443, protocol: TLS}]}]"),
		intentCM("b", "http", "destinations: [{name: web, host: web.example, ports: [{number: 80, protocol: HTTP}, {number: 8443, protocol: HTTP}]}]"),
	}
	intents, diags := compile.NewStore().Update(cms, o.ResolveOptions())
	if !strings.Contains(diags.Error(), "listener port 8443 is HTTP here but TLS in a/tls") {
		t.Fatalf("want a listener port conflict, got: %v", diags)
	}
	res, _, err := compile.Group(intents, "g", nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners) != 1 || res.Listeners[0].Name != "tls_8443" ||
		res.Listeners[0].Address.GetSocketAddress().GetPortValue() != 8443 {
		t.Fatalf("want listener tls_8443, got %v", res.Listeners)
	}
	if got := res.Clusters[0].Name; got != "a/tls/gh/443" {
		t.Fatalf("cluster names keep the declared port: %s", got)
	}
}

// FuzzCompile: no input panics, every intent that is accepted yields
// resources that pass every check Envoy would apply, and a translation
// through a Cache (cold, then warm) is the translation without one.
func FuzzCompile(f *testing.F) {
	seeds, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("../translate/testdata/*/in.yaml")
	for _, p := range append(seeds, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		cms, _, _ := watch.ParseManifests(data)
		for _, cm := range cms {
			for _, v := range cm.Data {
				f.Add(v)
			}
		}
	}
	// With the mesh on (workload identities accepted), for gateways and
	// for their sidecars.
	mesh := opts
	mesh.Mesh = &translate.MeshOptions{TrustDomain: "cluster.local", Port: translate.DefaultMeshPort,
		GatewayAddress: translate.DefaultGatewayAddress, SidecarProxyPort: translate.DefaultSidecarProxyPort,
		SidecarCapturePort: translate.DefaultSidecarCapturePort}
	f.Fuzz(func(t *testing.T, doc string) {
		intents, _ := compile.NewStore().Update([]compile.ConfigMap{intentCM("fuzz", "intent", doc)}, mesh.ResolveOptions())
		var keys []string
		for _, g := range append(compile.Groups(intents), "egress-gateway") {
			keys = append(keys, g, compile.Key(translate.RoleSidecar, g))
		}
		for _, g := range keys {
			res, diags, err := compile.Group(intents, g, nil, mesh)
			if err != nil {
				t.Fatalf("accepted intent produced invalid resources: %v\n%v\ninput:\n%s", err, diags, doc)
			}
			if err := translate.CheckDeep(res); err != nil {
				t.Fatalf("accepted intent produced invalid typed configs: %v\ninput:\n%s", err, doc)
			}
			if _, err := snapshot.NewGroupSnapshot(res); err != nil {
				t.Fatalf("snapshot: %v\ninput:\n%s", err, doc)
			}
			// Through a cache, cold and warm: the same.
			cache := translate.NewCache()
			for _, pass := range []string{"cold", "warm"} {
				got, gdiags, err := compile.GroupCached(cache, intents, g, nil, mesh)
				if err != nil || fmt.Sprint(gdiags) != fmt.Sprint(diags) {
					t.Fatalf("%s cache: %v %v, without one %v\ninput:\n%s", pass, err, gdiags, diags, doc)
				}
				if what := differs(got, res); what != "" {
					t.Fatalf("%s cache: %s differs from the translation without one\ninput:\n%s", pass, what, doc)
				}
			}
		}
	})
}

// differs names the first resource of a that is not b's, or the kind
// whose lists differ in length; empty when they are the same.
func differs(a, b *translate.Resources) string {
	lists := []struct {
		kind string
		a, b []proto.Message
	}{
		{"listeners", messages(a.Listeners), messages(b.Listeners)}, {"routes", messages(a.Routes), messages(b.Routes)},
		{"clusters", messages(a.Clusters), messages(b.Clusters)}, {"endpoints", messages(a.Endpoints), messages(b.Endpoints)},
		{"secrets", messages(a.Secrets), messages(b.Secrets)}, {"rate limit configs", messages(a.RateLimitConfigs), messages(b.RateLimitConfigs)},
	}
	for _, l := range lists {
		if len(l.a) != len(l.b) {
			return l.kind
		}
		for i := range l.a {
			if !proto.Equal(l.a[i], l.b[i]) {
				return fmt.Sprintf("%s[%d]", l.kind, i)
			}
		}
	}
	if fmt.Sprint(a.Sources) != fmt.Sprint(b.Sources) {
		return "sources"
	}
	return ""
}

func messages[T proto.Message](l []T) []proto.Message {
	out := make([]proto.Message, len(l))
	for i, m := range l {
		out[i] = m
	}
	return out
}

// The gateway-level options reach the resources: listener address, the
// system CA bundle for verification without a CA Secret, and the stats
// port kept out of intents.
func TestGatewayOptions(t *testing.T) {
	o := translate.Options{ListenerAddress: "127.0.0.1", SystemCABundle: "/certs/ca.crt", StatsPort: 9902, ForwardProxyPort: 3128}
	cms := []compile.ConfigMap{
		intentCM("a", "api", "destinations: [{name: api, host: api.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: SIMPLE}}]"),
		intentCM("b", "stats", "destinations: [{name: s, host: s.example.com, ports: [{number: 9902, protocol: TLS}]}]"),
	}
	intents, diags := compile.NewStore().Update(cms, o.ResolveOptions())
	if !strings.Contains(diags.Error(), "listener port 9902 is reserved for the gateway's Prometheus stats listener") {
		t.Fatalf("the stats port is not reserved: %v", diags)
	}
	res, _, err := compile.Group(intents, "g", nil, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Listeners {
		if got := l.GetAddress().GetSocketAddress().GetAddress(); got != "127.0.0.1" {
			t.Errorf("listener %s binds %s", l.Name, got)
		}
	}
	var tls tlsv3.UpstreamTlsContext
	if err := res.Clusters[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&tls); err != nil {
		t.Fatal(err)
	}
	if got := tls.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename(); got != "/certs/ca.crt" {
		t.Errorf("upstream verification uses %q", got)
	}
}
