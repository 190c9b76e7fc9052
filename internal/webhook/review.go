package webhook

import (
	"encoding/json"
	"maps"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
)

var configMapKind = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "ConfigMap"}

// decide judges one request. Only CREATE and UPDATE of intent ConfigMaps
// are judged; everything else is allowed as it is. An error means the
// request cannot be judged (its object does not decode).
func (h *handler) decide(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return allow, nil // DELETE: removing an intent is always possible
	}
	if req.Kind != configMapKind {
		// The webhook's rules select ConfigMaps only: a misconfiguration
		// must not block other objects.
		h.Log.Warn("admission review of something else than a v1 ConfigMap: allowed unchecked; the ValidatingWebhookConfiguration should select configmaps only",
			"kind", req.Kind.String(), "namespace", req.Namespace, "name", req.Name)
		allow.Warnings = []string{"egress-xds: " + sanitize(req.Kind.String()) + " not checked: the webhook judges v1 ConfigMaps only"}
		return allow, nil
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(req.Object.Raw, &cm); err != nil {
		return nil, badRequest("the request's object is not a ConfigMap: %v", err)
	}
	if !compile.Selected(&cm) {
		return allow, nil
	}
	if req.Operation == admissionv1.Update {
		unchanged, err := intentUnchanged(req, &cm)
		if err != nil {
			return nil, err
		}
		if unchanged {
			return allow, nil
		}
	}
	if cm.Namespace == "" {
		cm.Namespace = req.Namespace
	}
	if cm.Name == "" {
		cm.Name = req.Name
	}
	if cm.CreationTimestamp.IsZero() {
		// The API server sets it before validating admission; a zero time
		// would make the ConfigMap the oldest, winning every conflict.
		cm.CreationTimestamp = metav1.NewTime(time.Now())
	}
	in := compile.ConfigMap{ConfigMap: &cm}
	var errs, warns intent.Diagnostics
	for _, d := range h.Reviewer.Review(in) {
		if d.Severity == intent.SeverityWarning {
			warns = append(warns, d)
		} else {
			errs = append(errs, d)
		}
	}
	if len(errs) == 0 {
		warns = append(warns, h.secretWarnings(in)...)
	}
	resp := &admissionv1.AdmissionResponse{Allowed: len(errs) == 0, Warnings: warnings(warns)}
	if len(errs) > 0 {
		resp.Result = &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusUnprocessableEntity,
			Reason:  metav1.StatusReasonInvalid,
			Message: denial(in.Origin().ConfigMap(), errs),
		}
		h.Log.Info("admission denied: intent ConfigMap refused", "configmap", in.Origin().ConfigMap(), "operation", req.Operation,
			"dry_run", req.DryRun != nil && *req.DryRun, "errors", len(errs), "first", bounded(line(errs[0]), maxLogBytes))
	}
	return resp, nil
}

// intentUnchanged reports whether an UPDATE leaves the intent as the
// server already has it (an annotation, an owner, a finalizer removed
// during deletion): nothing new to judge, and refusing would block such
// edits, and deletions waiting on finalizers, of a ConfigMap stored
// before it became invalid or lost a conflict.
func intentUnchanged(req *admissionv1.AdmissionRequest, cm *corev1.ConfigMap) (bool, error) {
	if cm.DeletionTimestamp != nil {
		return true, nil
	}
	var old corev1.ConfigMap
	if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
		return false, badRequest("the request's old object is not a ConfigMap: %v", err)
	}
	return compile.Selected(&old) && maps.Equal(old.Data, cm.Data), nil
}
