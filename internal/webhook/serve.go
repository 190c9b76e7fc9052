package webhook

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"github.com/egress-xds/egress-xds/internal/tlsfiles"
)

// Config is where the webhook listens and its serving certificate, whose
// files are re-read when they change (cert-manager renews them in place).
type Config struct {
	Address  string
	CertFile string
	KeyFile  string
}

// LoadCertificate reads the serving certificate, failing on the first
// load: a webhook the API server cannot verify would only fail calls.
func (c Config) LoadCertificate(log *slog.Logger) (*tlsfiles.Reloader, error) {
	return tlsfiles.Load(tlsfiles.Files{Name: "webhook tls", CertFile: c.CertFile, KeyFile: c.KeyFile}, log)
}

// NewHTTPServer serves h over TLS 1.2 or later with the current
// certificate. Timeouts are short: the API server waits at most the
// webhook's timeoutSeconds (30s at most) for an answer.
func NewHTTPServer(h http.Handler, certs *tlsfiles.Reloader, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler: h,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.GetCertificate,
		},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// Handshake failures (an API server not trusting the certificate:
		// a wrong caBundle) are worth seeing.
		ErrorLog: slog.NewLogLogger(log.With("component", "webhook").Handler(), slog.LevelWarn),
	}
}
