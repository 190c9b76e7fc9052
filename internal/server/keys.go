package server

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// LoopbackOnly reports whether an xDS listen address (host:port) accepts
// connections from this machine alone: localhost or a loopback IP. An
// empty host (":18000"), an unspecified address (0.0.0.0, ::) or any
// other name is not: a name could resolve anywhere.
func LoopbackOnly(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// PrivateKeysInline is the rule for origination keys on SDS: inline only
// to proxies that proved their identity (client certificates and node
// authorization), or when xDS listens on loopback alone (a laptop: whoever
// can reach it can read the manifests folder too). validate and diff
// apply it to their flags as serve applies it to its listener.
func PrivateKeysInline(xdsAddress string, clientAuth bool) bool {
	return clientAuth || LoopbackOnly(xdsAddress)
}

// warnInsecureXDS says at start what an unauthenticated peer gets: every
// group's configuration, without private keys.
func warnInsecureXDS(log *slog.Logger, address string, tls, clientAuth bool, opts translate.Options) {
	if clientAuth || LoopbackOnly(address) {
		return
	}
	keys := "origination destinations with a client certificate are held back until this is fixed (or --origination-secret-dir is set)"
	if opts.OriginationSecretDir != "" {
		keys = "gateways read origination keys from " + opts.OriginationSecretDir
	}
	if !tls {
		log.Warn("xDS is plaintext on a non-loopback address: anyone who reaches it can read every gateway group's configuration; "+
			"private keys are not sent: "+keys+". Secure it with --xds-tls-cert, --xds-tls-key, --xds-client-ca and --xds-trust-domain",
			"xds", address)
		return
	}
	log.Warn("xDS has TLS but no client certificates (--xds-client-ca): any proxy that reaches it can read every gateway group's configuration; "+
		"private keys are not sent: "+keys, "xds", address)
}

// keyDelivery names how origination keys reach the gateways, for the log.
func keyDelivery(o translate.Options) string {
	switch {
	case o.OriginationSecretDir != "":
		return "files in " + o.OriginationSecretDir
	case o.PrivateKeysInline:
		return "inline"
	}
	return "held back"
}
