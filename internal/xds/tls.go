package xds

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/tlsfiles"
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
	opts  TLSOptions
	files *tlsfiles.Reloader
}

// LoadTLS reads the certificate files; an error names the file at fault.
func LoadTLS(o TLSOptions, log *slog.Logger) (*ServerTLS, error) {
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
	files, err := tlsfiles.Load(tlsfiles.Files{Name: "xds tls", CertFile: o.CertFile, KeyFile: o.KeyFile, CAFile: o.ClientCAFile}, log)
	if err != nil {
		return nil, err
	}
	return &ServerTLS{opts: o, files: files}, nil
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
			cert, pool, err := s.files.Current()
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
