package istio

import (
	"path/filepath"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// TestEnvoyAcceptsImported translates what every golden case writes, as
// the server would serve it (the mesh port on, the Secrets the intents
// name present), for gateways and sidecars: the translation reports no
// error, and Envoy builds every resource (envoy --mode validate on them
// as one static bootstrap).
func TestEnvoyAcceptsImported(t *testing.T) {
	bin := envoytest.Find(t)
	// One stand-in for every Secret the intents name: a test CA and a
	// client certificate it issued.
	ca, err := testpki.NewCA("import test CA", 24*time.Hour)
	var crt, key []byte
	if err == nil {
		crt, key, err = ca.Issue(testpki.Leaf{CommonName: "client", Client: true})
	}
	if err != nil {
		t.Fatal(err)
	}
	standIn := map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": crt, "tls.key": key}
	ins, _ := filepath.Glob("testdata/*/in.*")
	for _, in := range ins {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			co, opts := caseOptions(t, dir)
			res := importFiles(t, opts, in)
			if len(res.ConfigMaps) == 0 {
				t.Skip("the case writes no ConfigMap")
			}
			var cms []compile.ConfigMap
			for _, cm := range res.ConfigMaps {
				var m struct {
					Data map[string]string `yaml:"data"`
				}
				if err := yaml.Unmarshal(cm.YAML, &m); err != nil {
					t.Fatal(err)
				}
				cms = append(cms, compile.ConfigMap{File: cm.Namespace + ".yaml", ConfigMap: &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Namespace: cm.Namespace, Name: cm.Name, Labels: map[string]string{intent.LabelKey: "true"}},
					Data:       m.Data,
				}})
			}
			topts := translate.Options{ForwardProxyPort: 3128, StatsPort: 9902, PrivateKeysInline: true, Mesh: &translate.MeshOptions{
				TrustDomain: DefaultTrustDomain, Port: translate.DefaultMeshPort, GatewayAddress: translate.DefaultGatewayAddress,
				SidecarProxyPort: translate.DefaultSidecarProxyPort, SidecarCapturePort: translate.DefaultSidecarCapturePort,
			}}
			intents, diags := compile.NewStore().Update(cms, topts.ResolveOptions())
			if diags.HasErrors() {
				t.Fatalf("the ConfigMaps do not compile: %v", diags)
			}
			secrets := translate.Secrets{}
			for _, in := range intents {
				for _, d := range in.Docs {
					for _, dest := range d.Destinations {
						if tls := dest.TLS; tls != nil {
							for _, ref := range []*intent.SecretRef{tls.CACertificates, tls.ClientCertificate} {
								if ref != nil {
									secrets[translate.SecretKey{Namespace: d.Origin.Namespace, Name: ref.Secret}] = standIn
								}
							}
						}
					}
				}
			}
			group := co.Group
			if group == "" {
				group = DefaultGroup
			}
			for _, role := range []translate.Role{translate.RoleGateway, translate.RoleSidecar} {
				served, diags, err := compile.Group(intents, compile.Key(role, group), secrets, topts)
				if err != nil || diags.HasErrors() || served == nil {
					t.Fatalf("%s: translation: %v %v", role, err, diags)
				}
				boot, err := envoytest.Static(served, envoytest.Node{ID: "import", Cluster: group}, t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				envoytest.MustValidate(t, bin, boot)
			}
		})
	}
}
