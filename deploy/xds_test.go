package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// Where the gateway pods of deploy/ have their files.
const (
	gatewayCertDir = "/etc/egress-xds/xds" // the group's xDS certificate (a mounted Secret)
	bootstrapDir   = "/etc/envoy"          // the bootstrap ConfigMap
)

// deployBootstrap is what the bootstrap ConfigMap must hold: the shipped
// bootstrap with secure xDS, and its SDS files.
func deployBootstrap(t *testing.T) map[string][]byte {
	t.Helper()
	x := bootstrap.XDSTLS{CertDir: gatewayCertDir, SDSDir: bootstrapDir}
	b, err := bootstrap.Render(bootstrap.Params{NodeID: bootstrap.DefaultCluster, XDSTLS: &x})
	if err != nil {
		t.Fatal(err)
	}
	files, err := bootstrap.SDSFiles(x)
	if err != nil {
		t.Fatal(err)
	}
	files[bootstrapKey] = b
	return files
}

// mountOf returns where a container mounts the Secret (or ConfigMap) name.
func mountOf(spec corev1.PodSpec, c corev1.Container, name string) (string, *corev1.Volume) {
	for i, v := range spec.Volumes {
		if (v.Secret != nil && v.Secret.SecretName == name) || (v.ConfigMap != nil && v.ConfigMap.Name == name) {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name {
					return m.MountPath, &spec.Volumes[i]
				}
			}
		}
	}
	return "", nil
}

// xDS is secure by default and the pieces agree: the server runs with
// TLS and node authorization from the Secret of its Certificate, which
// names the host the gateways connect to; the gateways present their
// group's SPIFFE ID from the Secret of theirs, mounted where their
// bootstrap reads it; one CA, bootstrapped by cert-manager, issues both.
func TestSecureXDSByDefault(t *testing.T) {
	objs := manifests(t)
	certs := map[string]*certManagerObject{}
	for _, c := range find[*certManagerObject](objs) {
		if c.Kind == "Certificate" {
			certs[c.Spec.SecretName] = c
		}
	}
	for _, name := range []string{"xds-server-tls", "egress-gateway-xds"} {
		c := certs[name]
		if c == nil {
			t.Fatalf("no Certificate for the Secret %s", name)
		}
		ref := c.Spec.IssuerRef
		if ref == nil || ref.Kind != "Issuer" {
			t.Fatalf("Certificate %s: issuer %+v is not an Issuer of deploy/", c.Name, ref)
		}
		i := certManager(t, objs, "Issuer", ref.Name)
		if i.Spec.CA == nil || certs[i.Spec.CA.SecretName] == nil || !certs[i.Spec.CA.SecretName].Spec.IsCA {
			t.Errorf("Issuer %s does not sign with a CA Certificate of deploy/", i.Name)
		}
	}

	srv := one[*appsv1.Deployment](t, objs, "xds-server")
	sc := srv.Spec.Template.Spec.Containers[0]
	e := env(sc)
	td := e["EGRESS_XDS_XDS_TRUST_DOMAIN"]
	if td == "" || e["EGRESS_XDS_XDS_CLIENT_CA"] == "" {
		t.Fatal("xds-server runs without node authorization (EGRESS_XDS_XDS_CLIENT_CA, EGRESS_XDS_XDS_TRUST_DOMAIN)")
	}
	srvCert := certs["xds-server-tls"]
	dir, vol := mountOf(srv.Spec.Template.Spec, sc, srvCert.Spec.SecretName)
	for flag, file := range map[string]string{"EGRESS_XDS_XDS_TLS_CERT": "tls.crt", "EGRESS_XDS_XDS_TLS_KEY": "tls.key", "EGRESS_XDS_XDS_CLIENT_CA": "ca.crt"} {
		if dir == "" || e[flag] != filepath.Join(dir, file) {
			t.Errorf("%s=%q, want %s/%s from the mounted Secret %s", flag, e[flag], dir, file, srvCert.Spec.SecretName)
		}
	}
	if vol == nil || vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode&0o007 != 0 {
		t.Errorf("xds-server's key is readable by others: %+v", vol)
	}
	if !slices.Contains(srvCert.Spec.DNSNames, bootstrap.DefaultXDSHost) || !slices.Contains(srvCert.Spec.Usages, "server auth") {
		t.Errorf("xds-server certificate %+v: want the name the gateways check (%s) and server auth", srvCert.Spec, bootstrap.DefaultXDSHost)
	}

	gw := one[*appsv1.Deployment](t, objs, "egress-gateway")
	gc := gw.Spec.Template.Spec.Containers[0]
	group := ""
	for i, a := range gc.Args {
		if a == "--service-cluster" && i+1 < len(gc.Args) {
			group = gc.Args[i+1]
		}
	}
	gwCert := certs["egress-gateway-xds"]
	if want := translate.GatewaySPIFFEID(td, group); len(gwCert.Spec.URIs) != 1 || gwCert.Spec.URIs[0] != want ||
		!slices.Contains(gwCert.Spec.Usages, "client auth") {
		t.Errorf("gateway certificate %+v: want exactly the URI SAN %s and client auth", gwCert.Spec, want)
	}
	// Its one DNS name is the rate limit service's callers' (ratelimit_test.go).
	if rl := env(one[*appsv1.Deployment](t, objs, "ratelimit").Spec.Template.Spec.Containers[0]); len(gwCert.Spec.DNSNames) != 1 || gwCert.Spec.DNSNames[0] != rl["GRPC_CLIENT_TLS_SAN"] {
		t.Errorf("gateway certificate DNS names %v: want exactly the rate limit service's GRPC_CLIENT_TLS_SAN %q", gwCert.Spec.DNSNames, rl["GRPC_CLIENT_TLS_SAN"])
	}
	if *gwCert.Spec.IssuerRef != *srvCert.Spec.IssuerRef {
		t.Errorf("the server's and the gateways' certificates come from different issuers: each side's ca.crt would not verify the other")
	}
	if dir, vol := mountOf(gw.Spec.Template.Spec, gc, gwCert.Spec.SecretName); dir != gatewayCertDir || vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode&0o007 != 0 {
		t.Errorf("the gateway mounts %s at %q (%+v), want %s, not readable by others", gwCert.Spec.SecretName, dir, vol, gatewayCertDir)
	}
	if dir, _ := mountOf(gw.Spec.Template.Spec, gc, "egress-gateway-bootstrap"); dir != bootstrapDir {
		t.Errorf("the bootstrap ConfigMap is mounted at %q, want %s", dir, bootstrapDir)
	}
}

// The bootstrap ConfigMap as shipped loads in a real Envoy, its SDS
// files and the certificate files they name included (placed in a
// temporary folder instead of the pod's).
func TestShippedBootstrapEnvoyValidates(t *testing.T) {
	bin := envoytest.Find(t)
	cm := one[*corev1.ConfigMap](t, manifests(t), "egress-gateway-bootstrap")
	dir := t.TempDir()
	boot, certs := filepath.Join(dir, "envoy"), filepath.Join(dir, "xds")
	for _, d := range []string{boot, certs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	moved := strings.NewReplacer(bootstrapDir, boot, gatewayCertDir, certs)
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(boot, name), []byte(moved.Replace(data)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pair := selfSigned(t)
	for name, data := range map[string][]byte{"tls.crt": pair.cert, "tls.key": pair.key, "ca.crt": pair.cert} {
		if err := os.WriteFile(filepath.Join(certs, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	envoytest.MustValidateFile(t, bin, filepath.Join(boot, bootstrapKey))
}

type pemPair struct{ cert, key []byte }

// selfSigned is a throw-away certificate for files Envoy must load.
func selfSigned(t *testing.T) pemPair {
	t.Helper()
	ca, err := testpki.NewCA("deploy-test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pemPair{ca.CertPEM, ca.KeyPEM}
}
