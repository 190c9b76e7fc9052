package webhook

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/testpki"
)

// The webhook speaks TLS 1.2 or later only, with the certificate of its
// files, and serves the review path.
func TestServesTLS12OrLater(t *testing.T) {
	ca, err := testpki.NewCA("webhook-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(testpki.Leaf{CommonName: "webhook", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := Config{Address: "127.0.0.1:0", CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	if _, err := cfg.LoadCertificate(nil); err == nil {
		t.Fatal("loaded a certificate from missing files")
	}
	for p, data := range map[string][]byte{cfg.CertFile: certPEM, cfg.KeyFile: keyPEM} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certs, err := cfg.LoadCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, true)
	srv := NewHTTPServer(f.h, certs, slog.New(slog.DiscardHandler))
	l, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	client := func(maxVersion uint16) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: maxVersion}}}
	}
	url := "https://" + l.Addr().String() + Path
	resp, err := client(tls.VersionTLS12).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET over TLS 1.2: status %d, want 405 from the handler", resp.StatusCode)
	}
	// The client offers TLS 1.0 and 1.1: the server must refuse both.
	_, err = client(tls.VersionTLS11).Get(url)
	if err == nil || !strings.Contains(err.Error(), "remote error: tls: protocol version not supported") {
		t.Fatalf("TLS 1.1: got %v, want the server's protocol_version alert", err)
	}
}
