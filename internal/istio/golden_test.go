package istio

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// CaseOptions are a golden case's options.yaml: the flags of xds-server
// import it is run with (cmd/xds-server's test passes the same).
type CaseOptions struct {
	MeshNamespaces []string `yaml:"meshNamespaces"`
	Namespace      string   `yaml:"namespace"`
	Group          string   `yaml:"group"`
}

// caseOptions reads a case's options.yaml, if it has one.
func caseOptions(t testing.TB, dir string) (CaseOptions, Options) {
	t.Helper()
	var co CaseOptions
	b, err := os.ReadFile(filepath.Join(dir, "options.yaml"))
	if err == nil {
		if err := yaml.Unmarshal(b, &co); err != nil {
			t.Fatalf("options.yaml: %v", err)
		}
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return co, Options{MeshNamespaces: co.MeshNamespaces, Namespace: co.Namespace, Group: co.Group,
		Resolve: intent.ResolveOptions{ReservedPorts: map[uint32]string{3128: "forward proxy", 9902: "stats", 15443: "mesh port"}}}
}

// TestGolden imports testdata/<case>/in.yaml (or in.json) and compares
// the ConfigMaps (out.yaml) and the report with its exit status
// (report.txt) with the files beside it; -update rewrites them. Every
// ConfigMap must validate and resolve as the server would, and a second
// import must give the same bytes.
func TestGolden(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*/in.*")
	if len(ins) == 0 {
		t.Fatal("no golden cases")
	}
	for _, in := range ins {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			_, opts := caseOptions(t, dir)
			res := importFiles(t, opts, in)
			compareGolden(t, filepath.Join(dir, "report.txt"), res.Report())
			compareGolden(t, filepath.Join(dir, "out.yaml"), res.YAML())
			again := importFiles(t, opts, in)
			if !bytes.Equal(again.YAML(), res.YAML()) || !bytes.Equal(again.Report(), res.Report()) {
				t.Error("a second import of the same input differs")
			}
			validOutput(t, res, opts)
		})
	}
}

func importFiles(t testing.TB, opts Options, paths ...string) *Result {
	t.Helper()
	ins, errs := ReadInputs(paths, nil)
	return Import(ins, errs, opts)
}

// validOutput checks every ConfigMap as the server parses, validates and
// resolves it, and that the importer found no fault in its own output.
func validOutput(t testing.TB, res *Result, opts Options) {
	t.Helper()
	var cands []intent.Candidate
	for _, cm := range res.ConfigMaps {
		if !bytes.HasPrefix(cm.YAML, []byte(Header)) {
			t.Errorf("%s/%s does not start with the header", cm.Namespace, cm.Name)
		}
		var m struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal(cm.YAML, &m); err != nil {
			t.Fatalf("%s/%s: %v", cm.Namespace, cm.Name, err)
		}
		if m.Metadata.Labels[intent.LabelKey] != "true" {
			t.Errorf("%s/%s lacks the intent label", cm.Namespace, cm.Name)
		}
		in, diags := intent.ParseConfigMap(intent.Origin{Namespace: cm.Namespace, Name: cm.Name}, time.Time{}, m.Data)
		if diags.HasErrors() || in == nil {
			t.Fatalf("%s/%s does not validate: %v", cm.Namespace, cm.Name, diags)
		}
		cands = append(cands, intent.Candidate{Current: in})
	}
	ro := opts.Resolve
	ro.TrustDomain = DefaultTrustDomain
	if accepted, diags := intent.Resolve(cands, ro); diags.HasErrors() || len(accepted) != len(cands) {
		t.Fatalf("the ConfigMaps conflict: %v", diags)
	}
	for _, e := range res.Entries {
		if strings.Contains(e.Text, "a bug of the importer") {
			t.Errorf("the importer refuses its own output: %s", e)
		}
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if len(got) == 0 {
			_ = os.Remove(path)
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if os.IsNotExist(err) && len(got) == 0 {
		return
	}
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update and review the diff):\n%s", path, diffLines(string(want), string(got)))
	}
}

// diffLines shows the first lines that differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			b.WriteString("- " + a + "\n+ " + c + "\n")
			shown++
		}
	}
	return b.String()
}
