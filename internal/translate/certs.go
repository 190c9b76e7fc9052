package translate

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sort"
	"time"
)

// Certificate validity. Translation has no clock: Options.Now says when
// certificates are judged, and Resources.RecheckAt when that judgement
// changes by itself, so the builder can translate again then.

// DefaultCertificateExpiryWarning is how long before a client certificate
// expires a warning is given: cert-manager renews a 90-day certificate 30
// days before it expires, so a warning 14 days before means renewal has
// been failing for two weeks, and still leaves time to act.
const DefaultCertificateExpiryWarning = 14 * 24 * time.Hour

// CertificateClockSkew is how far in the future a certificate's NotBefore
// may be and the certificate still be served: issuers that do not backdate
// (cert-manager's CA issuer) hand out certificates valid from the instant
// they were signed, and a control plane whose clock lags the issuer's by a
// few seconds must not take the destination away during a rotation.
const CertificateClockSkew = 5 * time.Minute

// Certificate is the validity period of a certificate of a Secret the
// translation used, for the expiry metric. For tls.crt it is the leaf's;
// for ca.crt, NotAfter is the earliest of the bundle's certificates.
type Certificate struct {
	Secret    SecretKey
	Key       string // tls.crt or ca.crt
	NotBefore time.Time
	NotAfter  time.Time
}

// certValidity judges a client certificate at opts.Now: problem when it
// is expired or not yet valid (the destination is held back), warning
// when it expires within the warning threshold. It also records the
// certificate and when the judgement will next change.
func (t *translator) certValidity(k SecretKey, leaf *x509.Certificate) (problem, warning string) {
	t.recordCertificate(Certificate{Secret: k, Key: keyTLSCert, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter})
	now := t.opts.Now
	if now.IsZero() {
		return "", ""
	}
	warnAt := leaf.NotAfter.Add(-t.opts.CertificateExpiryWarning)
	validFrom := leaf.NotBefore.Add(-CertificateClockSkew)
	for _, at := range []time.Time{validFrom, warnAt, leaf.NotAfter} {
		t.recheckAt(at)
	}
	switch {
	case !now.Before(leaf.NotAfter):
		return fmt.Sprintf("%s expired at %s", keyTLSCert, stamp(leaf.NotAfter)), ""
	case now.Before(validFrom):
		return fmt.Sprintf("%s is not valid before %s", keyTLSCert, stamp(leaf.NotBefore)), ""
	case t.opts.CertificateExpiryWarning > 0 && !now.Before(warnAt):
		return "", fmt.Sprintf("%s expires at %s, in less than %s: renew it", keyTLSCert, stamp(leaf.NotAfter), days(t.opts.CertificateExpiryWarning))
	}
	return "", ""
}

// recordBundle records the earliest expiry of a CA bundle's certificates.
// CAs are not judged: a bundle often holds an expired CA beside its
// successor while clients move over.
func (t *translator) recordBundle(k SecretKey, bundle []byte) {
	var earliest time.Time
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if block.Type != "CERTIFICATE" || err != nil {
			continue
		}
		if earliest.IsZero() || c.NotAfter.Before(earliest) {
			earliest = c.NotAfter
		}
	}
	if !earliest.IsZero() {
		t.recordCertificate(Certificate{Secret: k, Key: keyCACert, NotAfter: earliest})
	}
}

func (t *translator) recordCertificate(c Certificate) {
	if t.certs == nil {
		t.certs = map[certKey]Certificate{}
	}
	t.certs[certKey{c.Secret, c.Key}] = c
}

type certKey struct {
	secret SecretKey
	key    string
}

// recheckAt notes a future instant at which a judgement changes.
func (t *translator) recheckAt(at time.Time) {
	if at.After(t.opts.Now) && (t.out.RecheckAt.IsZero() || at.Before(t.out.RecheckAt)) {
		t.out.RecheckAt = at
	}
}

// sortedCertificates lists the recorded certificates by Secret and key.
func (t *translator) sortedCertificates() []Certificate {
	out := make([]Certificate, 0, len(t.certs))
	for _, c := range t.certs {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Secret != b.Secret {
			return a.Secret.String() < b.Secret.String()
		}
		return a.Key < b.Key
	})
	return out
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// days writes a threshold the way operators think of it: 14 days, 36h.
func days(d time.Duration) string {
	if d >= 48*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
