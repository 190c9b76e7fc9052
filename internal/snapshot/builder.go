package snapshot

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/state"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// Input is everything the sources currently hold.
type Input struct {
	ConfigMaps []compile.ConfigMap
	Secrets    []corev1.Secret
	// Diagnostics are the sources' own problems (files that do not parse).
	Diagnostics intent.Diagnostics
	// Settled says the source debounced its changes already (the folder
	// watcher waits for the folder to be quiet): the rebuild starts at
	// once instead of after Quiet. Kubernetes events come one object at a
	// time, so that source leaves it false.
	Settled bool
}

// Debounce bounds: a burst of changes gives one rebuild, started once
// changes stop for Quiet, and never later than MaxDelay after the first.
const (
	DefaultQuiet    = 20 * time.Millisecond
	DefaultMaxDelay = 250 * time.Millisecond
	// DefaultRecheckEvery: certificates are judged again at least hourly,
	// whatever happens to the wall clock.
	DefaultRecheckEvery = time.Hour
)

// Builder rebuilds every group's snapshot when the input changes or a
// proxy of a new group connects, and publishes those that pass every check.
// A group whose build fails keeps its last good snapshot.
type Builder struct {
	cache   *Cache
	opts    translate.Options
	log     *slog.Logger
	metrics *metrics.Metrics

	Quiet, MaxDelay time.Duration
	// RecheckEvery bounds how long a build's judgement of certificate
	// validity is trusted without a rebuild (the exact instants it changes
	// are rebuilt at too); Clock is the time it judges at.
	RecheckEvery time.Duration
	Clock        func() time.Time

	mu       sync.Mutex
	input    Input
	hasInput bool
	// storeMu guards store, apart from mu: a rebuild holds it only while
	// it updates the store, not while it translates, so that a Review
	// (an admission webhook) does not wait for translation, nor a
	// rebuild for reviews. Taken after mu, never before.
	storeMu sync.Mutex
	store   *compile.Store
	// diags are the problems of the last build; read without the lock,
	// which a build holds for its whole duration.
	diags atomic.Pointer[intent.Diagnostics]
	// logged are the problems logged as current, by their text: each is
	// logged when it appears and when it is fixed, not at every rebuild.
	logged  map[string]intent.Diagnostic
	trigger chan struct{}
	// settled: the pending trigger is a settled Update's (Input.Settled),
	// to be built without waiting; any other trigger clears it.
	settled  atomic.Bool
	ready    chan struct{}
	readyOne sync.Once
	reporter func(Report)
	// observed is when the oldest change not yet built was observed
	// (Update); zero when none is pending.
	observed time.Time
	// state keeps the served versions across restarts (nil: not kept)
	// in servedSet; savedGen is the store's served generation last saved;
	// mustSave: save at the next rebuild whatever changed (an upgrade).
	state      *state.Dir
	servedSet  *state.Set
	servedMeta []byte
	source     string
	savedGen   uint64
	mustSave   bool
	// saveMu orders the writes of concurrent rebuilds; writtenGen is the
	// generation last written, so an older one never overwrites it;
	// legacyLeft: the single-file record may still be there.
	saveMu     sync.Mutex
	writtenGen uint64
	served     servedEncoder // under saveMu
	legacyLeft bool          // under saveMu
	// recheckAt is when the last build's certificate judgement changes by
	// itself; certExpiry the expiry series it exported.
	recheckAt  time.Time
	certExpiry map[[2]string]bool
	// inject is set by tests only (InjectForTest, inject.go).
	inject Injection
	// caches keep, per snapshot key, what the last build translated,
	// checked and encoded, so that a build redoes only what changed.
	caches map[string]*groupCache
	// modes are the gateway groups' modes at the last build (modes.go),
	// read by the admin endpoints under modesMu.
	modesMu sync.Mutex
	modes   map[string]intent.GroupMode
}

// groupCache is what a group's next build can reuse of its last.
type groupCache struct {
	translation *translate.Cache
	encoder     *Encoder
}

// cacheOf is a group's cache; with a test's injection, which changes
// resources after translation, a fresh one that is then forgotten.
func (b *Builder) cacheOf(group string) *groupCache {
	if b.inject != nil {
		return &groupCache{encoder: NewEncoder()}
	}
	c, ok := b.caches[group]
	if !ok {
		c = &groupCache{translation: translate.NewCache(), encoder: NewEncoder()}
		if b.caches == nil {
			b.caches = map[string]*groupCache{}
		}
		b.caches[group] = c
	}
	return c
}

// SaveState restores the served versions saved in d by an earlier run of
// the same source (call it before the first rebuild), and saves them
// again after every rebuild that changed them, so that a restart never
// serves less than before it: a ConfigMap broken meanwhile, or one whose
// claims a newcomer now makes, keeps the version it had. A save writes the
// ConfigMaps that changed (served.go); the single-file record of earlier
// versions is read once and replaced.
func (b *Builder) SaveState(d *state.Dir, source string) {
	set := d.Set(servedSetName)
	rec, found, legacy, problems, err := loadServed(d, set)
	meta, _ := json.Marshal(servedMeta{Source: source}) // a string always encodes
	b.saveMu.Lock()
	// Until a save removes it, the single-file record may be there (an
	// upgrade, or a crash before its removal).
	b.legacyLeft = true
	b.saveMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state, b.servedSet, b.servedMeta, b.source = d, set, meta, source
	for _, p := range problems {
		b.log.Warn("a saved served version is unreadable, not restored", "state_dir", d.Path(), "err", p)
	}
	switch {
	case err != nil:
		b.log.Warn("saved served versions unreadable, starting without them", "state_dir", d.Path(), "err", err)
	case found && rec.Source != source:
		b.log.Warn("saved served versions are of another source, starting without them", "state_dir", d.Path(), "saved_for", rec.Source, "source", source)
	case found:
		cms := make([]compile.ConfigMap, 0, len(rec.ConfigMaps))
		for _, c := range rec.ConfigMaps {
			cms = append(cms, compile.ConfigMap{File: c.File, ConfigMap: c.ConfigMap})
		}
		b.storeMu.Lock()
		for _, d := range b.store.Restore(cms) {
			b.log.Warn("saved served version not restored", "source", d.Origin.String(), "problem", d.Message)
		}
		b.savedGen = b.store.ServedGeneration()
		b.storeMu.Unlock()
		// Upgraded: the next rebuild writes the Set, changed or not.
		b.mustSave = legacy
		upgradedFrom := ""
		if legacy {
			upgradedFrom = servedRecordName
		}
		b.log.Info("served versions restored", "state_dir", d.Path(), "configmaps", len(cms), "upgraded_from", upgradedFrom)
	}
}

// saveServed returns the write of the served versions when they changed
// since the last save (nil otherwise), to run outside the lock.
func (b *Builder) saveServed() func() {
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	if b.state == nil || (b.store.ServedGeneration() == b.savedGen && !b.mustSave) {
		return nil
	}
	b.savedGen, b.mustSave = b.store.ServedGeneration(), false
	gen := b.savedGen
	var cms []savedConfigMap
	for _, cm := range b.store.Served() {
		cms = append(cms, savedConfigMap{File: cm.File, ConfigMap: cm.ConfigMap})
	}
	d, set, meta, log := b.state, b.servedSet, b.servedMeta, b.log
	return func() {
		b.saveMu.Lock()
		defer b.saveMu.Unlock()
		if gen < b.writtenGen {
			return
		}
		b.writtenGen = gen
		entries, err := b.served.encode(cms)
		if err == nil {
			err = set.Save(meta, entries)
		}
		if err == nil && b.legacyLeft {
			if err = d.Remove(servedRecordName); err == nil {
				b.legacyLeft = false
			}
		}
		if err != nil {
			log.Error("cannot save the served versions: a restart while a ConfigMap is broken would lose what it serves", "state_dir", d.Path(), "err", err)
		}
	}
}

// Report is the outcome of a rebuild for the sources: every problem, and
// the ConfigMaps (namespace/name) whose current version is served.
type Report struct {
	Diagnostics intent.Diagnostics
	Accepted    []string
}

// OnReport sets a function called after every rebuild (from the builder's
// goroutine, outside its lock), for sources that report back to operators,
// such as Kubernetes Events.
func (b *Builder) OnReport(f func(Report)) {
	b.mu.Lock()
	b.reporter = f
	b.mu.Unlock()
}

// NewBuilder returns a builder publishing to cache. Run must be running for
// Update to take effect; Rebuild builds synchronously.
func NewBuilder(cache *Cache, opts translate.Options, m *metrics.Metrics, log *slog.Logger) *Builder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Builder{
		cache: cache, opts: opts, log: log, metrics: m,
		Quiet: DefaultQuiet, MaxDelay: DefaultMaxDelay, RecheckEvery: DefaultRecheckEvery, Clock: time.Now,
		store:   compile.NewStore(),
		trigger: make(chan struct{}, 1),
		ready:   make(chan struct{}),
	}
}

// Update replaces the input and schedules a rebuild.
func (b *Builder) Update(in Input) {
	b.mu.Lock()
	b.input, b.hasInput = in, true
	if b.observed.IsZero() {
		b.observed = time.Now()
	}
	b.settled.Store(in.Settled)
	b.mu.Unlock()
	b.signal()
}

// Trigger schedules a rebuild (a new group connected, a source changed).
func (b *Builder) Trigger() {
	b.settled.Store(false)
	b.signal()
}

func (b *Builder) signal() {
	select {
	case b.trigger <- struct{}{}:
	default:
	}
}

// Ready is closed once the first snapshot is published.
func (b *Builder) Ready() <-chan struct{} { return b.ready }

// Diagnostics returns the problems found by the last build.
func (b *Builder) Diagnostics() intent.Diagnostics {
	d := b.diags.Load()
	if d == nil {
		return nil
	}
	return append(intent.Diagnostics(nil), (*d)...)
}

// Review judges a ConfigMap as the next rebuild would if it were stored
// now (an admission webhook asks before the API server stores it): its
// own problems and its conflicts with what is served. It changes nothing.
// What is served is the store's, which a rebuild updates before it
// translates: a review during a rebuild waits only for that update, and
// judges against what that rebuild serves, the state the next one starts
// from (as it would have after waiting for the whole rebuild).
func (b *Builder) Review(cm compile.ConfigMap) intent.Diagnostics {
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	return b.store.Review(cm, b.opts.ResolveOptions())
}

// Run rebuilds after triggers, collapsing bursts, until ctx is done, and
// when time alone changes the judgement of a certificate. A rebuild that
// changes nothing pushes nothing: versions are content hashes.
func (b *Builder) Run(ctx context.Context) {
	recheck := time.NewTimer(b.RecheckEvery)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.trigger:
		case <-recheck.C:
		}
		first := time.Now()
		wait := b.Quiet
		if b.settled.Load() {
			wait = 0
		}
		quiet := time.NewTimer(wait)
	collect:
		for {
			select {
			case <-ctx.Done():
				quiet.Stop()
				return
			case <-b.trigger:
				if b.settled.Load() || time.Since(first) >= b.MaxDelay {
					break collect
				}
				quiet.Reset(min(b.Quiet, b.MaxDelay-time.Since(first)))
			case <-quiet.C:
				break collect
			}
		}
		quiet.Stop()
		b.Rebuild()
		recheck.Reset(b.untilRecheck())
	}
}

// untilRecheck is how long until the last build's certificate judgement
// changes, at most RecheckEvery.
func (b *Builder) untilRecheck() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.RecheckEvery
	if !b.recheckAt.IsZero() {
		d = min(d, max(b.recheckAt.Sub(b.Clock()), 0))
	}
	return d
}

// Rebuild parses the current input and publishes every group's snapshot:
// the groups intents name and the groups of connected proxies.
func (b *Builder) Rebuild() {
	report, f, save := b.rebuild()
	if save != nil {
		save()
	}
	if f != nil && report != nil {
		f(*report)
	}
}

func (b *Builder) rebuild() (*Report, func(Report), func()) {
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.hasInput {
		return nil, nil, nil
	}
	in := b.input
	observed := b.observed
	opts := b.opts
	opts.Now = b.Clock()
	var certs []translate.Certificate
	b.recheckAt = time.Time{}
	b.observed = time.Time{}
	b.storeMu.Lock()
	intents, diags := b.store.Update(in.ConfigMaps, b.opts.ResolveOptions())
	b.storeMu.Unlock()
	diags = append(append(intent.Diagnostics(nil), in.Diagnostics...), diags...)
	secrets := compile.Secrets(in.Secrets)
	named := map[string]bool{}
	for _, g := range intent.Groups(intents) {
		named[g] = true
	}
	b.cache.Prune(named)
	result := "unchanged"
	failed := false
	built := compile.Groups(intents, b.cache.Groups()...)
	b.recordModes(intents, built)
	for g := range b.caches {
		if !slices.Contains(built, g) {
			delete(b.caches, g)
		}
	}
	// ready is a group's snapshot that differs from the one published.
	type ready struct {
		group    string
		gs, prev *GroupSnapshot
	}
	var publish []ready
	for _, group := range built {
		gc := b.cacheOf(group)
		res, tdiags, err := compile.GroupCached(gc.translation, intents, group, secrets, opts)
		diags = append(diags, tdiags...)
		if res != nil {
			certs = append(certs, res.Certificates...)
			if r := res.RecheckAt; !r.IsZero() && (b.recheckAt.IsZero() || r.Before(b.recheckAt)) {
				b.recheckAt = r
			}
		}
		if err == nil {
			err = b.injectInto(group, res)
		}
		var gs *GroupSnapshot
		if err == nil {
			gs, err = gc.encoder.NewGroupSnapshot(res)
		}
		if err != nil {
			failed = true
			b.log.Error("snapshot not published: the group keeps its last good configuration", "group", group, "error", err)
			continue
		}
		if prev := b.cache.Snapshot(group); prev == nil || !sameVersions(prev, gs) {
			publish = append(publish, ready{group, gs, prev})
		}
	}
	// The certificates' expiry is exported before the proxies are sent
	// them: whoever sees a certificate served sees its expiry too.
	b.recordCertificates(certs)
	for _, p := range publish {
		p.gs.stampTimes(p.prev, observed, time.Now())
		// Ready before the first publish, so that a proxy that has its
		// configuration never sees the server not ready.
		b.readyOne.Do(func() { close(b.ready) })
		sent := b.cache.SetSnapshot(p.group, p.gs)
		result = "ok"
		b.recordGroup(p.group, p.gs)
		b.log.Info("snapshot published", "group", p.group, "versions", versionSummary(p.gs), "responses", sent)
	}
	if failed {
		result = "error"
	}
	diags = diags.Dedupe()
	diags.Sort()
	// Bounded, whatever the input: the log, the metrics, Events and the
	// admin endpoints list at most so many problems per ConfigMap.
	diags = diags.Capped(intent.MaxDiagnosticsPerConfigMap)
	b.diags.Store(&diags)
	b.reportDiagnostics(diags)
	if b.metrics != nil {
		b.metrics.Builds.WithLabelValues(result).Inc()
		b.metrics.BuildDuration.Observe(time.Since(start).Seconds())
		if !failed {
			b.metrics.LastBuildSuccess.SetToCurrentTime()
		}
	}
	b.readyOne.Do(func() { close(b.ready) })
	report := &Report{Diagnostics: diags}
	invalid := invalidConfigMaps(diags)
	for _, in := range intents {
		if !invalid[[2]string{in.Origin.Namespace, in.Origin.Name}] {
			report.Accepted = append(report.Accepted, in.Origin.ConfigMap())
		}
	}
	return report, b.reporter, b.saveServed()
}

// invalidConfigMaps are the ConfigMaps (namespace, name) with an error:
// their intents are served only as their last good versions.
func invalidConfigMaps(diags intent.Diagnostics) map[[2]string]bool {
	out := map[[2]string]bool{}
	for _, d := range diags {
		if d.Severity == intent.SeverityError {
			out[[2]string{d.Origin.Namespace, d.Origin.Name}] = true
		}
	}
	return out
}

func (b *Builder) recordGroup(group string, gs *GroupSnapshot) {
	if b.metrics == nil {
		return
	}
	for _, typ := range gs.TypeURLs() {
		ts := gs.Type(typ)
		label := metrics.TypeLabel(typ)
		b.metrics.GroupVersion.DeletePartialMatch(map[string]string{"group": group, "type": label})
		b.metrics.GroupVersion.WithLabelValues(group, label, ts.Version).Set(1)
		b.metrics.GroupResources.WithLabelValues(group, label).Set(float64(len(ts.Names)))
	}
}

// reportDiagnostics logs each problem once when it appears and once when
// it is fixed (not every current problem at every rebuild: /debug/config
// lists them), and exports their counts.
func (b *Builder) reportDiagnostics(diags intent.Diagnostics) {
	if b.metrics != nil {
		errs, warns := 0, 0
		invalid := map[string]bool{}
		for _, d := range diags {
			e, w := d.Counts()
			errs, warns = errs+e, warns+w
			if e > 0 {
				invalid[d.Origin.File+"|"+d.Origin.ConfigMap()] = true
			}
		}
		b.metrics.Diagnostics.WithLabelValues("error").Set(float64(errs))
		b.metrics.Diagnostics.WithLabelValues("warning").Set(float64(warns))
		b.metrics.InvalidSources.Set(float64(len(invalid)))
	}
	current := make(map[string]intent.Diagnostic, len(diags))
	var appeared []intent.Diagnostic
	for _, d := range diags {
		k := d.Error()
		if _, dup := current[k]; dup {
			continue
		}
		current[k] = d
		if _, known := b.logged[k]; !known {
			appeared = append(appeared, d)
		}
	}
	var fixed intent.Diagnostics
	for k, d := range b.logged {
		if _, still := current[k]; !still {
			fixed = append(fixed, d)
		}
	}
	fixed.Sort()
	for i, d := range appeared {
		if i == MaxLoggedChanges {
			b.log.Warn("more intent problems appeared, not logged one by one: /debug/config lists the current ones", "count", len(appeared)-i)
			break
		}
		attrs := []any{"source", d.Origin.String(), "field", d.Path, "problem", d.Message}
		if d.Severity == intent.SeverityWarning {
			b.log.Warn("intent warning", attrs...)
		} else {
			b.log.Error("invalid intent", attrs...)
		}
	}
	for i, d := range fixed {
		if i == MaxLoggedChanges {
			b.log.Info("more intent problems fixed, not logged one by one", "count", len(fixed)-i)
			break
		}
		b.log.Info("intent problem fixed", "source", d.Origin.String(), "field", d.Path, "problem", d.Message, "severity", string(d.Severity))
	}
	b.logged = current
}

// MaxLoggedChanges bounds the problems logged one by one per rebuild, as
// appeared and as fixed: a folder replaced by a broken one logs a page, not
// thousands of lines.
const MaxLoggedChanges = 100

func sameVersions(a, b *GroupSnapshot) bool {
	if !slices.Equal(a.TypeURLs(), b.TypeURLs()) {
		return false
	}
	for _, typ := range a.TypeURLs() {
		if a.Type(typ).Version != b.Type(typ).Version {
			return false
		}
	}
	return true
}

func versionSummary(gs *GroupSnapshot) string {
	var parts []string
	for _, typ := range gs.TypeURLs() {
		ts := gs.Type(typ)
		parts = append(parts, metrics.TypeLabel(typ)+"="+ts.Version)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
