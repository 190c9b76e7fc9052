// Package admin serves the control plane's HTTP admin endpoints: health,
// readiness, Prometheus metrics and what every group and proxy is served.
package admin

import (
	"encoding/json"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// Sources are what the admin endpoints read.
type Sources struct {
	Metrics     *metrics.Metrics
	Cache       *snapshot.Cache
	Builder     *snapshot.Builder
	Proxies     *xds.Proxies
	Description string // e.g. "folder examples"
}

// Handler routes /healthz, /readyz, /metrics, /debug/config,
// /debug/config_dump?group=G (the group's resources as Envoy JSON, with
// their source ConfigMaps), /debug/proxies and /debug/status (per proxy
// and type: SYNCED, STALE or NACKED, with the last NACK and the ConfigMaps
// it traces to). Every JSON answer has one style, documented in the
// README: camelCase names, lists [] when empty (never null), strings that
// do not apply left out; Envoy resources keep Envoy's proto field names.
func Handler(s Sources) http.Handler {
	mux := healthAndMetrics(s)
	mux.HandleFunc("GET /debug/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, configView(s, r.URL.Query().Get("group")))
	})
	mux.HandleFunc("GET /debug/proxies", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, proxiesView(s.Proxies.List(), r.URL.Query().Get("group")))
	})
	mux.HandleFunc("GET /debug/config_dump", func(w http.ResponseWriter, r *http.Request) { configDump(s, w, r) })
	mux.HandleFunc("GET /debug/status", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		writeJSON(w, s.Proxies.Status(q.Get("group"), q.Get("node")))
	})
	return mux
}

// MetricsHandler routes /healthz, /readyz and /metrics alone: what
// probes and Prometheus need from outside the pod, without /debug/, which
// shows every tenant's destinations and allow lists.
func MetricsHandler(s Sources) http.Handler { return healthAndMetrics(s) }

func healthAndMetrics(s Sources) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-s.Builder.Ready():
			_, _ = w.Write([]byte("ready\n"))
		default:
			http.Error(w, "not ready: no snapshot published yet", http.StatusServiceUnavailable)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{Registry: s.Metrics.Registry}))
	return mux
}

// ConfigView is what /debug/config returns.
type ConfigView struct {
	Source      string           `json:"source"`
	Groups      []GroupView      `json:"groups"`
	Diagnostics []DiagnosticView `json:"diagnostics"`
	// DiagnosticsNotShown counts the diagnostics past MaxDiagnosticsShown.
	DiagnosticsNotShown int `json:"diagnosticsNotShown,omitempty"`
}

// MaxDiagnosticsShown bounds the diagnostics /debug/config lists, after
// at most intent.MaxDiagnosticsPerConfigMap per ConfigMap: the answer
// stays small and quick however broken the input is.
const MaxDiagnosticsShown = 1000

// GroupView is one group's snapshot: per type, its version and resources.
type GroupView struct {
	Group string `json:"group"`
	// Mode is the gateway group's enforcement mode, enforce or audit
	// (left out for sidecar snapshots: sidecars do not audit).
	Mode  string              `json:"mode,omitempty"`
	Types map[string]TypeView `json:"types"`
}

// TypeView lists one type's resources.
type TypeView struct {
	Version   string   `json:"version"`
	Resources []string `json:"resources"`
}

// DiagnosticView is one problem in the input.
type DiagnosticView struct {
	Severity  string `json:"severity"`
	File      string `json:"file,omitempty"`
	ConfigMap string `json:"configMap,omitempty"`
	Key       string `json:"key,omitempty"`
	Field     string `json:"field,omitempty"`
	Message   string `json:"message"`
}

func configView(s Sources, only string) ConfigView {
	v := ConfigView{Source: s.Description, Groups: []GroupView{}, Diagnostics: []DiagnosticView{}}
	groups := s.Cache.Groups()
	sort.Strings(groups)
	modes := s.Builder.Modes()
	for _, g := range groups {
		if only != "" && g != only {
			continue
		}
		gs := s.Cache.Snapshot(g)
		if gs == nil {
			continue
		}
		gv := GroupView{Group: g, Types: map[string]TypeView{}}
		if role, group := compile.SplitKey(g); role == translate.RoleGateway {
			gv.Mode = string(intent.ModeEnforce)
			if m, ok := modes[group]; ok {
				gv.Mode = string(m.Mode)
			}
		}
		for _, typ := range gs.TypeURLs() {
			ts := gs.Type(typ)
			gv.Types[metrics.TypeLabel(typ)] = TypeView{Version: ts.Version, Resources: append([]string{}, ts.Names...)}
		}
		v.Groups = append(v.Groups, gv)
	}
	diags := s.Builder.Diagnostics().Capped(intent.MaxDiagnosticsPerConfigMap)
	if len(diags) > MaxDiagnosticsShown {
		for _, d := range diags[MaxDiagnosticsShown:] {
			e, w := d.Counts()
			v.DiagnosticsNotShown += e + w
		}
		diags = diags[:MaxDiagnosticsShown]
	}
	for _, d := range diags {
		cm := ""
		if d.Origin.Name != "" {
			cm = d.Origin.ConfigMap()
		}
		v.Diagnostics = append(v.Diagnostics, DiagnosticView{
			Severity: string(d.Severity), File: d.Origin.File, ConfigMap: cm, Key: d.Origin.Key, Field: d.Path, Message: d.Message,
		})
	}
	return v
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
