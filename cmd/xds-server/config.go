package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/egress-xds/egress-xds/internal/admin"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// config prints what a running server serves a gateway group, as a YAML
// stream of Envoy resources, each headed by its type, version and source
// ConfigMaps.
func config(args []string, stdout, stderr io.Writer) int {
	c := newCmdLine("config", stdout, stderr)
	var server adminClient
	server.register(c.FlagSet, 5*time.Second)
	group := c.String("group", "", "gateway group (Envoy node.cluster); sidecar/G: the sidecars of group G")
	if code, ok := c.parse(args); !ok {
		return code
	}
	switch {
	case len(c.args) == 1 && *group == "":
		return c.misuse("unexpected argument %q: the group is a flag: --group %s", c.args[0], c.args[0])
	case len(c.args) > 0:
		return c.misuse("unexpected argument %q: config takes flags only (--group G)", c.args[0])
	case *group == "":
		return c.misuse("--group is required: the gateway group (Envoy's node.cluster) to print%s", server.groupsServed())
	}
	var dump admin.ConfigDump
	if err := server.getJSON("/debug/config_dump?group="+url.QueryEscape(*group), &dump); err != nil {
		var he *httpError
		if errors.As(err, &he) && he.code == http.StatusNotFound {
			fmt.Fprintf(stderr, "%v%s\n", err, server.groupsServed())
			return 1
		}
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := renderConfig(stdout, dump); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// renderConfig writes one YAML document per resource.
func renderConfig(w io.Writer, dump admin.ConfigDump) error {
	fmt.Fprintf(w, "# gateway group %q\n", dump.Group)
	for _, t := range dump.Types {
		for _, r := range t.Resources {
			y, err := yaml.JSONToYAML(r.Resource)
			if err != nil {
				return fmt.Errorf("%s %s: %w", t.Type, r.Name, err)
			}
			from := "no ConfigMap"
			if len(r.ConfigMaps) > 0 {
				from = "ConfigMaps " + strings.Join(r.ConfigMaps, ", ")
			}
			fmt.Fprintf(w, "---\n# %s %s (type version %s, resource version %s) from %s\n%s", t.Type, r.Name, t.Version, r.Version, from, y)
		}
	}
	return nil
}

// diff compares what the gateways would be served from two folders of
// manifests: the current intent (--config-dir) and a proposed one. The
// proposed folder is applied as the server would apply it over the
// current one: a ConfigMap that is invalid in it keeps its current version.
// Exit 0 when nothing changes, 1 when something does, 2 on trouble.
func diff(args []string, stdout, stderr io.Writer) int {
	c := newCmdLine("diff", stdout, stderr)
	current := c.String("config-dir", "", "folder (or file) of the current manifests: what the gateways are served now")
	var tf translateFlags
	tf.register(c.FlagSet)
	tf.keys.registerOffline(c.FlagSet)
	opts, code, ok := parseTranslateFlags(c, args, &tf)
	if !ok {
		return code
	}
	switch {
	case *current == "" && len(c.args) == 2:
		return c.misuse("--config-dir is required: the current manifests; to compare %s with %s: xds-server diff --config-dir %s %s", c.args[0], c.args[1], c.args[0], c.args[1])
	case *current == "":
		return c.misuse("--config-dir CURRENT is required: the folder (or file) of the manifests served now, compared with PROPOSED: xds-server diff --config-dir CURRENT PROPOSED")
	case len(c.args) == 0:
		return c.misuse("PROPOSED is missing: the folder (or file) of manifests to compare with --config-dir %s: xds-server diff --config-dir %s PROPOSED", *current, *current)
	case len(c.args) > 1:
		return c.misuse("one PROPOSED folder or file is compared with --config-dir, got %d: %s", len(c.args), strings.Join(c.args, " "))
	}
	store := compile.NewStore()
	before, _, err := served(store, *current, opts, nil)
	if err != nil {
		fmt.Fprintln(stderr, "current:", err)
		return 2
	}
	after, diags, err := served(store, c.args[0], opts, keys(before))
	if err != nil {
		fmt.Fprintln(stderr, "proposed:", err)
		return 2
	}
	for _, d := range diags {
		if d.Severity == intent.SeverityError {
			fmt.Fprintln(stdout, "proposed:", d.Error())
		}
	}
	changes := renderDiff(stdout, before, after)
	if changes == 0 {
		fmt.Fprintln(stdout, "no change for any gateway group")
		return 0
	}
	return 1
}

// served builds the snapshot of every group the intents name, plus the
// groups in also and "" (a group no intent names).
func served(store *compile.Store, path string, opts translate.Options, also []string) (map[string]*snapshot.GroupSnapshot, intent.Diagnostics, error) {
	cms, secrets, diags := load(path)
	for _, d := range diags {
		if d.Severity == intent.SeverityError && d.Origin.Name == "" && d.Origin.File == path {
			return nil, diags, fmt.Errorf("%s", d.Error()) // the path itself is unreadable
		}
	}
	intents, d := store.Update(cms, opts.ResolveOptions())
	diags = append(diags, d...)
	out := map[string]*snapshot.GroupSnapshot{}
	also = append(also, "")
	if opts.RateLimitService != nil {
		also = append(also, compile.RateLimitKey)
	}
	for _, g := range compile.Groups(intents, also...) {
		res, td, err := compile.Group(intents, g, compile.Secrets(secrets), opts)
		diags = append(diags, td...)
		if err != nil {
			return nil, diags, err
		}
		gs, err := snapshot.NewGroupSnapshot(res)
		if err != nil {
			return nil, diags, fmt.Errorf("group %q: %w", g, err)
		}
		out[g] = gs
	}
	return out, diags.Dedupe(), nil
}

func keys(m map[string]*snapshot.GroupSnapshot) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// renderDiff prints, per group and type, the resources added (+), removed
// (-) and changed (~), with their source ConfigMaps; it returns how many.
func renderDiff(w io.Writer, before, after map[string]*snapshot.GroupSnapshot) int {
	groups := map[string]bool{}
	for g := range before {
		groups[g] = true
	}
	for g := range after {
		groups[g] = true
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	total := 0
	for _, g := range names {
		a, b := before[g], after[g]
		var lines []string
		for _, typ := range snapshot.TypesFor(g) {
			var ta, tb *snapshot.TypeSnapshot
			if a != nil {
				ta = a.Type(typ)
			}
			if b != nil {
				tb = b.Type(typ)
			}
			for _, c := range diffType(ta, tb) {
				src := b
				if c.op == "-" {
					src = a
				}
				from := ""
				if cms := src.Sources(typ, c.name); len(cms) > 0 {
					from = "  (" + strings.Join(cms, ", ") + ")"
				}
				lines = append(lines, fmt.Sprintf("  %s %s %s%s", c.op, metrics.TypeLabel(typ), c.name, from))
			}
		}
		if len(lines) == 0 {
			continue
		}
		total += len(lines)
		label := fmt.Sprintf("gateway group %q", g)
		if g == "" {
			label = "gateway groups no intent names"
		}
		fmt.Fprintln(w, label+":")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
	return total
}

type change struct{ op, name string }

func diffType(a, b *snapshot.TypeSnapshot) []change {
	var out []change
	if b != nil {
		for _, n := range b.Names {
			switch {
			case a == nil || a.Items[n] == nil:
				out = append(out, change{"+", n})
			case !a.Items[n].SameContent(b.Items[n]):
				out = append(out, change{"~", n})
			}
		}
	}
	if a != nil {
		for _, n := range a.Names {
			if b == nil || b.Items[n] == nil {
				out = append(out, change{"-", n})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
