// Command xds-server is the egress-xds control plane: it watches egress
// intent (ConfigMaps in a folder or in Kubernetes), translates it into Envoy
// resources and serves them to egress gateways over ADS.
//
//	xds-server [serve] [flags]        run the control plane (the default)
//	xds-server validate PATH...       check manifests like the server would
//	xds-server healthcheck            exit 0 when the server is ready
//	xds-server status                 sync status of the connected proxies
//	xds-server config --group G       what a group is served, as Envoy YAML
//	xds-server diff --config-dir A B  what would change on the gateways
//	xds-server --help, COMMAND --help the commands, a command's flags
//
// The command table is in cli.go.
package main

import (
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code: 0, 1 when the
// command found a problem (or a change, for diff), 2 on misuse.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && isHelp(args[0]) {
			topUsage(stdout)
			return 0
		}
		return serveCommand(args, stdout, stderr, true)
	}
	name, args := args[0], args[1:]
	if name == "help" {
		if len(args) == 0 {
			topUsage(stdout)
			return 0
		}
		name, args = args[0], []string{"--help"}
	}
	c, ok := lookup(name)
	if !ok {
		return unknownCommand(stderr, name)
	}
	return c.run(args, stdout, stderr)
}
