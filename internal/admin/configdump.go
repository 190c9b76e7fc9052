package admin

import (
	"encoding/json"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
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
	ConfigMaps []string        `json:"configMaps"`
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
// resource as protojson (typed configs expanded) with Envoy's proto field
// names (cluster_type, not clusterType), as Envoy's own /config_dump and
// its documentation spell them.
func DumpGroup(group string, gs *snapshot.GroupSnapshot) (ConfigDump, error) {
	d := ConfigDump{Group: group, Types: []TypeDump{}}
	opts := protojson.MarshalOptions{UseProtoNames: true}
	for _, typ := range gs.TypeURLs() {
		ts := gs.Type(typ)
		td := TypeDump{Type: metrics.TypeLabel(typ), TypeURL: typ, Version: ts.Version, Resources: []ResourceDump{}}
		for _, name := range ts.Names {
			it := ts.Items[name]
			m, ok := it.Resource.(proto.Message)
			if !ok {
				continue
			}
			m = redact(m)
			b, err := opts.Marshal(m)
			if err != nil {
				return d, err
			}
			td.Resources = append(td.Resources, ResourceDump{Name: name, Version: it.Version,
				ConfigMaps: nonNil(gs.Sources(typ, name)), Resource: json.RawMessage(b)})
		}
		d.Types = append(d.Types, td)
	}
	return d, nil
}

// Redacted replaces private keys in dumps: the admin port is reachable by
// whoever scrapes metrics, and a dump must never carry a gateway's keys.
const Redacted = "[redacted]"

// redact returns m, or a copy of a Secret without its private key (and
// without any other secret material: session ticket keys, generic secrets).
func redact(m proto.Message) proto.Message {
	s, ok := m.(*tlsv3.Secret)
	if !ok {
		return m
	}
	c := proto.Clone(s).(*tlsv3.Secret)
	hidden := &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: Redacted}}
	switch t := c.Type.(type) {
	case *tlsv3.Secret_TlsCertificate:
		if t.TlsCertificate.PrivateKey != nil {
			t.TlsCertificate.PrivateKey = hidden
		}
		if t.TlsCertificate.Password != nil {
			t.TlsCertificate.Password = hidden
		}
	case *tlsv3.Secret_SessionTicketKeys:
		t.SessionTicketKeys.Keys = nil
	case *tlsv3.Secret_GenericSecret:
		t.GenericSecret.Secret = hidden
	}
	return c
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
