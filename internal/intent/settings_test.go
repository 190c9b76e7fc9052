package intent

import (
	"strings"
	"testing"
	"time"
)

// The rules of one settings document, each with the exact problems it
// reports.
func TestSettingsRules(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		want      []string // "severity|path|message"
	}{
		{`valid`, `groups: [{name: egress-gateway, mode: audit}, {name: other, mode: enforce}]`, nil},
		{`no groups`, `groups: []`, []string{`error|groups|at least one gateway group is required`}},
		{`not a mapping`, `[a]`, []string{`error||must be a mapping with groups, got a list`}},
		{`empty`, ``, []string{`error||empty document`}},
		{`unknown field`, `groups: [{name: g, mode: audit, until: 1h}]`, []string{`error|groups[0].until|unknown field (known: mode, name)`}},
		{`unknown top field`, `groups: [{name: g, mode: audit}]
destinations: []`, []string{`error|destinations|unknown field (known: groups)`}},
		{`name missing`, `groups: [{mode: audit}]`, []string{`error|groups[0].name|is required`}},
		{`name invalid`, `groups: [{name: "a b", mode: audit}]`, []string{`error|groups[0].name|"a b" is not a valid gateway group name (letters, digits, '-', '_', '.')`}},
		{`name twice`, `groups: [{name: g, mode: audit}, {name: g, mode: enforce}]`, []string{`error|groups[1].name|"g" is already set by groups[0]`}},
		{`mode missing`, `groups: [{name: g}]`, []string{`error|groups[0].mode|is required: enforce or audit`}},
		{`mode unknown`, `groups: [{name: g, mode: permissive}]`, []string{`error|groups[0].mode|"permissive" is not one of enforce, audit`}},
		{`mode not a string`, `groups: [{name: g, mode: [audit]}]`, []string{`error|groups[0].mode|must be a string, got a list`}},
		{`duplicate key`, "groups: [{name: g, mode: audit}]\ngroups: []", []string{`error|groups|is defined twice (lines 1 and 2 of data key settings.yaml); checking the first`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, diags := ParseSettingsConfigMap(Origin{Namespace: "egress-xds", Name: "settings"}, time.Time{}, map[string]string{"settings.yaml": c.doc}, nil)
			var got []string
			for _, d := range diags {
				got = append(got, string(d.Severity)+"|"+d.Path+"|"+d.Message)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if (in != nil) != (len(c.want) == 0) {
				t.Fatalf("intent %v with problems %v", in != nil, got)
			}
		})
	}
}

func settingsIntent(t *testing.T, ns, name string, created time.Time, doc string) *Intent {
	t.Helper()
	in, diags := ParseSettingsConfigMap(Origin{Namespace: ns, Name: name}, created, map[string]string{"settings.yaml": doc}, nil)
	if in == nil {
		t.Fatal(diags)
	}
	return in
}

// Settings are obeyed from the settings namespace only: a tenant's
// ConfigMap elsewhere is refused as a whole, however old, and the group
// keeps enforcing.
func TestSettingsAuthority(t *testing.T) {
	tenant := settingsIntent(t, "payments", "open-up", time.Unix(1, 0), `groups: [{name: egress-gateway, mode: audit}]`)
	opts := ResolveOptions{SettingsNamespace: "egress-xds"}
	accepted, diags := Resolve([]Candidate{{Current: tenant}}, opts)
	if len(accepted) != 0 || ModeOf(accepted, "egress-gateway") != ModeEnforce {
		t.Fatalf("a tenant's settings were accepted: %v", accepted)
	}
	want := `payments/open-up: gateway group settings are obeyed only from namespace "egress-xds" (--settings-namespace), and this ConfigMap is in "payments": settings change what a shared gateway group lets through for every tenant; this ConfigMap is not served`
	if diags.Error() != want {
		t.Fatalf("got %q\nwant %q", diags.Error(), want)
	}
	// Served before (the flag changed since): not kept either.
	accepted, _ = Resolve([]Candidate{{Current: tenant, Served: tenant}}, opts)
	if len(accepted) != 0 {
		t.Fatal("a served settings ConfigMap outside the settings namespace stayed")
	}
	// No settings namespace: nothing is obeyed.
	if accepted, diags := Resolve([]Candidate{{Current: tenant}}, ResolveOptions{}); len(accepted) != 0 || !strings.Contains(diags.Error(), "no settings namespace") {
		t.Fatalf("settings without a settings namespace: %v %v", accepted, diags)
	}
	own := settingsIntent(t, "egress-xds", "settings", time.Unix(2, 0), `groups: [{name: egress-gateway, mode: audit}]`)
	accepted, diags = Resolve([]Candidate{{Current: own}}, opts)
	if len(accepted) != 1 || ModeOf(accepted, "egress-gateway") != ModeAudit || ModeOf(accepted, "other") != ModeEnforce || len(diags) != 0 {
		t.Fatalf("the settings namespace's settings: %v %v", accepted, diags)
	}
	if w := AuditWarnings(accepted); len(w) != 1 || w[0].Path != "groups[0].mode" || !IsAuditWarning(w[0]) {
		t.Fatalf("audit warning: %v", w)
	}
}

// Two settings ConfigMaps of one group conflict like two claims of a host:
// the served one keeps it, else the older wins; the loser is refused
// whole, told who holds the group.
func TestSettingsConflict(t *testing.T) {
	opts := ResolveOptions{SettingsNamespace: "egress-xds"}
	older := settingsIntent(t, "egress-xds", "b-old", time.Unix(1, 0), `groups: [{name: egress-gateway, mode: enforce}]`)
	newer := settingsIntent(t, "egress-xds", "a-new", time.Unix(2, 0), `groups: [{name: other, mode: enforce}, {name: egress-gateway, mode: audit}]`)
	accepted, diags := Resolve([]Candidate{{Current: newer}, {Current: older}}, opts)
	if len(accepted) != 1 || accepted[0] != older || ModeOf(accepted, "egress-gateway") != ModeEnforce {
		t.Fatalf("accepted %v", accepted)
	}
	want := `egress-xds/a-new: settings.yaml: groups[1]: the settings of gateway group egress-gateway are already set by egress-xds/b-old (settings.yaml: groups[0]), which wins as the older ConfigMap (ties go to namespace/name order)`
	if diags.Error() != want {
		t.Fatalf("got %q\nwant %q", diags.Error(), want)
	}
	// The newer one served: it keeps the group.
	accepted, _ = Resolve([]Candidate{{Current: newer, Served: newer}, {Current: older}}, opts)
	if len(accepted) != 1 || accepted[0] != newer || ModeOf(accepted, "egress-gateway") != ModeAudit {
		t.Fatalf("served settings lost their group: %v", accepted)
	}
	// Settings and intents never conflict: a group may be both set and
	// named by gateways.
	doc, ds := ParseConfigMap(Origin{Namespace: "apps", Name: "web"}, time.Unix(0, 0), map[string]string{"egress.yaml": `gateways: [egress-gateway]
destinations: [{name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}]}]`})
	if doc == nil {
		t.Fatal(ds)
	}
	if accepted, diags := Resolve([]Candidate{{Current: doc}, {Current: newer}}, opts); len(accepted) != 2 || len(diags) != 0 {
		t.Fatalf("intents and settings: %v %v", accepted, diags)
	}
}
