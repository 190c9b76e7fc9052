package admin

import (
	"encoding/json"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
)

// ConfigDump is what /debug/config_dump?group=G returns: every resource a
// group is served, as Envoy JSON, with the ConfigMaps it comes from.
type ConfigDump struct {
	Group string     `json:"group"`
	Types []TypeDump `json:"types"`
}

// TypeDump is one type of a group's snapshot.
type TypeDump struct {
	Type      string         `json:"type"`
	TypeURL   string         `json:"typeUrl"`
	Version   string         `json:"version"`
	Resources []ResourceDump `json:"resources"`
}

// ResourceDump is one resource.
type ResourceDump struct {
	Name       string          `json:"name"`
	Version    string          `json:"version"`
	ConfigMaps []string        `json:"configMaps,omitempty"`
	Resource   json.RawMessage `json:"resource"`
}

func configDump(s Sources, w http.ResponseWriter, r *http.Request) {
	group := r.URL.Query().Get("group")
	gs := s.Cache.Snapshot(group)
	if gs == nil {
		http.Error(w, "no snapshot for group "+strconvQuote(group)+" (a group is built once an intent names it or a proxy of it connects)", http.StatusNotFound)
		return
	}
	dump, err := DumpGroup(group, gs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, dump)
}

// DumpGroup renders a group snapshot, type by type in ADS order, each
// resource as protojson (typed configs expanded).
func DumpGroup(group string, gs *snapshot.GroupSnapshot) (ConfigDump, error) {
	d := ConfigDump{Group: group, Types: []TypeDump{}}
	opts := protojson.MarshalOptions{}
	for _, typ := range snapshot.Types {
		ts := gs.Type(typ)
		td := TypeDump{Type: metrics.TypeLabel(typ), TypeURL: typ, Version: ts.Version, Resources: []ResourceDump{}}
		for _, name := range ts.Names {
			it := ts.Items[name]
			m, ok := it.Resource.(proto.Message)
			if !ok {
				continue
			}
			b, err := opts.Marshal(m)
			if err != nil {
				return d, err
			}
			td.Resources = append(td.Resources, ResourceDump{Name: name, Version: it.Version,
				ConfigMaps: gs.Sources(typ, name), Resource: json.RawMessage(b)})
		}
		d.Types = append(d.Types, td)
	}
	return d, nil
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
