package compile

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// FromFolder lists the ConfigMaps and Secrets of a manifest folder, and one
// diagnostic per file that failed to be read or parsed (its last good
// objects are still listed, so a broken file never takes configuration
// away). A link to a folder is a warning: it is not followed, by design.
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
			d := Diagnostic(f.Path, msg)
			if folderLink(f.Err) {
				d.Severity = intent.SeverityWarning // not followed by design
			}
			diags = append(diags, d)
		}
		for i := range f.ConfigMaps {
			cm := &f.ConfigMaps[i]
			cms = append(cms, ConfigMap{File: f.Path, ConfigMap: cm, KeyLines: f.KeyLines[cm.Namespace+"/"+cm.Name]})
		}
		secrets = append(secrets, f.Secrets...)
	}
	if state.Err != nil {
		diags = append(diags, Diagnostic("", fmt.Sprintf("folder: %v", state.Err)))
	}
	return cms, secrets, diags
}

func folderLink(err error) bool {
	var le *watch.LinkError
	return errors.As(err, &le) && le.Folder
}

// Diagnostic is an error about a whole file, not one ConfigMap.
func Diagnostic(file, msg string) intent.Diagnostic {
	return intent.Diagnostic{Origin: intent.Origin{File: file}, Message: msg, Severity: intent.SeverityError}
}
