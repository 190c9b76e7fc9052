package translate_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// Envoy itself builds every golden case's resources (envoy --mode
// validate on them as one static bootstrap: envoytest.Static): what the
// translator's own checks and ValidateAll() cannot know, such as a cluster
// factory's rules or a filter's runtime checks, is judged by the release
// the gateways run.
func TestEnvoyAcceptsGolden(t *testing.T) {
	bin := envoytest.Find(t)
	cases, err := filepath.Glob("testdata/*/in.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, in := range cases {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			opts := caseOptions(t, dir)
			res, _ := translateFile(t, in, opts)
			if res == nil {
				t.Skip("the case builds no resources")
			}
			validate(t, bin, res)
		})
	}
}

// Envoy finds a custom cluster type by the name its factory registers and
// falls back to the config's type URL only when the name is unknown: every
// name the translator sends must be registered, or a config that happens to
// work today (by its type URL) hides a wrong name. A probe cluster of each
// name with a config of no cluster's type fails on the name only when the
// name is unknown.
func TestEnvoyKnowsTheClusterTypes(t *testing.T) {
	bin := envoytest.Find(t)
	cases, _ := filepath.Glob("testdata/*/in.yaml")
	names := map[string]bool{}
	for _, in := range cases {
		res, _ := translateFile(t, in, caseOptions(t, filepath.Dir(in)))
		if res == nil {
			continue
		}
		for _, c := range res.Clusters {
			if ct := c.GetClusterType(); ct != nil {
				names[ct.GetName()] = true
			}
		}
	}
	if len(names) < 2 {
		t.Fatalf("the golden cases use cluster types %v; want the DNS and dynamic forward proxy ones at least", names)
	}
	for name := range names {
		probe := `{"static_resources": {"clusters": [{"name": "probe", "lb_policy": "CLUSTER_PROVIDED",
			"cluster_type": {"name": "` + name + `", "typed_config": {"@type": "type.googleapis.com/google.protobuf.Struct"}}}]}}`
		err := envoytest.Validate(context.Background(), bin.Path, probe)
		if err != nil && strings.Contains(err.Error(), "Didn't find a registered cluster factory implementation") {
			t.Errorf("cluster type %q is not the name of a cluster factory Envoy %s registers: %v", name, bin.Version, err)
		}
	}
}

// A bounded, deterministic sample of FuzzCompile's corpus goes through
// Envoy the way FuzzCompile translates it (mesh on, gateway and sidecar
// roles): its seeds (examples/ and the golden inputs, each intent document
// alone) and, when the repository holds a corpus for it
// (internal/compile/testdata/fuzz/FuzzCompile), every n-th entry of it.
func TestEnvoyAcceptsFuzzCorpus(t *testing.T) {
	bin := envoytest.Find(t)
	docs := fuzzSample(t, 40)
	mesh := goldenOptions
	mesh.Mesh = &translate.MeshOptions{TrustDomain: "cluster.local", Port: translate.DefaultMeshPort,
		GatewayAddress: translate.DefaultGatewayAddress, SidecarProxyPort: translate.DefaultSidecarProxyPort,
		SidecarCapturePort: translate.DefaultSidecarCapturePort}
	// Documents that translate alike (most rejected ones: to nothing) are
	// validated once.
	var mu sync.Mutex
	seen := map[[sha256.Size]byte]bool{}
	for i, doc := range docs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			cm := compile.ConfigMap{File: "fuzz.yaml", ConfigMap: fuzzConfigMap(doc)}
			intents, _ := compile.NewStore().Update([]compile.ConfigMap{cm}, mesh.ResolveOptions())
			for _, role := range []translate.Role{translate.RoleGateway, translate.RoleSidecar} {
				res, _, err := compile.Group(intents, compile.Key(role, goldenGroup), nil, mesh)
				if err != nil || res == nil {
					continue // rejected intents never reach Envoy
				}
				sum := digest(t, res)
				mu.Lock()
				dup := seen[sum]
				seen[sum] = true
				mu.Unlock()
				if !dup {
					validate(t, bin, res)
				}
			}
			if t.Failed() {
				t.Logf("intent document:\n%s", doc)
			}
		})
	}
}

func validate(t *testing.T, bin envoytest.Binary, res *translate.Resources) {
	t.Helper()
	boot, err := envoytest.Static(res, envoytest.Node{ID: "golden", Cluster: goldenGroup}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	envoytest.MustValidate(t, bin, boot)
}

// digest identifies what a group is served.
func digest(t *testing.T, res *translate.Resources) [sha256.Size]byte {
	t.Helper()
	h := sha256.New()
	add := func(m proto.Message) {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%T %d\n", m, len(b))
		h.Write(b)
	}
	for _, m := range res.Listeners {
		add(m)
	}
	for _, m := range res.Routes {
		add(m)
	}
	for _, m := range res.Clusters {
		add(m)
	}
	for _, m := range res.Endpoints {
		add(m)
	}
	for _, m := range res.Secrets {
		add(m)
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// fuzzSample is the seeds of FuzzCompile, then up to limit entries of its
// checked-in corpus, evenly spread and in name order.
func fuzzSample(t *testing.T, limit int) []string {
	t.Helper()
	seeds, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("testdata/*/in.yaml")
	var docs []string
	for _, p := range append(seeds, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cms, _, _ := watch.ParseManifests(data)
		for _, cm := range cms {
			keys := make([]string, 0, len(cm.Data))
			for k := range cm.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				docs = append(docs, cm.Data[k])
			}
		}
	}
	corpus, _ := filepath.Glob("../compile/testdata/fuzz/FuzzCompile/*")
	sort.Strings(corpus)
	step := max(1, (len(corpus)+limit-1)/limit)
	for i := 0; i < len(corpus); i += step {
		if doc, ok := corpusString(t, corpus[i]); ok {
			docs = append(docs, doc)
		}
	}
	return docs
}

// corpusString reads a `go test fuzz v1` file of one string argument.
func corpusString(t *testing.T, path string) (string, bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(strings.TrimSpace(string(data)), "\n", 2)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "string(") {
		return "", false
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
	return s, err == nil
}

// fuzzConfigMap is the ConfigMap FuzzCompile wraps a document in.
func fuzzConfigMap(doc string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fuzz", Name: "intent", Labels: map[string]string{intent.LabelKey: "true"}},
		Data:       map[string]string{"egress.yaml": doc},
	}
}
