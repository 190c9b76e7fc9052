package intent

import (
	"sort"
	"strings"
	"time"
)

// Intent is one accepted ConfigMap: every intent document among its data
// keys. A ConfigMap is accepted or rejected as a whole.
type Intent struct {
	Origin  Origin // Key is empty: the ConfigMap as a whole
	Created time.Time
	Docs    []Doc // sorted by key
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

// ParseConfigMap decodes and validates every intent key of a ConfigMap. The
// Intent is nil when any error was found (warnings alone do not reject it).
func ParseConfigMap(origin Origin, created time.Time, data map[string]string) (*Intent, Diagnostics) {
	origin.Key = ""
	in := &Intent{Origin: origin, Created: created}
	var diags Diagnostics
	keys := sortedKeys(data)
	for _, k := range keys {
		o := origin
		o.Key = k
		if !IsIntentKey(k) {
			diags = append(diags, Diagnostic{Origin: o, Message: "ignored: intent keys end in .yaml or .yml", Severity: SeverityWarning})
			continue
		}
		doc, ds := ParseDocument(o, []byte(data[k]))
		diags = append(diags, ds...)
		if doc == nil {
			continue
		}
		in.Docs = append(in.Docs, Doc{Origin: o, Document: doc})
	}
	if len(in.Docs) == 0 && !diags.HasErrors() {
		diags = append(diags, Diagnostic{Origin: origin, Message: "no intent document: put it under a data key ending in .yaml", Severity: SeverityError})
	}
	diags.Sort()
	if diags.HasErrors() {
		return nil, diags
	}
	return in, diags
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
	sort.SliceStable(out, func(i, j int) bool { return out[i].Origin.String() < out[j].Origin.String() })
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
