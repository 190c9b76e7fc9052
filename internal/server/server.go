// Package server assembles the control plane: the folder source feeds the
// builder, which publishes group snapshots to the cache served over ADS,
// with the admin endpoints beside it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/egress-xds/egress-xds/internal/admin"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// Config is what a control plane runs with.
type Config struct {
	ConfigDir     string
	XDSAddress    string
	AdminAddress  string
	Translate     translate.Options
	ShutdownGrace time.Duration
	Log           *slog.Logger
}

// Server is a running control plane.
type Server struct {
	XDSAddr, AdminAddr string
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
	m := metrics.New()
	var builder *snapshot.Builder
	cache := snapshot.NewCache(log, func(string) { builder.Trigger() })
	builder = snapshot.NewBuilder(cache, cfg.Translate, m, log)

	xdsL, err := net.Listen("tcp", cfg.XDSAddress)
	if err != nil {
		return nil, fmt.Errorf("xds listener: %w", err)
	}
	adminL, err := net.Listen("tcp", cfg.AdminAddress)
	if err != nil {
		xdsL.Close()
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	srvCtx, cancelSrv := context.WithCancel(context.Background())
	xs := xds.NewServer(srvCtx, cache, m, log, xds.Options{})
	s := &Server{
		XDSAddr: xdsL.Addr().String(), AdminAddr: adminL.Addr().String(),
		Metrics: m, Cache: cache, Builder: builder, XDS: xs,
		done: make(chan struct{}),
	}
	adminSrv := &http.Server{
		Handler: admin.Handler(admin.Sources{Metrics: m, Cache: cache, Builder: builder, Proxies: xs.Proxies,
			Description: "folder " + cfg.ConfigDir}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	folder := watch.NewFolder(cfg.ConfigDir, log)
	folderErr := make(chan error, 1)
	go func() {
		folderErr <- folder.Run(runCtx, func(st watch.State) {
			cms, secrets, diags := compile.FromFolder(st)
			m.SourceUpdates.WithLabelValues("folder").Inc()
			builder.Update(snapshot.Input{ConfigMaps: cms, Secrets: secrets, Diagnostics: diags})
		})
	}()
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
	log.Info("xds-server started", "xds", s.XDSAddr, "admin", s.AdminAddr, "config_dir", cfg.ConfigDir,
		"forward_proxy_port", cfg.Translate.ForwardProxyPort)

	go func() {
		var runErr error
		select {
		case <-ctx.Done():
			log.Info("shutting down", "grace", cfg.ShutdownGrace)
		case err := <-folderErr:
			if err != nil {
				runErr = fmt.Errorf("config folder: %w", err)
			}
		}
		cancelRun()
		shutdownCtx, done := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
		defer done()
		_ = adminSrv.Shutdown(shutdownCtx)
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
