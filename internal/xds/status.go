package xds

import (
	"time"

	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
)

// SyncState is how a proxy's copy of one resource type compares with what
// its group is currently served.
type SyncState string

const (
	// Synced: the proxy ACKed (or holds) the group's current version.
	Synced SyncState = "SYNCED"
	// NACKed: the proxy rejected the group's current version.
	NACKed SyncState = "NACKED"
	// Stale: anything else (not sent yet, or sent and not answered).
	Stale SyncState = "STALE"
)

// ProxyStatus is one connected proxy's sync status, as /debug/status
// serves it.
type ProxyStatus struct {
	Node      string    `json:"node"`
	Group     string    `json:"group"`
	Address   string    `json:"address"`
	Protocol  string    `json:"protocol"`
	Connected time.Time `json:"connected"`
	// Types by short type name: Cluster, ClusterLoadAssignment, Listener,
	// RouteConfiguration, Secret.
	Types map[string]TypeSyncStatus `json:"types"`
}

// TypeSyncStatus is one resource type of a proxy.
type TypeSyncStatus struct {
	State   SyncState `json:"state"`
	Current string    `json:"current,omitempty"` // version the group is served now
	Sent    string    `json:"sent,omitempty"`
	Acked   string    `json:"acked,omitempty"`
	// The last rejection, whatever version it was of.
	NACKedVersion string   `json:"nackedVersion,omitempty"`
	NACKError     string   `json:"nackError,omitempty"`
	NACKSources   []string `json:"nackConfigMaps"`
}

// StateOf compares a type's status with the group's current version.
func StateOf(ts TypeStatus, current string) SyncState {
	switch {
	case current != "" && ts.Acked == current:
		return Synced
	case current != "" && ts.NACKedVer == current:
		return NACKed
	default:
		return Stale
	}
}

// Status lists the connected proxies (of group and node, when not empty)
// with the state of every type against their group's current snapshot.
func (p *Proxies) Status(group, node string) []ProxyStatus {
	out := []ProxyStatus{}
	snaps := map[string]*snapshot.GroupSnapshot{}
	for _, px := range p.List() {
		if (group != "" && px.Group != group) || (node != "" && px.NodeID != node) {
			continue
		}
		gs, seen := snaps[px.Group]
		if !seen && p.cache != nil {
			gs = p.cache.Snapshot(px.Group)
			snaps[px.Group] = gs
		}
		st := ProxyStatus{Node: px.NodeID, Group: px.Group, Address: px.Address, Protocol: px.Protocol,
			Connected: px.Connected, Types: map[string]TypeSyncStatus{}}
		for _, typ := range snapshot.TypesFor(px.Group) {
			current := ""
			if gs != nil {
				current = gs.Type(typ).Version
			}
			ts := TypeStatus{}
			if t := px.Types[typ]; t != nil {
				ts = *t
			}
			st.Types[metrics.TypeLabel(typ)] = TypeSyncStatus{
				State: StateOf(ts, current), Current: current, Sent: ts.Sent, Acked: ts.Acked,
				NACKedVersion: ts.NACKedVer, NACKError: ts.LastNACK, NACKSources: nonNil(ts.NACKSources),
			}
		}
		out = append(out, st)
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
