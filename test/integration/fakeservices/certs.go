package fakeservices

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/egress-xds/egress-xds/internal/testpki"
)

// Files of a certs folder: shared by the fake services, the gateways (the CA
// is their system bundle), xds-server (the Secrets) and the client.
const (
	CACertFile  = "ca.crt"
	CAKeyFile   = "ca.key"
	SecretsFile = "partner-secrets.yaml"
	// SecretsDir holds the client certificate Secret as the gateways mount
	// it: SecretsDir/<namespace>/<name>/tls.crt and tls.key.
	SecretsDir = "secrets"
)

// The Secrets of mutual TLS origination: the partner hands the gateway a
// client certificate and the CA of its server certificate.
const (
	SecretNamespace   = "apps"
	ClientCertSecret  = "partner-client-cert"
	CASecret          = "partner-ca"
	GatewayClientName = "egress-gateway"
)

// DefaultNames are the names the fake TLS servers present certificates for:
// every TLS host of the scenarios, and no other (a scenario relies on a name
// missing here to prove the gateway verifies upstream certificates).
var DefaultNames = []string{
	"api.github.com",
	"api.external-service.com",
	"secure-api.partner.com",
	"denied-tls.example.com",
	"budget.example.com",
	"api.payment-provider.com", // the Istio guide's production host (import test)
	MeshHost,
	DynamicHost,
	"*." + WildcardDomain,
	// Names under DNSZone, which only the test DNS server knows.
	"rr." + DNSZone,
	"ports." + DNSZone,
	"origin." + DNSZone,
	"both." + DNSZone,
	"dynamic." + DNSZone,
	"sni." + DNSZone,
	"*.sni." + DNSZone,
	"other." + DNSZone,
}

// DNSZone holds the names of the scenarios that resolve through DNS: only
// the test DNS server (StartDNS) knows them, and local gateways ask it
// (xds-server --dns-resolver). RFC 6761 keeps .test out of the real DNS.
const DNSZone = "resolved.test"

// Hosts of the scenario of names resolved per request (DYNAMIC): Envoy's
// resolver answers loopback for every name under localhost (RFC 6761), so
// local gateways reach the fake services by these names without DNS.
const (
	DynamicHost    = "dynamic-origin.localhost"
	WildcardDomain = "wild.localhost"
)

// The mesh: sidecars reach the gateways' mesh port with mutual TLS, and
// the gateways authorize by the workload identity in the certificate. The
// test CA issues every mesh certificate; the gateways read theirs, and the
// CA, from the MeshDir folder of the certs folder.
const (
	MeshDir         = "mesh"
	MeshTrustDomain = "cluster.local"
	// MeshHost is the destination of the mesh scenario.
	MeshHost = "mesh-api.example.com"
)

// MeshGatewayID is the SPIFFE ID of a gateway group's gateways.
func MeshGatewayID(group string) string {
	return "spiffe://" + MeshTrustDomain + "/gateway-group/" + group
}

// WorkloadID is the SPIFFE ID of a Kubernetes workload.
func WorkloadID(namespace, serviceAccount string) string {
	return "spiffe://" + MeshTrustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// LoadOrCreateCA reads the CA of dir, or, when dir has none, makes one and
// writes the folder with WriteCertsDir. created tells which.
func LoadOrCreateCA(dir string) (ca *CA, created bool, err error) {
	certPEM, errC := os.ReadFile(filepath.Join(dir, CACertFile))
	keyPEM, errK := os.ReadFile(filepath.Join(dir, CAKeyFile))
	switch {
	case errC == nil && errK == nil:
		ca, err = ParseCA(certPEM, keyPEM)
		return ca, false, err
	case !errors.Is(errC, fs.ErrNotExist) && errC != nil:
		return nil, false, errC
	case !errors.Is(errK, fs.ErrNotExist) && errK != nil:
		return nil, false, errK
	case errC == nil || errK == nil:
		return nil, false, fmt.Errorf("%s holds only one of %s and %s", dir, CACertFile, CAKeyFile)
	}
	if ca, err = NewCA(); err != nil {
		return nil, false, err
	}
	return ca, true, WriteCertsDir(dir, ca)
}

// WriteCertsDir writes the CA and the partner Secrets into dir. Files are
// world-readable: the containers of the stack read them as other users, and
// this CA exists only for the test.
func WriteCertsDir(dir string, ca *CA) error {
	clientCert, clientKey, err := ca.Issue(testpki.Leaf{CommonName: GatewayClientName, Client: true})
	if err != nil {
		return err
	}
	secrets := fmt.Sprintf(`# Written by fakeservices: the partner's onboarding package for mutual TLS
# origination, a client certificate for the gateway and the CA of the
# partner's server certificate, both from the test CA in this folder.
apiVersion: v1
kind: Secret
metadata:
  name: %s
  namespace: %s
type: kubernetes.io/tls
stringData:
  tls.crt: |
%s  tls.key: |
%s---
apiVersion: v1
kind: Secret
metadata:
  name: %s
  namespace: %s
stringData:
  ca.crt: |
%s`, ClientCertSecret, SecretNamespace, indent(clientCert), indent(clientKey), CASecret, SecretNamespace, indent(ca.CertPEM))
	meshCert, meshKey, err := ca.Issue(testpki.SPIFFE(MeshGatewayID(GatewayClientName)))
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{CACertFile, ca.CertPEM}, {"tls.key", meshKey}, {"tls.crt", meshCert}} {
		if err := os.MkdirAll(filepath.Join(dir, MeshDir), 0o755); err != nil {
			return err
		}
		if err := writeAtomic(filepath.Join(dir, MeshDir, f.name), f.data); err != nil {
			return err
		}
	}
	clientDir := filepath.Join(dir, SecretsDir, SecretNamespace, ClientCertSecret)
	if err := os.MkdirAll(clientDir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"tls.crt": clientCert, "tls.key": clientKey} {
		if err := writeAtomic(filepath.Join(clientDir, name), data); err != nil {
			return err
		}
	}
	// The CA goes first: a watcher of the folder that sees the Secrets
	// finds the CA they were made with.
	for _, f := range []struct {
		name string
		data []byte
	}{{CAKeyFile, ca.KeyPEM}, {CACertFile, ca.CertPEM}, {SecretsFile, []byte(secrets)}} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return err
		}
	}
	return nil
}

// writeAtomic writes through a hidden temporary file, which folder watchers
// skip, so no reader ever sees half a file.
func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // whatever the umask
		return err
	}
	return os.Rename(tmp, path)
}

func indent(pemData []byte) string {
	var b strings.Builder
	for _, line := range bytes.SplitAfter(pemData, []byte("\n")) {
		if len(line) > 0 {
			b.WriteString("    ")
			b.Write(line)
		}
	}
	return b.String()
}
