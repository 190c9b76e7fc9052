package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/egress-xds/egress-xds/internal/admin"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// status prints the sync status of every proxy connected to a running
// server, like istioctl proxy-status, and the last NACK of each.
func status(args []string, stdout, stderr io.Writer) int {
	c := newCmdLine("status", stdout, stderr)
	var server adminClient
	server.register(c.FlagSet, 5*time.Second)
	group := c.String("group", "", "only the proxies of this gateway group")
	node := c.String("node", "", "only the proxy with this node id")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(" (--group G, --node N to filter)"); !ok {
		return code
	}
	q := url.Values{}
	if *group != "" {
		q.Set("group", *group)
	}
	if *node != "" {
		q.Set("node", *node)
	}
	var out []xds.ProxyStatus
	if err := server.getJSON("/debug/status?"+q.Encode(), &out); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// The groups' modes: a server without them (older) answers no mode.
	var cfg admin.ConfigView
	gq := url.Values{}
	if *group != "" {
		gq.Set("group", *group)
	}
	if err := server.getJSON("/debug/config?"+gq.Encode(), &cfg); err == nil {
		renderModes(stdout, cfg.Groups)
	}
	renderStatus(stdout, out)
	return 0
}

// renderModes warns, above the table, of every gateway group in audit
// mode: its gateways let through what enforce would refuse.
func renderModes(w io.Writer, groups []admin.GroupView) {
	for _, g := range groups {
		if g.Mode == string(intent.ModeAudit) {
			fmt.Fprintf(w, "WARNING: gateway group %s is in audit mode: what enforce would refuse is let through and logged with \"audit\" (xds-server discover turns its access log into intents)\n", g.Group)
		}
	}
}

// statusColumns are the table's type columns, in istioctl's order.
var statusColumns = []struct{ title, typ string }{
	{"CDS", "Cluster"},
	{"LDS", "Listener"},
	{"EDS", "ClusterLoadAssignment"},
	{"RDS", "RouteConfiguration"},
	{"SDS", "Secret"},
}

// rateLimitColumn is the rate limit service's one type, shown when such a
// service is in the table (its other cells are "-").
var rateLimitColumn = struct{ title, typ string }{"RLS", "RateLimitConfig"}

// renderStatus writes the table, then the last NACK of every proxy and
// type with Envoy's error and the ConfigMaps it traces to.
func renderStatus(w io.Writer, proxies []xds.ProxyStatus) {
	statusColumns := statusColumns
	for _, p := range proxies {
		if _, ok := p.Types[rateLimitColumn.typ]; ok {
			statusColumns = append(slices.Clip(statusColumns), rateLimitColumn)
			break
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprint(tw, "NODE\tGROUP\tADDRESS\tPROTOCOL")
	for _, c := range statusColumns {
		fmt.Fprint(tw, "\t", c.title)
	}
	fmt.Fprintln(tw)
	for _, p := range proxies {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s", orDash(p.Node), orDash(p.Group), orDash(p.Address), orDash(p.Protocol))
		for _, c := range statusColumns {
			fmt.Fprint(tw, "\t", cell(p.Types[c.typ]))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	first := true
	for _, p := range proxies {
		for _, c := range statusColumns {
			t := p.Types[c.typ]
			if t.NACKError == "" {
				continue
			}
			if first {
				fmt.Fprintln(w, "\nLast NACK per proxy and type:")
				first = false
			}
			current := ""
			if t.State != xds.NACKed {
				current = ", since replaced"
			}
			fmt.Fprintf(w, "%s (%s) %s version %s%s: %s\n", orDash(p.Node), orDash(p.Group), c.title,
				short(t.NACKedVersion), current, t.NACKError)
			if len(t.NACKSources) > 0 {
				fmt.Fprintf(w, "  from ConfigMaps: %s\n", strings.Join(t.NACKSources, ", "))
			}
		}
	}
	if len(proxies) == 0 {
		fmt.Fprintln(w, "no proxy connected")
	}
}

// cell is a type's state with the version concerned: the one ACKed, or
// the one rejected.
func cell(t xds.TypeSyncStatus) string {
	if t.State == "" {
		return "-"
	}
	v := t.Acked
	if t.State == xds.NACKed {
		v = t.NACKedVersion
	}
	if v == "" {
		return string(t.State)
	}
	return fmt.Sprintf("%s (%s)", t.State, short(v))
}

func short(v string) string {
	if len(v) > 8 {
		return v[:8]
	}
	if v == "" {
		return "-"
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
