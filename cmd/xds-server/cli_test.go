package main

import (
	"flag"
	"strings"
	"testing"
)

// --help shows the commands first, then serve's flags; help, -h and
// -help are the same. Nothing goes to stderr and the exit code is 0.
func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}, {"--config-dir", "examples", "--help"}} {
		code, out, errOut := runCmd(args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		flags := strings.Index(out, "Flags of serve, the default command:")
		if flags < 0 || !strings.Contains(out[flags:], "  --config-dir string\n") || !strings.Contains(out[flags:], "  --xds-address string\n") {
			t.Fatalf("%v: no serve flags after the commands:\n%s", args, out)
		}
		for _, c := range commands() {
			if i := strings.Index(out, "\n  "+c.name+" "+c.args+"\n"); i < 0 || i > flags {
				t.Errorf("%v: command %s not listed before the flags", args, c.name)
			}
		}
	}
}

// Every command has its help: usage line, what it does, every flag it
// takes (as --name), and how the environment sets them.
func TestCommandHelp(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			code, out, errOut := runCmd(args...)
			if code != 0 || errOut != "" {
				t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: xds-server "+c.name+" "+c.args+"\n\n"+upperFirst(c.summary)+".\n\nFlags:\n") ||
				!strings.Contains(out, "Every flag can also be set by its environment variable: --") {
				t.Fatalf("%v:\n%s", args, out)
			}
		}
		_, out, _ := runCmd(c.name, "--help")
		if !strings.Contains(out, "\n  --admin-address string\n") && !strings.Contains(out, "\n  --forward-proxy-port uint\n") {
			t.Errorf("%s: flags not listed:\n%s", c.name, out)
		}
	}
}

// Defaults are shown as the flag package shows them; zero values are not.
func TestPrintFlagsDefaults(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("addr", "127.0.0.1:9090", "the `address`")
	fs.String("empty", "", "nothing by default")
	fs.Uint("port", 3128, "a port; 0 disables it")
	fs.Uint("zero", 0, "off by default")
	fs.Bool("on", false, "a switch")
	var pm portMap
	fs.Var(&pm, "port-map", "ports")
	var b strings.Builder
	printFlags(&b, fs)
	want := `  --addr address
    	the address (default "127.0.0.1:9090")
  --empty string
    	nothing by default
  --on
    	a switch
  --port uint
    	a port; 0 disables it (default 3128)
  --port-map value
    	ports
  --zero uint
    	off by default

Every flag can also be set by its environment variable: --addr is EGRESS_XDS_ADDR.
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// Every misuse says what is wrong and the fix, on stderr, and exits 2.
func TestMisuse(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `xds-server: unknown command "frobnicate"` + "\nCommands: serve, validate, healthcheck, status, config, diff, import, discover, help. Run 'xds-server --help' for what each does.\n"},
		{[]string{"valdate", "examples"}, `xds-server: unknown command "valdate"; did you mean validate?`},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{nil, "xds-server serve: a source is required: --config-dir (a folder of ConfigMap manifests, e.g. --config-dir examples) or --kubernetes\nRun 'xds-server serve --help' for its flags.\n"},
		{[]string{"serve", "examples"}, `xds-server serve: unexpected argument "examples": serve takes flags only; to serve a folder of manifests: --config-dir examples`},
		{[]string{"--config-dir", "a", "--kubernetes"}, "xds-server serve: --config-dir and --kubernetes are mutually exclusive: one source at a time"},
		{[]string{"--kubeconfig", "k"}, "xds-server serve: --kubeconfig and --namespaces need --kubernetes"},
		{[]string{"--log-format", "xml", "--config-dir", "a"}, `xds-server serve: --log-format "xml": want text or json`},
		{[]string{"--bogus"}, "xds-server serve: unknown flag --bogus\nRun 'xds-server serve --help' for its flags.\n"},
		{[]string{"validate"}, "xds-server validate: no file or folder to check: name at least one, e.g. xds-server validate examples\n"},
		{[]string{"validate", "--xds-address"}, "xds-server validate: flag --xds-address needs a value"},
		{[]string{"validate", "--forward-proxy-port", "x", "examples"}, `xds-server validate: invalid value "x" for --forward-proxy-port: parse error`},
		{[]string{"validate", "--xds-client-auth=maybe", "examples"}, `xds-server validate: invalid value "maybe" for --xds-client-auth: parse error`},
		{[]string{"validate", "--forward-proxy-port", "70000", "examples"}, "xds-server validate: --forward-proxy-port 70000 is not a valid port"},
		{[]string{"healthcheck", "now"}, `xds-server healthcheck: unexpected argument "now": healthcheck takes flags only (--admin-address ADDR)`},
		{[]string{"status", "egress-gateway"}, `xds-server status: unexpected argument "egress-gateway": status takes flags only (--group G, --node N to filter)`},
		{[]string{"config", "--admin-address", "127.0.0.1:1", "--timeout", "1s"}, "xds-server config: --group is required: the gateway group (Envoy's node.cluster) to print\nRun 'xds-server config --help' for its flags.\n"},
		{[]string{"config", "egress-gateway"}, `xds-server config: unexpected argument "egress-gateway": the group is a flag: --group egress-gateway`},
		{[]string{"config", "--group", "g", "extra"}, `xds-server config: unexpected argument "extra": config takes flags only (--group G)`},
		{[]string{"diff", "a", "b"}, "xds-server diff: --config-dir is required: the current manifests; to compare a with b: xds-server diff --config-dir a b"},
		{[]string{"diff", "a"}, "xds-server diff: --config-dir CURRENT is required: the folder (or file) of the manifests served now, compared with PROPOSED: xds-server diff --config-dir CURRENT PROPOSED"},
		{[]string{"diff", "--config-dir", "a"}, "xds-server diff: PROPOSED is missing: the folder (or file) of manifests to compare with --config-dir a: xds-server diff --config-dir a PROPOSED"},
		{[]string{"diff", "--config-dir", "a", "b", "c"}, "xds-server diff: one PROPOSED folder or file is compared with --config-dir, got 2: b c"},
		{[]string{"discover", "--wildcard-threshold", "1", "x.log"}, "xds-server discover: --wildcard-threshold 1: use 0 (never) or at least 2 (a wildcard for one name would admit names never seen)"},
		{[]string{"discover", "--cidr-bits", "40", "x.log"}, "xds-server discover: --cidr-bits 40: between 8 and 32"},
		{[]string{"discover", "--tls-ports", "443,x", "x.log"}, `xds-server discover: --tls-ports: "x" is not a port`},
		{[]string{"discover", "--group", "a b", "x.log"}, `xds-server discover: --group "a b" is not a gateway group name`},
		{[]string{"validate", "--audit-refused-networks", "10.0.0.1/8", "examples"}, `xds-server validate: invalid value "10.0.0.1/8" for --audit-refused-networks: "10.0.0.1/8" is not a CIDR`},
	} {
		code, out, errOut := runCmd(c.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stdout %q\nstderr: %s\nwant: %s", c.args, code, out, errOut, c.want)
		}
		if !strings.Contains(errOut, "--help") {
			t.Errorf("%v: does not say where the help is: %s", c.args, errOut)
		}
	}
}

// Flags may follow the paths (as in most CLIs); after "--" everything is
// a path.
func TestFlagsAfterArguments(t *testing.T) {
	code, out, errOut := runCmd("validate", "../../examples", "--xds-client-auth")
	if code != 0 || !strings.Contains(out, "7 of 7 intent ConfigMap(s) accepted") {
		t.Fatalf("flag after the path: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCmd("validate", "--xds-client-auth", "--", "--not-a-flag")
	if code != 1 || !strings.Contains(out, "--not-a-flag: stat --not-a-flag: no such file or directory") {
		t.Fatalf("after --: exit %d\n%s", code, out)
	}
}

// A server that does not answer is named, with the flag that names it.
func TestAdminUnreachable(t *testing.T) {
	code, _, errOut := runCmd("status", "--admin-address", "127.0.0.1:1", "--timeout", "1s")
	if code != 1 || !strings.Contains(errOut, "no answer from the admin endpoint at 127.0.0.1:1 (") || !strings.Contains(errOut, "is xds-server running there? --admin-address names it") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"valdate", "validate", 1}, {"stats", "status", 1}, {"cnofig", "config", 2}, {"x", "diff", 4}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("%q %q: %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
