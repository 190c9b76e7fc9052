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
		if problem := t.keyPairProblem(SecretKey{o.Namespace, ref.Secret}, ""); problem != "" {
			fail("clientCertificate", "%s", problem)
		}
	}
	if ref := d.TLS.CACertificates; ref != nil {
		if problem := t.caBundleProblem(SecretKey{o.Namespace, ref.Secret}, ""); problem != "" {
			fail("caCertificates", "%s", problem)
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

// KeyPairProblem says why Secret k cannot be presented as a client
// certificate, or "" when it can: what the admission webhook warns about
// before the ConfigMap is stored.
func KeyPairProblem(secrets Secrets, k SecretKey) string { return keyPairProblem(secrets, k, "") }

// CABundleProblem says why Secret k cannot verify servers, or "" when it
// can (see KeyPairProblem).
func CABundleProblem(secrets Secrets, k SecretKey) string { return caBundleProblem(secrets, k, "") }

func (t *translator) keyPairProblem(k SecretKey, what string) string {
	return keyPairProblem(t.secrets, k, what)
}

func (t *translator) caBundleProblem(k SecretKey, what string) string {
	return caBundleProblem(t.secrets, k, what)
}

// keyPairProblem says why Secret k cannot be presented as a certificate
// (tls.crt and tls.key), or "" when it can; what says what it is for.
func keyPairProblem(secrets Secrets, k SecretKey, what string) string {
	data, found := secrets[k]
	switch {
	case !found:
		return fmt.Sprintf("Secret %s%s not found", k, what)
	case len(data[keyTLSCert]) == 0 || len(data[keyTLSKey]) == 0:
		return fmt.Sprintf("Secret %s%s has no %s and %s", k, what, keyTLSCert, keyTLSKey)
	}
	if _, err := tls.X509KeyPair(data[keyTLSCert], data[keyTLSKey]); err != nil {
		return fmt.Sprintf("Secret %s%s: %s and %s are not a valid key pair: %v", k, what, keyTLSCert, keyTLSKey, err)
	}
	return ""
}

// caBundleProblem says why Secret k cannot verify peers (ca.crt), or ""
// when it can; what says what it is for.
func caBundleProblem(secrets Secrets, k SecretKey, what string) string {
	data, found := secrets[k]
	switch {
	case !found:
		return fmt.Sprintf("Secret %s%s not found", k, what)
	case len(data[keyCACert]) == 0:
		return fmt.Sprintf("Secret %s%s has no %s", k, what, keyCACert)
	case !x509.NewCertPool().AppendCertsFromPEM(data[keyCACert]):
		return fmt.Sprintf("Secret %s%s: %s holds no PEM certificate", k, what, keyCACert)
	}
	return ""
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
