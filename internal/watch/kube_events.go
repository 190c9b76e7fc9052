package watch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Event reasons written on intent ConfigMaps.
const (
	// ReasonAccepted (Normal): the ConfigMap's current version is served.
	ReasonAccepted = "IntentAccepted"
	// ReasonInvalid (Warning): the ConfigMap does not parse or validate; its
	// last valid version, if any, keeps being served.
	ReasonInvalid = "InvalidIntent"
	// ReasonConflict (Warning): a destination port is already declared by
	// an older ConfigMap, which the message names.
	ReasonConflict = "IntentConflict"
	// ReasonSecret (Warning): a referenced Secret is missing or malformed;
	// only the destinations that need it are held back.
	ReasonSecret = "SecretNotUsable"
	// ReasonWarning (Warning): the ConfigMap is served, with warnings (an
	// ignored key, insecureSkipVerify, the last valid version kept).
	ReasonWarning = "IntentWarning"

	// EventComponent is the Events' source component and reporting
	// controller.
	EventComponent = "egress-xds"

	maxEventMessage = 1024 // the API server's limit for an Event's message
)

// eventReporter writes Events on intent ConfigMaps from the control
// plane's reports: a Warning per kind of problem, a Normal IntentAccepted
// when the current version is served.
//
// Deduplication: per ConfigMap it remembers the UID, resourceVersion and
// the Events already written for them, and writes only Events that are new
// for that version: a resync, a relist, or a rebuild caused by another
// ConfigMap writes nothing. Event names are derived from the ConfigMap's
// UID, resourceVersion, reason and message, so another replica (or this one
// after a restart) writing the same Event gets AlreadyExists and stays
// silent instead of adding a duplicate. An Event this process wrote and
// that recurs (a ConfigMap losing a conflict, winning, losing again at the
// same version) is patched: count and lastTimestamp.
//
// Writes happen on the reporter's goroutine; failures (API server
// unreachable) are retried with rate-limited backoff, latest report first:
// only what the latest report says is written.
type eventReporter struct {
	client   kubernetes.Interface
	instance string
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
	now      func() time.Time

	mu     sync.Mutex
	latest *pendingReport

	// Only the reporter's goroutine uses these.
	written map[string]*writtenEvents // by ConfigMap namespace/name
	counts  map[string]int32          // by Event namespace/name: occurrences this process wrote
}

type pendingReport struct {
	cms      map[string]*corev1.ConfigMap
	diags    intent.Diagnostics
	accepted map[string]bool
}

// writtenEvents are the Events written for one version of a ConfigMap.
type writtenEvents struct {
	uid     types.UID
	rv      string
	current map[string]bool // event keys of the latest outcome
}

// wantedEvent is one Event the latest report calls for.
type wantedEvent struct {
	cm      *corev1.ConfigMap
	typ     string
	reason  string
	message string
}

func (e wantedEvent) key() string { return e.typ + "\x00" + e.reason + "\x00" + e.message }

func newEventReporter(client kubernetes.Interface, instance string, log *slog.Logger) *eventReporter {
	return &eventReporter{
		client: client, instance: instance, log: log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "egress-xds-events"}),
		now:     time.Now,
		written: map[string]*writtenEvents{},
		counts:  map[string]int32{},
	}
}

// report records the latest outcome; cms are the ConfigMap versions it is
// about (the last input passed on).
func (r *eventReporter) report(cms map[string]*corev1.ConfigMap, diags intent.Diagnostics, accepted []string) {
	acc := make(map[string]bool, len(accepted))
	for _, a := range accepted {
		acc[a] = true
	}
	r.mu.Lock()
	r.latest = &pendingReport{cms: cms, diags: diags, accepted: acc}
	r.mu.Unlock()
	r.queue.Add(syncKey)
}

func (r *eventReporter) shutDown() { r.queue.ShutDown() }

func (r *eventReporter) run(ctx context.Context) {
	for {
		key, quit := r.queue.Get()
		if quit {
			return
		}
		if r.write(ctx) {
			r.queue.Forget(key)
		} else {
			r.queue.AddRateLimited(key)
		}
		r.queue.Done(key)
	}
}

// write writes the Events the latest report calls for that were not
// written yet; false: some failed and are to be retried.
func (r *eventReporter) write(ctx context.Context) bool {
	r.mu.Lock()
	rep := r.latest
	r.mu.Unlock()
	if rep == nil {
		return true
	}
	wanted := wantedEvents(rep)
	byCM := map[string][]wantedEvent{}
	for _, e := range wanted {
		byCM[cmKey(e.cm)] = append(byCM[cmKey(e.cm)], e)
	}
	for key := range r.written {
		if rep.cms[key] == nil {
			delete(r.written, key) // deleted ConfigMap
		}
	}
	ok := true
	keys := make([]string, 0, len(byCM))
	for k := range byCM {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		events := byCM[key]
		cm := events[0].cm
		w := r.written[key]
		if w == nil || w.uid != cm.UID || w.rv != cm.ResourceVersion {
			w = &writtenEvents{uid: cm.UID, rv: cm.ResourceVersion, current: map[string]bool{}}
			r.written[key] = w
		}
		next := map[string]bool{}
		for _, e := range events {
			next[e.key()] = true
			if w.current[e.key()] {
				continue // already told, for this version and outcome
			}
			if err := r.emit(ctx, e); err != nil {
				if ctx.Err() != nil {
					return true
				}
				r.log.Warn("kubernetes source: cannot write Event, will retry", "configmap", key, "reason", e.reason, "error", err)
				ok = false
				next[e.key()] = false
				continue
			}
		}
		for k, done := range next {
			if !done {
				delete(next, k)
			}
		}
		w.current = next
	}
	return ok
}

// wantedEvents turns a report into Events, per ConfigMap: one Warning per
// reason of its errors, one IntentWarning for its warnings, and
// IntentAccepted when its current version is served without errors.
func wantedEvents(rep *pendingReport) []wantedEvent {
	type lines struct{ errs, warns map[string][]string }
	per := map[string]*lines{}
	get := func(key string) *lines {
		if per[key] == nil {
			per[key] = &lines{errs: map[string][]string{}, warns: map[string][]string{}}
		}
		return per[key]
	}
	for _, d := range rep.diags {
		if d.Origin.File != "" || d.Origin.Name == "" {
			continue
		}
		key := d.Origin.ConfigMap()
		if rep.cms[key] == nil {
			continue
		}
		l := get(key)
		text := diagText(d)
		if d.Severity == intent.SeverityWarning {
			l.warns[ReasonWarning] = append(l.warns[ReasonWarning], text)
			continue
		}
		reason := diagReason(d)
		l.errs[reason] = append(l.errs[reason], text)
	}
	var out []wantedEvent
	keys := make([]string, 0, len(rep.cms))
	for k := range rep.cms {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		cm := rep.cms[key]
		l := per[key]
		if l == nil {
			l = &lines{}
		}
		for _, reason := range sortedKeys(l.errs) {
			out = append(out, wantedEvent{cm: cm, typ: corev1.EventTypeWarning, reason: reason, message: joinMessage(l.errs[reason])})
		}
		for _, reason := range sortedKeys(l.warns) {
			out = append(out, wantedEvent{cm: cm, typ: corev1.EventTypeWarning, reason: reason, message: joinMessage(l.warns[reason])})
		}
		if len(l.errs) == 0 && rep.accepted[key] {
			out = append(out, wantedEvent{cm: cm, typ: corev1.EventTypeNormal, reason: ReasonAccepted,
				message: fmt.Sprintf("intent accepted: resourceVersion %s is served to the gateways", cm.ResourceVersion)})
		}
	}
	return out
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// diagReason classifies an error diagnostic.
func diagReason(d intent.Diagnostic) string {
	switch {
	case strings.HasSuffix(d.Path, ".secret") && strings.HasPrefix(d.Message, "Secret "):
		return ReasonSecret
	case intent.IsConflict(d):
		return ReasonConflict
	}
	return ReasonInvalid
}

// diagText is a diagnostic without its ConfigMap (the Event is on it):
// "egress.yaml: destinations[2].ports[0].number: 70000 is not a valid port".
func diagText(d intent.Diagnostic) string {
	var b strings.Builder
	if d.Origin.Key != "" {
		b.WriteString(d.Origin.Key)
		b.WriteString(": ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// joinMessage joins problems into one Event message within the API's
// size limit, saying how many did not fit.
func joinMessage(lines []string) string {
	var b strings.Builder
	for i, l := range lines {
		sep := ""
		if i > 0 {
			sep = "; "
		}
		more := ""
		if rest := len(lines) - i - 1; rest > 0 {
			more = fmt.Sprintf("; and %d more (see /debug/config)", rest)
		}
		if b.Len()+len(sep)+len(l)+len(more) > maxEventMessage {
			if i == 0 {
				return truncate(l, maxEventMessage-len(more)) + more
			}
			fmt.Fprintf(&b, "; and %d more (see /debug/config)", len(lines)-i)
			return truncate(b.String(), maxEventMessage)
		}
		b.WriteString(sep)
		b.WriteString(l)
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < 3 {
		return s[:n]
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}

// eventName is deterministic: the same ConfigMap version, reason and
// message give the same name on every replica and after restarts.
func eventName(e wantedEvent) string {
	h := sha256.Sum256([]byte(string(e.cm.UID) + "\x00" + e.cm.ResourceVersion + "\x00" + e.key()))
	suffix := "." + hex.EncodeToString(h[:8])
	name := e.cm.Name
	if max := 253 - len(suffix); len(name) > max {
		name = name[:max]
	}
	return name + suffix
}

// emit creates the Event, or patches its count when this process wrote
// it before (the outcome recurs); AlreadyExists for an Event this process
// never wrote means another replica wrote it: nothing to do.
func (r *eventReporter) emit(ctx context.Context, e wantedEvent) error {
	ns := e.cm.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	name := eventName(e)
	now := metav1.NewTime(r.now())
	id := ns + "/" + name
	if n := r.counts[id]; n > 0 {
		patch, _ := json.Marshal(map[string]any{"count": n + 1, "lastTimestamp": now})
		_, err := r.client.CoreV1().Events(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		if err == nil {
			r.counts[id] = n + 1
			r.logEvent(e, "repeated")
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		// Expired (Events live an hour by default): write it again.
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		InvolvedObject: corev1.ObjectReference{
			Kind: "ConfigMap", APIVersion: "v1", Namespace: ns, Name: e.cm.Name,
			UID: e.cm.UID, ResourceVersion: e.cm.ResourceVersion,
		},
		Reason: e.reason, Message: e.message, Type: e.typ,
		Source:         corev1.EventSource{Component: EventComponent, Host: r.instance},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "egress-xds.io/xds-server", ReportingInstance: truncate(r.instance, 128),
		Action: "Serve",
	}
	_, err := r.client.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{})
	switch {
	case err == nil:
		r.counts[id] = 1
		r.logEvent(e, "written")
	case apierrors.IsAlreadyExists(err):
		// Written by another replica, or by this one before a restart.
		r.counts[id] = 1
		r.log.Debug("kubernetes source: Event already written", "configmap", cmKey(e.cm), "reason", e.reason)
	default:
		return err
	}
	return nil
}

func (r *eventReporter) logEvent(e wantedEvent, what string) {
	r.log.Debug("kubernetes source: Event "+what, "configmap", cmKey(e.cm), "type", e.typ, "reason", e.reason, "message", e.message)
}
