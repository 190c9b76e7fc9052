// Package webhook is the validating admission webhook of intent
// ConfigMaps: the API server asks it before storing one, and it answers
// with what the next rebuild would say (snapshot.Builder.Review): errors
// refuse the ConfigMap at kubectl apply time, with their field paths,
// and warnings are passed on for kubectl to print.
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// Path is where the API server sends the reviews of ConfigMaps.
const Path = "/validate/configmaps"

// MaxRequestBytes bounds a review's body. An UPDATE carries the old and
// the new ConfigMap, each with at most 1 MiB of data (the API server's
// limit), plus metadata, JSON escaping and the review's envelope: 4 MiB
// holds that with a margin. A larger body is refused (413), so the
// failure policy applies.
const MaxRequestBytes = 4 << 20

// Reviewer judges a ConfigMap against what is served; snapshot.Builder is
// one. Ready is closed once the source has synced and the first build
// ran: before that there is no served set to judge conflicts against.
type Reviewer interface {
	Review(cm compile.ConfigMap) intent.Diagnostics
	Ready() <-chan struct{}
}

// Options are what the handler needs.
type Options struct {
	Reviewer Reviewer
	// Secrets returns the Secrets the server holds now, to warn about
	// references to Secrets that are missing or unusable; nil: none.
	Secrets func() translate.Secrets
	Metrics *metrics.Metrics // nil: not counted
	Log     *slog.Logger
}

// handler answers AdmissionReviews.
type handler struct {
	Options
}

// Handler returns the webhook's http.Handler, serving Path only.
func Handler(o Options) http.Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, &handler{Options: o})
	return mux
}

// requestError is a review that cannot be answered: an HTTP error status,
// so that the API server applies the webhook's failure policy.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	review, err := h.read(w, r)
	if err != nil {
		h.fail(w, r, review, err)
		return
	}
	resp, err := h.decide(review.Request)
	if err != nil {
		h.fail(w, r, review, err)
		return
	}
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	body, err := json.Marshal(out)
	if err != nil {
		h.fail(w, r, review, fmt.Errorf("encoding the response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	result := "allowed"
	if !resp.Allowed {
		result = "denied"
	}
	h.count(review, result)
}

// read checks the request and decodes its review, which has a request
// with a UID when err is nil.
func (h *handler) read(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionReview, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &requestError{status: http.StatusMethodNotAllowed, msg: "admission reviews are POSTed"}
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return nil, &requestError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("content type %q: want application/json", r.Header.Get("Content-Type"))}
	}
	select {
	case <-h.Reviewer.Ready():
	default:
		return nil, &requestError{status: http.StatusServiceUnavailable,
			msg: "not ready: the intent source has not synced yet, so there is nothing to judge conflicts against; the webhook's failure policy applies"}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, &requestError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("review larger than %d bytes", MaxRequestBytes)}
	case err != nil:
		return nil, badRequest("reading the review: %v", err)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &review); err != nil {
		return nil, badRequest("not an AdmissionReview: %v", err)
	}
	gvk := review.GroupVersionKind()
	if gvk != admissionv1.SchemeGroupVersion.WithKind("AdmissionReview") {
		return &review, badRequest("%s %s: want admission.k8s.io/v1 AdmissionReview", review.APIVersion, review.Kind)
	}
	if review.Request == nil || review.Request.UID == "" {
		return &review, badRequest("AdmissionReview without a request or its uid")
	}
	return &review, nil
}

// fail answers with an HTTP error: the API server then applies the
// failure policy (and says "failed calling webhook").
func (h *handler) fail(w http.ResponseWriter, r *http.Request, review *admissionv1.AdmissionReview, err error) {
	status := http.StatusInternalServerError
	var re *requestError
	if errors.As(err, &re) {
		status = re.status
	}
	level := slog.LevelWarn
	if status == http.StatusServiceUnavailable {
		level = slog.LevelInfo // expected while starting
	}
	h.Log.Log(r.Context(), level, "admission review not answered", "status", status, "error", bounded(err.Error(), maxLogBytes), "remote", r.RemoteAddr)
	h.count(review, "error")
	http.Error(w, err.Error(), status)
}

func (h *handler) count(review *admissionv1.AdmissionReview, result string) {
	if h.Metrics == nil {
		return
	}
	op := "unknown"
	if review != nil && review.Request != nil {
		switch o := review.Request.Operation; o {
		case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
			op = string(o)
		}
	}
	h.Metrics.AdmissionReviews.WithLabelValues(op, result).Inc()
}
