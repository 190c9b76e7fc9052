package admin

import (
	"time"

	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// ProxyView is one connected proxy as /debug/proxies serves it: the names
// /debug/status uses, camelCase, and types by short name (Cluster,
// ClusterLoadAssignment, Listener, RouteConfiguration, Secret).
type ProxyView struct {
	StreamID  int64                    `json:"streamId"`
	Node      string                   `json:"node"`
	Group     string                   `json:"group"`
	Address   string                   `json:"address"`
	Protocol  string                   `json:"protocol"` // sotw or delta
	Connected time.Time                `json:"connected"`
	Types     map[string]ProxyTypeView `json:"types"`
}

// ProxyTypeView is what one resource type of a proxy was sent and
// answered; empty strings are left out (nothing sent, no NACK yet).
type ProxyTypeView struct {
	Sent          string   `json:"sent,omitempty"`
	Acked         string   `json:"acked,omitempty"`
	NACKedVersion string   `json:"nackedVersion,omitempty"`
	NACKError     string   `json:"nackError,omitempty"`
	NACKSources   []string `json:"nackConfigMaps"`
}

// proxiesView lists the connected proxies of group ("" for all); [] when
// there is none.
func proxiesView(list []xds.Proxy, group string) []ProxyView {
	out := []ProxyView{}
	for _, p := range list {
		if group != "" && p.Group != group {
			continue
		}
		v := ProxyView{StreamID: p.StreamID, Node: p.NodeID, Group: p.Group, Address: p.Address, Protocol: p.Protocol,
			Connected: p.Connected, Types: map[string]ProxyTypeView{}}
		for typ, t := range p.Types {
			v.Types[metrics.TypeLabel(typ)] = ProxyTypeView{Sent: t.Sent, Acked: t.Acked, NACKedVersion: t.NACKedVer,
				NACKError: t.LastNACK, NACKSources: nonNil(t.NACKSources)}
		}
		out = append(out, v)
	}
	return out
}

// nonNil keeps lists [] rather than null in JSON.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
