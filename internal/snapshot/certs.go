package snapshot

import "github.com/egress-xds/egress-xds/internal/translate"

// recordCertificates exports the expiry of every Secret certificate the
// groups use (the same Secret in many groups is one series), and removes
// the series of Secrets no longer used, so alerts can be written on
// egress_xds_secret_certificate_expiry_timestamp_seconds - time().
func (b *Builder) recordCertificates(certs []translate.Certificate) {
	if b.metrics == nil {
		return
	}
	now := map[[2]string]bool{}
	for _, c := range certs {
		labels := [2]string{c.Secret.String(), c.Key}
		now[labels] = true
		b.metrics.SecretCertExpiry.WithLabelValues(labels[0], labels[1]).Set(float64(c.NotAfter.Unix()))
	}
	for labels := range b.certExpiry {
		if !now[labels] {
			b.metrics.SecretCertExpiry.DeleteLabelValues(labels[0], labels[1])
		}
	}
	b.certExpiry = now
}
