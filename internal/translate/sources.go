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
	if len(dps) == 0 {
		return
	}
	if s[typeURL] == nil {
		s[typeURL] = map[string][]string{}
	}
	cms := s[typeURL][name]
	var last *destPort
	for _, dp := range dps {
		// Ports come sorted by ConfigMap: most repeats are the last one.
		if last == nil || dp.origin.Namespace != last.origin.Namespace || dp.origin.Name != last.origin.Name {
			cms = append(cms, dp.origin.ConfigMap())
		}
		last = dp
	}
	s[typeURL][name] = cms
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
