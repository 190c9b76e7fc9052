package compile_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
)

func settingsCM(ns, doc string) compile.ConfigMap {
	return compile.ConfigMap{ConfigMap: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: map[string]string{intent.LabelKey: "true", intent.SettingsLabelKey: "true"}},
		Data:       map[string]string{"settings.yaml": doc},
	}}
}

// The admission webhook judges with Review: a tenant's settings ConfigMap
// is refused at kubectl apply, one in the settings namespace is accepted
// with the audit warning (kubectl prints it), and a settings document in
// an intent ConfigMap without the settings label is an intent, refused for
// its unknown field.
func TestReviewSettings(t *testing.T) {
	ro := intent.ResolveOptions{SettingsNamespace: "egress-xds"}
	s := compile.NewStore()
	s.Update(nil, ro)
	audit := "groups: [{name: egress-gateway, mode: audit}]"
	d := s.Review(settingsCM("payments", audit), ro)
	if !d.HasErrors() || !strings.Contains(d.Error(), `obeyed only from namespace "egress-xds"`) {
		t.Errorf("a tenant's settings: %v", d)
	}
	d = s.Review(settingsCM("egress-xds", audit), ro)
	if d.HasErrors() || len(d) != 1 || !intent.IsAuditWarning(d[0]) {
		t.Errorf("the settings namespace's settings: %v", d)
	}
	if d := s.Review(settingsCM("egress-xds", "groups: [{name: egress-gateway, mode: enforce}]"), ro); len(d) != 0 {
		t.Errorf("enforce: %v", d)
	}
	unlabelled := intentCM("egress-xds", "settings", audit)
	if d := s.Review(unlabelled, ro); !strings.Contains(d.Error(), "groups: unknown field") {
		t.Errorf("settings without the settings label: %v", d)
	}
}
