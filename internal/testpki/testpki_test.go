package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestIssue(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseCA(ca.CertPEM, ca.KeyPEM)
	if err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("ParseCA: %v", err)
	}
	srv, err := ca.TLSCertificate(Leaf{CommonName: "srv", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"srv"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "srv"}); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	id := "spiffe://cluster.local/ns/a/sa/b"
	mesh, err := ca.TLSCertificate(SPIFFE(id))
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := mesh.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("SPIFFE certificate for %v: %v", usage, err)
		}
	}
	if len(mesh.Leaf.URIs) != 1 || mesh.Leaf.URIs[0].String() != id || len(mesh.Leaf.DNSNames) != 0 {
		t.Errorf("SPIFFE certificate SANs: %v %v", mesh.Leaf.URIs, mesh.Leaf.DNSNames)
	}
	leafPEM, keyPEM, err := ca.Issue(Leaf{CommonName: "client", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(leafPEM, keyPEM); err == nil {
		t.Error("a leaf was accepted as a CA")
	}
	if _, err := tls.X509KeyPair(leafPEM, keyPEM); err != nil {
		t.Error(err)
	}
}
