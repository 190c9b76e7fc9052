// Package tlsfiles keeps a server certificate (and optionally a CA bundle)
// loaded from PEM files that are re-read when they change on disk, so that
// a rotated Secret mount or cert-manager renewal needs no restart. The xDS
// server and the admission webhook share it.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Files names what to load. Name prefixes errors and log lines ("xds
// tls", "webhook tls") so that a problem says which server it is about.
type Files struct {
	Name     string
	CertFile string // certificate chain, leaf first
	KeyFile  string
	CAFile   string // optional CA bundle (client CAs)
}

// Reloader holds what was last loaded from the files.
type Reloader struct {
	files Files
	log   *slog.Logger

	mu      sync.Mutex
	stamps  [3]fileStamp // cert, key, CA
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

// Load reads the files once; an error names the file at fault.
func Load(f Files, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New(f.Name + ": both a certificate and a key file are required")
	}
	r := &Reloader{files: f, log: log}
	if _, _, err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

// Current returns the certificate and CA pool (nil without CAFile),
// re-reading the files first if any changed since the last successful
// load. A failed reload keeps what was loaded before (a Secret update may
// write the certificate and the key a moment apart), logs why once, and
// is retried on the next call.
func (r *Reloader) Current() (*tls.Certificate, *x509.CertPool, error) {
	return r.reload(false)
}

// GetCertificate is Current for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, _, err := r.Current()
	return cert, err
}

func (r *Reloader) reload(initial bool) (*tls.Certificate, *x509.CertPool, error) {
	f := r.files
	paths := []string{f.CertFile, f.KeyFile, f.CAFile}
	var now [3]fileStamp
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := r.cert == nil
	for i, p := range paths {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return r.keep(initial, fmt.Errorf("%s: %w", f.Name, err))
		}
		now[i] = fileStamp{info: fi}
		if !r.stamps[i].same(fi) {
			changed = true
		}
	}
	if !changed {
		return r.cert, r.pool, nil
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return r.keep(initial, fmt.Errorf("%s: certificate %s, key %s: %w", f.Name, f.CertFile, f.KeyFile, err))
	}
	var pool *x509.CertPool
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return r.keep(initial, fmt.Errorf("%s: client CA: %w", f.Name, err))
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return r.keep(initial, fmt.Errorf("%s: client CA %s: no PEM certificate found", f.Name, f.CAFile))
		}
	}
	if !initial {
		r.log.Info(f.Name+": certificate files reloaded", "cert", f.CertFile, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	r.stamps, r.cert, r.pool, r.lastErr = now, &cert, pool, ""
	return r.cert, r.pool, nil
}

// keep reports a failed reload and returns what was loaded before; called
// with mu held.
func (r *Reloader) keep(initial bool, err error) (*tls.Certificate, *x509.CertPool, error) {
	if initial || r.cert == nil {
		return nil, nil, err
	}
	if msg := err.Error(); msg != r.lastErr {
		r.lastErr = msg
		r.log.Warn(r.files.Name+": reload failed, serving the previous certificate", "error", err)
	}
	return r.cert, r.pool, nil
}
