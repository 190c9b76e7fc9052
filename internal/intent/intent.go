package intent

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Intent is one accepted ConfigMap: every intent document among its data
// keys. A ConfigMap is accepted or rejected as a whole.
type Intent struct {
	Origin  Origin // Key is empty: the ConfigMap as a whole
	Created time.Time
	Docs    []Doc // sorted by key
	// Settings are the gateway group settings of a settings ConfigMap
	// (settings.go), sorted by key; such a ConfigMap has no Docs.
	Settings []SettingsDoc
}

// Doc is one validated intent document and where it came from.
type Doc struct {
	Origin Origin
	*Document
}

// AppliesTo reports whether the document is for the gateway group.
func (d Doc) AppliesTo(group string) bool {
	if len(d.Gateways) == 0 {
		return true
	}
	for _, g := range d.Gateways {
		if g == group {
			return true
		}
	}
	return false
}

// IsIntentKey reports whether a ConfigMap data key holds an intent document.
func IsIntentKey(key string) bool {
	return strings.HasSuffix(key, ".yaml") || strings.HasSuffix(key, ".yml")
}

// MaxConfigMapBytes bounds a ConfigMap's data, keys and values together,
// as the Kubernetes API server does (1 MiB). It is checked here too, so a
// ConfigMap read from a file is held to what a cluster would accept, with
// the same message in both modes, and so a huge one is never parsed.
const MaxConfigMapBytes = 1 << 20

// ParseConfigMap decodes and validates every intent key of a ConfigMap. The
// Intent is nil when any error was found (warnings alone do not reject it).
// At most MaxDiagnosticsPerConfigMap problems are listed, then a count.
// Lines in messages count from a key's first line (see ParseConfigMapLines).
func ParseConfigMap(origin Origin, created time.Time, data map[string]string) (*Intent, Diagnostics) {
	return ParseConfigMapLines(origin, created, data, nil)
}

// ParseConfigMapLines is ParseConfigMap for a ConfigMap read from
// origin.File, where the value of data key k starts on file line
// keyLines[k] (a literal block, "k: |", whose lines are the file's): a
// YAML syntax error or a duplicate key is then reported at the line an
// editor shows, with the line within the key beside it. Keys not in
// keyLines (Kubernetes mode, JSON or quoted values) are reported by the
// line within the key, and say so.
func ParseConfigMapLines(origin Origin, created time.Time, data map[string]string, keyLines map[string]int) (*Intent, Diagnostics) {
	origin.Key = ""
	if size := dataSize(data); size > MaxConfigMapBytes {
		return nil, Diagnostics{{Origin: origin, Severity: SeverityError,
			Message: fmt.Sprintf("data is %d bytes (keys and values), over the %d bytes (1 MiB) Kubernetes allows a ConfigMap: not parsed; split it into several ConfigMaps", size, MaxConfigMapBytes)}}
	}
	in := &Intent{Origin: origin, Created: created}
	r := &reporter{max: MaxDiagnosticsPerConfigMap}
	for _, k := range sortedKeys(data) {
		r.origin = origin
		r.origin.Key = k
		r.firstLine = keyLines[k]
		if !IsIntentKey(k) {
			r.warnf("", "ignored: intent keys end in .yaml or .yml")
			continue
		}
		if doc := parseDocument(r, []byte(data[k])); doc != nil {
			in.Docs = append(in.Docs, Doc{Origin: r.origin, Document: doc})
		}
	}
	r.origin, r.firstLine = origin, 0
	if len(in.Docs) == 0 && r.errs == 0 {
		r.errorf("", "no intent document: put it under a data key ending in .yaml")
	}
	diags := r.result()
	diags.Sort()
	if r.errs > 0 {
		return nil, diags
	}
	return in, diags
}

func dataSize(data map[string]string) int {
	n := 0
	for k, v := range data {
		n += len(k) + len(v)
	}
	return n
}

// ForGroup returns the documents of the accepted intents that apply to the
// gateway group, in a stable order (by namespace, name, key).
func ForGroup(intents []*Intent, group string) []Doc {
	var out []Doc
	for _, in := range intents {
		for _, d := range in.Docs {
			if d.AppliesTo(group) {
				out = append(out, d)
			}
		}
	}
	sortDocs(out)
	return out
}

// sortDocs sorts documents stably by origin, each origin's text made once
// (not once per comparison: a build sorts every document of its group).
func sortDocs(docs []Doc) {
	type keyed struct {
		key string
		d   Doc
	}
	ks := make([]keyed, len(docs))
	for i, d := range docs {
		ks[i] = keyed{d.Origin.String(), d}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	for i := range ks {
		docs[i] = ks[i].d
	}
}

// AllDocs returns every document of the accepted intents, whatever groups
// they apply to, in ForGroup's order.
func AllDocs(intents []*Intent) []Doc {
	var out []Doc
	for _, in := range intents {
		out = append(out, in.Docs...)
	}
	sortDocs(out)
	return out
}

// Groups lists the gateway groups the intents name explicitly, sorted.
func Groups(intents []*Intent) []string {
	seen := map[string]bool{}
	for _, in := range intents {
		for _, d := range in.Docs {
			for _, g := range d.Gateways {
				seen[g] = true
			}
		}
	}
	return sortedKeys(seen)
}
