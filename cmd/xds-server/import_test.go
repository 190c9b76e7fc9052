package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/testpki"
)

// importArgs are the flags of a golden case's options.yaml.
func importArgs(t *testing.T, dir string) []string {
	t.Helper()
	var o struct {
		MeshNamespaces []string `yaml:"meshNamespaces"`
		Namespace      string   `yaml:"namespace"`
		Group          string   `yaml:"group"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "options.yaml")); err == nil {
		if err := yaml.Unmarshal(b, &o); err != nil {
			t.Fatal(err)
		}
	}
	var args []string
	if len(o.MeshNamespaces) > 0 {
		args = append(args, "--mesh-namespaces", strings.Join(o.MeshNamespaces, ","))
	}
	if o.Namespace != "" {
		args = append(args, "--namespace", o.Namespace)
	}
	if o.Group != "" {
		args = append(args, "--group", o.Group)
	}
	return args
}

// TestImportGoldenCases runs xds-server import on every golden case of
// internal/istio: the command writes the golden ConfigMaps and report,
// exits as the report says, and what it writes passes xds-server
// validate (the server's parsing, conflict rules and translation, with
// the mesh port and the Secrets the intents name), with no error.
func TestImportGoldenCases(t *testing.T) {
	t.Chdir("../../internal/istio") // the report names files as the package's golden test does
	ins, _ := filepath.Glob("testdata/*/in.*")
	if len(ins) == 0 {
		t.Fatal("no cases")
	}
	for _, in := range ins {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out := t.TempDir()
			args := append(append([]string{"import", "--out", out}, importArgs(t, dir)...), in)
			code, stdout, stderr := runCmd(args...)
			report, err := os.ReadFile(filepath.Join(out, "report.txt"))
			if err != nil {
				t.Fatalf("exit %d: %v\n%s%s", code, err, stdout, stderr)
			}
			if want, _ := os.ReadFile(filepath.Join(dir, "report.txt")); !bytes.Equal(report, want) {
				t.Errorf("report.txt differs from %s/report.txt", dir)
			}
			if says1 := bytes.Contains(report, []byte("\nexit 1:")); code != 0 && !says1 || code == 0 && says1 || code > 1 {
				t.Errorf("exit %d, and the report says:\n%s", code, report)
			}
			files, _ := filepath.Glob(filepath.Join(out, "*.yaml"))
			var got [][]byte
			for _, f := range files {
				b, _ := os.ReadFile(f)
				got = append(got, b)
			}
			want, _ := os.ReadFile(filepath.Join(dir, "out.yaml"))
			if !bytes.Equal(bytes.Join(got, []byte("---\n")), want) {
				t.Errorf("the ConfigMaps written differ from %s/out.yaml", dir)
			}
			if len(files) == 0 {
				return
			}
			secrets := filepath.Join(t.TempDir(), "secrets.yaml")
			writeSecretsFor(t, secrets, want)
			code, vout, verr := runCmd("validate", "--mesh-port", "15443", "--xds-client-auth", out, secrets)
			if code != 0 || !strings.HasPrefix(vout, "0 error(s), 0 warning(s)") && !strings.Contains(vout, "\n0 error(s)") {
				t.Fatalf("validate: exit %d\n%s%s", code, vout, verr)
			}
		})
	}
}

var secretRef = regexp.MustCompile(`(?m)^  namespace: (\S+)$|secret: (\S+)$`)

// writeSecretsFor writes a Secret (tls.crt, tls.key, ca.crt from the test
// CA) for each Secret the ConfigMaps name, as an operator would create
// them following the report.
func writeSecretsFor(t *testing.T, path string, cms []byte) {
	t.Helper()
	ca, err := testpki.NewCA("import test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := ca.Issue(testpki.Leaf{CommonName: "client", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	seen := map[string]bool{}
	ns := ""
	for _, m := range secretRef.FindAllStringSubmatch(string(cms), -1) {
		if m[1] != "" {
			ns = m[1]
			continue
		}
		if k := ns + "/" + m[2]; !seen[k] {
			seen[k] = true
			b.WriteString("---\napiVersion: v1\nkind: Secret\nmetadata: {name: " + m[2] + ", namespace: " + ns + "}\ntype: kubernetes.io/tls\nstringData:\n")
			for name, v := range map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca.CertPEM} {
				b.WriteString("  " + name + ": |\n    " + strings.ReplaceAll(strings.TrimSpace(string(v)), "\n", "\n    ") + "\n")
			}
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// import reads "-" (kubectl get -o yaml | xds-server import -), writes
// ConfigMaps on stdout and the report on stderr; a second run into the
// same folder removes the ConfigMaps it wrote before and no longer does.
func TestImportStdinAndOut(t *testing.T) {
	se := "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: %s}\nspec: {hosts: [a.example.com], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}\n"
	importStdin = strings.NewReader(strings.ReplaceAll(se, "%s", "one"))
	defer func() { importStdin = os.Stdin }()
	code, out, errOut := runCmd("import", "-")
	if code != 0 || !strings.Contains(out, "namespace: one") || !strings.Contains(errOut, "-: document 1 (line 1): ServiceEntry one/a: spec.hosts[0]: carried") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	dir := t.TempDir()
	keep := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(keep, []byte("# not the importer's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "in.yaml")
	for _, ns := range []string{"one", "two"} {
		if err := os.WriteFile(in, []byte(strings.ReplaceAll(se, "%s", ns)), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := runCmd("import", "--out", dir, in); code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if strings.Join(names, " ") != "mine.yaml report.txt two.yaml" {
		t.Errorf("files after two imports: %v", names)
	}
	if code, _, errOut := runCmd("import"); code != 2 || !strings.Contains(errOut, "xds-server import: no input") {
		t.Errorf("no input: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := runCmd("import", "--gateway-labels", "nolabel", in); code != 2 {
		t.Errorf("bad labels: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := runCmd("import", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errOut, "missing.yaml: error:") {
		t.Errorf("missing file: exit %d\n%s", code, errOut)
	}
}

// The README's sample of import's report is lines of the report of the
// guide's production set, as the golden case has it.
func TestReadmeImportSample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile("../../internal/istio/testdata/guide-20-production-egress-setup/report.txt")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	i := strings.Index(section, "## Migrating from Istio")
	if i < 0 {
		t.Fatal("README.md has no section Migrating from Istio")
	}
	start := strings.Index(section[i:], "```\nistio.yaml: ")
	if start < 0 {
		t.Fatal("the section has no sample of the report")
	}
	sample := section[i+start+4:]
	sample = sample[:strings.Index(sample, "```\n")]
	lines := map[string]bool{}
	for _, l := range strings.Split(string(report), "\n") {
		lines[l] = true
	}
	for _, l := range strings.Split(strings.TrimSpace(sample), "\n") {
		if want := strings.Replace(l, "istio.yaml: ", "testdata/guide-20-production-egress-setup/in.yaml: ", 1); !lines[want] {
			t.Errorf("README sample line is not in the golden report:\n%s", l)
		}
	}
}
