package translate

import (
	"maps"
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

// normalize sorts every list and drops repeats. Lists that are already
// (most have one entry) are left alone: they may be shared with the
// last translation's.
func (s Sources) normalize() {
	for _, byName := range s {
		for name, cms := range byName {
			if !normal(cms) {
				cms = slices.Clone(cms)
				slices.Sort(cms)
				byName[name] = slices.Compact(cms)
			}
		}
	}
}

// normal reports whether a list is sorted without repeats.
func normal(cms []string) bool {
	for i := 1; i < len(cms); i++ {
		if cms[i-1] >= cms[i] {
			return false
		}
	}
	return true
}

// portSources are the sources of the clusters of the last translation's
// destination ports (a cluster comes from the ConfigMap declaring it), so
// that the next one patches them where its ports differ instead of
// adding each of thousands again.
type portSources struct {
	ports  []*destPort // sorted by cluster name, no name twice
	byName map[string][]string
}

// clusterSources are the sources of the clusters of ports (sorted by
// cluster name): a new map, which the translation adds its other
// clusters' to.
func (c *Cache) clusterSources(ports []*destPort) map[string][]string {
	if c == nil {
		p := portSources{}
		p.patch(ports)
		return p.byName
	}
	if !c.sources.patch(ports) {
		// A name twice (which the check refuses): from scratch, and
		// nothing kept.
		p := portSources{}
		p.patch(ports)
		c.sources = portSources{}
		return p.byName
	}
	return maps.Clone(c.sources.byName)
}

// patch brings p to ports, walking both lists in name order: a port
// that is the same as last time has the same name and source. It
// returns false if ports name a cluster twice (p is then left half
// patched).
func (p *portSources) patch(ports []*destPort) bool {
	if p.byName == nil {
		p.byName = map[string][]string{}
	}
	old := p.ports
	ok := true
	// Two ports of one name are neighbours, one of them new: the last
	// ports named none twice.
	twice := func(j int) bool {
		return (j > 0 && ports[j].cluster == ports[j-1].cluster) || (j+1 < len(ports) && ports[j].cluster == ports[j+1].cluster)
	}
	for i, j := 0, 0; i < len(old) || j < len(ports); {
		if j < len(ports) && (i >= len(old) || old[i] != ports[j]) && twice(j) {
			ok = false
		}
		switch {
		case i < len(old) && j < len(ports) && old[i] == ports[j]:
			i, j = i+1, j+1
		case j == len(ports) || (i < len(old) && old[i].cluster < ports[j].cluster):
			delete(p.byName, old[i].cluster)
			i++
		case i == len(old) || ports[j].cluster < old[i].cluster:
			p.byName[ports[j].cluster] = append(p.byName[ports[j].cluster], ports[j].sources...)
			j++
		default: // the same name, from another port
			p.byName[ports[j].cluster] = ports[j].sources
			i, j = i+1, j+1
		}
	}
	p.ports = ports
	return ok
}
