package compile_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
)

// storeWorld is a ConfigMap set edited the ways a cluster or a folder
// edits it, given to a Store (kept resolution, kept parses) and to one
// resolving from scratch at every Update.
type storeWorld struct {
	t                 *testing.T
	rng               *rand.Rand
	cms               []compile.ConfigMap
	opts              intent.ResolveOptions
	cached, reference *compile.Store
	log               []string
	// extra is a document some versions take (FuzzStoreIncremental's).
	extra string
}

var (
	storeNamespaces = []string{"a", "a-x", "b", "egress-xds"}
	storeNames      = []string{"x", "y", "z"}
	storeHosts      = []string{"a.example.com", "b.example.com", "c.example.com"}
	storePorts      = []int{443, 8443, 80, 5432}
	storeProtocols  = []string{"TLS", "HTTPS", "HTTP", "TCP"}
	storeCreated    = []time.Time{{}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}
)

// doc is a random intent document (or settings, or now and then a broken
// one) over a small world, so that conflicts are frequent.
func (w *storeWorld) doc(settings bool) string {
	if w.extra != "" && w.rng.IntN(4) == 0 {
		return w.extra
	}
	switch w.rng.IntN(20) {
	case 0:
		return "destinations: [{name: broken, host: x.example.com, ports: [{number: 70000, protocol: TLS}]}]"
	case 1: // a syntax error: reported at a line of the file
		return "destinations:\n  - name: [broken\n"
	}
	var b strings.Builder
	if settings {
		fmt.Fprintf(&b, "groups: [{name: %s, mode: %s}]\n", []string{"one", "two"}[w.rng.IntN(2)], []string{"audit", "enforce"}[w.rng.IntN(2)])
		return b.String()
	}
	b.WriteString([]string{"", "gateways: [one]\n", "gateways: [two]\n"}[w.rng.IntN(3)])
	b.WriteString("destinations:\n")
	for i := range 1 + w.rng.IntN(3) {
		host := storeHosts[w.rng.IntN(len(storeHosts))]
		proto := storeProtocols[w.rng.IntN(len(storeProtocols))]
		fmt.Fprintf(&b, "  - name: d%d\n    host: %s\n", i, host)
		if proto == "TCP" {
			b.WriteString("    resolution: STATIC\n    endpoints: [{address: 192.0.2.1}]\n")
		}
		fmt.Fprintf(&b, "    ports: [{number: %d, protocol: %s}]\n", storePorts[w.rng.IntN(len(storePorts))], proto)
	}
	return b.String()
}

func (w *storeWorld) newCM() compile.ConfigMap {
	ns := storeNamespaces[w.rng.IntN(len(storeNamespaces))]
	settings := ns == "egress-xds" && w.rng.IntN(2) == 0
	labels := map[string]string{intent.LabelKey: "true"}
	if settings {
		labels[intent.SettingsLabelKey] = "true"
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: storeNames[w.rng.IntN(len(storeNames))], Labels: labels,
			CreationTimestamp: metav1.Time{Time: storeCreated[w.rng.IntN(len(storeCreated))]}},
		Data: map[string]string{"egress.yaml": w.doc(settings)},
	}
	if settings {
		cm.Data = map[string]string{"settings.yaml": w.doc(true)}
	}
	return compile.ConfigMap{ConfigMap: cm}
}

func (w *storeWorld) mutate() {
	if len(w.cms) == 0 {
		w.cms = append(w.cms, w.newCM())
		return
	}
	i := w.rng.IntN(len(w.cms))
	cm := &w.cms[i]
	name := cm.Namespace + "/" + cm.Name
	settings := compile.IsSettings(cm.ConfigMap)
	key := "egress.yaml"
	if settings {
		key = "settings.yaml"
	}
	switch k := w.rng.IntN(14); k {
	case 0, 1: // a new ConfigMap, or one deleted and created again
		w.cms = append(w.cms, w.newCM())
		w.log = append(w.log, "add "+w.cms[len(w.cms)-1].Namespace+"/"+w.cms[len(w.cms)-1].Name)
	case 2, 3: // an edit in a new object (Kubernetes, the folder)
		c := cm.ConfigMap.DeepCopy()
		c.Data[key] = w.doc(settings)
		cm.ConfigMap = c
		w.log = append(w.log, "edit "+name)
	case 4: // an edit of the same object, in place
		cm.Data[key] = w.doc(settings)
		w.log = append(w.log, "edit in place "+name)
	case 5: // the same content in new strings (a resync, a file read again)
		c := cm.ConfigMap.DeepCopy()
		for k, v := range c.Data {
			c.Data[k] = strings.Clone(v)
		}
		cm.ConfigMap = c
		w.log = append(w.log, "same content "+name)
	case 6:
		w.cms = slices.Delete(w.cms, i, i+1)
		w.log = append(w.log, "delete "+name)
	case 7: // another data key
		c := cm.ConfigMap.DeepCopy()
		if len(c.Data) > 1 {
			delete(c.Data, "more.yaml")
		} else {
			c.Data["more.yaml"] = w.doc(settings)
		}
		cm.ConfigMap = c
		w.log = append(w.log, "key added or removed "+name)
	case 8: // read from a file, or another, its lines moved
		if w.rng.IntN(2) == 0 {
			cm.File = []string{"", "a.yaml", "b.yaml"}[w.rng.IntN(3)]
		} else {
			cm.KeyLines = map[string]int{key: 1 + w.rng.IntN(3)}
		}
		w.log = append(w.log, fmt.Sprintf("file %q lines %v %s", cm.File, cm.KeyLines, name))
	case 9: // another creation time (the same object edited in place)
		cm.CreationTimestamp = metav1.Time{Time: storeCreated[w.rng.IntN(len(storeCreated))]}
		w.log = append(w.log, "created "+name)
	case 10: // the intent label removed or given back
		c := cm.ConfigMap.DeepCopy()
		if c.Labels[intent.LabelKey] == "true" {
			delete(c.Labels, intent.LabelKey)
		} else {
			c.Labels[intent.LabelKey] = "true"
		}
		cm.ConfigMap = c
		w.log = append(w.log, "label "+name)
	case 11: // the settings label flipped: the same data, another kind
		c := cm.ConfigMap.DeepCopy()
		if settings {
			delete(c.Labels, intent.SettingsLabelKey)
		} else {
			c.Labels[intent.SettingsLabelKey] = "true"
		}
		cm.ConfigMap = c
		w.log = append(w.log, "settings label "+name)
	case 12: // given twice
		w.cms = append(w.cms, compile.ConfigMap{ConfigMap: cm.ConfigMap.DeepCopy()})
		w.log = append(w.log, "twice "+name)
	default:
		switch w.rng.IntN(2) {
		case 0:
			if w.opts.PortMap == nil {
				w.opts.PortMap = map[uint32]uint32{443: 8443}
			} else {
				w.opts.PortMap = nil
			}
		default:
			w.opts.SettingsNamespace = map[string]string{"": "egress-xds", "egress-xds": ""}[w.opts.SettingsNamespace]
		}
		w.log = append(w.log, fmt.Sprintf("options %+v", w.opts))
	}
}

func (w *storeWorld) fail(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf("%s, after:\n  %s", fmt.Sprintf(format, args...), strings.Join(w.log, "\n  "))
}

func (w *storeWorld) update(step int) {
	w.t.Helper()
	got, gdiags := w.cached.Update(w.cms, w.opts)
	want, wdiags := w.reference.Update(w.cms, w.opts)
	if !reflect.DeepEqual(got, want) || fmt.Sprint(gdiags) != fmt.Sprint(wdiags) {
		w.fail("step %d: Update differs:\ncached: %v\nfresh:  %v", step, gdiags, wdiags)
	}
	if !reflect.DeepEqual(w.cached.Served(), w.reference.Served()) || w.cached.ServedGeneration() != w.reference.ServedGeneration() {
		w.fail("step %d: served versions differ", step)
	}
	if stale := w.cached.StaleParse(w.cms); stale != "" {
		w.fail("step %d: the parse kept for %s is stale", step, stale)
	}
}

// review asks both stores about a proposed version of a ConfigMap (one
// of the set, edited or not, or a new one).
func (w *storeWorld) review(step int) compile.ConfigMap {
	w.t.Helper()
	var cm compile.ConfigMap
	if len(w.cms) > 0 && w.rng.IntN(3) > 0 {
		cm = w.cms[w.rng.IntN(len(w.cms))]
		if w.rng.IntN(2) == 0 {
			c := cm.ConfigMap.DeepCopy()
			for k := range c.Data {
				c.Data[k] = w.doc(compile.IsSettings(c))
			}
			cm.ConfigMap = c
		}
	} else {
		cm = w.newCM()
	}
	got, want := w.cached.Review(cm, w.opts), w.reference.Review(cm, w.opts)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		w.fail("step %d: Review of %s/%s differs:\ncached: %v\nfresh:  %v", step, cm.Namespace, cm.Name, got, want)
	}
	return cm
}

// TestStoreIncrementalEquivalence drives random edit sequences through a
// Store and proves that what it serves and reports, and what Review
// answers, are those of a Store resolving from scratch at every Update,
// and that no kept parse is stale: ConfigMaps edited in place or in new
// objects, the same content in new strings, keys added, lines moved,
// creation times changed, labels flipped, ConfigMaps deleted, given
// twice, broken, in conflict; reviews that are then stored (the
// webhook's path) or not; options changed; restarts from the saved
// served versions.
func TestStoreIncrementalEquivalence(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		runStoreWorld(t, seed, "", 80)
	}
}

// FuzzStoreIncremental is TestStoreIncrementalEquivalence with a fuzzed
// document among the versions ConfigMaps take.
func FuzzStoreIncremental(f *testing.F) {
	f.Add(uint64(1), "destinations: [{name: gh, host: a.example.com, ports: [{number: 443, protocol: TLS}, {number: 80, protocol: HTTP}]}]")
	f.Add(uint64(2), "gateways: [one, two]\ndestinations:\n  - {name: a, host: b.example.com, ports: [{number: 8443, protocol: HTTPS}]}\n  - {name: b, host: b.example.com, ports: [{number: 443, protocol: TCP}], resolution: STATIC, endpoints: [{address: 192.0.2.7}]}")
	f.Add(uint64(3), "groups: [{name: one, mode: audit}, {name: two, mode: enforce}]")
	f.Fuzz(func(t *testing.T, seed uint64, doc string) {
		if len(doc) > 4096 {
			return
		}
		runStoreWorld(t, seed, doc, 20)
	})
}

func runStoreWorld(t *testing.T, seed uint64, extra string, steps int) {
	t.Helper()
	w := &storeWorld{t: t, rng: rand.New(rand.NewPCG(seed, 99)), cached: compile.NewStore(), reference: compile.NewStoreUncached(), extra: extra}
	for range 6 {
		w.cms = append(w.cms, w.newCM())
	}
	for step := range steps {
		switch w.rng.IntN(8) {
		case 0: // reviewed, then stored as reviewed
			cm := w.review(step)
			w.cms = append(slices.DeleteFunc(w.cms, func(c compile.ConfigMap) bool {
				return c.Namespace == cm.Namespace && c.Name == cm.Name
			}), cm)
			w.log = append(w.log, "reviewed and stored "+cm.Namespace+"/"+cm.Name)
		case 1:
			w.review(step)
		case 2:
			if w.rng.IntN(4) == 0 { // a restart: both restored from what was served
				saved := w.cached.Served()
				w.cached, w.reference = compile.NewStore(), compile.NewStoreUncached()
				if d1, d2 := w.cached.Restore(saved), w.reference.Restore(saved); fmt.Sprint(d1) != fmt.Sprint(d2) {
					w.fail("restore: %v, %v", d1, d2)
				}
				w.log = append(w.log, "restart")
			}
		}
		for range 1 + w.rng.IntN(3) {
			w.mutate()
		}
		w.update(step)
	}
}
