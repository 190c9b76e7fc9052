// Command xds-server is the egress-xds control plane: it watches egress
// intent (ConfigMaps in a folder or in Kubernetes), translates it into Envoy
// resources and serves them to egress gateways over ADS.
//
//	xds-server [serve] [flags]      run the control plane (the default)
//	xds-server validate PATH...     check manifests like the server would
//	xds-server status               sync status of the connected proxies
//	xds-server config --group G     what a group is served, as Envoy YAML
//	xds-server diff --config-dir A B  what would change on the gateways
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "validate":
		return validate(args, stdout, stderr)
	case "healthcheck":
		return healthcheck(args, stdout, stderr)
	case "status":
		return status(args, stdout, stderr)
	case "config":
		return config(args, stdout, stderr)
	case "diff":
		return diff(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

const usage = `xds-server: xDS control plane for Envoy egress gateways

Commands:
  serve [flags]             serve egress intent to Envoy over ADS (the default)
  validate [flags] PATH...  check ConfigMap/Secret manifests (files or folders)
                            like the server would; exit 1 on any error
  healthcheck [flags]       exit 0 when the server at --admin-address is ready
  status [flags]            sync status of the connected proxies (SYNCED, STALE,
                            NACKED per type) and their last NACK, from the
                            server at --admin-address; --group, --node filter
  config --group G [flags]  what the server at --admin-address serves a gateway
                            group, as Envoy YAML with each resource's ConfigMaps
  diff --config-dir CURRENT PROPOSED
                            what would change on the gateways (per group and
                            type: resources added, removed, changed); exit 1
                            when something changes

Run 'xds-server COMMAND -h' for the flags of a command. Every flag can also be
set by an environment variable: --config-dir is EGRESS_XDS_CONFIG_DIR.
`
