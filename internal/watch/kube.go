package watch

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Defaults of the Kubernetes source.
const (
	// DefaultKubeResync is the informers' resync period: a periodic
	// re-examination of the cached objects (no API request). Nothing is
	// sent to the gateways or reported again unless something changed.
	DefaultKubeResync = 10 * time.Minute
	// DefaultSecretSyncTimeout bounds how long an update waits for the
	// first read of a newly referenced Secret. Past it the update goes on
	// without the Secret, and the destination that needs it is held back
	// and reported, until the Secret can be read.
	DefaultSecretSyncTimeout = 10 * time.Second
	// syncKey is the only key of the source's work queue: every change
	// asks for one recomputation of the whole input, so a burst of changes
	// collapses into one update.
	syncKey = "sync"
)

// RBACRule is one permission the Kubernetes source needs.
type RBACRule struct {
	APIGroup string // "" is the core group
	Resource string
	Verbs    []string
}

// RequiredRBAC is exactly what the Kubernetes source does with the API
// server, and so what its ServiceAccount must be granted (deploy/ grants it
// and its test compares): list and watch of the intent ConfigMaps (label
// selected) and of the referenced Secrets (name selected), and create and
// patch of Events (patch when an Event recurs). Nothing is ever read with a
// GET, updated or deleted.
var RequiredRBAC = []RBACRule{
	{APIGroup: "", Resource: "configmaps", Verbs: []string{"list", "watch"}},
	{APIGroup: "", Resource: "secrets", Verbs: []string{"list", "watch"}},
	{APIGroup: "", Resource: "events", Verbs: []string{"create", "patch"}},
}

// KubeOptions configure the Kubernetes source.
type KubeOptions struct {
	// Kubeconfig is a kubeconfig file. Empty: $KUBECONFIG or
	// ~/.kube/config when present, else the in-cluster configuration (the
	// pod's ServiceAccount).
	Kubeconfig string
	// Namespaces to watch; empty: every namespace.
	Namespaces []string
	// Client, when set, is used instead of building one (tests).
	Client kubernetes.Interface
	// Instance names this replica in the Events it writes
	// (reportingInstance, source.host); default: the host name, which is
	// the pod name in a cluster.
	Instance string
	// Resync is the informers' resync period (DefaultKubeResync when 0).
	Resync time.Duration
	// SecretSyncTimeout: see DefaultSecretSyncTimeout.
	SecretSyncTimeout time.Duration
}

// KubeState is what the Kubernetes source currently holds: the complete
// set of intent ConfigMaps and of the Secrets they reference. Objects come
// from the informers' caches and must not be modified.
type KubeState struct {
	ConfigMaps []*corev1.ConfigMap // sorted by namespace/name
	Secrets    []corev1.Secret     // sorted by namespace/name
}

// Kube is the Kubernetes source: it follows the intent ConfigMaps and the
// Secrets they reference through the API server, and reports what the
// control plane made of them as Events on the ConfigMaps.
//
// ConfigMaps are followed with shared informers selecting the label
// egress-xds.io/intent=true, in every namespace or in each configured one.
//
// Secrets are followed by name, not by label and never all of them: the
// source reads the Secret names each intent references
// (destinations[].tls.clientCertificate.secret and .caCertificates.secret,
// in the ConfigMap's namespace), from the ConfigMap's current version and
// from its last accepted one (which the gateways may still be served), and
// runs one small informer per referenced Secret whose list and watch carry
// the field selector metadata.name=NAME. This is the least-privilege
// design:
//   - only the Secrets intents reference are ever transferred or held in
//     memory (with their managedFields and last-applied annotation
//     dropped); a label-selected informer would hold whatever carries the
//     label, and needs list on every Secret anyway, since RBAC cannot
//     restrict by label;
//   - Secrets need no label, so cert-manager or any other issuer's Secrets
//     work as they are;
//   - because every list and watch names its Secret, RBAC can be narrowed
//     further than deploy/ does: a namespaced Role with resourceNames
//     listing the allowed Secrets authorizes exactly those (the API server
//     authorizes a list or watch against resourceNames when it selects
//     metadata.name), and a reference to any other Secret is reported as
//     not found on its ConfigMap.
//
// Every change (an informer event, a newly accepted intent changing the
// referenced Secrets) adds the one key of a rate-limited work queue, so a
// burst collapses into one recomputation of the complete input, which is
// passed on only when its content differs from the last one passed (a
// resync, a relist after a reconnection or an edit of an annotation sends
// nothing). Nothing is passed before the ConfigMap informers have synced
// and the referenced Secrets have been read (or SecretSyncTimeout passed).
//
// When the API server cannot be reached the informers keep their caches
// and retry with backoff; the control plane keeps serving the last input,
// and after the reconnection the informers' relist brings any change made
// meanwhile. A deletion is only ever seen as a deletion event or an object
// missing from a successful relist, never inferred from a failure.
type Kube struct {
	client   kubernetes.Interface
	opts     KubeOptions
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
	events   *eventReporter
	synced   chan struct{}
	syncOnce sync.Once

	nackMu      sync.Mutex
	nackWritten map[string]bool // rejection Events written or being written, by name

	cmListers []cache.Indexer // one per watched namespace (or all)
	cmSynced  []cache.InformerSynced

	mu       sync.Mutex
	runCtx   context.Context
	secrets  map[SecretRef]*secretWatch
	refs     map[string]refsCache          // by ConfigMap namespace/name: refs of its current content
	accepted map[string]map[SecretRef]bool // by ConfigMap: refs of its last accepted version
	sent     map[string]*corev1.ConfigMap  // by ConfigMap: the versions last passed on
	lastHash [32]byte
	hasSent  bool
	follow   []SecretRef // followed whatever the intents reference (Follow)
}

// Follow makes the source follow Secrets that no intent references but
// the server's own settings name (the mesh certificates). Call it before
// Run.
func (k *Kube) Follow(refs ...SecretRef) {
	k.mu.Lock()
	k.follow = append(k.follow, refs...)
	k.mu.Unlock()
}

// SecretRef names a Secret the source follows.
type SecretRef struct{ Namespace, Name string }

func (r SecretRef) String() string { return r.Namespace + "/" + r.Name }

// refsCache holds the Secret references of one ConfigMap content.
type refsCache struct {
	hash [32]byte
	refs map[SecretRef]bool
}

// secretWatch is the informer of one referenced Secret.
type secretWatch struct {
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	started  time.Time
	reported bool // the wait for its first read was given up, and logged
	mu       sync.Mutex
	lastErr  error
}

func (w *secretWatch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// NewKube returns the Kubernetes source. It builds the API client from
// opts (see KubeOptions.Kubeconfig) unless opts.Client is set. log may be
// nil.
func NewKube(opts KubeOptions, log *slog.Logger) (*Kube, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Resync == 0 {
		opts.Resync = DefaultKubeResync
	}
	if opts.SecretSyncTimeout == 0 {
		opts.SecretSyncTimeout = DefaultSecretSyncTimeout
	}
	if opts.Instance == "" {
		opts.Instance, _ = os.Hostname()
	}
	opts.Namespaces = cleanNamespaces(opts.Namespaces)
	client := opts.Client
	if client == nil {
		cfg, err := RESTConfig(opts.Kubeconfig)
		if err != nil {
			return nil, err
		}
		client, err = kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
	}
	k := &Kube{
		client: client, opts: opts, log: log, nackWritten: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "egress-xds-kube-source"}),
		synced:   make(chan struct{}),
		secrets:  map[SecretRef]*secretWatch{},
		refs:     map[string]refsCache{},
		accepted: map[string]map[SecretRef]bool{},
		sent:     map[string]*corev1.ConfigMap{},
	}
	k.events = newEventReporter(client, opts.Instance, log)
	return k, nil
}

// RESTConfig loads the API client configuration: the kubeconfig file when
// given, else $KUBECONFIG or ~/.kube/config when present, else the
// in-cluster configuration.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		if kubeconfig == "" {
			return nil, fmt.Errorf("kubernetes: no kubeconfig given or found, and not running in a cluster: %w", err)
		}
		return nil, fmt.Errorf("kubernetes: kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.UserAgent = "egress-xds"
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 20, 40
	}
	return cfg, nil
}

func cleanNamespaces(ns []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range ns {
		n = strings.TrimSpace(n)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Description names what the source watches, e.g. for /debug/config.
func (k *Kube) Description() string {
	if len(k.opts.Namespaces) == 0 {
		return "kubernetes (all namespaces)"
	}
	return "kubernetes (namespaces " + strings.Join(k.opts.Namespaces, ",") + ")"
}

// Synced is closed once the informers have synced and the first complete
// input has been passed on.
func (k *Kube) Synced() <-chan struct{} { return k.synced }

// Run starts the informers, waits for the ConfigMaps' caches to sync,
// calls onChange with the complete current state, and again after every
// change of it, until ctx is done. Calls come from one goroutine, one at a
// time. Run returns nil when ctx is done; a Kube runs once.
func (k *Kube) Run(ctx context.Context, onChange func(KubeState)) error {
	k.mu.Lock()
	k.runCtx = ctx
	k.mu.Unlock()
	defer k.queue.ShutDown()
	defer k.events.shutDown()

	namespaces := k.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	selector := labels.Set{intent.LabelKey: "true"}.AsSelector().String()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.queue.Add(syncKey) },
		UpdateFunc: func(any, any) { k.queue.Add(syncKey) },
		DeleteFunc: func(any) { k.queue.Add(syncKey) },
	}
	var factories []informers.SharedInformerFactory
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(k.client, k.opts.Resync,
			informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }),
			informers.WithTransform(stripMetadata))
		inf := f.Core().V1().ConfigMaps().Informer()
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("kubernetes: configmap informer: %w", err)
		}
		where := ns
		if where == "" {
			where = "all namespaces"
		}
		_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			k.watchError("configmaps in "+where, err)
		})
		k.cmListers = append(k.cmListers, inf.GetIndexer())
		k.cmSynced = append(k.cmSynced, inf.HasSynced)
		factories = append(factories, f)
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range factories {
			f.Shutdown()
		}
	}()

	k.log.Info("kubernetes source: waiting for the ConfigMap informers to sync", "source", k.Description())
	if !cache.WaitForCacheSync(ctx.Done(), k.cmSynced...) {
		return nil // ctx done
	}
	k.log.Info("kubernetes source: ConfigMap informers synced")

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		k.events.run(ctx)
	}()
	go func() {
		defer wg.Done()
		for k.processNext(onChange) {
		}
	}()
	k.queue.Add(syncKey)
	<-ctx.Done()
	k.queue.ShutDown()
	k.events.shutDown()
	wg.Wait()
	k.mu.Lock()
	for ref, w := range k.secrets {
		w.cancel()
		delete(k.secrets, ref)
	}
	k.mu.Unlock()
	return nil
}

func (k *Kube) processNext(onChange func(KubeState)) bool {
	key, quit := k.queue.Get()
	if quit {
		return false
	}
	defer k.queue.Done(key)
	if k.sync(onChange) {
		k.queue.Forget(key)
	} else {
		k.queue.AddRateLimited(key)
	}
	return true
}

// watchError logs an informer's failed list or watch. The informer keeps
// its cache and retries with backoff by itself.
func (k *Kube) watchError(what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	level := slog.LevelWarn
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		level = slog.LevelDebug // routine: the informer watches again or relists
	}
	k.log.Log(context.Background(), level, "kubernetes source: list/watch failed, retrying; the last known state keeps being served",
		"watch", what, "error", err)
}

// sync recomputes the input and passes it on when it changed. It returns
// false to be retried (rate limited): a referenced Secret has not been
// read yet.
func (k *Kube) sync(onChange func(KubeState)) bool {
	k.mu.Lock()
	var cms []*corev1.ConfigMap
	for _, idx := range k.cmListers {
		for _, o := range idx.List() {
			if cm, ok := o.(*corev1.ConfigMap); ok && cm.Labels[intent.LabelKey] == "true" {
				cms = append(cms, cm)
			}
		}
	}
	sort.Slice(cms, func(i, j int) bool { return cmKey(cms[i]) < cmKey(cms[j]) })

	// The Secrets to follow: those the current and last accepted versions
	// of every present ConfigMap reference.
	want := map[SecretRef]bool{}
	for _, r := range k.follow {
		want[r] = true
	}
	present := map[string]bool{}
	for _, cm := range cms {
		key := cmKey(cm)
		present[key] = true
		for r := range k.refsOf(cm) {
			want[r] = true
		}
		for r := range k.accepted[key] {
			want[r] = true
		}
	}
	for key := range k.refs {
		if !present[key] {
			delete(k.refs, key)
			delete(k.accepted, key)
		}
	}
	k.reconcileSecretWatches(want)

	// Wait (retrying, rate limited) for Secrets just referenced to be read,
	// but never longer than SecretSyncTimeout after their informer started:
	// one unreadable Secret must not hold every later change back.
	waiting, givenUp := false, []SecretRef(nil)
	for ref := range want {
		w := k.secrets[ref]
		if w.informer.HasSynced() {
			continue
		}
		if time.Since(w.started) < k.opts.SecretSyncTimeout {
			waiting = true
		} else if !w.reported {
			w.reported = true
			givenUp = append(givenUp, ref)
		}
	}
	if waiting {
		k.mu.Unlock()
		return false
	}
	sort.Slice(givenUp, func(i, j int) bool { return givenUp[i].String() < givenUp[j].String() })
	for _, ref := range givenUp {
		k.log.Warn("kubernetes source: referenced Secret cannot be read, going on without it (its destination is held back and reported)",
			"secret", ref.String(), "waited", k.opts.SecretSyncTimeout, "error", k.secrets[ref].err())
	}

	var secrets []corev1.Secret
	for ref := range want {
		o, ok, _ := k.secrets[ref].informer.GetStore().GetByKey(ref.String())
		if s, isSecret := o.(*corev1.Secret); ok && isSecret && s.Name == ref.Name && s.Namespace == ref.Namespace {
			secrets = append(secrets, *s)
		}
	}
	sort.Slice(secrets, func(i, j int) bool {
		return secrets[i].Namespace+"/"+secrets[i].Name < secrets[j].Namespace+"/"+secrets[j].Name
	})

	h := stateHash(cms, secrets)
	if k.hasSent && h == k.lastHash {
		k.mu.Unlock()
		k.log.Debug("kubernetes source: input unchanged, nothing to pass on")
		return true
	}
	k.lastHash, k.hasSent = h, true
	k.sent = make(map[string]*corev1.ConfigMap, len(cms))
	for _, cm := range cms {
		k.sent[cmKey(cm)] = cm
	}
	k.mu.Unlock()

	k.log.Debug("kubernetes source: input changed", "configmaps", len(cms), "secrets", len(secrets))
	// Synced first: whoever sees the first state sees the source synced.
	k.syncOnce.Do(func() { close(k.synced) })
	onChange(KubeState{ConfigMaps: cms, Secrets: secrets})
	return true
}

// refsOf returns the Secret references of a ConfigMap's current content,
// cached by content. Called with k.mu held.
func (k *Kube) refsOf(cm *corev1.ConfigMap) map[SecretRef]bool {
	key := cmKey(cm)
	h := dataHash(cm.Data)
	if c, ok := k.refs[key]; ok && c.hash == h {
		return c.refs
	}
	refs := secretRefs(cm)
	k.refs[key] = refsCache{hash: h, refs: refs}
	return refs
}

// reconcileSecretWatches starts an informer for every wanted Secret not
// yet followed and stops those no longer wanted. Called with k.mu held.
func (k *Kube) reconcileSecretWatches(want map[SecretRef]bool) {
	for ref, w := range k.secrets {
		if !want[ref] {
			w.cancel()
			delete(k.secrets, ref)
			k.log.Debug("kubernetes source: Secret no longer referenced, stopped following it", "secret", ref.String())
		}
	}
	for ref := range want {
		if _, ok := k.secrets[ref]; ok {
			continue
		}
		k.secrets[ref] = k.startSecretWatch(ref)
		k.log.Debug("kubernetes source: following referenced Secret", "secret", ref.String())
	}
}

// startSecretWatch runs an informer on one Secret: list and watch in its
// namespace with the field selector metadata.name=NAME.
func (k *Kube) startSecretWatch(ref SecretRef) *secretWatch {
	byName := fields.OneTermEqualSelector("metadata.name", ref.Name).String()
	secrets := k.client.CoreV1().Secrets(ref.Namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return secrets.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return secrets.Watch(ctx, o)
		},
	}
	// As the generated informers do: a client that cannot stream lists
	// (the fake clientset) is listed the classic way.
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, k.client), &corev1.Secret{}, cache.SharedIndexInformerOptions{
		ResyncPeriod:      0,
		ObjectDescription: "secret " + ref.String(),
	})
	_ = inf.SetTransform(stripMetadata)
	w := &secretWatch{informer: inf, started: time.Now()}
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		w.mu.Lock()
		w.lastErr = err
		w.mu.Unlock()
		k.watchError("secret "+ref.String(), err)
	})
	enqueue := func() { k.queue.Add(syncKey) }
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { enqueue() },
		UpdateFunc: func(any, any) { enqueue() },
		DeleteFunc: func(any) { enqueue() },
	})
	ctx, cancel := context.WithCancel(k.runCtx)
	w.cancel = cancel
	go inf.RunWithContext(ctx)
	return w
}

// Report tells the source what the control plane made of its last input:
// every problem, and the ConfigMaps (namespace/name) whose current version
// is served. It is meant for snapshot.Builder.OnReport: it only records
// the report and returns; Events are written by the source's own goroutine.
//
// The report is taken to be about the last input passed on (the builder
// does not say which input a report is about): should a ConfigMap change
// again while the previous change is being built, its Event may name the
// newer resourceVersion, and the next report corrects it.
func (k *Kube) Report(diags intent.Diagnostics, accepted []string) {
	k.mu.Lock()
	sent := k.sent
	changed := false
	for _, key := range accepted {
		cm := sent[key]
		if cm == nil {
			continue
		}
		refs := k.refsOf(cm)
		if !sameRefs(k.accepted[key], refs) {
			k.accepted[key] = refs
			changed = true
		}
	}
	k.mu.Unlock()
	if changed {
		// The last accepted versions reference other Secrets: follow them
		// (and stop following those only an older version referenced).
		k.queue.Add(syncKey)
	}
	k.events.report(sent, diags, accepted)
}

func sameRefs(a, b map[SecretRef]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for r := range a {
		if !b[r] {
			return false
		}
	}
	return true
}

func cmKey(cm *corev1.ConfigMap) string { return cm.Namespace + "/" + cm.Name }

// stripMetadata drops what the source never uses from cached objects:
// managed fields, and the last-applied annotation, which repeats the whole
// object (a Secret's data included).
func stripMetadata(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a[corev1.LastAppliedConfigAnnotation] != "" {
			a2 := make(map[string]string, len(a))
			for k, v := range a {
				if k != corev1.LastAppliedConfigAnnotation {
					a2[k] = v
				}
			}
			m.SetAnnotations(a2)
		}
	}
	return obj, nil
}

// secretRefs lists the Secrets a ConfigMap's intent documents reference,
// read leniently: an invalid document still yields the references it
// names, so that its Secrets are followed by the time it is fixed.
func secretRefs(cm *corev1.ConfigMap) map[SecretRef]bool {
	out := map[SecretRef]bool{}
	ns := cm.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	for key, doc := range cm.Data {
		if !intent.IsIntentKey(key) {
			continue
		}
		for _, name := range referencedSecretNames([]byte(doc)) {
			if len(validation.IsDNS1123Subdomain(name)) == 0 {
				out[SecretRef{Namespace: ns, Name: name}] = true
			}
		}
	}
	return out
}

// dataHash hashes a ConfigMap's data, keys sorted.
func dataHash(data map[string]string) [32]byte {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		writeField(h, k)
		writeField(h, data[k])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// stateHash identifies the content of an input: what the control plane
// reads of every ConfigMap and Secret.
func stateHash(cms []*corev1.ConfigMap, secrets []corev1.Secret) [32]byte {
	h := sha256.New()
	for _, cm := range cms {
		writeField(h, "cm")
		writeField(h, cm.Namespace)
		writeField(h, cm.Name)
		writeField(h, string(cm.UID))
		writeField(h, cm.CreationTimestamp.UTC().Format(time.RFC3339Nano))
		writeField(h, cm.Labels[intent.LabelKey])
		writeField(h, cm.Labels[intent.SettingsLabelKey])
		d := dataHash(cm.Data)
		h.Write(d[:])
	}
	for _, s := range secrets {
		writeField(h, "secret")
		writeField(h, s.Namespace)
		writeField(h, s.Name)
		writeField(h, string(s.UID))
		writeField(h, string(s.Type))
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			writeField(h, k)
			writeField(h, string(s.Data[k]))
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func writeField(h interface{ Write([]byte) (int, error) }, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}
