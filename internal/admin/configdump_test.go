package admin

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// Dumps never carry private keys; the served Secret is left untouched.
func TestRedactPrivateKeys(t *testing.T) {
	key := "-----BEGIN PRIVATE KEY-----secret"
	s := &tlsv3.Secret{Name: "apps/cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte("CERT")}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(key)}},
	}}}
	b, err := protojson.Marshal(redact(s))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "UFJJVkFURSBLRVk") || !strings.Contains(string(b), Redacted) {
		t.Fatalf("dump: %s", b)
	}
	if string(s.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) != key {
		t.Fatal("the served Secret was modified")
	}
}
