package translate_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// TestGoldenCached translates every golden case through a Cache, cold
// and then warm (every fragment replayed), and proves each result is the
// translation without one: the goldens hold the cases a random edit
// sequence rarely builds (a document with HTTP ports on two listeners,
// each with its own connection manager traits).
func TestGoldenCached(t *testing.T) {
	cases, _ := filepath.Glob("testdata/*/in.yaml")
	for _, in := range cases {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			opts := caseOptions(t, dir)
			f := watch.LoadFile(in)
			if f.Err != nil {
				return
			}
			sources, secrets, _ := compile.FromFolder(watch.State{Files: []watch.FileState{f}})
			intents, _ := compile.NewStore().Update(sources, opts.Options.ResolveOptions())
			key := compile.Key(opts.Role, goldenGroup)
			want, wdiags, werr := compile.Group(intents, key, compile.Secrets(secrets), opts.Options)
			cache := translate.NewCache()
			for _, pass := range []string{"cold", "warm"} {
				got, gdiags, gerr := compile.GroupCached(cache, intents, key, compile.Secrets(secrets), opts.Options)
				if fmt.Sprint(gerr) != fmt.Sprint(werr) || fmt.Sprint(gdiags) != fmt.Sprint(wdiags) {
					t.Fatalf("%s: %v %v, without a cache %v %v", pass, gerr, gdiags, werr, wdiags)
				}
				if want == nil {
					continue
				}
				if err := sameResources(got, want); err != nil {
					t.Fatalf("%s: %v", pass, err)
				}
			}
		})
	}
}

func sameResources(got, want *translate.Resources) error {
	kinds := []struct {
		name      string
		got, want []proto.Message
	}{
		{"listener", asList(got.Listeners), asList(want.Listeners)},
		{"route", asList(got.Routes), asList(want.Routes)},
		{"cluster", asList(got.Clusters), asList(want.Clusters)},
		{"endpoints", asList(got.Endpoints), asList(want.Endpoints)},
		{"secret", asList(got.Secrets), asList(want.Secrets)},
		{"rate limit config", asList(got.RateLimitConfigs), asList(want.RateLimitConfigs)},
	}
	for _, k := range kinds {
		if len(k.got) != len(k.want) {
			return fmt.Errorf("%d %ss, without a cache %d", len(k.got), k.name, len(k.want))
		}
		for i := range k.got {
			if !proto.Equal(k.got[i], k.want[i]) {
				return fmt.Errorf("%s %d differs from the one translated without a cache:\n%v\n%v", k.name, i, k.got[i], k.want[i])
			}
		}
	}
	if fmt.Sprint(got.Sources) != fmt.Sprint(want.Sources) {
		return fmt.Errorf("sources %v, without a cache %v", got.Sources, want.Sources)
	}
	return nil
}

func asList[T proto.Message](l []T) []proto.Message {
	out := make([]proto.Message, len(l))
	for i, m := range l {
		out[i] = m
	}
	return out
}
