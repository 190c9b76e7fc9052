package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/webhook"
)

const partnerIntent = `gateways: [egress-gateway]
destinations:
  - name: partner
    host: secure-api.partner.com
    ports: [{number: 80, protocol: HTTP}]
    tls: {mode: MUTUAL, clientCertificate: {secret: partner-client-cert}}
`

func intentConfigMap(ns, name, doc string, created time.Time) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created),
			Labels: map[string]string{intent.LabelKey: "true"}},
		Data: map[string]string{"egress.yaml": doc},
	}
}

// webhookFiles writes a serving certificate for 127.0.0.1 of a new CA.
func webhookFiles(t *testing.T) (*webhook.Config, *testpki.CA) {
	t.Helper()
	ca, err := testpki.NewCA("webhook-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(testpki.Leaf{CommonName: "webhook", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := &webhook.Config{Address: "127.0.0.1:0", CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	for p, data := range map[string][]byte{cfg.CertFile: certPEM, cfg.KeyFile: keyPEM} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, ca
}

// reviewOver posts a CREATE review of cm to the server's webhook over
// TLS; the response is nil when the answer is not a 200 (then status).
func reviewOver(t *testing.T, client *http.Client, r *running, cm *corev1.ConfigMap) (*admissionv1.AdmissionResponse, int) {
	t.Helper()
	raw, _ := json.Marshal(cm)
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u1", Operation: admissionv1.Create, Namespace: cm.Namespace, Name: cm.Name,
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Object: runtime.RawExtension{Raw: raw}},
	})
	resp, err := client.Post("https://"+r.WebhookAddr+webhook.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode
	}
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
		t.Fatalf("answer: %v", err)
	}
	return out.Response, resp.StatusCode
}

// The webhook wired in the server (fake clientset, so without API server
// binaries): 503 until the source synced and the first build ran, then
// reviews against what is served, with the Secrets the source holds.
func TestWebhookJudgesAgainstTheServedSet(t *testing.T) {
	created := time.Now().Add(-time.Hour)
	key, cert, err := func() ([]byte, []byte, error) {
		ca, err := testpki.NewCA("partner", time.Hour)
		if err != nil {
			return nil, nil, err
		}
		c, k, err := ca.Issue(testpki.Leaf{CommonName: "client", Client: true})
		return k, c, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(intentConfigMap("apps", "partner", partnerIntent, created),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "partner-client-cert"},
			Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": cert, "tls.key": key}})
	release := make(chan struct{})
	client.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release // the API server answers late
		return false, nil, nil
	})
	hook, ca := webhookFiles(t)
	r := startConfig(t, context.Background(), server.Config{Kubernetes: &watch.KubeOptions{Client: client, Instance: "fake"}, Webhook: hook})
	defer close(release)
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	defer https.CloseIdleConnections()

	copyCM := intentConfigMap("apps", "copy", partnerIntent, time.Now())
	if _, status := reviewOver(t, https, r, copyCM); status != http.StatusServiceUnavailable {
		t.Fatalf("before the source synced: status %d, want 503", status)
	}
	release <- struct{}{}
	select {
	case <-r.Builder.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	resp, _ := reviewOver(t, https, r, copyCM)
	if resp == nil || resp.Allowed || !strings.Contains(resp.Result.Message, "is already declared by apps/partner") {
		t.Fatalf("conflict with the served ConfigMap: %+v", resp)
	}
	// Another destination using the same Secret: the server holds it, and
	// it is usable, so there is nothing to warn about.
	other := intentConfigMap("apps", "other", strings.ReplaceAll(partnerIntent, "secure-api.partner.com", "other.partner.com"), time.Now())
	resp, _ = reviewOver(t, https, r, other)
	if resp == nil || !resp.Allowed || len(resp.Warnings) != 0 {
		t.Fatalf("a held, usable Secret: %+v", resp)
	}
	unknown := intentConfigMap("apps", "unknown", strings.ReplaceAll(other.Data["egress.yaml"], "partner-client-cert", "not-yet"), time.Now())
	resp, _ = reviewOver(t, https, r, unknown)
	if resp == nil || !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "the server holds no Secret apps/not-yet yet") {
		t.Fatalf("a Secret not held: %+v", resp)
	}
}

// The webhook needs the Kubernetes source and a usable certificate.
func TestWebhookSettings(t *testing.T) {
	hook, _ := webhookFiles(t)
	_, err := server.Start(context.Background(), server.Config{ConfigDir: t.TempDir(), XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", Webhook: hook})
	if err == nil || !strings.Contains(err.Error(), "needs the Kubernetes source") {
		t.Errorf("folder source: got %v", err)
	}
	missing := *hook
	missing.KeyFile = filepath.Join(t.TempDir(), "missing.key")
	_, err = server.Start(context.Background(), server.Config{Kubernetes: &watch.KubeOptions{Client: fake.NewClientset()},
		XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", Webhook: &missing})
	if err == nil || !strings.Contains(err.Error(), "webhook tls") {
		t.Errorf("missing key: got %v, want a webhook tls error", err)
	}
}
