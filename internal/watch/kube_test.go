package watch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// kubeRun is a Kubernetes source running on a fake clientset.
type kubeRun struct {
	*watch.Kube
	client *fake.Clientset
	states chan watch.KubeState
	cancel context.CancelFunc
	done   chan error
}

func startKube(t *testing.T, client *fake.Clientset, opts watch.KubeOptions) *kubeRun {
	t.Helper()
	opts.Client = client
	if opts.Instance == "" {
		opts.Instance = "test-replica"
	}
	if opts.SecretSyncTimeout == 0 {
		opts.SecretSyncTimeout = 3 * time.Second
	}
	k, err := watch.NewKube(opts, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &kubeRun{Kube: k, client: client, states: make(chan watch.KubeState, 100), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- k.Run(ctx, func(st watch.KubeState) { r.states <- st }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

// testWriter logs through t, until the test ends.
type testWriter struct{ t *testing.T }

var logMu sync.Mutex
var finished = map[*testing.T]bool{}

func (w testWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	if !finished[w.t] {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func markFinished(t *testing.T) {
	t.Cleanup(func() {
		logMu.Lock()
		finished[t] = true
		logMu.Unlock()
	})
}

// next waits for the next state passed on.
func (r *kubeRun) next(t *testing.T) watch.KubeState {
	t.Helper()
	select {
	case st := <-r.states:
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("no state passed on within 10s")
	}
	return watch.KubeState{}
}

// quiet checks that nothing is passed on for d.
func (r *kubeRun) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case st := <-r.states:
		t.Fatalf("unexpected update: %s", describe(st))
	case <-time.After(d):
	}
}

func describe(st watch.KubeState) string {
	var parts []string
	for _, cm := range st.ConfigMaps {
		parts = append(parts, "cm "+cm.Namespace+"/"+cm.Name+"@"+cm.ResourceVersion)
	}
	for _, s := range st.Secrets {
		parts = append(parts, "secret "+s.Namespace+"/"+s.Name+"="+string(s.Data["tls.crt"]))
	}
	return strings.Join(parts, ", ")
}

func intentCM(ns, name, rv, doc string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, ResourceVersion: rv, UID: types.UID("uid-" + ns + "-" + name),
			Labels: map[string]string{intent.LabelKey: "true"},
		},
		Data: map[string]string{"egress.yaml": doc},
	}
}

func secret(ns, name, crt string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": []byte(crt), "tls.key": []byte("key"), "ca.crt": []byte("ca")},
	}
}

const tlsDoc = `destinations:
  - name: partner
    host: partner.example.com
    ports: [{number: 80, protocol: HTTP}]
    tls: {mode: MUTUAL, clientCertificate: {secret: client-cert}, caCertificates: {secret: partner-ca}}
`

const plainDoc = `destinations:
  - name: github
    host: api.github.com
    ports: [{number: 443, protocol: TLS}]
`

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// Create, update and delete of labelled ConfigMaps reach the source's
// consumer as the complete set; unlabelled ConfigMaps and changes that do
// not alter the content (an annotation) do not.
func TestKubeFollowsConfigMaps(t *testing.T) {
	markFinished(t)
	unlabelled := intentCM("apps", "other", "1", plainDoc)
	unlabelled.Labels = nil
	client := fake.NewClientset(intentCM("apps", "a", "1", plainDoc), unlabelled)
	r := startKube(t, client, watch.KubeOptions{})

	if got := describe(r.next(t)); got != "cm apps/a@1" {
		t.Fatalf("first state: %s", got)
	}
	select {
	case <-r.Synced():
	default:
		t.Fatal("Synced not closed after the first state")
	}

	cms := client.CoreV1().ConfigMaps("apps")
	if _, err := cms.Create(ctx(t), intentCM("apps", "c", "1", plainDoc), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := describe(r.next(t)); got != "cm apps/a@1, cm apps/c@1" {
		t.Fatalf("after create: %s", got)
	}

	a := intentCM("apps", "a", "2", strings.Replace(plainDoc, "443", "8443", 1))
	if _, err := cms.Update(ctx(t), a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := r.next(t)
	if got := describe(st); got != "cm apps/a@2, cm apps/c@1" || !strings.Contains(st.ConfigMaps[0].Data["egress.yaml"], "8443") {
		t.Fatalf("after update: %s", got)
	}

	// Same content, new resourceVersion (an annotation): nothing to pass on.
	a = a.DeepCopy()
	a.ResourceVersion = "3"
	a.Annotations = map[string]string{"note": "x"}
	if _, err := cms.Update(ctx(t), a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An unlabelled ConfigMap changing: nothing either.
	if _, err := cms.Create(ctx(t), func() *corev1.ConfigMap { c := intentCM("apps", "u2", "1", plainDoc); c.Labels = nil; return c }(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.quiet(t, 500*time.Millisecond)

	// Removing the label is a deletion for the source.
	c := intentCM("apps", "c", "2", plainDoc)
	c.Labels = map[string]string{intent.LabelKey: "false"}
	if _, err := cms.Update(ctx(t), c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := describe(r.next(t)); got != "cm apps/a@3" {
		t.Fatalf("after unlabelling: %s", got)
	}
	if err := cms.Delete(ctx(t), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := describe(r.next(t)); got != "" {
		t.Fatalf("after delete: %q", got)
	}
}

// Only the configured namespaces are watched.
func TestKubeNamespaces(t *testing.T) {
	markFinished(t)
	client := fake.NewClientset(intentCM("team-a", "x", "1", plainDoc), intentCM("team-b", "y", "1", plainDoc), intentCM("team-c", "z", "1", plainDoc))
	r := startKube(t, client, watch.KubeOptions{Namespaces: []string{"team-c", "team-a", " "}})
	if got := describe(r.next(t)); got != "cm team-a/x@1, cm team-c/z@1" {
		t.Fatalf("state: %s", got)
	}
	if d := r.Description(); d != "kubernetes (namespaces team-a,team-c)" {
		t.Errorf("description %q", d)
	}
	for _, a := range client.Actions() {
		if a.GetResource().Resource == "configmaps" && a.GetNamespace() == "team-b" {
			t.Errorf("team-b was read: %v", a)
		}
	}
}

// Only the Secrets intents reference are read, each by name, and a
// rotation is passed on; an unreferenced Secret never is.
func TestKubeSecretsByReference(t *testing.T) {
	markFinished(t)
	client := fake.NewClientset(
		intentCM("apps", "partner", "1", tlsDoc),
		secret("apps", "client-cert", "v1"), secret("apps", "partner-ca", "ca"),
		secret("apps", "unrelated", "do-not-read"), secret("other", "client-cert", "other-namespace"),
	)
	r := startKube(t, client, watch.KubeOptions{})
	// The first state already has the Secrets: the source waited for them.
	if got := describe(r.next(t)); got != "cm apps/partner@1, secret apps/client-cert=v1, secret apps/partner-ca=ca" {
		t.Fatalf("first state: %s", got)
	}

	// Rotation.
	if _, err := client.CoreV1().Secrets("apps").Update(ctx(t), secret("apps", "client-cert", "v2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := describe(r.next(t)); got != "cm apps/partner@1, secret apps/client-cert=v2, secret apps/partner-ca=ca" {
		t.Fatalf("after rotation: %s", got)
	}
	// A change to an unreferenced Secret in the same namespace: nothing.
	if _, err := client.CoreV1().Secrets("apps").Update(ctx(t), secret("apps", "unrelated", "changed"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.quiet(t, 500*time.Millisecond)

	// The reference to partner-ca goes: so does the Secret.
	doc := strings.Replace(tlsDoc, ", caCertificates: {secret: partner-ca}", "", 1)
	if _, err := client.CoreV1().ConfigMaps("apps").Update(ctx(t), intentCM("apps", "partner", "2", doc), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := describe(r.next(t)); got != "cm apps/partner@2, secret apps/client-cert=v2" {
		t.Fatalf("after dropping a reference: %s", got)
	}
	// A Secret deleted: the state says so (the builder holds the
	// destination back and reports it).
	if err := client.CoreV1().Secrets("apps").Delete(ctx(t), "client-cert", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := describe(r.next(t)); got != "cm apps/partner@2" {
		t.Fatalf("after deleting the Secret: %s", got)
	}

	// Least privilege: every Secret list and watch named its Secret, and
	// nothing was ever read with a GET.
	for _, a := range client.Actions() {
		if a.GetResource().Resource != "secrets" {
			continue
		}
		switch act := a.(type) {
		case k8stesting.ListAction:
			if f := act.GetListRestrictions().Fields.String(); !strings.HasPrefix(f, "metadata.name=") {
				t.Errorf("secrets listed without a name selector: %q", f)
			}
		case k8stesting.WatchAction:
			if f := act.GetWatchRestrictions().Fields.String(); !strings.HasPrefix(f, "metadata.name=") {
				t.Errorf("secrets watched without a name selector: %q", f)
			}
		}
		if a.GetVerb() == "get" {
			t.Errorf("secret read with GET: %v", a)
		}
	}
	checkVerbs(t, client.Actions())
}

// checkVerbs checks that the source did nothing RequiredRBAC does not
// grant.
func checkVerbs(t *testing.T, actions []k8stesting.Action) {
	t.Helper()
	allowed := map[string]bool{}
	for _, r := range watch.RequiredRBAC {
		for _, v := range r.Verbs {
			allowed[r.Resource+"/"+v] = true
		}
	}
	for _, a := range actions {
		// The test's own writes of ConfigMaps and Secrets are recorded
		// too: check every read, and every Event write.
		read := a.GetVerb() == "get" || a.GetVerb() == "list" || a.GetVerb() == "watch"
		if (read || a.GetResource().Resource == "events") && !allowed[a.GetResource().Resource+"/"+a.GetVerb()] {
			t.Errorf("%s %s is not in RequiredRBAC", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

// A Secret referenced only by the last accepted version of a ConfigMap
// (the current one is invalid, and the gateways are still served the old
// one) keeps being followed.
func TestKubeKeepsSecretsOfLastAcceptedVersion(t *testing.T) {
	markFinished(t)
	client := fake.NewClientset(intentCM("apps", "partner", "1", tlsDoc),
		secret("apps", "client-cert", "v1"), secret("apps", "partner-ca", "ca"))
	r := startKube(t, client, watch.KubeOptions{})
	r.next(t)
	r.Report(nil, []string{"apps/partner"})

	broken := "destinations: [{name: x, host: h, ports: [{number: 70000}]}]\n"
	if _, err := client.CoreV1().ConfigMaps("apps").Update(ctx(t), intentCM("apps", "partner", "2", broken), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := r.next(t)
	if got := describe(st); got != "cm apps/partner@2, secret apps/client-cert=v1, secret apps/partner-ca=ca" {
		t.Fatalf("the last accepted version's Secrets were dropped: %s", got)
	}
	// The broken version is reported (not accepted): the Secrets stay.
	r.Report(intent.Diagnostics{{Origin: intent.Origin{Namespace: "apps", Name: "partner", Key: "egress.yaml"}, Path: "destinations[0].ports[0].number", Message: "70000 is not a valid port", Severity: intent.SeverityError}}, nil)
	r.quiet(t, 300*time.Millisecond)
	// Fixed without TLS, and accepted: the Secrets are no longer needed.
	if _, err := client.CoreV1().ConfigMaps("apps").Update(ctx(t), intentCM("apps", "partner", "3", plainDoc), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := describe(r.next(t)); got != "cm apps/partner@3, secret apps/client-cert=v1, secret apps/partner-ca=ca" {
		t.Fatalf("before acceptance: %s", got)
	}
	r.Report(nil, []string{"apps/partner"})
	if got := describe(r.next(t)); got != "cm apps/partner@3" {
		t.Fatalf("after acceptance: %s", got)
	}
}

// A referenced Secret that cannot be read does not hold the ConfigMaps
// back forever: after SecretSyncTimeout the state goes on without it.
func TestKubeSecretNeverReadable(t *testing.T) {
	markFinished(t)
	client := fake.NewClientset(intentCM("apps", "partner", "1", tlsDoc), secret("apps", "partner-ca", "ca"))
	client.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if strings.Contains(a.(k8stesting.ListAction).GetListRestrictions().Fields.String(), "client-cert") {
			return true, nil, errors.New(`secrets "client-cert" is forbidden`)
		}
		return false, nil, nil
	})
	start := time.Now()
	r := startKube(t, client, watch.KubeOptions{SecretSyncTimeout: time.Second})
	if got := describe(r.next(t)); got != "cm apps/partner@1, secret apps/partner-ca=ca" {
		t.Fatalf("state: %s", got)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("passed on after %v, before the Secret timeout", d)
	}
}

// events lists the Events written, sorted by reason then message.
func events(t *testing.T, client *fake.Clientset, ns string) []corev1.Event {
	t.Helper()
	// Through the tracker: not recorded as an action of the source.
	o, err := client.Tracker().List(corev1.SchemeGroupVersion.WithResource("events"), corev1.SchemeGroupVersion.WithKind("Event"), ns)
	if err != nil {
		t.Fatal(err)
	}
	l := o.(*corev1.EventList)
	sort.Slice(l.Items, func(i, j int) bool {
		a, b := l.Items[i], l.Items[j]
		if a.Reason != b.Reason {
			return a.Reason < b.Reason
		}
		return a.Message < b.Message
	})
	return l.Items
}

func eventSummary(evs []corev1.Event) string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %s %s@%s x%d: %s", e.Type, e.Reason, e.InvolvedObject.Name, e.InvolvedObject.ResourceVersion, e.Count, e.Message))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// waitEvents waits until the Events of ns are exactly want.
func waitEvents(t *testing.T, client *fake.Clientset, ns, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := eventSummary(events(t, client, ns))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events:\n%s\nwant:\n%s", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func diag(name, key, path, msg string) intent.Diagnostic {
	return intent.Diagnostic{Origin: intent.Origin{Namespace: "apps", Name: name, Key: key}, Path: path, Message: msg, Severity: intent.SeverityError}
}

// Problems become Warning Events on the ConfigMap with the field path,
// acceptance a Normal Event, and nothing is written twice for the same
// version and outcome.
func TestKubeEvents(t *testing.T) {
	markFinished(t)
	client := fake.NewClientset(intentCM("apps", "bad", "1", plainDoc), intentCM("apps", "good", "1", plainDoc), intentCM("apps", "loser", "1", plainDoc))
	r := startKube(t, client, watch.KubeOptions{})
	r.next(t)

	invalid := diag("bad", "egress.yaml", "destinations[2].ports[0].number", "70000 is not a valid port")
	conflict := diag("loser", "egress.yaml", "destinations[0].ports[0]",
		"host api.github.com port 443 is already declared by apps/good (egress.yaml: destinations[0].ports[0]), which wins as the older ConfigMap (ties go to namespace/name order)")
	report := intent.Diagnostics{invalid, conflict}
	r.Report(report, []string{"apps/good"})
	want := strings.Join([]string{
		"Normal IntentAccepted good@1 x1: intent accepted: resourceVersion 1 is served to the gateways",
		"Warning IntentConflict loser@1 x1: egress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by apps/good (egress.yaml: destinations[0].ports[0]), which wins as the older ConfigMap (ties go to namespace/name order)",
		"Warning InvalidIntent bad@1 x1: egress.yaml: destinations[2].ports[0].number: 70000 is not a valid port",
	}, "\n")
	waitEvents(t, client, "apps", want)
	evs := events(t, client, "apps")
	for _, e := range evs {
		if e.InvolvedObject.Kind != "ConfigMap" || e.InvolvedObject.UID == "" || e.Source.Component != "egress-xds" || e.Source.Host != "test-replica" {
			t.Errorf("event %s: involved %+v source %+v", e.Name, e.InvolvedObject, e.Source)
		}
	}

	// The same report again (a resync, an unrelated rebuild): nothing new.
	writes := countEventWrites(client)
	for i := 0; i < 3; i++ {
		r.Report(report, []string{"apps/good"})
	}
	time.Sleep(300 * time.Millisecond)
	if n := countEventWrites(client); n != writes {
		t.Fatalf("%d event writes for unchanged reports", n-writes)
	}

	// bad is fixed (new version) and accepted.
	if _, err := client.CoreV1().ConfigMaps("apps").Update(ctx(t), intentCM("apps", "bad", "2", plainDoc+"# fixed\n"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.next(t)
	r.Report(intent.Diagnostics{conflict}, []string{"apps/good", "apps/bad"})
	want = strings.Join([]string{
		"Normal IntentAccepted bad@2 x1: intent accepted: resourceVersion 2 is served to the gateways",
		"Normal IntentAccepted good@1 x1: intent accepted: resourceVersion 1 is served to the gateways",
		"Warning IntentConflict loser@1 x1: egress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by apps/good (egress.yaml: destinations[0].ports[0]), which wins as the older ConfigMap (ties go to namespace/name order)",
		"Warning InvalidIntent bad@1 x1: egress.yaml: destinations[2].ports[0].number: 70000 is not a valid port",
	}, "\n")
	waitEvents(t, client, "apps", want)

	// good is deleted: loser now wins at the same version, and is told.
	if err := client.CoreV1().ConfigMaps("apps").Delete(ctx(t), "good", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.next(t)
	r.Report(nil, []string{"apps/bad", "apps/loser"})
	want = strings.Join([]string{
		"Normal IntentAccepted bad@2 x1: intent accepted: resourceVersion 2 is served to the gateways",
		"Normal IntentAccepted good@1 x1: intent accepted: resourceVersion 1 is served to the gateways",
		"Normal IntentAccepted loser@1 x1: intent accepted: resourceVersion 1 is served to the gateways",
		"Warning IntentConflict loser@1 x1: egress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by apps/good (egress.yaml: destinations[0].ports[0]), which wins as the older ConfigMap (ties go to namespace/name order)",
		"Warning InvalidIntent bad@1 x1: egress.yaml: destinations[2].ports[0].number: 70000 is not a valid port",
	}, "\n")
	waitEvents(t, client, "apps", want)

	// The same outcome recurring at the same version is counted on the
	// Event already written.
	r.Report(intent.Diagnostics{conflict}, []string{"apps/bad"})
	time.Sleep(200 * time.Millisecond)
	r.Report(nil, []string{"apps/bad", "apps/loser"})
	waitEvents(t, client, "apps", strings.NewReplacer(
		"Normal IntentAccepted loser@1 x1", "Normal IntentAccepted loser@1 x2",
		"Warning IntentConflict loser@1 x1", "Warning IntentConflict loser@1 x2").Replace(want))
	checkVerbs(t, client.Actions())
}

func countEventWrites(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetResource().Resource == "events" && (a.GetVerb() == "create" || a.GetVerb() == "patch") {
			n++
		}
	}
	return n
}

// Missing Secrets and warnings have their own reasons; a long list of
// problems is cut to the API's message limit.
func TestKubeEventReasons(t *testing.T) {
	markFinished(t)
	client := fake.NewClientset(intentCM("apps", "partner", "7", plainDoc))
	r := startKube(t, client, watch.KubeOptions{})
	r.next(t)
	ds := intent.Diagnostics{
		diag("partner", "egress.yaml", "destinations[0].tls.clientCertificate.secret", "Secret apps/client-cert not found; destination partner is held back"),
		{Origin: intent.Origin{Namespace: "apps", Name: "partner"}, Message: "keeping the last valid version of this ConfigMap until the errors are fixed", Severity: intent.SeverityWarning},
	}
	for i := 0; i < 40; i++ {
		ds = append(ds, diag("partner", "egress.yaml", fmt.Sprintf("destinations[%d].host", i), "host is required and this message is long enough to overflow the limit"))
	}
	r.Report(ds, nil)
	deadline := time.Now().Add(10 * time.Second)
	var evs []corev1.Event
	for len(evs) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		evs = events(t, client, "apps")
	}
	if len(evs) != 3 {
		t.Fatalf("events:\n%s", eventSummary(evs))
	}
	if evs[0].Reason != "IntentWarning" || !strings.Contains(evs[0].Message, "keeping the last valid version") {
		t.Errorf("warning event: %s", eventSummary(evs[:1]))
	}
	if evs[1].Reason != "InvalidIntent" || len(evs[1].Message) > 1024 || !strings.Contains(evs[1].Message, "more (see /debug/config)") {
		t.Errorf("invalid event (%d bytes): %s", len(evs[1].Message), evs[1].Message)
	}
	if evs[2].Reason != "SecretNotUsable" || evs[2].Message != "egress.yaml: destinations[0].tls.clientCertificate.secret: Secret apps/client-cert not found; destination partner is held back" {
		t.Errorf("secret event: %s", eventSummary(evs[2:]))
	}
}

// Two replicas writing the same outcome give one Event, not two; a
// restarted replica does not repeat what was written.
func TestKubeEventsAcrossReplicas(t *testing.T) {
	markFinished(t)
	client := fake.NewClientset(intentCM("apps", "a", "5", plainDoc))
	r1 := startKube(t, client, watch.KubeOptions{Instance: "replica-1"})
	r2 := startKube(t, client, watch.KubeOptions{Instance: "replica-2"})
	r1.next(t)
	r2.next(t)
	bad := intent.Diagnostics{diag("a", "egress.yaml", "destinations[0].host", "host is required")}
	r1.Report(bad, nil)
	r2.Report(bad, nil)
	waitEvents(t, client, "apps", "Warning InvalidIntent a@5 x1: egress.yaml: destinations[0].host: host is required")
	time.Sleep(300 * time.Millisecond)
	waitEvents(t, client, "apps", "Warning InvalidIntent a@5 x1: egress.yaml: destinations[0].host: host is required")
	r3 := startKube(t, client, watch.KubeOptions{Instance: "replica-3"})
	r3.next(t)
	r3.Report(bad, nil)
	time.Sleep(300 * time.Millisecond)
	waitEvents(t, client, "apps", "Warning InvalidIntent a@5 x1: egress.yaml: destinations[0].host: host is required")
}

// While the API server fails every list and watch, the source passes on
// nothing (never an empty set); once it answers again, an unchanged relist
// passes on nothing, and a change made meanwhile is passed on once.
func TestKubeSurvivesAPIErrors(t *testing.T) {
	markFinished(t)
	client := fake.NewClientset(intentCM("apps", "a", "1", plainDoc), intentCM("apps", "partner", "1", tlsDoc),
		secret("apps", "client-cert", "v1"), secret("apps", "partner-ca", "ca"))
	var failing atomic.Bool
	var mu sync.Mutex
	var watchers []apiwatch.Interface
	down := errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	client.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing.Load() {
			return true, nil, down
		}
		return false, nil, nil
	})
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, apiwatch.Interface, error) {
		if failing.Load() {
			return true, nil, down
		}
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		mu.Lock()
		watchers = append(watchers, w)
		mu.Unlock()
		return true, w, err
	})
	r := startKube(t, client, watch.KubeOptions{})
	first := describe(r.next(t))

	outage := func(during func()) {
		t.Helper()
		// The API server goes away: every watch ends, every list fails.
		failing.Store(true)
		mu.Lock()
		for _, w := range watchers {
			w.Stop()
		}
		watchers = nil
		mu.Unlock()
		if during != nil {
			during()
		}
		r.quiet(t, 1500*time.Millisecond)
		failing.Store(false)
		// Back: wait until the ConfigMap informer and both Secret
		// informers watch again.
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			n := len(watchers)
			mu.Unlock()
			if n >= 3 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("informers did not watch again (%d watches)", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	outage(nil)
	r.quiet(t, 500*time.Millisecond)

	outage(func() {
		// Written to storage while the source cannot see it.
		gvr := corev1.SchemeGroupVersion.WithResource("secrets")
		if err := client.Tracker().Update(gvr, secret("apps", "client-cert", "v2"), "apps"); err != nil {
			t.Fatal(err)
		}
	})
	got := describe(r.next(t))
	if want := strings.Replace(first, "client-cert=v1", "client-cert=v2", 1); got != want {
		t.Fatalf("after reconnection: %s, want %s", got, want)
	}
	r.quiet(t, 500*time.Millisecond)
}
