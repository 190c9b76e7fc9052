package tlsfiles

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/testpki"
)

func issue(t *testing.T, ca *testpki.CA, dir string) (serial string) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(testpki.Leaf{CommonName: "server", DNSNames: []string{"server"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "tls.crt"), certPEM)
	write(t, filepath.Join(dir, "tls.key"), keyPEM)
	return leafSerial(t, certPEM)
}

// write replaces a file with a new inode and a later modification time,
// as a Secret volume update does.
func write(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Duration(len(data)) * time.Millisecond)
	if err := os.Chtimes(tmp, later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func leafSerial(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

func current(t *testing.T, r *Reloader) string {
	t.Helper()
	cert, _, err := r.Current()
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.SerialNumber.String()
}

// A rotation is picked up, a half-written key keeps the previous
// certificate (and says so once), and a repair is picked up again.
func TestReloadKeepsThePreviousCertificateOnABrokenWrite(t *testing.T) {
	ca, err := testpki.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first := issue(t, ca, dir)
	var logs bytes.Buffer
	r, err := Load(Files{Name: "test tls", CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := current(t, r); got != first {
		t.Fatalf("serial %s, want %s", got, first)
	}
	second := issue(t, ca, dir)
	if got := current(t, r); got != second {
		t.Fatalf("after rotation serial %s, want %s", got, second)
	}
	write(t, filepath.Join(dir, "tls.key"), []byte("-----BEGIN PRIVATE KEY-----\ntruncated"))
	if got := current(t, r); got != second {
		t.Fatalf("with a broken key serial %s, want the previous %s", got, second)
	}
	current(t, r)
	if n := strings.Count(logs.String(), "test tls: reload failed"); n != 1 {
		t.Errorf("the failed reload is logged %d times, want once:\n%s", n, logs.String())
	}
	third := issue(t, ca, dir)
	if got := current(t, r); got != third {
		t.Fatalf("after repair serial %s, want %s", got, third)
	}
}

// The first load fails, naming the server and the file.
func TestLoadNamesTheProblem(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(Files{Name: "webhook tls", CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "missing.key")}, nil)
	if err == nil || !strings.Contains(err.Error(), "webhook tls") || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("got %v, want an error naming webhook tls and missing.crt", err)
	}
	if _, err := Load(Files{Name: "webhook tls", CertFile: "x"}, nil); err == nil {
		t.Error("a certificate without a key was accepted")
	}
}
