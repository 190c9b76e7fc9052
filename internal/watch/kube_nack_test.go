package watch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/egress-xds/egress-xds/internal/watch"
)

// A NACK traced to a ConfigMap becomes one Warning Event on it, however
// many gateways reject the same version.
func TestRejectionBecomesOneEvent(t *testing.T) {
	client := fake.NewClientset(intentCM("apps", "a", "1", plainDoc))
	r := startKube(t, client, watch.KubeOptions{})
	r.next(t)
	rej := watch.Rejection{ConfigMaps: []string{"apps/a", "apps/unknown"}, Group: "egress-gateway",
		TypeURL: "type.googleapis.com/envoy.config.listener.v3.Listener", Version: "v1", Error: "duplicate filter chain match"}
	for i := 0; i < 3; i++ { // three gateways of the group
		r.ReportRejection(rej)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := client.CoreV1().Events("apps").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got []corev1.Event
		for _, e := range evs.Items {
			if e.Reason == watch.ReasonRejected {
				got = append(got, e)
			}
		}
		if len(got) == 1 {
			e := got[0]
			if e.Type != corev1.EventTypeWarning || e.InvolvedObject.Name != "a" ||
				!strings.Contains(e.Message, `group "egress-gateway" rejected Listener version v1: duplicate filter chain match`) {
				t.Fatalf("event: %+v", e)
			}
			return
		}
		if len(got) > 1 || time.Now().After(deadline) {
			t.Fatalf("want one rejection Event, got %d", len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
