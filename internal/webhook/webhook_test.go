package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

const github = `gateways: [egress-gateway]
destinations:
  - name: github
    host: api.github.com
    ports: [{number: 443, protocol: TLS}]
`

// bad has two errors: a misspelt field and a port out of range.
const bad = `destinations:
  - name: github
    hots: api.github.com
    host: api.github.com
    ports: [{number: 70000, protocol: TLS}]
`

const insecure = `destinations:
  - name: legacy
    host: legacy.example.com
    ports: [{number: 80, protocol: HTTP}]
    tls: {mode: SIMPLE, insecureSkipVerify: true}
`

const mutual = `destinations:
  - name: partner
    host: secure-api.partner.com
    ports: [{number: 80, protocol: HTTP}]
    tls: {mode: MUTUAL, clientCertificate: {secret: partner-client-cert}}
`

var created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func configMap(ns, name string, labelled bool, created time.Time, data map[string]string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)},
		Data:       data,
	}
	if labelled {
		cm.Labels = map[string]string{intent.LabelKey: "true"}
	}
	return cm
}

// fixture is a handler over a real builder serving payments/first
// (github on 443), holding the Secrets given.
type fixture struct {
	h       http.Handler
	metrics *metrics.Metrics
	logs    *xdstest.LogBuffer
	secrets translate.Secrets
}

func newFixture(t *testing.T, ready bool) *fixture {
	t.Helper()
	f := &fixture{metrics: metrics.New(), logs: &xdstest.LogBuffer{}, secrets: translate.Secrets{}}
	log := slog.New(slog.NewTextHandler(f.logs, nil))
	b := snapshot.NewBuilder(snapshot.NewCache(log, func(string) {}), translate.Options{ForwardProxyPort: 3128}, nil, log)
	if ready {
		served := configMap("payments", "first", true, created, map[string]string{"egress.yaml": github})
		b.Update(snapshot.Input{ConfigMaps: []compile.ConfigMap{{ConfigMap: served}}})
		b.Rebuild()
	}
	f.h = Handler(Options{Reviewer: b, Metrics: f.metrics, Log: log, Secrets: func() translate.Secrets { return f.secrets }})
	return f
}

func review(op admissionv1.Operation, cm *corev1.ConfigMap) *admissionv1.AdmissionReview {
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("uid-" + string(op)),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"},
		Operation: op,
	}
	if cm != nil {
		req.Namespace, req.Name = cm.Namespace, cm.Name
		raw, _ := json.Marshal(cm)
		if op == admissionv1.Delete {
			req.OldObject = runtime.RawExtension{Raw: raw}
		} else {
			req.Object = runtime.RawExtension{Raw: raw}
		}
	}
	return &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req}
}

// update is the review of an UPDATE from old to cm.
func update(old, cm *corev1.ConfigMap) *admissionv1.AdmissionReview {
	rev := review(admissionv1.Update, cm)
	raw, _ := json.Marshal(old)
	rev.Request.OldObject = runtime.RawExtension{Raw: raw}
	return rev
}

func post(t *testing.T, h http.Handler, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// answer posts a review and decodes the answer, which must be a 200 with
// the request's uid, apiVersion and kind.
func answer(t *testing.T, h http.Handler, rev *admissionv1.AdmissionReview) *admissionv1.AdmissionResponse {
	t.Helper()
	body, err := json.Marshal(rev)
	if err != nil {
		t.Fatal(err)
	}
	w := post(t, h, body)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Errorf("answered as %s %s", out.APIVersion, out.Kind)
	}
	if out.Response == nil || out.Response.UID != rev.Request.UID {
		t.Fatalf("response %+v does not carry uid %s", out.Response, rev.Request.UID)
	}
	return out.Response
}

func TestReviews(t *testing.T) {
	f := newFixture(t, true)
	later := created.Add(time.Hour)
	dryRun := review(admissionv1.Create, configMap("apps", "bad", true, later, map[string]string{"egress.yaml": bad}))
	yes := true
	dryRun.Request.DryRun = &yes
	served := configMap("payments", "first", true, created, map[string]string{"egress.yaml": github})
	invalid := configMap("apps", "stored-before", true, created, map[string]string{"egress.yaml": bad})
	annotated := invalid.DeepCopy()
	annotated.Annotations = map[string]string{"team": "payments"}
	unlabelled := invalid.DeepCopy()
	unlabelled.Labels = nil
	deleting := invalid.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: later}
	deleting.Finalizers = []string{"example.com/cleanup"}
	finalized := deleting.DeepCopy()
	finalized.Finalizers = nil
	for _, tc := range []struct {
		name         string
		review       *admissionv1.AdmissionReview
		allowed      bool
		message      []string // substrings of the denial
		warnings     []string // substrings, one per warning, in order
		noWarnings   bool
		wantNoResult bool
	}{
		{name: "bad ConfigMap denied with every field path",
			review: review(admissionv1.Create, configMap("apps", "bad", true, later, map[string]string{"egress.yaml": bad})),
			message: []string{"egress intent ConfigMap apps/bad is invalid (2 error(s)):",
				"\negress.yaml: destinations[0].hots: unknown field",
				"\negress.yaml: destinations[0].ports[0].number: 70000 is not a valid port"}},
		{name: "dry run judged the same", review: dryRun,
			message: []string{"egress.yaml: destinations[0].ports[0].number: 70000 is not a valid port"}},
		{name: "good ConfigMap allowed",
			review:  review(admissionv1.Create, configMap("apps", "docs", true, later, map[string]string{"egress.yaml": strings.ReplaceAll(github, "api.github.com", "docs.example.com")})),
			allowed: true, noWarnings: true, wantNoResult: true},
		{name: "warning passed on",
			review:   review(admissionv1.Create, configMap("apps", "legacy", true, later, map[string]string{"egress.yaml": insecure})),
			allowed:  true,
			warnings: []string{"egress.yaml: destinations[0].tls.insecureSkipVerify: server certificate verification is OFF for legacy.example.com"}},
		{name: "unlabelled ConfigMap ignored",
			review:  review(admissionv1.Create, configMap("apps", "other", false, later, map[string]string{"egress.yaml": "not: [an intent"})),
			allowed: true, noWarnings: true},
		{name: "DELETE allowed",
			review:  review(admissionv1.Delete, configMap("payments", "first", true, created, map[string]string{"egress.yaml": github})),
			allowed: true, noWarnings: true},
		{name: "conflict with a served ConfigMap denied naming the winner",
			review: review(admissionv1.Create, configMap("apps", "copy", true, later, map[string]string{"egress.yaml": github})),
			message: []string{"egress intent ConfigMap apps/copy is invalid",
				"\negress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by payments/first"}},
		{name: "UPDATE of the served ConfigMap is judged without its old version",
			review:  update(served, configMap("payments", "first", true, created, map[string]string{"egress.yaml": github2})),
			allowed: true, noWarnings: true},
		{name: "UPDATE breaking the served ConfigMap denied",
			review:  update(served, configMap("payments", "first", true, created, map[string]string{"egress.yaml": bad})),
			message: []string{"payments/first is invalid (2 error(s))"}},
		{name: "UPDATE of metadata only allowed, even of an invalid ConfigMap",
			review:  update(invalid, annotated),
			allowed: true, noWarnings: true},
		{name: "UPDATE during deletion allowed",
			review:  update(deleting, finalized),
			allowed: true, noWarnings: true},
		{name: "UPDATE adding the label judged",
			review:  update(unlabelled, invalid),
			message: []string{"apps/stored-before is invalid (2 error(s))"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := answer(t, f.h, tc.review)
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed %v, want %v (result %+v)", resp.Allowed, tc.allowed, resp.Result)
			}
			if !tc.allowed {
				if resp.Result == nil || resp.Result.Code != http.StatusUnprocessableEntity || resp.Result.Reason != metav1.StatusReasonInvalid {
					t.Fatalf("result %+v: want 422 Invalid", resp.Result)
				}
				for _, want := range tc.message {
					if !strings.Contains(resp.Result.Message, want) {
						t.Errorf("message %q lacks %q", resp.Result.Message, want)
					}
				}
			}
			if tc.wantNoResult && resp.Result != nil {
				t.Errorf("allowed with a result %+v", resp.Result)
			}
			if tc.noWarnings && len(resp.Warnings) != 0 {
				t.Errorf("warnings %q, want none", resp.Warnings)
			}
			if tc.warnings != nil {
				if len(resp.Warnings) != len(tc.warnings) {
					t.Fatalf("warnings %q, want %d", resp.Warnings, len(tc.warnings))
				}
				for i, want := range tc.warnings {
					if !strings.Contains(resp.Warnings[i], want) {
						t.Errorf("warning %q lacks %q", resp.Warnings[i], want)
					}
				}
			}
		})
	}
	if got := testutil.ToFloat64(f.metrics.AdmissionReviews.WithLabelValues("CREATE", "denied")); got != 3 {
		t.Errorf("CREATE denied counted %v, want 3", got)
	}
	if got := testutil.ToFloat64(f.metrics.AdmissionReviews.WithLabelValues("DELETE", "allowed")); got != 1 {
		t.Errorf("DELETE allowed counted %v, want 1", got)
	}
	if !strings.Contains(f.logs.String(), "admission denied") || !strings.Contains(f.logs.String(), "configmap=apps/copy") {
		t.Errorf("denials are not logged with their ConfigMap:\n%s", f.logs.String())
	}
}

const github2 = github + `  - name: docs
    host: docs.example.com
    ports: [{number: 443, protocol: TLS}]
`

// Secret problems never refuse a ConfigMap (kubectl apply -f DIR may
// apply it before its Secret): they are warnings, saying what is known.
func TestSecretProblemsAreWarnings(t *testing.T) {
	f := newFixture(t, true)
	cm := configMap("apps", "partner", true, created.Add(time.Hour), map[string]string{"egress.yaml": mutual})
	key := translate.SecretKey{Namespace: "apps", Name: "partner-client-cert"}

	resp := answer(t, f.h, review(admissionv1.Create, cm))
	if !resp.Allowed || len(resp.Warnings) != 1 ||
		!strings.Contains(resp.Warnings[0], "egress.yaml: destinations[0].tls.clientCertificate.secret: the server holds no Secret apps/partner-client-cert yet") {
		t.Fatalf("Secret not held: allowed %v, warnings %q", resp.Allowed, resp.Warnings)
	}

	f.secrets[key] = map[string][]byte{"tls.crt": []byte("not pem")}
	resp = answer(t, f.h, review(admissionv1.Create, cm))
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "has no tls.crt and tls.key") {
		t.Fatalf("malformed Secret: allowed %v, warnings %q", resp.Allowed, resp.Warnings)
	}

	ca, err := testpki.NewCA("partner-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(testpki.Leaf{CommonName: "client", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	f.secrets[key] = map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}
	resp = answer(t, f.h, review(admissionv1.Create, cm))
	if !resp.Allowed || len(resp.Warnings) != 0 {
		t.Fatalf("usable Secret: allowed %v, warnings %q", resp.Allowed, resp.Warnings)
	}
}

// Reviews that cannot be judged get an HTTP error (the API server then
// applies the failure policy), never a panic or an answer.
func TestMalformedRequests(t *testing.T) {
	f := newFixture(t, true)
	valid, _ := json.Marshal(review(admissionv1.Create, configMap("apps", "x", true, created, map[string]string{"egress.yaml": github})))
	noUID := review(admissionv1.Create, configMap("apps", "x", true, created, nil))
	noUID.Request.UID = ""
	noUIDBody, _ := json.Marshal(noUID)
	v1beta1 := strings.Replace(string(valid), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1)
	notCM := strings.Replace(string(valid), `"object":{`, `"object":{"data":42,`, 1)
	badOld := update(configMap("apps", "x", true, created, nil), configMap("apps", "x", true, created, map[string]string{"egress.yaml": github}))
	badOld.Request.OldObject.Raw = []byte(`"not an object"`)
	badOldBody, _ := json.Marshal(badOld)
	huge := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"data":{"egress.yaml":"`),
		bytes.Repeat([]byte("a"), MaxRequestBytes)...)
	huge = append(huge, []byte(`"}}}}`)...)
	for _, tc := range []struct {
		name        string
		method, ct  string
		body        []byte
		status      int
		messagePart string
	}{
		{"not JSON", "POST", "application/json", []byte("{not json"), 400, "not an AdmissionReview"},
		{"empty body", "POST", "application/json", nil, 400, "not an AdmissionReview"},
		{"no request", "POST", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, "without a request"},
		{"no uid", "POST", "application/json", noUIDBody, 400, "without a request or its uid"},
		{"another version", "POST", "application/json", []byte(v1beta1), 400, "want admission.k8s.io/v1 AdmissionReview"},
		{"object not a ConfigMap", "POST", "application/json", []byte(notCM), 400, "not a ConfigMap"},
		{"old object not a ConfigMap", "POST", "application/json", badOldBody, 400, "old object is not a ConfigMap"},
		{"oversized", "POST", "application/json", huge, 413, "larger than"},
		{"GET", "GET", "application/json", nil, 405, "POSTed"},
		{"not JSON content", "POST", "text/plain", valid, 415, "want application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, Path, bytes.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ct)
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, r)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.messagePart) {
				t.Errorf("status %d %q, want %d with %q", w.Code, w.Body.String(), tc.status, tc.messagePart)
			}
		})
	}
	// Those whose request names its operation are counted under it.
	if got := testutil.ToFloat64(f.metrics.AdmissionReviews.WithLabelValues("unknown", "error")); got != 6 {
		t.Errorf("errors without an operation counted %v, want 6", got)
	}
	if got := testutil.ToFloat64(f.metrics.AdmissionReviews.WithLabelValues("CREATE", "error")); got != 3 {
		t.Errorf("CREATE errors counted %v, want 3", got)
	}
	if w := post(t, f.h, valid); w.Code != http.StatusOK {
		t.Errorf("the valid review after them: status %d", w.Code)
	}
	r := httptest.NewRequest(http.MethodPost, "/other", bytes.NewReader(valid))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != http.StatusNotFound {
		t.Errorf("another path: status %d, want 404", w.Code)
	}
}

// Before the source synced and the first build ran there is nothing to
// judge conflicts against: 503, so that the failure policy applies.
func TestNotReadyAnswers503(t *testing.T) {
	f := newFixture(t, false)
	body, _ := json.Marshal(review(admissionv1.Create, configMap("apps", "docs", true, created, map[string]string{"egress.yaml": github})))
	w := post(t, f.h, body)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "not ready") {
		t.Fatalf("status %d %q, want 503 not ready", w.Code, w.Body.String())
	}
	if got := testutil.ToFloat64(f.metrics.AdmissionReviews.WithLabelValues("unknown", "error")); got != 1 {
		t.Errorf("not ready counted %v, want 1 error", got)
	}
}

// A request for something else than a ConfigMap (a misconfigured
// ValidatingWebhookConfiguration) is allowed with a warning.
func TestOtherKindsAllowed(t *testing.T) {
	f := newFixture(t, true)
	rev := review(admissionv1.Create, configMap("apps", "x", true, created, map[string]string{"egress.yaml": bad}))
	rev.Request.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Secret"}
	resp := answer(t, f.h, rev)
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "not checked") {
		t.Fatalf("allowed %v, warnings %q", resp.Allowed, resp.Warnings)
	}
}

// Many errors: the message stays bounded and says how many it left out;
// warnings too; control characters never reach the answer.
func TestMessagesAreBounded(t *testing.T) {
	f := newFixture(t, true)
	var doc strings.Builder
	doc.WriteString("destinations:\n")
	for i := range 100 {
		fmt.Fprintf(&doc, "  - name: d%d\n    host: h%d.example.com\n    ports: [{number: 70000, protocol: TLS}]\n", i, i)
	}
	resp := answer(t, f.h, review(admissionv1.Create, configMap("apps", "many", true, created.Add(time.Hour), map[string]string{"egress.yaml": doc.String()})))
	if resp.Allowed {
		t.Fatal("allowed")
	}
	msg := resp.Result.Message
	if len(msg) > maxMessageBytes+200 || !strings.Contains(msg, "(100 error(s))") || !strings.Contains(msg, "... and 80 more: xds-server validate lists more") {
		t.Errorf("message of %d bytes:\n%s", len(msg), msg)
	}

	data := map[string]string{"egress.yaml": github2}
	for i := range 30 {
		data[fmt.Sprintf("note\n%02d", i)] = "x"
	}
	cm := configMap("apps", "notes", true, created.Add(time.Hour), data)
	cm.Data["egress.yaml"] = strings.ReplaceAll(github2, ".com", ".org")
	resp = answer(t, f.h, review(admissionv1.Create, cm))
	if !resp.Allowed || len(resp.Warnings) != maxWarnings+1 || !strings.Contains(resp.Warnings[maxWarnings], "and 20 more warning(s)") {
		t.Fatalf("allowed %v, %d warnings: %q", resp.Allowed, len(resp.Warnings), resp.Warnings)
	}
	for _, w := range resp.Warnings {
		if strings.ContainsAny(w, "\n\r") || len(w) > maxWarningBytes {
			t.Errorf("warning %q: control characters or too long", w)
		}
	}
	if got := bounded(strings.Repeat("é", 100), 11); got != "éééé..." {
		t.Errorf("bounded cuts runes: %q", got)
	}
}
