package snapshot

import (
	"reflect"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
)

func examplesSnapshot(t *testing.T) *GroupSnapshot {
	t.Helper()
	st, err := watch.LoadDir("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	cms, secrets, _ := compile.FromFolder(st)
	opts := translate.Options{ForwardProxyPort: 3128, PrivateKeysInline: true} // authenticated xDS
	intents, diags := compile.NewStore().Update(cms, opts.ResolveOptions())
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	res, _, err := compile.Group(intents, "egress-gateway", compile.Secrets(secrets), opts)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := NewGroupSnapshot(res)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// Every resource is traced to the ConfigMaps it comes from.
func TestSources(t *testing.T) {
	gs := examplesSnapshot(t)
	for _, c := range []struct {
		typ, name string
		want      []string
	}{
		{resourcev3.ClusterType, "apps/github/github/443", []string{"apps/github"}},
		{resourcev3.SecretType, "apps/partner-client-cert", []string{"apps/partner"}},
		{resourcev3.SecretType, "apps/partner-ca/ca", []string{"apps/partner"}},
		{resourcev3.RouteType, "http_80", []string{"apps/docs", "apps/external-api", "apps/local-web", "apps/partner", "platform/cloud-apis"}},
		{resourcev3.ListenerType, "http_80", []string{"apps/docs", "apps/external-api", "apps/local-web", "apps/partner", "platform/cloud-apis"}},
		{resourcev3.ListenerType, "tcp_5432", []string{"apps/external-db"}},
	} {
		if got := gs.Sources(c.typ, c.name); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %s: sources %v, want %v", c.typ, c.name, got, c.want)
		}
	}
	for _, typ := range Types {
		for _, name := range gs.Type(typ).Names {
			if typ != resourcev3.ListenerType && len(gs.Sources(typ, name)) == 0 {
				t.Errorf("%s %s has no source", typ, name)
			}
		}
	}
	if got := gs.SourcesOf(resourcev3.ClusterType, []string{"apps/github/github/443", "apps/external-db/external-db/5432"}); !reflect.DeepEqual(got, []string{"apps/external-db", "apps/github"}) {
		t.Errorf("SourcesOf: %v", got)
	}
}

// A type whose version did not change keeps the times of its change.
func TestStampTimes(t *testing.T) {
	a := groupSnapshot(t, "a.example.com")
	t0 := time.Unix(100, 0)
	a.stampTimes(nil, t0, t0.Add(time.Second))
	b := groupSnapshot(t, "a.example.com", "b.example.com")
	t1 := time.Unix(200, 0)
	b.stampTimes(a, t1, t1.Add(time.Second))
	if o, p := b.Changed(resourcev3.ClusterType); !o.Equal(t1) || !p.Equal(t1.Add(time.Second)) {
		t.Errorf("clusters changed: %v %v", o, p)
	}
	if o, _ := b.Changed(resourcev3.SecretType); !o.Equal(t0) {
		t.Errorf("secrets unchanged but observed %v", o)
	}
}
