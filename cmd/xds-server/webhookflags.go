package main

import (
	"errors"
	"flag"

	"github.com/egress-xds/egress-xds/internal/webhook"
)

// webhookFlags serve the validating admission webhook.
type webhookFlags struct {
	address, cert, key string
}

func (w *webhookFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.address, "webhook-address", "", "with --kubernetes: HTTPS address of the validating admission webhook of intent ConfigMaps (path "+webhook.Path+"), e.g. 0.0.0.0:9443; empty: off. Needs --webhook-tls-cert and --webhook-tls-key")
	fs.StringVar(&w.cert, "webhook-tls-cert", "", "PEM certificate (chain) of the webhook, for its Service's DNS name; re-read when it changes on disk")
	fs.StringVar(&w.key, "webhook-tls-key", "", "PEM private key of --webhook-tls-cert")
}

// check reports flag combinations that cannot work, saying what fixes them.
func (w *webhookFlags) check(kubernetes bool) error {
	switch {
	case w.address == "" && (w.cert != "" || w.key != ""):
		return errors.New("--webhook-tls-cert and --webhook-tls-key need --webhook-address (where the webhook listens)")
	case w.address == "":
		return nil
	case !kubernetes:
		return errors.New("--webhook-address needs --kubernetes: the webhook judges ConfigMaps the API server is about to store; with --config-dir, run xds-server validate instead")
	case w.cert == "" || w.key == "":
		return errors.New("--webhook-address needs --webhook-tls-cert and --webhook-tls-key: the API server calls webhooks over HTTPS only")
	}
	return nil
}

// config is the server's webhook configuration; nil when off.
func (w *webhookFlags) config() *webhook.Config {
	if w.address == "" {
		return nil
	}
	return &webhook.Config{Address: w.address, CertFile: w.cert, KeyFile: w.key}
}
