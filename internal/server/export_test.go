package server

import "net"

// ListenWith makes Start open its xDS listener with listen, so tests can
// run a server configured for a non-loopback address on 127.0.0.1.
func ListenWith(cfg *Config, listen func(network, address string) (net.Listener, error)) {
	cfg.listen = listen
}
