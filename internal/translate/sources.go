package translate

import (
	"slices"
)

// Sources lists, per xDS type URL and resource name, the ConfigMaps
// (namespace/name, sorted) a resource comes from: a cluster and its
// endpoints from the ConfigMap declaring the destination, a listener or
// route configuration from every ConfigMap with a destination on it, a
// secret from every ConfigMap using it. The translator records them as it
// builds, so nothing has to be inferred from the resources afterwards.
type Sources map[string]map[string][]string

func (s Sources) add(typeURL, name string, dps ...*destPort) {
	for _, dp := range dps {
		s.addConfigMap(typeURL, name, dp.origin.ConfigMap())
	}
}

func (s Sources) addConfigMap(typeURL, name string, cms ...string) {
	if s[typeURL] == nil {
		s[typeURL] = map[string][]string{}
	}
	s[typeURL][name] = append(s[typeURL][name], cms...)
}

// copyFrom gives a resource of one type the sources of the same name in another.
func (s Sources) copyFrom(to, from, name string) {
	s.addConfigMap(to, name, s[from][name]...)
}

// normalize sorts every list and drops repeats.
func (s Sources) normalize() {
	for _, byName := range s {
		for name, cms := range byName {
			slices.Sort(cms)
			byName[name] = slices.Compact(cms)
		}
	}
}
