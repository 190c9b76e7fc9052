package kubetest_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/kubetest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/webhook"
)

const webhookName = "intents.egress-xds.io"

// badIntent has two errors: a misspelt field and a port out of range.
const badIntent = `destinations:
  - name: github
    hots: api.github.com
    host: api.github.com
    ports: [{number: 70000, protocol: TLS}]
`

const insecureIntent = `destinations:
  - name: legacy
    host: legacy.example.com
    ports: [{number: 80, protocol: HTTP}]
    tls: {mode: SIMPLE, insecureSkipVerify: true}
`

// webhookServer is a control plane serving the webhook, which a test can
// stop.
type webhookServer struct {
	*server.Server
	stop func()
}

// startWebhookServer runs a control plane on ns as identity, with the
// webhook on 127.0.0.1 and a certificate of the test CA for 127.0.0.1.
func startWebhookServer(t *testing.T, c *kubetest.Cluster, identity *rest.Config, ns string, ca *testpki.CA) *webhookServer {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(testpki.Leaf{CommonName: "xds-server-webhook", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hook := &webhook.Config{Address: "127.0.0.1:0", CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	for p, data := range map[string][]byte{hook.CertFile: certPEM, hook.KeyFile: keyPEM} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Config{
		Kubernetes:    &watch.KubeOptions{Kubeconfig: c.Kubeconfig(t, identity), Namespaces: []string{ns}, Instance: "webhook"},
		XDSAddress:    "127.0.0.1:0",
		AdminAddress:  "127.0.0.1:0",
		Translate:     translate.Options{ForwardProxyPort: 3128},
		ShutdownGrace: time.Second,
		Log:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Webhook:       hook,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-waitDone(srv):
			case <-time.After(15 * time.Second):
				t.Error("server did not stop")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &webhookServer{Server: srv, stop: stop}
}

func waitDone(srv *server.Server) <-chan struct{} {
	done := make(chan struct{})
	go func() { _ = srv.Wait(); close(done) }()
	return done
}

// registerWebhook registers deploy/webhook.yaml's webhook, as shipped
// (failure policy, selectors, rules, timeout), but calling url with the
// test CA, and only for namespace ns (the cluster is shared by tests).
func registerWebhook(t *testing.T, admin kubernetes.Interface, ns, url string, ca *testpki.CA) string {
	t.Helper()
	vwc := shippedWebhook(t)
	vwc.Name = "egress-xds-intents-" + ns
	vwc.Annotations = nil // no cainjector here
	w := &vwc.Webhooks[0]
	w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca.CertPEM}
	w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	if _, err := admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(timeout(t, 10*time.Second), vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), vwc.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	})
	return vwc.Name
}

func shippedWebhook(t *testing.T) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	data, err := os.ReadFile("../../deploy/webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			t.Fatal("deploy/webhook.yaml has no ValidatingWebhookConfiguration")
		}
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if vwc, ok := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration); ok {
			if len(vwc.Webhooks) != 1 || vwc.Webhooks[0].Name != webhookName {
				t.Fatalf("deploy/webhook.yaml: want the one webhook %s", webhookName)
			}
			return vwc
		}
	}
}

// waitRefused creates cm (dry run: nothing is stored) until the API
// server refuses it with an error containing want: the webhook
// configuration, and what the server serves, take a moment to apply.
func waitRefused(t *testing.T, client kubernetes.Interface, cm *corev1.ConfigMap, want string) {
	t.Helper()
	var last error
	err := kubetest.WaitFor(timeout(t, 30*time.Second), func() (bool, error) {
		_, last = client.CoreV1().ConfigMaps(cm.Namespace).Create(context.Background(), cm, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return last != nil && strings.Contains(last.Error(), want), nil
	})
	if err != nil {
		t.Fatalf("%s/%s was not refused with %q: last answer %v", cm.Namespace, cm.Name, want, last)
	}
}

// warningRecorder keeps the warnings the API server sends (kubectl prints
// them as "Warning: ...").
type warningRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	w.seen = append(w.seen, text)
	w.mu.Unlock()
}

func (w *warningRecorder) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.seen, "\n")
}

// The API server asks the webhook before storing an intent ConfigMap: an
// invalid one is refused with every field path, a good one is stored, a
// warning reaches the client, one conflicting with a served ConfigMap is
// refused naming the winner, and ConfigMaps without the label are not
// judged.
func TestAdmissionWebhook(t *testing.T) {
	c, admin := cluster(t)
	ns := namespace(t, admin)
	ca, err := testpki.NewCA("webhook-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := startWebhookServer(t, c, c.ServiceAccount(), ns, ca)
	select {
	case <-srv.Builder.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("not ready")
	}
	registerWebhook(t, admin, ns, "https://"+srv.WebhookAddr+webhook.Path, ca)
	cms := admin.CoreV1().ConfigMaps(ns)

	denied := `admission webhook "` + webhookName + `" denied the request: `
	waitRefused(t, admin, intentCM(ns, "bad", badIntent), denied)
	_, err = cms.Create(timeout(t, 10*time.Second), intentCM(ns, "bad", badIntent), metav1.CreateOptions{})
	want := denied + "egress intent ConfigMap " + ns + "/bad is invalid (2 error(s)):\n" +
		"egress.yaml: destinations[0].hots: unknown field (known: allow, connectionPool, endpoints, host, loadBalancer, methods, name, outlierDetection, paths, ports, rateLimit, resolution, retries, timeout, tls)\n" +
		"egress.yaml: destinations[0].ports[0].number: 70000 is not a valid port"
	if err == nil || !strings.Contains(err.Error(), want) || !apierrors.IsInvalid(err) {
		t.Fatalf("bad ConfigMap: got %v, want 422 Invalid with\n%s", err, want)
	}
	if _, err := cms.Get(timeout(t, 10*time.Second), "bad", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused ConfigMap was stored: %v", err)
	}

	if _, err := cms.Create(timeout(t, 10*time.Second), intentCM(ns, "good", github), metav1.CreateOptions{}); err != nil {
		t.Fatalf("good ConfigMap refused: %v", err)
	}
	// Once good is served, the same host and port elsewhere is refused.
	conflict := "egress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by " + ns + "/good"
	waitRefused(t, admin, intentCM(ns, "copy", github), conflict)
	if _, err := cms.Create(timeout(t, 10*time.Second), intentCM(ns, "copy", github), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), conflict) {
		t.Fatalf("conflicting ConfigMap: got %v, want %q", err, conflict)
	}

	// An UPDATE breaking the served ConfigMap is refused; it keeps its data.
	good, err := cms.Get(timeout(t, 10*time.Second), "good", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good.Data["egress.yaml"] = badIntent
	if _, err := cms.Update(timeout(t, 10*time.Second), good, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "is not a valid port") {
		t.Fatalf("breaking update: got %v, want refused", err)
	}
	// So is a server-side apply (kubectl apply --server-side: a PATCH).
	applied := corev1ac.ConfigMap("good", ns).WithLabels(map[string]string{intent.LabelKey: "true"}).WithData(map[string]string{"egress.yaml": badIntent})
	if _, err := cms.Apply(timeout(t, 10*time.Second), applied, metav1.ApplyOptions{FieldManager: "kubectl", Force: true}); err == nil ||
		!strings.Contains(err.Error(), denied+"egress intent ConfigMap "+ns+"/good is invalid") {
		t.Fatalf("breaking apply: got %v, want refused", err)
	}
	// An UPDATE adding a destination is judged without the old version.
	good.Data["egress.yaml"] = github2
	if _, err := cms.Update(timeout(t, 10*time.Second), good, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("valid update refused: %v", err)
	}

	// Warnings reach the client, and the ConfigMap is stored.
	rec := &warningRecorder{}
	cfg := c.Admin()
	cfg.WarningHandler = rec
	warned, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := warned.CoreV1().ConfigMaps(ns).Create(timeout(t, 10*time.Second), intentCM(ns, "legacy", insecureIntent), metav1.CreateOptions{}); err != nil {
		t.Fatalf("ConfigMap with a warning refused: %v", err)
	}
	if w := rec.all(); !strings.Contains(w, "egress.yaml: destinations[0].tls.insecureSkipVerify: server certificate verification is OFF for legacy.example.com") {
		t.Errorf("warnings %q lack the insecureSkipVerify warning", w)
	}

	// ConfigMaps without the label are not judged.
	plain := intentCM(ns, "plain", "not: [an intent")
	plain.Labels = nil
	if _, err := cms.Create(timeout(t, 10*time.Second), plain, metav1.CreateOptions{}); err != nil {
		t.Fatalf("unlabelled ConfigMap refused: %v", err)
	}
	if got := testutil.ToFloat64(srv.Metrics.AdmissionReviews.WithLabelValues("CREATE", "denied")); got < 4 {
		t.Errorf("CREATE denials counted %v, want at least 4", got)
	}
	if got := testutil.ToFloat64(srv.Metrics.AdmissionReviews.WithLabelValues("UPDATE", "denied")); got != 2 {
		t.Errorf("UPDATE denials counted %v, want 2 (the update and the apply)", got)
	}
}

// failurePolicy Fail, as deploy/ ships it: while the server is not ready
// (its source never synced: no rights) and once it is down, creating an
// intent ConfigMap is refused with the API server's "failed calling
// webhook"; other ConfigMaps and deleting intents are not affected; the
// escape hatch, deleting the ValidatingWebhookConfiguration, lets intents
// in again.
func TestAdmissionWebhookFailurePolicy(t *testing.T) {
	c, admin := cluster(t)
	ns := namespace(t, admin)
	ca, err := testpki.NewCA("webhook-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cms := admin.CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(timeout(t, 10*time.Second), intentCM(ns, "existing", github), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// RestrictedUser has no rights in ns: the informers never sync.
	srv := startWebhookServer(t, c, c.Restricted(), ns, ca)
	name := registerWebhook(t, admin, ns, "https://"+srv.WebhookAddr+webhook.Path, ca)

	failed := `failed calling webhook "` + webhookName + `"`
	// The webhook's 503, as the API server words it.
	waitRefused(t, admin, intentCM(ns, "docs", github2), failed+": failed to call webhook: the server is currently unable to handle the request")
	select {
	case <-srv.Builder.Ready():
		t.Fatal("test bug: the restricted server became ready")
	default:
	}

	srv.stop()
	_, err = cms.Create(timeout(t, 10*time.Second), intentCM(ns, "docs", github2), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), failed) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("server down: got %v, want %q (connection refused)", err, failed)
	}
	plain := intentCM(ns, "plain", "anything")
	plain.Labels = nil
	if _, err := cms.Create(timeout(t, 10*time.Second), plain, metav1.CreateOptions{}); err != nil {
		t.Errorf("server down: an unlabelled ConfigMap was refused: %v", err)
	}
	if err := cms.Delete(timeout(t, 10*time.Second), "existing", metav1.DeleteOptions{}); err != nil {
		t.Errorf("server down: deleting an intent was refused: %v", err)
	}

	if err := admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(timeout(t, 10*time.Second), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var last error
	err = kubetest.WaitFor(timeout(t, 30*time.Second), func() (bool, error) {
		_, last = cms.Create(context.Background(), intentCM(ns, "docs", github2), metav1.CreateOptions{})
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("after deleting the ValidatingWebhookConfiguration: %v", last)
	}
}
