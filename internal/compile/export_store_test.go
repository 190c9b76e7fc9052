package compile

import (
	"fmt"
	"reflect"
)

// StaleParse names the first ConfigMap of cms (an Update's input) whose
// kept parse is not what parsing its current content gives; empty if
// none is.
func (s *Store) StaleParse(cms []ConfigMap) string {
	seen := map[string]bool{}
	for _, cm := range cms {
		key := cm.Origin().ConfigMap()
		if !Selected(cm.ConfigMap) || seen[key] {
			continue
		}
		seen[key] = true
		p, ok := s.parsed[key]
		if !ok {
			return key + " (not kept)"
		}
		fresh := parseOne(cm)
		if !reflect.DeepEqual(p.intent, fresh.intent) || fmt.Sprint(p.diags) != fmt.Sprint(fresh.diags) {
			return key
		}
	}
	return ""
}
