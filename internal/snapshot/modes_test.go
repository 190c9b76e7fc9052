package snapshot

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/translate"
)

func settingsCM(ns, mode string) compile.ConfigMap {
	return compile.ConfigMap{File: "settings.yaml", ConfigMap: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: map[string]string{intent.LabelKey: "true", intent.SettingsLabelKey: "true"}},
		Data:       map[string]string{"settings.yaml": "groups: [{name: egress-gateway, mode: " + mode + "}]"},
	}}
}

// A group's mode follows its settings without a restart: each change is
// logged (to audit as a warning), exported as
// egress_xds_gateway_group_mode{group, mode}, warned about for as long
// as it holds, and settings outside the settings namespace change nothing.
func TestBuilderGroupModes(t *testing.T) {
	var buf bytes.Buffer
	m := metrics.New()
	b := NewBuilder(NewCache(nil, nil), translate.Options{ForwardProxyPort: 3128, SettingsNamespace: "egress-xds"}, m, slog.New(slog.NewTextHandler(&buf, nil)))
	web := logCM("web", "gateways: [egress-gateway]\ndestinations: [{name: d, host: d.example.com, ports: [{number: 443, protocol: TLS}]}]")
	step := func(name string, cms []compile.ConfigMap, mode intent.Mode, logged string) {
		t.Helper()
		buf.Reset()
		b.Update(Input{ConfigMaps: cms})
		b.Rebuild()
		if got := b.Modes()["egress-gateway"].Mode; got != mode {
			t.Errorf("%s: mode %s, want %s", name, got, mode)
		}
		// One series per group, the mode it is in (counted before the
		// reads below, which create the series they ask for).
		if n := testutil.CollectAndCount(m.GroupMode); n != 1 {
			t.Errorf("%s: %d series of egress_xds_gateway_group_mode", name, n)
		}
		for _, md := range []intent.Mode{intent.ModeEnforce, intent.ModeAudit} {
			want := 0.0
			if md == mode {
				want = 1
			}
			if v := testutil.ToFloat64(m.GroupMode.WithLabelValues("egress-gateway", string(md))); v != want {
				t.Errorf("%s: egress_xds_gateway_group_mode{mode=%q} = %v, want %v", name, md, v, want)
			}
		}
		lines := buf.String()
		switch {
		case logged == "" && strings.Contains(lines, "mode"):
			t.Errorf("%s: logged a mode change:\n%s", name, lines)
		case logged != "" && !strings.Contains(lines, logged):
			t.Errorf("%s: log lacks %q:\n%s", name, logged, lines)
		}
		audits := false
		for _, d := range b.Diagnostics() {
			audits = audits || intent.IsAuditWarning(d)
		}
		if audits != (mode == intent.ModeAudit) {
			t.Errorf("%s: audit warning %v in mode %s", name, audits, mode)
		}
	}
	step("intents only", []compile.ConfigMap{web}, intent.ModeEnforce, "")
	step("audit set", []compile.ConfigMap{web, settingsCM("egress-xds", "audit")}, intent.ModeAudit,
		`level=WARN msg="gateway group in audit mode: what enforce would refuse is let through and logged with \"audit\"" group=egress-gateway from=enforce to=audit`)
	step("unchanged", []compile.ConfigMap{web, settingsCM("egress-xds", "audit")}, intent.ModeAudit, "")
	step("back to enforce", []compile.ConfigMap{web, settingsCM("egress-xds", "enforce")}, intent.ModeEnforce,
		`level=INFO msg="gateway group mode changed" group=egress-gateway from=audit to=enforce`)
	step("a tenant's settings", []compile.ConfigMap{web, settingsCM("payments", "audit")}, intent.ModeEnforce, "")
	if !strings.Contains(b.Diagnostics().Error(), `gateway group settings are obeyed only from namespace "egress-xds"`) {
		t.Errorf("the tenant's settings are not refused: %v", b.Diagnostics())
	}
}
