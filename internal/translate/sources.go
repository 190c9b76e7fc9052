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
	var cms []string
	for i, dp := range dps {
		// Ports come sorted by ConfigMap: most repeats are the last one.
		if i == 0 || dp.sources[0] != dps[i-1].sources[0] {
			cms = append(cms, dp.sources...)
		}
	}
	s.addConfigMap(typeURL, name, cms...)
}

// addConfigMap adds ConfigMaps to a resource's sources, which stay
// sorted without repeats: the list is a new one, as lists may be shared
// with the last translation's.
func (s Sources) addConfigMap(typeURL, name string, cms ...string) {
	if s[typeURL] == nil {
		s[typeURL] = map[string][]string{}
	}
	old, ok := s[typeURL][name]
	if !ok && normal(cms) {
		// Lists are never changed once made: shared.
		s[typeURL][name] = cms
		return
	}
	s[typeURL][name] = normalized(append(slices.Clone(old), cms...))
}

// normalized sorts a list and drops repeats, in place.
func normalized(cms []string) []string {
	if normal(cms) {
		return cms
	}
	slices.Sort(cms)
	return slices.Compact(cms)
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
			if cms := p.byName[ports[j].cluster]; cms != nil {
				// A name twice (the patch then fails): a new list.
				p.byName[ports[j].cluster] = normalized(append(slices.Clone(cms), ports[j].sources...))
			} else {
				p.byName[ports[j].cluster] = ports[j].sources
			}
			j++
		default: // the same name, from another port
			p.byName[ports[j].cluster] = ports[j].sources
			i, j = i+1, j+1
		}
	}
	p.ports = ports
	return ok
}
