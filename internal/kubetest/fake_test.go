package kubetest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/egress-xds/egress-xds/internal/kubetest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// The Kubernetes mode wired through server.Start, on the fake clientset
// (runs without the API server binaries): /readyz waits for the informers,
// then create, update and delete reach a gateway, and Events are written.
func TestServerKubernetesModeOnFakeClient(t *testing.T) {
	client := fake.NewClientset(intentCM("apps", "egress", github))
	release := make(chan struct{})
	client.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release // the API server answers late
		return false, nil, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Config{
		Kubernetes:    &watch.KubeOptions{Client: client, Instance: "fake"},
		XDSAddress:    "127.0.0.1:0",
		AdminAddress:  "127.0.0.1:0",
		Translate:     translate.Options{ForwardProxyPort: 3128},
		ShutdownGrace: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Error(err)
		}
	}()
	defer close(release)
	gw := dial(t, srv, "gw")

	time.Sleep(300 * time.Millisecond)
	if code := readyz(t, srv); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d before the informers synced", code)
	}
	release <- struct{}{}
	waitClient(t, gw, 20*time.Second, hasClusters("apps", "apps/egress/github/443"), "after sync")
	if code := readyz(t, srv); code != http.StatusOK {
		t.Fatalf("/readyz %d after the first snapshot", code)
	}
	go func() {
		for range release {
		}
	}()

	cm := intentCM("apps", "egress", github2)
	cm.ResourceVersion = "2"
	if _, err := client.CoreV1().ConfigMaps("apps").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitClient(t, gw, 20*time.Second, hasClusters("apps", "apps/egress/docs/443", "apps/egress/github/443"), "after update")
	if err := kubetest.WaitFor(timeout(t, 20*time.Second), func() (bool, error) {
		l, err := client.Tracker().List(corev1.SchemeGroupVersion.WithResource("events"), corev1.SchemeGroupVersion.WithKind("Event"), "apps")
		return err == nil && len(l.(*corev1.EventList).Items) == 2, err
	}); err != nil {
		t.Fatalf("IntentAccepted events: %v", err)
	}
	if err := client.CoreV1().ConfigMaps("apps").Delete(ctx, "egress", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitClient(t, gw, 20*time.Second, hasClusters("apps"), "after delete")
}
