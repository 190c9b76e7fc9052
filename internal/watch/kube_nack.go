package watch

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/metrics"
)

// ReasonRejected is the Warning Event on a ConfigMap whose resources a
// gateway rejected (NACK).
const ReasonRejected = "ProxyRejectedConfig"

// Rejection is a gateway's NACK traced to the ConfigMaps whose resources
// were in the rejected response.
type Rejection struct {
	ConfigMaps []string // namespace/name
	Group      string
	TypeURL    string
	Version    string
	Error      string // Envoy's error text
}

// ReportRejection writes a Warning Event on each ConfigMap a NACK traces to,
// so that the operator who wrote it reads why Envoy refused it. The Event
// names the group, type, version and Envoy's error, not the proxy: every
// gateway of the group rejects the same version the same way, so one Event
// per ConfigMap version and rejection is written, by whichever replica is
// first (the name is derived from its content). It returns at once; the
// Events are written in the background.
func (k *Kube) ReportRejection(r Rejection) {
	k.mu.Lock()
	var cms []*corev1.ConfigMap
	for _, key := range r.ConfigMaps {
		if cm := k.sent[key]; cm != nil {
			cms = append(cms, cm)
		}
	}
	k.mu.Unlock()
	sort.Slice(cms, func(i, j int) bool { return cmKey(cms[i]) < cmKey(cms[j]) })
	msg := fmt.Sprintf("gateways of group %q rejected %s version %s: %s", r.Group, metrics.TypeLabel(r.TypeURL), r.Version, r.Error)
	for _, cm := range cms {
		e := wantedEvent{cm: cm, typ: corev1.EventTypeWarning, reason: ReasonRejected, message: truncate(msg, 1024)}
		name := eventName(e)
		k.nackMu.Lock()
		done := k.nackWritten[name]
		k.nackWritten[name] = true
		k.nackMu.Unlock()
		if done {
			continue
		}
		go k.writeRejection(e, name)
	}
}

func (k *Kube) writeRejection(e wantedEvent, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := e.cm.Namespace
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: ns, Name: e.cm.Name,
			UID: e.cm.UID, ResourceVersion: e.cm.ResourceVersion},
		Reason: e.reason, Message: e.message, Type: e.typ,
		Source:         corev1.EventSource{Component: EventComponent, Host: k.opts.Instance},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "egress-xds.io/xds-server", ReportingInstance: truncate(k.opts.Instance, 128),
		Action: "Serve",
	}
	_, err := k.client.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		k.log.Warn("kubernetes source: cannot write rejection Event", "configmap", cmKey(e.cm), "error", err)
		k.nackMu.Lock()
		delete(k.nackWritten, name) // the next NACK tries again
		k.nackMu.Unlock()
	}
}
