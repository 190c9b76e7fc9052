// Package metrics holds the control plane's Prometheus metrics. One value
// of Metrics is created per server and passed to the parts that record.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "egress_xds"

// Metrics are the control plane's own metrics.
type Metrics struct {
	Registry *prometheus.Registry

	ConnectedProxies *prometheus.GaugeVec     // group, protocol
	Responses        *prometheus.CounterVec   // group, type: responses pushed to proxies
	PushedResources  *prometheus.CounterVec   // group, type: resources in those responses
	ACKs             *prometheus.CounterVec   // group, type
	NACKs            *prometheus.CounterVec   // group, type
	Builds           *prometheus.CounterVec   // result: ok, error, unchanged
	BuildDuration    prometheus.Histogram     // seconds
	GroupVersion     *prometheus.GaugeVec     // group, type, version: 1 for the version served
	GroupResources   *prometheus.GaugeVec     // group, type
	GroupMode        *prometheus.GaugeVec     // group, mode: 1 for the mode the group is in
	InvalidSources   prometheus.Gauge         // ConfigMaps or files with errors
	Diagnostics      *prometheus.GaugeVec     // severity
	SourceUpdates    *prometheus.CounterVec   // source: folder, kubernetes
	RefusedProxies   *prometheus.CounterVec   // group, code: xDS streams refused by node authorization
	LastBuildSuccess prometheus.Gauge         // unix seconds
	Convergence      *prometheus.HistogramVec // group: change observed -> proxy ACK, seconds
	PushSize         *prometheus.HistogramVec // group, type: payload bytes of one response
	AdmissionReviews *prometheus.CounterVec   // operation, result: allowed, denied, error
	SecretCertExpiry *prometheus.GaugeVec     // secret, key: NotAfter of a Secret's certificate, unix seconds
}

// New registers every metric, with the Go and process collectors, in a new
// registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		ConnectedProxies: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "connected_proxies",
			Help: "Proxies with an open xDS stream, by gateway group and protocol (sotw or delta)."}, []string{"group", "protocol"}),
		Responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "pushes_total",
			Help: "xDS responses sent to proxies, by gateway group and resource type."}, []string{"group", "type"}),
		PushedResources: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "pushed_resources_total",
			Help: "Resources carried by xDS responses, by gateway group and resource type."}, []string{"group", "type"}),
		ACKs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "acks_total",
			Help: "xDS responses accepted by proxies, by gateway group and resource type."}, []string{"group", "type"}),
		NACKs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "nacks_total",
			Help: "xDS responses rejected by proxies, by gateway group and resource type."}, []string{"group", "type"}),
		Builds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "snapshot_builds_total",
			Help: "Snapshot builds by result: ok (published), unchanged (same versions, nothing pushed), error (last good kept)."}, []string{"result"}),
		BuildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "snapshot_build_duration_seconds",
			Help:    "Time to parse, translate, validate and publish the snapshots of every group.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		GroupVersion: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "snapshot_version_info",
			Help: "Version served to each gateway group per resource type (value 1; the version is a label)."}, []string{"group", "type", "version"}),
		GroupResources: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "snapshot_resources",
			Help: "Resources in each gateway group's snapshot per type."}, []string{"group", "type"}),
		GroupMode: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "gateway_group_mode",
			Help: "Enforcement mode of each gateway group (value 1; the mode, enforce or audit, is a label). Audit lets through what enforce refuses."}, []string{"group", "mode"}),
		InvalidSources: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "invalid_sources",
			Help: "Intent ConfigMaps and manifest files with errors (their last valid version, if any, is still served)."}),
		Diagnostics: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "diagnostics",
			Help: "Problems found in the current input, by severity."}, []string{"severity"}),
		SourceUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "source_updates_total",
			Help: "Changes observed in the intent sources."}, []string{"source"}),
		RefusedProxies: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "refused_proxies_total",
			Help: "xDS streams refused by node authorization (secure xDS), by the gateway group asked for and the gRPC code."}, []string{"group", "code"}),
		LastBuildSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "last_successful_build_timestamp_seconds",
			Help: "Unix time of the last snapshot build that published or confirmed every group."}),
		Convergence: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "convergence_seconds",
			Help:    "Time from a source change being observed to a proxy ACKing the version of a resource type it produced; once per proxy and type, for proxies connected when the version was published.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}, []string{"group"}),
		PushSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "push_size_bytes",
			Help:    "Serialized size of the resources carried by one xDS response, by gateway group and resource type.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10)}, []string{"group", "type"}),
		AdmissionReviews: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "admission_reviews_total",
			Help: "ConfigMap admission reviews answered by the validating webhook, by operation and result: allowed, denied, error (malformed, or not ready: the API server's failure policy applies)."}, []string{"operation", "result"}),
		SecretCertExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "secret_certificate_expiry_timestamp_seconds",
			Help: "Unix time a Secret's certificate expires, for each Secret the intents or mesh settings use (served or held back): the leaf of tls.crt, the earliest certificate of ca.crt."}, []string{"secret", "key"}),
	}
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ConnectedProxies, m.Responses, m.PushedResources, m.ACKs, m.NACKs, m.Builds, m.BuildDuration,
		m.GroupVersion, m.GroupResources, m.GroupMode, m.InvalidSources, m.Diagnostics, m.SourceUpdates, m.RefusedProxies, m.LastBuildSuccess,
		m.Convergence, m.PushSize, m.AdmissionReviews, m.SecretCertExpiry,
	)
	return m
}

// TypeLabel shortens a type URL to the resource's message name, e.g.
// envoy.config.cluster.v3.Cluster -> Cluster.
func TypeLabel(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' || typeURL[i] == '/' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}
