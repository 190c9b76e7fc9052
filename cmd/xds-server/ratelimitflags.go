package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// rateLimitFlags say where the gateways reach the rate limit service of
// global rate limits (envoyproxy/ratelimit), and how they treat it.
type rateLimitFlags struct {
	address     string
	tls         bool
	caFile      string
	sni         string
	clientCert  string
	timeout     time.Duration
	failureMode string
}

func (r *rateLimitFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.address, "ratelimit-address", "", "gRPC address (host:port) where the gateways reach the rate limit service (envoyproxy/ratelimit) that counts global rate limits, e.g. ratelimit.egress-xds.svc.cluster.local:8081; empty: intents may not set rateLimit.global")
	fs.BoolVar(&r.tls, "ratelimit-tls", false, "with --ratelimit-address: the gateways reach the service over TLS, verifying it (--ratelimit-ca-file, --ratelimit-sni)")
	fs.StringVar(&r.caFile, "ratelimit-ca-file", "", "with --ratelimit-tls: CA bundle path inside the gateways to verify the service with (default: --system-ca-bundle)")
	fs.StringVar(&r.sni, "ratelimit-sni", "", "with --ratelimit-tls: the name the service's certificate must carry, sent as SNI (default: the host of --ratelimit-address)")
	fs.StringVar(&r.clientCert, "ratelimit-client-cert-dir", "", "with --ratelimit-tls: directory inside the gateways holding tls.crt and tls.key (a mounted kubernetes.io/tls Secret) that they present to the service, so that it can refuse callers that are not gateways (GRPC_CLIENT_TLS_CACERT, GRPC_CLIENT_TLS_SAN); Envoy re-reads it when it changes, the key never travels over xDS")
	fs.DurationVar(&r.timeout, "ratelimit-timeout", translate.DefaultRateLimitTimeout, "with --ratelimit-address: how long a gateway waits for the service's answer before the failure mode applies")
	fs.StringVar(&r.failureMode, "ratelimit-failure-mode", "open", "with --ratelimit-address: what gateways do while the service cannot answer, for destinations that do not say (rateLimit.global.failureModeDeny): open (let requests through) or deny (refuse them, 503)")
}

// options returns nil without --ratelimit-address.
func (r *rateLimitFlags) options() (*translate.RateLimitServiceOptions, error) {
	if r.failureMode != "open" && r.failureMode != "deny" {
		return nil, fmt.Errorf("--ratelimit-failure-mode %q is not open or deny", r.failureMode)
	}
	if r.address == "" {
		if r.tls || r.caFile != "" || r.sni != "" || r.clientCert != "" || r.failureMode != "open" || r.timeout != translate.DefaultRateLimitTimeout {
			return nil, fmt.Errorf("--ratelimit-tls, --ratelimit-ca-file, --ratelimit-sni, --ratelimit-client-cert-dir, --ratelimit-timeout and --ratelimit-failure-mode need --ratelimit-address")
		}
		return nil, nil
	}
	if !r.tls && (r.caFile != "" || r.sni != "" || r.clientCert != "") {
		return nil, fmt.Errorf("--ratelimit-ca-file, --ratelimit-sni and --ratelimit-client-cert-dir need --ratelimit-tls")
	}
	if r.timeout <= 0 {
		return nil, fmt.Errorf("--ratelimit-timeout %s must be positive", r.timeout)
	}
	o := &translate.RateLimitServiceOptions{Address: r.address, TLS: r.tls, CAFile: r.caFile, SNI: r.sni, ClientCertDir: r.clientCert,
		Timeout: r.timeout, FailureModeDeny: r.failureMode == "deny"}
	return o, o.Check()
}
