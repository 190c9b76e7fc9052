package compile

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// FromFolder lists the ConfigMaps and Secrets of a manifest folder, and one
// diagnostic per file that failed to parse (its last good objects are still
// listed, so a broken file never takes configuration away).
func FromFolder(state watch.State) ([]ConfigMap, []corev1.Secret, intent.Diagnostics) {
	var cms []ConfigMap
	var secrets []corev1.Secret
	var diags intent.Diagnostics
	for _, f := range state.Files {
		if f.Err != nil {
			msg := f.Err.Error()
			if f.Hash != "" {
				msg += " (serving the last version of this file that parsed)"
			}
			diags = append(diags, Diagnostic(f.Path, msg))
		}
		for i := range f.ConfigMaps {
			cms = append(cms, ConfigMap{File: f.Path, ConfigMap: &f.ConfigMaps[i]})
		}
		secrets = append(secrets, f.Secrets...)
	}
	if state.Err != nil {
		diags = append(diags, Diagnostic("", fmt.Sprintf("folder: %v", state.Err)))
	}
	return cms, secrets, diags
}

// Diagnostic is an error about a whole file, not one ConfigMap.
func Diagnostic(file, msg string) intent.Diagnostic {
	return intent.Diagnostic{Origin: intent.Origin{File: file}, Message: msg, Severity: intent.SeverityError}
}
