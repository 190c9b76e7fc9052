// Package fakeservices are the external services of the end-to-end tests,
// standing in for api.github.com and the other hosts of the scenarios: TLS
// and mutual-TLS HTTPS servers with certificates from a CA made for the
// test, a plain HTTP server, one that fails on demand, and TCP echo
// "databases". The same code runs in-process (local Envoy runs) and as the
// fakeservices container of docker-compose.yaml.
package fakeservices

import (
	"time"

	"github.com/egress-xds/egress-xds/internal/testpki"
)

// CA is the test's certificate authority: it signs the fake servers'
// certificates, the gateway's client certificate and the mesh
// certificates.
type CA = testpki.CA

// NewCA makes a CA valid for ten years: a compose volume keeps it across
// restarts of the stack.
func NewCA() (*CA, error) { return testpki.NewCA("egress-xds test CA", 10*365*24*time.Hour) }

// ParseCA reads a CA written by NewCA.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) { return testpki.ParseCA(certPEM, keyPEM) }
