package translate_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// inlineKeys lists the secrets that carry a private key in their bytes.
func inlineKeys(secrets []*tlsv3.Secret) []string {
	var out []string
	for _, s := range secrets {
		if len(s.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) > 0 || s.GetTlsCertificate().GetPrivateKey().GetInlineString() != "" {
			out = append(out, s.Name)
		}
	}
	return out
}

func withOptions(f func(*goldenCase)) goldenCase {
	c := goldenCase{Role: translate.RoleGateway, Options: goldenOptions}
	f(&c)
	return c
}

// A private key is inline only when the server allows it; a folder of
// mounted Secrets wins over it; sidecars never get an origination Secret
// at all, whatever the setting.
func TestOriginationKeyDelivery(t *testing.T) {
	const in = "testdata/mtls-origination/in.yaml"
	const secret = "apps/partner-client-cert"
	cases := []struct {
		name          string
		opts          goldenCase
		served        bool // the partner cluster is there
		inline, files bool
	}{
		{"inline allowed", withOptions(func(c *goldenCase) {}), true, true, false},
		{"not allowed", withOptions(func(c *goldenCase) { c.PrivateKeysInline = false }), false, false, false},
		{"files", withOptions(func(c *goldenCase) { c.PrivateKeysInline = false; c.OriginationSecretDir = "/s" }), true, false, true},
		{"files win over inline", withOptions(func(c *goldenCase) { c.OriginationSecretDir = "/s" }), true, false, true},
		{"sidecar", withOptions(func(c *goldenCase) { c.Role = translate.RoleSidecar; c.Mesh = sidecarMesh() }), true, false, false},
		{"sidecar, files", withOptions(func(c *goldenCase) {
			c.Role, c.Mesh, c.OriginationSecretDir = translate.RoleSidecar, sidecarMesh(), "/s"
		}), true, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, diags := translateFile(t, in, c.opts)
			if res == nil {
				t.Fatalf("no resources: %s", diags)
			}
			var got *tlsv3.Secret
			for _, s := range res.Secrets {
				if strings.HasPrefix(s.Name, "apps/") && s.Name != secret && s.Name != "apps/partner-ca/ca" {
					t.Errorf("unexpected secret %s", s.Name)
				}
				if s.Name == secret {
					got = s
				}
			}
			keys := inlineKeys(res.Secrets)
			if c.inline != (len(keys) == 1 && keys[0] == secret) || !c.inline && len(keys) != 0 {
				t.Errorf("secrets with inline keys %v, want inline %v", keys, c.inline)
			}
			if c.opts.Role == translate.RoleSidecar && got != nil {
				t.Errorf("a sidecar got the origination Secret %s", secret)
			}
			if c.files {
				tc := got.GetTlsCertificate()
				if tc.GetPrivateKey().GetFilename() != "/s/apps/partner-client-cert/tls.key" ||
					tc.GetCertificateChain().GetFilename() != "/s/apps/partner-client-cert/tls.crt" ||
					tc.GetWatchedDirectory().GetPath() != "/s/apps/partner-client-cert" {
					t.Errorf("file reference %v", tc)
				}
			}
			held := strings.Contains(diags, "destination partner is held back")
			if held == c.served {
				t.Errorf("served %v, diagnostics:\n%s", c.served, diags)
			}
			// "Secret ...": Kubernetes Events call it SecretNotUsable.
			if !c.served && (!strings.Contains(diags, "clientCertificate.secret: Secret apps/partner-client-cert: its private key is not sent") ||
				!strings.Contains(diags, "--xds-client-ca") || !strings.Contains(diags, "--origination-secret-dir")) {
				t.Errorf("the diagnostic does not name the fixes:\n%s", diags)
			}
		})
	}
}

func sidecarMesh() *translate.MeshOptions {
	return &translate.MeshOptions{TrustDomain: "cluster.local", Port: translate.DefaultMeshPort,
		GatewayAddress: translate.DefaultGatewayAddress, SidecarProxyPort: translate.DefaultSidecarProxyPort}
}

// The translation reports each Secret's certificate validity for the
// expiry metric, CA bundles by their earliest expiry, and the next instant
// its judgement changes; without a clock it judges nothing.
func TestCertificatesAndRecheck(t *testing.T) {
	res, _ := translateFile(t, "testdata/certificate-validity/in.yaml", withOptions(func(*goldenCase) {}))
	got := map[string]translate.Certificate{}
	for _, c := range res.Certificates {
		got[c.Secret.String()+" "+c.Key] = c
	}
	day := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for k, want := range map[string]time.Time{
		"apps/expired-cert tls.crt":  day("2026-12-01T00:00:00Z"),
		"apps/future-cert tls.crt":   day("2028-02-01T00:00:00Z"),
		"apps/expiring-cert tls.crt": day("2027-01-10T00:00:00Z"),
		"apps/skewed-cert tls.crt":   day("2028-01-01T00:00:00Z"),
	} {
		if !got[k].NotAfter.Equal(want) {
			t.Errorf("%s NotAfter %v, want %v (all: %v)", k, got[k].NotAfter, want, res.Certificates)
		}
	}
	// The next change: the skewed certificate leaves the allowance at
	// 00:03 - 5m, already past; the expiring one expires on the 10th; the
	// future one becomes valid on 2027-02-01 minus the allowance.
	if want := day("2027-01-10T00:00:00Z"); !res.RecheckAt.Equal(want) {
		t.Errorf("RecheckAt %v, want %v", res.RecheckAt, want)
	}

	res, _ = translateFile(t, "testdata/mtls-origination/in.yaml", withOptions(func(*goldenCase) {}))
	var ca translate.Certificate
	for _, c := range res.Certificates {
		if c.Key == "ca.crt" {
			ca = c
		}
	}
	if ca.Secret.Name != "partner-ca" || ca.NotAfter.IsZero() {
		t.Errorf("CA bundle not reported: %v", res.Certificates)
	}

	res, diags := translateFile(t, "testdata/certificate-validity/in.yaml", withOptions(func(c *goldenCase) { c.Now = time.Time{} }))
	if strings.Contains(diags, "tls.crt") || !res.RecheckAt.IsZero() || len(res.Clusters) != 4 {
		t.Errorf("without Now validity is judged: RecheckAt %v, %d clusters, diagnostics:\n%s", res.RecheckAt, len(res.Clusters), diags)
	}
}

// The file reference a gateway is served loads in a real Envoy: the
// translated clusters and secrets of the mtls-secret-files case, as a
// static bootstrap, with the client certificate files where it says.
func TestOriginationFilesEnvoyValidates(t *testing.T) {
	bin := envoytest.Find(t)
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/mtls-secret-files/in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, secrets, err := watch.ParseManifests(data)
	if err != nil {
		t.Fatal(err)
	}
	pair := compile.Secrets(secrets)[translate.SecretKey{Namespace: "apps", Name: "partner-client-cert"}]
	certDir := filepath.Join(dir, "apps", "partner-client-cert")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(certDir, k), pair[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, diags := translateFile(t, "testdata/mtls-secret-files/in.yaml", withOptions(func(c *goldenCase) {
		c.PrivateKeysInline, c.OriginationSecretDir = false, dir
	}))
	if res == nil || diags != "" {
		t.Fatalf("diagnostics:\n%s", diags)
	}
	b := &bootstrapv3.Bootstrap{StaticResources: &bootstrapv3.Bootstrap_StaticResources{Secrets: res.Secrets}}
	for _, c := range res.Clusters {
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, staticSDS(t, c))
	}
	js, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(file, js, 0o644); err != nil {
		t.Fatal(err)
	}
	envoytest.MustValidateFile(t, bin, file)

	// And it does fail when the file is not there.
	if err := os.Remove(filepath.Join(certDir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	if err := envoytest.ValidateFile(context.Background(), bin.Path, file); err == nil || !strings.Contains(err.Error(), "tls.key") {
		t.Errorf("Envoy accepted a missing key file, or said something else: %v", err)
	}
}

// staticSDS points a cluster's SDS references at static secrets, since a
// bootstrap has no ADS stream: the secrets are then the bootstrap's own.
func staticSDS(t *testing.T, c *clusterv3.Cluster) *clusterv3.Cluster {
	t.Helper()
	if c.GetTransportSocket() == nil {
		return c
	}
	up := &tlsv3.UpstreamTlsContext{}
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	common := up.GetCommonTlsContext()
	for _, s := range common.GetTlsCertificateSdsSecretConfigs() {
		s.SdsConfig = nil
	}
	if v := common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); v != nil {
		v.SdsConfig = nil
	}
	if err := c.GetTransportSocket().GetTypedConfig().MarshalFrom(up); err != nil {
		t.Fatal(err)
	}
	return c
}
