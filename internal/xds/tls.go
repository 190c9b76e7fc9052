package xds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// TLSOptions secure the xDS port. CertFile and KeyFile are the server's
// certificate (PEM, chain after the leaf) and key; with ClientCAFile,
// every proxy must present a client certificate issued by one of its CAs,
// and gets only the configuration of the gateway group its SPIFFE ID
// names (see Authorize). The files are re-read when they change on disk
// (checked on every new connection), so rotation needs no restart.
type TLSOptions struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
	// TrustDomain of the proxies' SPIFFE IDs; required with ClientCAFile.
	TrustDomain string
}

// ServerTLS is a loaded TLS setup for the xDS server: the certificate
// files are watched, and node authorization is on when client certificates
// are required.
type ServerTLS struct {
	opts TLSOptions
	log  *slog.Logger

	mu      sync.Mutex
	stamps  [3]fileStamp // cert, key, client CA
	cert    *tls.Certificate
	pool    *x509.CertPool
	lastErr string
}

type fileStamp struct {
	info os.FileInfo
}

func (s fileStamp) same(fi os.FileInfo) bool {
	return s.info != nil && fi != nil && os.SameFile(s.info, fi) &&
		s.info.ModTime().Equal(fi.ModTime()) && s.info.Size() == fi.Size()
}

// LoadTLS reads the certificate files; an error names the file at fault.
func LoadTLS(o TLSOptions, log *slog.Logger) (*ServerTLS, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.CertFile == "" || o.KeyFile == "":
		return nil, errors.New("xds tls: both a certificate and a key file are required")
	case o.ClientCAFile != "" && o.TrustDomain == "":
		return nil, errors.New("xds tls: a trust domain is required with a client CA (node authorization compares it with the proxies' SPIFFE IDs)")
	case o.ClientCAFile == "" && o.TrustDomain != "":
		return nil, errors.New("xds tls: a trust domain needs a client CA: without client certificates there is no identity to check")
	}
	if o.TrustDomain != "" {
		if err := intent.CheckTrustDomain(o.TrustDomain); err != nil {
			return nil, fmt.Errorf("xds tls: trust domain %q: %w", o.TrustDomain, err)
		}
	}
	s := &ServerTLS{opts: o, log: log}
	if _, _, err := s.reload(true); err != nil {
		return nil, err
	}
	return s, nil
}

// ClientAuth reports whether client certificates are required (and nodes
// authorized).
func (s *ServerTLS) ClientAuth() bool { return s != nil && s.opts.ClientCAFile != "" }

// TrustDomain of the proxies' SPIFFE IDs.
func (s *ServerTLS) TrustDomain() string { return s.opts.TrustDomain }

// Config is the server's tls.Config: each handshake gets the current
// certificate and client CAs, re-read when their files changed.
func (s *ServerTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool, err := s.reload(false)
			if err != nil {
				return nil, err
			}
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				NextProtos:   []string{"h2"},
			}
			if pool != nil {
				// A certificate, when given, must chain to the client CA,
				// checked in the handshake. A connection without one is
				// accepted so that its stream can be refused with a gRPC
				// Unauthenticated that names the node (see Authorize).
				c.ClientAuth = tls.VerifyClientCertIfGiven
				c.ClientCAs = pool
			}
			return c, nil
		},
	}
}

// reload re-reads the files if any changed since the last successful load.
// A failed reload keeps serving what was loaded before (a Secret update
// may write the certificate and the key a moment apart) and retries on the
// next connection.
func (s *ServerTLS) reload(initial bool) (*tls.Certificate, *x509.CertPool, error) {
	files := []string{s.opts.CertFile, s.opts.KeyFile, s.opts.ClientCAFile}
	var now [3]fileStamp
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.cert == nil
	for i, f := range files {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return s.keep(initial, fmt.Errorf("xds tls: %w", err))
		}
		now[i] = fileStamp{info: fi}
		if !s.stamps[i].same(fi) {
			changed = true
		}
	}
	if !changed {
		return s.cert, s.pool, nil
	}
	cert, err := tls.LoadX509KeyPair(s.opts.CertFile, s.opts.KeyFile)
	if err != nil {
		return s.keep(initial, fmt.Errorf("xds tls: certificate %s, key %s: %w", s.opts.CertFile, s.opts.KeyFile, err))
	}
	var pool *x509.CertPool
	if s.opts.ClientCAFile != "" {
		pem, err := os.ReadFile(s.opts.ClientCAFile)
		if err != nil {
			return s.keep(initial, fmt.Errorf("xds tls: client CA: %w", err))
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return s.keep(initial, fmt.Errorf("xds tls: client CA %s: no PEM certificate found", s.opts.ClientCAFile))
		}
	}
	if !initial {
		s.log.Info("xds tls: certificate files reloaded", "cert", s.opts.CertFile, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	s.stamps, s.cert, s.pool, s.lastErr = now, &cert, pool, ""
	return s.cert, s.pool, nil
}

// keep reports a failed reload and returns what was loaded before; called
// with mu held.
func (s *ServerTLS) keep(initial bool, err error) (*tls.Certificate, *x509.CertPool, error) {
	if initial || s.cert == nil {
		return nil, nil, err
	}
	if msg := err.Error(); msg != s.lastErr {
		s.lastErr = msg
		s.log.Warn("xds tls: reload failed, serving the previous certificate", "error", err)
	}
	return s.cert, s.pool, nil
}
