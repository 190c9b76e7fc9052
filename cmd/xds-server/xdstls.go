package main

import (
	"errors"
	"flag"

	"github.com/egress-xds/egress-xds/internal/xds"
)

// xdsTLSFlags secure the xDS port.
type xdsTLSFlags struct {
	cert, key, clientCA, trustDomain string
}

func (x *xdsTLSFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&x.cert, "xds-tls-cert", "", "PEM certificate (chain) of the xDS server; with --xds-tls-key turns TLS on for xDS. Re-read when it changes on disk")
	fs.StringVar(&x.key, "xds-tls-key", "", "PEM private key of --xds-tls-cert")
	fs.StringVar(&x.clientCA, "xds-client-ca", "", "PEM CA bundle: proxies must present a client certificate it issued, and get only the gateway group their SPIFFE ID spiffe://<trust-domain>/gateway-group/<group> names (needs --xds-tls-cert and --xds-trust-domain)")
	fs.StringVar(&x.trustDomain, "xds-trust-domain", "", "with --xds-client-ca: the trust domain of the proxies' SPIFFE IDs")
}

// check reports flag combinations that cannot work.
func (x *xdsTLSFlags) check() error {
	switch {
	case (x.cert == "") != (x.key == ""):
		return errors.New("--xds-tls-cert and --xds-tls-key go together")
	case x.clientCA != "" && x.cert == "":
		return errors.New("--xds-client-ca needs --xds-tls-cert and --xds-tls-key: client certificates need TLS")
	case x.clientCA != "" && x.trustDomain == "":
		return errors.New("--xds-client-ca needs --xds-trust-domain: node authorization compares it with the proxies' SPIFFE IDs")
	case x.trustDomain != "" && x.clientCA == "":
		return errors.New("--xds-trust-domain needs --xds-client-ca")
	}
	return nil
}

// options are the server's TLS options; nil for plaintext xDS.
func (x *xdsTLSFlags) options() *xds.TLSOptions {
	if x.cert == "" {
		return nil
	}
	return &xds.TLSOptions{CertFile: x.cert, KeyFile: x.key, ClientCAFile: x.clientCA, TrustDomain: x.trustDomain}
}
