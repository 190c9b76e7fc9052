// Package compile is the path from Kubernetes objects to the resources of a
// gateway group: ConfigMaps are parsed into intents (keeping each one's last
// good version when an edit breaks it), conflicts are resolved, and each
// group's intents are translated and checked.
package compile

import (
	"fmt"
	"maps"
	"runtime"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// ConfigMap is an intent ConfigMap and the file it was read from (empty in
// Kubernetes mode).
type ConfigMap struct {
	File string
	*corev1.ConfigMap
	// KeyLines are the file lines where data values start, for messages
	// (see intent.ParseConfigMapLines); nil in Kubernetes mode.
	KeyLines map[string]int
}

// Selected reports whether a ConfigMap carries the intent label.
func Selected(cm *corev1.ConfigMap) bool { return cm.Labels[intent.LabelKey] == "true" }

// Origin names a ConfigMap in messages.
func (c ConfigMap) Origin() intent.Origin {
	ns := c.Namespace
	if ns == "" {
		ns = "default"
	}
	return intent.Origin{File: c.File, Namespace: ns, Name: c.Name}
}

// Store parses ConfigMaps into intents and remembers what is served, so
// that neither a broken edit nor someone else's change takes a working
// configuration away from the gateways: a ConfigMap whose new version is
// invalid or conflicts with what is served keeps its served version, and
// the problem is reported. Parsed ConfigMaps are cached by content, so a
// rebuild after one edit parses one ConfigMap. Not safe for concurrent use.
type Store struct {
	parsed map[string]parsed // by ConfigMap, valid while its content hash matches
	// served are the versions the last Update accepted, by ConfigMap.
	served map[string]servedVersion
	// servedGen counts the changes of served.
	servedGen uint64
	// resolve keeps the claims of what is served between Updates;
	// nil: resolved from scratch (tests compare the two).
	resolve *intent.ResolveCache
	// reviewed is the last Review's parse of a ConfigMap that was not
	// stored yet, for the Update that stores it; kept until that Update.
	reviewed parsed
}

type parsed struct {
	src    source
	intent *intent.Intent
	diags  intent.Diagnostics
}

// source is everything parsing depends on: where the ConfigMap comes from
// (for messages: the file and its lines), its creation time (conflict
// order), its kind, its data. A parse is reused while its source is the
// same; comparing strings that are one string (an unchanged ConfigMap
// is usually the same object, or at least holds the same strings) costs
// no more than comparing their addresses, so an unchanged ConfigMap is
// recognised without reading its data.
type source struct {
	file, namespace, name string
	created               time.Time
	settings              bool
	data                  map[string]string // a copy: the caller's map may change in place
	keyLines              map[string]int
}

func sourceOf(cm ConfigMap) source {
	o := cm.Origin()
	return source{file: cm.File, namespace: o.Namespace, name: o.Name, created: cm.CreationTimestamp.Time,
		settings: IsSettings(cm.ConfigMap), data: maps.Clone(cm.Data), keyLines: maps.Clone(cm.KeyLines)}
}

// is reports whether cm is what src was taken from.
func (src *source) is(cm ConfigMap) bool {
	o := cm.Origin()
	if src.file != cm.File || src.namespace != o.Namespace || src.name != o.Name || !src.created.Equal(cm.CreationTimestamp.Time) ||
		src.settings != IsSettings(cm.ConfigMap) || len(src.data) != len(cm.Data) || !maps.Equal(src.keyLines, cm.KeyLines) {
		return false
	}
	for k, v := range cm.Data {
		if w, ok := src.data[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// servedVersion is an accepted intent and a copy of the ConfigMap it was
// parsed from (what a restart needs to serve it again).
type servedVersion struct {
	intent *intent.Intent
	cm     ConfigMap
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{parsed: map[string]parsed{}, served: map[string]servedVersion{}, resolve: &intent.ResolveCache{}}
}

// Update parses the current ConfigMaps (the complete set: a ConfigMap not
// in it is deleted) and returns the intents to serve, after conflict
// resolution, and every problem found.
func (s *Store) Update(cms []ConfigMap, opts intent.ResolveOptions) ([]*intent.Intent, intent.Diagnostics) {
	var diags intent.Diagnostics
	seen := map[string]bool{}
	var todo []ConfigMap
	for _, cm := range cms {
		o := cm.Origin()
		key := o.ConfigMap()
		if !Selected(cm.ConfigMap) {
			if cm.File != "" {
				diags = append(diags, intent.Diagnostic{Origin: o, Severity: intent.SeverityWarning,
					Message: "ignored: ConfigMap has no label " + intent.LabelKey + `: "true"`})
			}
			continue
		}
		if seen[key] {
			diags = append(diags, intent.Diagnostic{Origin: o, Message: "ConfigMap is defined more than once; this copy is ignored", Severity: intent.SeverityError})
			continue
		}
		seen[key] = true
		todo = append(todo, cm)
	}
	results := s.parseAll(todo)
	cands := make([]intent.Candidate, 0, len(todo))
	current := make(map[*intent.Intent]ConfigMap, len(todo))
	for i, cm := range todo {
		key := cm.Origin().ConfigMap()
		p := results[i]
		s.parsed[key] = p
		diags = append(diags, p.diags...)
		prev, wasServed := s.served[key]
		if p.intent == nil && wasServed {
			diags = append(diags, intent.Diagnostic{Origin: cm.Origin(), Severity: intent.SeverityWarning,
				Message: "keeping the last valid version of this ConfigMap until the errors are fixed"})
		}
		if p.intent != nil {
			current[p.intent] = cm
		}
		cands = append(cands, intent.Candidate{Current: p.intent, Served: prev.intent})
	}
	for key := range s.parsed {
		if !seen[key] {
			delete(s.parsed, key)
		}
	}
	if r := s.reviewed.src; r.name != "" && seen[r.namespace+"/"+r.name] {
		s.reviewed = parsed{} // stored, or changed again since
	}
	accepted, rd := s.resolve.Resolve(cands, opts)
	rd = append(rd, intent.AuditWarnings(accepted)...)
	served := make(map[string]servedVersion, len(accepted))
	for _, in := range accepted {
		key := in.Origin.ConfigMap()
		if cm, ok := current[in]; ok && (s.served[key].intent != in) {
			// A copy: the caller may edit its object in place later,
			// and what is saved for a restart must stay what is served.
			cm.ConfigMap, cm.KeyLines = cm.ConfigMap.DeepCopy(), maps.Clone(cm.KeyLines)
			served[key] = servedVersion{intent: in, cm: cm}
		} else {
			served[key] = s.served[key]
		}
	}
	if !sameServed(s.served, served) {
		s.servedGen++
	}
	s.served = served
	diags = append(diags, rd...)
	diags.Sort()
	return accepted, diags
}

// Review judges a ConfigMap as Update would if it were stored now next to
// what is served: its own errors and warnings, and its conflicts with the
// served intents. It changes nothing. Only the diagnostics of cm itself
// are returned.
func (s *Store) Review(cm ConfigMap, opts intent.ResolveOptions) intent.Diagnostics {
	if !Selected(cm.ConfigMap) {
		return nil
	}
	key := cm.Origin().ConfigMap()
	p := s.parse(cm)
	diags := append(intent.Diagnostics(nil), p.diags...)
	if p.intent == nil {
		return diags
	}
	cands := make([]intent.Candidate, 0, len(s.served)+1)
	for k, v := range s.served {
		if k != key {
			cands = append(cands, intent.Candidate{Current: v.intent, Served: v.intent})
		}
	}
	cands = append(cands, intent.Candidate{Current: p.intent, Served: s.served[key].intent})
	// Over the index of what is served, only this ConfigMap's claims are
	// checked (a nil cache resolves from scratch).
	accepted, rd := s.resolve.Try(cands, opts)
	rd = append(rd, intent.AuditWarnings(accepted)...)
	for _, d := range rd {
		if d.Origin.ConfigMap() == key && (d.Severity == intent.SeverityError || intent.IsAuditWarning(d)) {
			diags = append(diags, d)
		}
	}
	diags.Sort()
	return diags
}

func sameServed(a, b map[string]servedVersion) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k].intent != v.intent {
			return false
		}
	}
	return true
}

// ServedGeneration changes whenever the served versions do.
func (s *Store) ServedGeneration() uint64 { return s.servedGen }

// Served returns the ConfigMaps whose versions are served, by
// namespace/name: what Restore needs after a restart.
func (s *Store) Served() []ConfigMap {
	out := make([]ConfigMap, 0, len(s.served))
	for _, v := range s.served {
		out = append(out, v.cm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin().ConfigMap() < out[j].Origin().ConfigMap() })
	return out
}

// Restore seeds the served versions, before the first Update, from
// ConfigMaps saved by an earlier run (Served), so that a restart serves no
// less than before it: a ConfigMap whose current version is invalid or
// conflicts keeps these. Saved ConfigMaps that no longer parse are
// reported and skipped.
func (s *Store) Restore(cms []ConfigMap) intent.Diagnostics {
	var diags intent.Diagnostics
	for _, cm := range cms {
		if cm.ConfigMap == nil || !Selected(cm.ConfigMap) {
			continue
		}
		p := parseOne(cm)
		if p.intent == nil {
			diags = append(diags, intent.Diagnostic{Origin: cm.Origin(), Severity: intent.SeverityWarning,
				Message: "the saved served version of this ConfigMap no longer parses and is not restored: " + p.diags.Error()})
			continue
		}
		s.served[cm.Origin().ConfigMap()] = servedVersion{intent: p.intent, cm: cm}
	}
	return diags
}

// parseAll parses the ConfigMaps whose content changed, on every core.
func (s *Store) parseAll(cms []ConfigMap) []parsed {
	out := make([]parsed, len(cms))
	var todo []int
	for i, cm := range cms {
		if p, ok := s.cached(cm); ok {
			out[i] = p
			continue
		}
		todo = append(todo, i)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(todo)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i] = parseOne(cms[i])
			}
		}()
	}
	for _, i := range todo {
		work <- i
	}
	close(work)
	wg.Wait()
	return out
}

// cached is the parse of cm kept from the last Update, or from the last
// Review (a webhook reviews a ConfigMap just before it is stored).
func (s *Store) cached(cm ConfigMap) (parsed, bool) {
	key := cm.Origin().ConfigMap()
	if p, ok := s.parsed[key]; ok && p.src.is(cm) {
		return p, true
	}
	if s.reviewed.src.name != "" && s.reviewed.src.is(cm) {
		return s.reviewed, true
	}
	return parsed{}, false
}

// parse is cm's parse, cached or not; a new one is kept for the next
// Update.
func (s *Store) parse(cm ConfigMap) parsed {
	if p, ok := s.cached(cm); ok {
		return p
	}
	p := parseOne(cm)
	s.reviewed = p
	return p
}

func parseOne(cm ConfigMap) parsed {
	parse := intent.ParseConfigMapLines
	if IsSettings(cm.ConfigMap) {
		parse = intent.ParseSettingsConfigMap
	}
	in, ds := parse(cm.Origin(), cm.CreationTimestamp.Time, cm.Data, cm.KeyLines)
	return parsed{src: sourceOf(cm), intent: in, diags: ds}
}

// IsSettings reports whether an intent ConfigMap holds gateway group
// settings (label egress-xds.io/settings: "true") instead of intents.
func IsSettings(cm *corev1.ConfigMap) bool { return intent.IsSettingsLabel(cm.Labels) }

// Secrets indexes Secret data by namespace/name.
func Secrets(secrets []corev1.Secret) translate.Secrets {
	out := translate.Secrets{}
	for i := range secrets {
		s := &secrets[i]
		ns := s.Namespace
		if ns == "" {
			ns = "default"
		}
		out[translate.SecretKey{Namespace: ns, Name: s.Name}] = s.Data
	}
	return out
}

// Group translates the intents that apply to one gateway group, for the
// role its snapshot key names (see Key), and checks the result. It returns
// an error (and no resources) when the result fails the check, which would
// be a bug in the translator: such resources never reach Envoy.
func Group(intents []*intent.Intent, key string, secrets translate.Secrets, opts translate.Options) (*translate.Resources, intent.Diagnostics, error) {
	return GroupCached(nil, intents, key, secrets, opts)
}

// GroupCached is Group, translating and checking again only what changed
// since the last call with the same cache (translate.Cache): one cache per
// snapshot key, the result is the same.
func GroupCached(cache *translate.Cache, intents []*intent.Intent, key string, secrets translate.Secrets, opts translate.Options) (*translate.Resources, intent.Diagnostics, error) {
	opts.Role, opts.Group = SplitKey(key)
	if m := intent.Modes(intents)[opts.Group]; m.Mode == intent.ModeAudit {
		opts.Audit, opts.AuditSource = true, m.Origin.ConfigMap()
	}
	docs := intent.ForGroup(intents, opts.Group)
	if opts.Role == translate.RoleRateLimit {
		// One service counts for every group.
		docs = intent.AllDocs(intents)
	}
	res, diags := cache.Translate(docs, secrets, opts)
	if diags.HasErrorsWithoutOrigin() {
		return nil, diags, fmt.Errorf("translation of %q failed: %v", key, diags)
	}
	if err := cache.Check(res); err != nil {
		return nil, diags, fmt.Errorf("resources of %q failed validation: %w", key, err)
	}
	return res, diags, nil
}

// Groups lists the gateway groups to build: those named by intents plus the
// ones proxies have connected with, sorted.
func Groups(intents []*intent.Intent, connected ...string) []string {
	set := map[string]bool{}
	for _, g := range intent.Groups(intents) {
		set[g] = true
	}
	for _, g := range connected {
		set[g] = true
	}
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}
