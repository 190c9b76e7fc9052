package webhook

import (
	"fmt"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// secretWarnings judges the Secrets a valid ConfigMap references, as
// warnings only: kubectl apply -f DIR applies files in any order, so a
// ConfigMap may come before its Secret, and the server holds a Secret
// back per destination, never the whole ConfigMap. The server reads a
// Secret once a stored intent references it, so a Secret it does not hold
// may exist all the same: the warning says only what is known.
func (h *handler) secretWarnings(cm compile.ConfigMap) intent.Diagnostics {
	o := cm.Origin()
	in, _ := intent.ParseConfigMap(o, cm.CreationTimestamp.Time, cm.Data)
	if in == nil {
		return nil
	}
	var held translate.Secrets
	if h.Secrets != nil {
		held = h.Secrets()
	}
	var out intent.Diagnostics
	for _, doc := range in.Docs {
		for i, d := range doc.Destinations {
			if d.TLS == nil {
				continue
			}
			check := func(field string, ref *intent.SecretRef, problem func(translate.Secrets, translate.SecretKey) string) {
				if ref == nil {
					return
				}
				k := translate.SecretKey{Namespace: o.Namespace, Name: ref.Secret}
				msg := ""
				if _, ok := held[k]; !ok {
					msg = fmt.Sprintf("the server holds no Secret %s yet (it reads it once this ConfigMap is stored); if it is missing or unusable then, destination %s is held back alone and a SecretNotUsable Event on this ConfigMap says why", k, d.Name)
				} else if p := problem(held, k); p != "" {
					msg = fmt.Sprintf("%s; destination %s will be held back until it is fixed (the rest of the ConfigMap is served)", p, d.Name)
				}
				if msg != "" {
					out = append(out, intent.Diagnostic{Origin: doc.Origin, Severity: intent.SeverityWarning,
						Path: fmt.Sprintf("destinations[%d].tls.%s.secret", i, field), Message: msg})
				}
			}
			check("clientCertificate", d.TLS.ClientCertificate, translate.KeyPairProblem)
			check("caCertificates", d.TLS.CACertificates, translate.CABundleProblem)
		}
	}
	return out
}
