package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
)

// command is one subcommand, as the help lists it.
type command struct {
	name    string
	args    string // after the name, e.g. "[flags] PATH..."
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is the command table, in the order the help lists them. A
// function, not a variable: serve's help lists the commands.
func commands() []command {
	return []command{
		{"serve", "[flags]", "serve egress intent to Envoy gateways over ADS (the default command)", serve},
		{"validate", "[flags] PATH...", "check ConfigMap and Secret manifests (files or folders) as the server would; exit 1 on any error", validate},
		{"healthcheck", "[flags]", "exit 0 when the server at --admin-address is ready (a probe for images without a shell)", healthcheck},
		{"status", "[flags]", "sync state of the proxies connected to the server at --admin-address (SYNCED, STALE, NACKED per type) and their last NACK", status},
		{"config", "--group G [flags]", "what the server at --admin-address serves a gateway group, as Envoy YAML with each resource's ConfigMaps", config},
		{"diff", "[flags] --config-dir CURRENT PROPOSED", "what a proposed folder of manifests would change on the gateways; exit 1 when something changes", diff},
		{"import", "[flags] FILE|DIR|-...", "convert Istio egress objects (kubectl get -o yaml output too) to intent ConfigMaps and a report of every field; exit 1 when an access restriction could not be carried", importIstio},
		{"discover", "[flags] [--config-dir CURRENT] [--out DIR] LOG...", "propose intents from the access log of gateways in audit mode (files, or - for stdin): what the audit let through, with its sources", discoverCmd},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// topUsage is the help of xds-server itself: the commands first, then the
// flags of serve, the default command.
func topUsage(w io.Writer) {
	fmt.Fprint(w, "xds-server: xDS control plane for Envoy egress gateways\n\n")
	fmt.Fprint(w, "Usage:\n  xds-server [serve] [flags]\n  xds-server COMMAND [flags] [ARGS]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprint(w, "  help [COMMAND]\n      this help, or a command's (also: xds-server COMMAND --help)\n\n")
	fmt.Fprint(w, "Flags of serve, the default command:\n")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	registerServe(fs, &serveFlags{})
	printFlags(w, fs)
}

// unknownCommand says so, lists the commands, and suggests the closest.
func unknownCommand(stderr io.Writer, name string) int {
	var names []string
	best, dist := "", 3
	for _, c := range commands() {
		names = append(names, c.name)
		if d := editDistance(name, c.name); d < dist {
			best, dist = c.name, d
		}
	}
	fmt.Fprintf(stderr, "xds-server: unknown command %q", name)
	if best != "" {
		fmt.Fprintf(stderr, "; did you mean %s?", best)
	}
	fmt.Fprintf(stderr, "\nCommands: %s, help. Run 'xds-server --help' for what each does.\n", strings.Join(names, ", "))
	return 2
}

// cmdLine is one command's command line: its flags, its arguments once
// parsed, and where it reports (help on stdout, misuse on stderr).
type cmdLine struct {
	*flag.FlagSet
	cmd            command
	stdout, stderr io.Writer
	// top: serve reached as the default command, whose help is
	// xds-server's.
	top  bool
	args []string
}

func newCmdLine(name string, stdout, stderr io.Writer) *cmdLine {
	c, _ := lookup(name)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse reports errors itself, with the fix
	return &cmdLine{FlagSet: fs, cmd: c, stdout: stdout, stderr: stderr}
}

// usage writes the command's help.
func (c *cmdLine) usage(w io.Writer) {
	if c.top {
		topUsage(w)
		return
	}
	fmt.Fprintf(w, "usage: xds-server %s %s\n\n%s.\n\nFlags:\n", c.cmd.name, c.cmd.args, upperFirst(c.cmd.summary))
	printFlags(w, c.FlagSet)
}

// parse parses flags and arguments in any order (flags after a path are
// flags; after "--" everything is an argument), then applies the
// environment. It returns false with the exit code when the command is
// done: 0 after the help -h asked for, 2 after saying what is wrong.
func (c *cmdLine) parse(args []string) (int, bool) {
	c.args = nil
	for {
		err := c.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
			return 0, false
		}
		if err != nil {
			return c.misuse("%s", flagError(err)), false
		}
		rest := c.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			c.args = append(c.args, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		c.args, args = append(c.args, rest[0]), rest[1:]
	}
	if err := applyEnv(c.FlagSet); err != nil {
		return c.misuse("%v", err), false
	}
	return 0, true
}

// flagErrors rewrite the flag package's errors as the help spells flags.
var flagErrors = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`^flag provided but not defined: -+(.+)$`), "unknown flag --$1"},
	{regexp.MustCompile(`^flag needs an argument: -+(.+)$`), "flag --$1 needs a value"},
	{regexp.MustCompile(`^invalid (boolean )?value (".*") for (?:flag )?-+([^:]+): (.*)$`), "invalid value $2 for --$3: $4"},
}

func flagError(err error) string {
	s := err.Error()
	for _, f := range flagErrors {
		if f.re.MatchString(s) {
			return f.re.ReplaceAllString(s, f.repl)
		}
	}
	return s
}

// misuse says what is wrong and where the flags are described; the
// command exits 2.
func (c *cmdLine) misuse(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "xds-server %s: %s\n", c.cmd.name, fmt.Sprintf(format, a...))
	fmt.Fprintf(c.stderr, "Run 'xds-server %s --help' for its flags.\n", c.cmd.name)
	return 2
}

// noArgs is the misuse of a command that takes flags only.
func (c *cmdLine) noArgs(hint string) (int, bool) {
	if len(c.args) == 0 {
		return 0, true
	}
	return c.misuse("unexpected argument %q: %s takes flags only%s", c.args[0], c.cmd.name, hint), false
}

// printFlags lists flags as the README spells them (--name), with their
// defaults, and how the environment sets them.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	first := ""
	fs.VisitAll(func(f *flag.Flag) {
		if first == "" {
			first = f.Name
		}
		kind, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if kind != "" {
			head += " " + kind
		}
		def := ""
		if !isZero(f) {
			def = " (default " + f.DefValue + ")"
			if g, ok := f.Value.(flag.Getter); ok && reflect.TypeOf(g.Get()).Kind() == reflect.String {
				def = fmt.Sprintf(" (default %q)", f.DefValue)
			}
		}
		fmt.Fprintf(w, "%s\n    \t%s%s\n", head, strings.ReplaceAll(usage, "\n", "\n    \t"), def)
	})
	if first != "" {
		fmt.Fprintf(w, "\nEvery flag can also be set by its environment variable: --%s is %s.\n", first, envName(first))
	}
}

// isZero reports whether a flag's default is its type's zero value,
// which the help does not print (as the flag package does).
func isZero(f *flag.Flag) bool {
	t := reflect.TypeOf(f.Value)
	if t.Kind() != reflect.Pointer {
		return f.DefValue == ""
	}
	zero, ok := reflect.New(t.Elem()).Interface().(flag.Value)
	return ok && f.DefValue == zero.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// editDistance is the Levenshtein distance, for "did you mean".
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
