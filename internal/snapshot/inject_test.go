package snapshot

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// duplicateChain gives listener name a second copy of its first filter
// chain: valid for ValidateAll and Consistent, refused by Envoy.
func duplicateChain(name string) Injection {
	return func(_ string, res *translate.Resources) {
		for i, l := range res.Listeners {
			if l.GetName() == name {
				l = proto.Clone(l).(*listenerv3.Listener)
				dup := proto.Clone(l.FilterChains[0]).(*listenerv3.FilterChain)
				dup.Name += "-duplicate"
				l.FilterChains = append(l.FilterChains, dup)
				res.Listeners[i] = l
			}
		}
	}
}

func injectBuilder(t *testing.T) *Builder {
	t.Helper()
	b := NewBuilder(NewCache(nil, nil), translate.Options{ForwardProxyPort: 3128}, nil, nil)
	b.Update(Input{ConfigMaps: []compile.ConfigMap{{ConfigMap: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", Labels: map[string]string{intent.LabelKey: "true"}},
		Data:       map[string]string{"egress.yaml": "gateways: [g]\ndestinations:\n  - {name: web, host: web.example.com, ports: [{number: 80, protocol: HTTP}]}\n"},
	}}}})
	b.Rebuild()
	return b
}

func listenerVersion(t *testing.T, b *Builder) string {
	t.Helper()
	gs := b.cache.Snapshot("g")
	if gs == nil {
		t.Fatal("no snapshot of group g")
	}
	return gs.Type(resourcev3.ListenerType).Version
}

// An injection that passes our checks is published, keeps the resource's
// ConfigMaps, and its removal serves the translation again.
func TestInjectForTest(t *testing.T) {
	b := injectBuilder(t)
	before := listenerVersion(t, b)
	remove := InjectForTest(t, b, duplicateChain("http_80"))
	b.Rebuild()
	gs := b.cache.Snapshot("g")
	injected := gs.Type(resourcev3.ListenerType)
	if injected.Version == before {
		t.Fatal("the injection did not change the listeners")
	}
	l := injected.Items["http_80"].Resource.(*listenerv3.Listener)
	if len(l.FilterChains) != 2 {
		t.Fatalf("http_80 has %d filter chains, want the injected second one", len(l.FilterChains))
	}
	if got := gs.Sources(resourcev3.ListenerType, "http_80"); len(got) != 1 || got[0] != "apps/web" {
		t.Errorf("the injected listener traces to %v, want [apps/web]", got)
	}
	remove()
	b.Rebuild()
	if got := listenerVersion(t, b); got != before {
		t.Errorf("after removal the listeners are %s, want the translation's %s", got, before)
	}
}

// An injection our checks refuse never reaches the cache: the group keeps
// its last good snapshot, as after any failed build.
func TestInjectionStillChecked(t *testing.T) {
	b := injectBuilder(t)
	before := listenerVersion(t, b)
	InjectForTest(t, b, func(_ string, res *translate.Resources) {
		res.Listeners = append(res.Listeners, res.Listeners[0]) // defined twice
	})
	b.Rebuild()
	if got := listenerVersion(t, b); got != before {
		t.Errorf("a resource set failing translate.Check was published: %s, want %s kept", got, before)
	}
}

// The hook cannot reach production: no file of the module but tests calls
// InjectForTest.
func TestInjectionOnlyFromTests(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				if n.Name.Name == "InjectForTest" && n.Recv == nil {
					return false // the definition itself
				}
			case *ast.Ident:
				if n.Name == "InjectForTest" {
					t.Errorf("%s calls or refers to InjectForTest: only tests may", path)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("only %d Go files under %s: the walk missed the module", files, root)
	}
}

// The builder's Run picks an injection up without a source change.
func TestInjectionTriggersRebuild(t *testing.T) {
	b := injectBuilder(t)
	before := listenerVersion(t, b)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-done }()
	go func() { b.Run(ctx); close(done) }()
	InjectForTest(t, b, duplicateChain("http_80"))
	deadline := time.Now().Add(10 * time.Second)
	for listenerVersion(t, b) == before {
		if time.Now().After(deadline) {
			t.Fatal("no rebuild within 10s of the injection")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
