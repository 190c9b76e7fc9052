// Package server assembles the control plane: the source (a folder, or the
// Kubernetes API) feeds the builder, which publishes group snapshots to the
// cache served over ADS, with the admin endpoints beside it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/egress-xds/egress-xds/internal/admin"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/state"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/webhook"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// Config is what a control plane runs with.
type Config struct {
	// ConfigDir is the folder source; Kubernetes the Kubernetes source.
	// Exactly one is set.
	ConfigDir    string
	Kubernetes   *watch.KubeOptions
	XDSAddress   string
	AdminAddress string
	// MetricsAddress, if set, serves /healthz, /readyz and /metrics alone
	// (no /debug/), so that probes and Prometheus reach them from outside
	// the pod while the admin address stays on loopback.
	MetricsAddress string
	Translate      translate.Options
	ShutdownGrace  time.Duration
	Log            *slog.Logger
	// XDSTLS, if set, serves xDS over TLS, with node authorization when
	// it names a client CA.
	XDSTLS *xds.TLSOptions
	// XDSKeepaliveTimeout is xds.Options.KeepaliveTimeout (0: its
	// default).
	XDSKeepaliveTimeout time.Duration
	// StateDir keeps what a restart must not lose (the served versions,
	// the files' last good content); empty: nothing is kept. When
	// StateOptional, a folder that cannot be written is a warning, not
	// an error.
	StateDir      string
	StateOptional bool
	// Webhook, if set, serves the validating admission webhook of intent
	// ConfigMaps over TLS; Kubernetes source only.
	Webhook *webhook.Config

	// listen opens the xDS listener (net.Listen; tests bind loopback
	// while the configured address is not).
	listen func(network, address string) (net.Listener, error)
}

// Server is a running control plane.
type Server struct {
	XDSAddr, AdminAddr string
	WebhookAddr        string // empty without the webhook
	MetricsAddr        string // empty without MetricsAddress
	Metrics            *metrics.Metrics
	Cache              *snapshot.Cache
	Builder            *snapshot.Builder
	XDS                *xds.Server

	done    chan struct{}
	doneErr error
}

// Start listens on the configured addresses and runs every part until ctx
// is done; Wait returns once everything has stopped.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if (cfg.ConfigDir == "") == (cfg.Kubernetes == nil) {
		return nil, errors.New("server: set exactly one source: a config folder or Kubernetes")
	}
	var kube *watch.Kube
	description, errPrefix := "folder "+cfg.ConfigDir, "config folder"
	if cfg.Kubernetes != nil {
		var err error
		if kube, err = watch.NewKube(*cfg.Kubernetes, log); err != nil {
			return nil, err
		}
		description, errPrefix = kube.Description(), "kubernetes"
	}
	var xdsTLS *xds.ServerTLS
	if cfg.XDSTLS != nil {
		var err error
		if xdsTLS, err = xds.LoadTLS(*cfg.XDSTLS, log); err != nil {
			return nil, err
		}
	}
	if cfg.Webhook != nil && kube == nil {
		return nil, errors.New("server: the admission webhook needs the Kubernetes source: it judges ConfigMaps the API server is about to store")
	}
	if mesh := cfg.Translate.Mesh; mesh != nil {
		// Keys go only to proxies that proved their identity on xDS.
		m := *mesh
		m.PrivateKeysOverXDS = xdsTLS.ClientAuth()
		if err := m.Check(); err != nil {
			return nil, err
		}
		cfg.Translate.Mesh = &m
		if kube != nil {
			kube.Follow(meshSecrets(m)...)
		}
	}
	// Private keys travel inline only to proxies that proved who they are,
	// or over loopback alone; whatever the caller set.
	cfg.Translate.PrivateKeysInline = PrivateKeysInline(cfg.XDSAddress, xdsTLS.ClientAuth())
	warnInsecureXDS(log, cfg.XDSAddress, xdsTLS != nil, xdsTLS.ClientAuth(), cfg.Translate)
	m := metrics.New()
	var builder *snapshot.Builder
	cache := snapshot.NewCache(log, func(string) { builder.Trigger() })
	builder = snapshot.NewBuilder(cache, cfg.Translate, m, log)
	var folder *watch.Folder
	stateSource := description
	if kube == nil {
		folder = watch.NewFolder(cfg.ConfigDir, log)
		abs, err := filepath.Abs(cfg.ConfigDir)
		if err != nil {
			return nil, err
		}
		stateSource = "folder " + abs
	}
	if cfg.StateDir != "" {
		switch st, err := state.Open(cfg.StateDir); {
		case err != nil && !cfg.StateOptional:
			return nil, err
		case err != nil:
			log.Warn("no state folder: a restart while a ConfigMap is broken would lose what it serves; set --state-dir to a writable folder", "error", err)
		default:
			builder.SaveState(st, stateSource)
			if folder != nil {
				folder.SaveState(st)
			}
		}
	}

	if cfg.listen == nil {
		cfg.listen = net.Listen
	}
	xdsL, err := cfg.listen("tcp", cfg.XDSAddress)
	if err != nil {
		return nil, fmt.Errorf("xds listener: %w", err)
	}
	adminL, err := net.Listen("tcp", cfg.AdminAddress)
	if err != nil {
		xdsL.Close()
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	var metricsL net.Listener
	if cfg.MetricsAddress != "" {
		if metricsL, err = net.Listen("tcp", cfg.MetricsAddress); err != nil {
			xdsL.Close()
			adminL.Close()
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
	}
	var hook *admissionWebhook
	if cfg.Webhook != nil {
		if hook, err = listenWebhook(cfg.Webhook, builder, m, log); err != nil {
			xdsL.Close()
			adminL.Close()
			if metricsL != nil {
				metricsL.Close()
			}
			return nil, err
		}
	}
	srvCtx, cancelSrv := context.WithCancel(context.Background())
	xs := xds.NewServer(srvCtx, cache, m, log, xds.Options{TLS: xdsTLS, KeepaliveTimeout: cfg.XDSKeepaliveTimeout})
	s := &Server{
		XDSAddr: xdsL.Addr().String(), AdminAddr: adminL.Addr().String(), WebhookAddr: hook.addr(),
		Metrics: m, Cache: cache, Builder: builder, XDS: xs,
		done: make(chan struct{}),
	}
	sources := admin.Sources{Metrics: m, Cache: cache, Builder: builder, Proxies: xs.Proxies, Description: description}
	adminSrv := &http.Server{Handler: admin.Handler(sources), ReadHeaderTimeout: 5 * time.Second}
	metricsSrv := &http.Server{Handler: admin.MetricsHandler(sources), ReadHeaderTimeout: 5 * time.Second}
	if metricsL != nil {
		s.MetricsAddr = metricsL.Addr().String()
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	sourceErr := make(chan error, 1)
	if kube != nil {
		// Events: the builder reports after every rebuild; the source
		// writes what is new on the ConfigMaps concerned.
		builder.OnReport(func(r snapshot.Report) { kube.Report(r.Diagnostics, r.Accepted) })
		// A gateway's NACK, traced to ConfigMaps, is told on them too.
		xs.Proxies.OnNACK(func(n xds.NACK) {
			kube.ReportRejection(watch.Rejection{ConfigMaps: n.ConfigMaps, Group: n.Group, TypeURL: n.TypeURL, Version: n.Version, Error: n.Error})
		})
		go func() {
			// The first Update comes after the informers synced, so
			// /readyz (first snapshot published) implies a synced source.
			sourceErr <- kube.Run(runCtx, func(st watch.KubeState) {
				cms := make([]compile.ConfigMap, len(st.ConfigMaps))
				for i, cm := range st.ConfigMaps {
					cms[i] = compile.ConfigMap{ConfigMap: cm}
				}
				m.SourceUpdates.WithLabelValues("kubernetes").Inc()
				hook.hold(st.Secrets)
				builder.Update(snapshot.Input{ConfigMaps: cms, Secrets: st.Secrets})
			})
		}()
	} else {
		go func() {
			sourceErr <- folder.Run(runCtx, func(st watch.State) {
				cms, secrets, diags := compile.FromFolder(st)
				m.SourceUpdates.WithLabelValues("folder").Inc()
				builder.Update(snapshot.Input{ConfigMaps: cms, Secrets: secrets, Diagnostics: diags, Settled: true})
			})
		}()
	}
	builderDone := make(chan struct{})
	go func() {
		builder.Run(runCtx)
		close(builderDone)
	}()
	go func() {
		if err := xs.Serve(xdsL); err != nil {
			log.Error("xds server stopped", "error", err)
		}
	}()
	go func() {
		if err := adminSrv.Serve(adminL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "error", err)
		}
	}()
	if metricsL != nil {
		go func() {
			if err := metricsSrv.Serve(metricsL); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "error", err)
			}
		}()
	}
	hook.serve()
	log.Info("xds-server started", "xds", s.XDSAddr, "xds_tls", xdsTLS != nil, "xds_node_authorization", xdsTLS.ClientAuth(), "admin", s.AdminAddr, "metrics", s.MetricsAddr, "webhook", s.WebhookAddr, "source", description,
		"forward_proxy_port", cfg.Translate.ForwardProxyPort, "mesh", cfg.Translate.Mesh != nil,
		"origination_keys", keyDelivery(cfg.Translate))
	if rl := cfg.Translate.RateLimitService; rl != nil && rl.ClientCertDir == "" {
		// Any workload that reaches the service can then spend every
		// destination's global budget (or learn them): say so at start.
		log.Warn("the gateways call the rate limit service without a client certificate: it cannot tell them from any other caller, which could spend the destinations' global budgets; set --ratelimit-tls and --ratelimit-client-cert-dir, and make the service require client certificates (GRPC_CLIENT_TLS_CACERT, GRPC_CLIENT_TLS_SAN)",
			"ratelimit_address", rl.Address, "ratelimit_tls", rl.TLS)
	}

	go func() {
		var runErr error
		sourceDone := false
		select {
		case <-ctx.Done():
			log.Info("shutting down", "grace", cfg.ShutdownGrace)
		case err := <-sourceErr:
			sourceDone = true
			if err != nil {
				runErr = fmt.Errorf("%s: %w", errPrefix, err)
			}
		}
		cancelRun()
		if !sourceDone {
			// Let the source stop (informers, Event writes) before Wait
			// returns, within the grace period.
			select {
			case <-sourceErr:
			case <-time.After(cfg.ShutdownGrace):
				log.Warn("source did not stop within the grace period")
			}
		}
		shutdownCtx, done := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
		defer done()
		_ = adminSrv.Shutdown(shutdownCtx)
		_ = metricsSrv.Shutdown(shutdownCtx)
		hook.shutdown(shutdownCtx)
		xs.Stop(cfg.ShutdownGrace)
		cancelSrv()
		<-builderDone
		s.doneErr = runErr
		close(s.done)
	}()
	return s, nil
}

// Wait blocks until the server has stopped and returns why; it may be
// called any number of times.
func (s *Server) Wait() error {
	<-s.done
	return s.doneErr
}

// meshSecrets are the Secrets the mesh settings name, which the Kubernetes
// source must follow although no intent references them.
func meshSecrets(m translate.MeshOptions) []watch.SecretRef {
	var out []watch.SecretRef
	for _, k := range []*translate.SecretKey{m.GatewayCertificate, m.TrustBundle} {
		if k != nil {
			out = append(out, watch.SecretRef{Namespace: k.Namespace, Name: k.Name})
		}
	}
	return out
}
