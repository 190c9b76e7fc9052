package translate

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path"

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
// as SDS resources. A missing, malformed or expired Secret, or a private
// key that may not travel to the gateways, holds the destination back
// (reported with its field path) so that Envoy never receives a reference
// it cannot resolve, a certificate it would present in vain, or a key over
// xDS that anyone could read.
func (t *translator) secretsPresent(o intent.Origin, index int, d *intent.Destination) bool {
	if d.TLS == nil {
		return true
	}
	ok := true
	report := func(sev intent.Severity, field, message string) {
		if sev == intent.SeverityError {
			message += "; destination " + d.Name + " is held back"
			ok = false
		}
		t.diags = append(t.diags, intent.Diagnostic{
			Origin: o, Path: fmt.Sprintf("destinations[%d].tls.%s.secret", index, field),
			Message: message, Severity: sev,
		})
	}
	if ref := d.TLS.ClientCertificate; ref != nil {
		k := SecretKey{o.Namespace, ref.Secret}
		problem, warning := t.keyPairProblem(k, "")
		if problem != "" {
			report(intent.SeverityError, "clientCertificate", problem)
		}
		if warning != "" {
			report(intent.SeverityWarning, "clientCertificate", warning)
		}
		if problem := t.keyDeliveryProblem(k); problem != "" {
			report(intent.SeverityError, "clientCertificate", problem)
		}
	}
	if ref := d.TLS.CACertificates; ref != nil {
		if problem := t.caBundleProblem(SecretKey{o.Namespace, ref.Secret}, ""); problem != "" {
			report(intent.SeverityError, "caCertificates", problem)
		}
	}
	// Origination happens at the gateway: sidecars never get these keys.
	if !ok || t.opts.Role != RoleGateway {
		return ok
	}
	if ref := d.TLS.ClientCertificate; ref != nil {
		k := SecretKey{o.Namespace, ref.Secret}
		s := tlsCertificateSecret(k, t.secrets)
		if dir := t.opts.OriginationSecretDir; dir != "" {
			s = fileCertificateSecret(path.Join(dir, k.Namespace, k.Name))
			s.Name = tlsSecretName(k)
		}
		t.addSecret(s, o)
	}
	if ref := d.TLS.CACertificates; ref != nil {
		t.addSecret(caSecret(SecretKey{o.Namespace, ref.Secret}, t.secrets), o)
	}
	return true
}

// KeyPairProblem says why Secret k cannot be presented as a client
// certificate, or "" when it can: what the admission webhook warns about
// before the ConfigMap is stored. (Validity in time is judged by the
// translation, which knows when it runs.)
func KeyPairProblem(secrets Secrets, k SecretKey) string {
	_, problem := keyPair(secrets, k, "")
	return problem
}

// CABundleProblem says why Secret k cannot verify servers, or "" when it
// can (see KeyPairProblem).
func CABundleProblem(secrets Secrets, k SecretKey) string { return caBundleProblem(secrets, k, "") }

// keyDeliveryProblem says why the private key of Secret k cannot reach
// the gateways, or "" when it can: read from a mounted file, or sent
// inline to proxies that proved who they are (or over loopback only).
func (t *translator) keyDeliveryProblem(k SecretKey) string {
	if t.opts.OriginationSecretDir != "" || t.opts.PrivateKeysInline {
		return ""
	}
	return fmt.Sprintf("Secret %s: its private key is not sent over xDS that does not authenticate proxies "+
		"(plaintext or without client certificates, on an address beyond loopback): anyone reaching the xDS port could read it; "+
		"turn on node authorization (--xds-tls-cert, --xds-tls-key, --xds-client-ca, --xds-trust-domain), "+
		"or mount the Secret in the gateways at <dir>/%s/%s/ and set --origination-secret-dir <dir>", k, k.Namespace, k.Name)
}

// keyPairProblem says why Secret k cannot be presented as a certificate
// (tls.crt and tls.key), or "" when it can, and warns when it expires
// soon (certs.go); what says what it is for.
func (t *translator) keyPairProblem(k SecretKey, what string) (problem, warning string) {
	leaf, problem := keyPair(t.secrets, k, what)
	if problem != "" {
		return problem, ""
	}
	problem, warning = t.certValidity(k, leaf)
	if problem != "" {
		problem = fmt.Sprintf("Secret %s%s: %s", k, what, problem)
	}
	if warning != "" {
		warning = fmt.Sprintf("Secret %s%s: %s", k, what, warning)
	}
	return problem, warning
}

// keyPair returns the leaf of Secret k's key pair, or why it has none.
func keyPair(secrets Secrets, k SecretKey, what string) (*x509.Certificate, string) {
	data, found := secrets[k]
	switch {
	case !found:
		return nil, fmt.Sprintf("Secret %s%s not found", k, what)
	case len(data[keyTLSCert]) == 0 || len(data[keyTLSKey]) == 0:
		return nil, fmt.Sprintf("Secret %s%s has no %s and %s", k, what, keyTLSCert, keyTLSKey)
	}
	pair, err := tls.X509KeyPair(data[keyTLSCert], data[keyTLSKey])
	if err != nil {
		return nil, fmt.Sprintf("Secret %s%s: %s and %s are not a valid key pair: %v", k, what, keyTLSCert, keyTLSKey, err)
	}
	return pair.Leaf, ""
}

// caBundleProblem checks Secret k as the function of that name does, and
// records the bundle's expiry for the metric.
func (t *translator) caBundleProblem(k SecretKey, what string) string {
	problem := caBundleProblem(t.secrets, k, what)
	if problem == "" {
		t.recordBundle(k, t.secrets[k][keyCACert])
	}
	return problem
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

// fileCertificateSecret tells the proxy to read its certificate and key
// from dir (a mounted Secret) and to re-read them when dir changes: the
// key never travels over xDS.
func fileCertificateSecret(dir string) *tlsv3.Secret {
	return &tlsv3.Secret{Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: fileSource(dir, keyTLSCert), PrivateKey: fileSource(dir, keyTLSKey),
		WatchedDirectory: &corev3.WatchedDirectory{Path: dir},
	}}}
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
