package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// keyFlags say how origination private keys reach the gateways and how
// client certificates are judged, for serve, validate and diff alike.
type keyFlags struct {
	originationSecretDir string
	expiryWarning        time.Duration
	// offline is set by validate and diff, which have no listener: they
	// are told how the server they judge for runs.
	offline    bool
	xdsAddress string
	clientAuth bool
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.originationSecretDir, "origination-secret-dir", "", "folder in the gateways where the client certificate Secrets of MUTUAL destinations are mounted, as <dir>/<namespace>/<name>/tls.crt and tls.key: SDS then sends only these paths (watched), never the key. Default: keys go inline over SDS, only with node authorization (--xds-client-ca) or xDS on loopback alone")
	fs.DurationVar(&k.expiryWarning, "certificate-expiry-warning", translate.DefaultCertificateExpiryWarning, "warn when a client certificate (origination, mesh Secret) expires within this; 0: no warning. Expired or not yet valid certificates are errors whatever this says")
}

// registerOffline adds the flags validate and diff judge key delivery by.
func (k *keyFlags) registerOffline(fs *flag.FlagSet) {
	k.offline = true
	fs.StringVar(&k.xdsAddress, "xds-address", ":18000", "the server's --xds-address: private keys go inline only when it is loopback alone (127.0.0.1, ::1, localhost), or with --xds-client-auth")
	fs.BoolVar(&k.clientAuth, "xds-client-auth", false, "the server runs with --xds-client-ca (node authorization): private keys may go inline")
}

func (k *keyFlags) check() error {
	if k.originationSecretDir != "" && !filepath.IsAbs(k.originationSecretDir) {
		return fmt.Errorf("--origination-secret-dir %q is not an absolute path (a folder inside the gateways)", k.originationSecretDir)
	}
	if k.expiryWarning < 0 {
		return errors.New("--certificate-expiry-warning is negative")
	}
	return nil
}

// apply sets the options; serve's server decides PrivateKeysInline and
// the time itself, from its listener and its clock.
func (k *keyFlags) apply(o *translate.Options) {
	o.OriginationSecretDir = k.originationSecretDir
	o.CertificateExpiryWarning = k.expiryWarning
	if k.offline {
		o.PrivateKeysInline = server.PrivateKeysInline(k.xdsAddress, k.clientAuth)
		o.Now = time.Now()
	}
}
