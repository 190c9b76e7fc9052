package istio

import (
	"maps"
	"slices"
)

// field is a field name and whether it is given, for reporting fields in
// a fixed order.
type field struct {
	name string
	set  bool
}

func setNames(fs []field) []string {
	var out []string
	for _, f := range fs {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
