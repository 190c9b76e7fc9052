package translate

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Kubernetes Secret keys, as kubernetes.io/tls Secrets and cert-manager use them.
const (
	keyTLSCert = "tls.crt"
	keyTLSKey  = "tls.key"
	keyCACert  = "ca.crt"
)

// secretsPresent checks the Secrets a destination references and adds them
// as SDS resources. A missing or malformed Secret holds the destination back
// (reported with its field path) so that Envoy never receives a reference it
// cannot resolve or a certificate it would reject.
func (t *translator) secretsPresent(o intent.Origin, index int, d *intent.Destination) bool {
	if d.TLS == nil {
		return true
	}
	ok := true
	fail := func(field, format string, args ...any) {
		t.diags = append(t.diags, intent.Diagnostic{
			Origin: o, Path: fmt.Sprintf("destinations[%d].tls.%s.secret", index, field),
			Message:  fmt.Sprintf(format, args...) + "; destination " + d.Name + " is held back",
			Severity: intent.SeverityError,
		})
		ok = false
	}
	if ref := d.TLS.ClientCertificate; ref != nil {
		key := SecretKey{o.Namespace, ref.Secret}
		data, found := t.secrets[key]
		switch {
		case !found:
			fail("clientCertificate", "Secret %s not found", key)
		case len(data[keyTLSCert]) == 0 || len(data[keyTLSKey]) == 0:
			fail("clientCertificate", "Secret %s has no %s and %s", key, keyTLSCert, keyTLSKey)
		default:
			if _, err := tls.X509KeyPair(data[keyTLSCert], data[keyTLSKey]); err != nil {
				fail("clientCertificate", "Secret %s: %s and %s are not a valid key pair: %v", key, keyTLSCert, keyTLSKey, err)
			}
		}
	}
	if ref := d.TLS.CACertificates; ref != nil {
		key := SecretKey{o.Namespace, ref.Secret}
		data, found := t.secrets[key]
		switch {
		case !found:
			fail("caCertificates", "Secret %s not found", key)
		case len(data[keyCACert]) == 0:
			fail("caCertificates", "Secret %s has no %s", key, keyCACert)
		case !x509.NewCertPool().AppendCertsFromPEM(data[keyCACert]):
			fail("caCertificates", "Secret %s: %s holds no PEM certificate", key, keyCACert)
		}
	}
	// Origination happens at the gateway: sidecars never get these keys.
	if !ok || t.opts.Role != RoleGateway {
		return ok
	}
	if ref := d.TLS.ClientCertificate; ref != nil {
		t.addSecret(tlsCertificateSecret(SecretKey{o.Namespace, ref.Secret}, t.secrets), o)
	}
	if ref := d.TLS.CACertificates; ref != nil {
		t.addSecret(caSecret(SecretKey{o.Namespace, ref.Secret}, t.secrets), o)
	}
	return true
}

// addSecret adds an SDS secret, coming from every ConfigMap that uses it
// (none for the mesh certificates, which are server settings).
func (t *translator) addSecret(s *tlsv3.Secret, users ...intent.Origin) {
	for _, u := range users {
		t.out.Sources.addConfigMap(resourcev3.SecretType, s.Name, u.ConfigMap())
	}
	if t.secretsOut == nil {
		t.secretsOut = map[string]*tlsv3.Secret{}
	}
	t.secretsOut[s.Name] = s
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func tlsCertificateSecret(k SecretKey, secrets Secrets) *tlsv3.Secret {
	data := secrets[k]
	return &tlsv3.Secret{
		Name: tlsSecretName(k),
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inlineBytes(data[keyTLSCert]),
			PrivateKey:       inlineBytes(data[keyTLSKey]),
		}},
	}
}

func caSecret(k SecretKey, secrets Secrets) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: caSecretName(k),
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inlineBytes(secrets[k][keyCACert]),
		}},
	}
}

// sdsConfig references an SDS secret delivered on the ADS stream.
func sdsConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}
