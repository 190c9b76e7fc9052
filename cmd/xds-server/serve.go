package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"os/signal"
	"syscall"
	"time"

	"github.com/egress-xds/egress-xds/internal/admin"
	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/xds"
)

type serveFlags struct {
	configDir     string
	xdsAddress    string
	adminAddress  string
	logFormat     string
	logLevel      string
	shutdownGrace time.Duration
	translate     translateFlags
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	fs.StringVar(&f.configDir, "config-dir", "", "folder of ConfigMap and Secret manifests to serve (watched: edits apply without restart)")
	fs.StringVar(&f.xdsAddress, "xds-address", ":18000", "gRPC address of the ADS server (SotW and delta)")
	fs.StringVar(&f.adminAddress, "admin-address", "127.0.0.1:9090", "HTTP address of /healthz, /readyz, /metrics, /debug/config, /debug/proxies")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "how long SIGTERM waits for streams to close before closing connections")
	f.translate.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	opts, err := f.translate.options()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if f.configDir == "" {
		fmt.Fprintln(stderr, "--config-dir is required (a folder of ConfigMap manifests, e.g. examples)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runServer(ctx, f, opts, log); err != nil {
		log.Error("server failed", "error", err)
		return 1
	}
	return 0
}

// runServer runs the control plane until ctx is done.
func runServer(ctx context.Context, f serveFlags, opts translate.Options, log *slog.Logger) error {
	m := metrics.New()
	var builder *snapshot.Builder
	cache := snapshot.NewCache(log, func(string) { builder.Trigger() })
	builder = snapshot.NewBuilder(cache, opts, m, log)

	xdsL, err := net.Listen("tcp", f.xdsAddress)
	if err != nil {
		return fmt.Errorf("xds listener: %w", err)
	}
	adminL, err := net.Listen("tcp", f.adminAddress)
	if err != nil {
		xdsL.Close()
		return fmt.Errorf("admin listener: %w", err)
	}
	srvCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	xs := xds.NewServer(srvCtx, cache, m, log, xds.Options{})
	adminSrv := &http.Server{
		Handler: admin.Handler(admin.Sources{Metrics: m, Cache: cache, Builder: builder, Proxies: xs.Proxies,
			Description: "folder " + f.configDir}),
		ReadHeaderTimeout: 5 * time.Second,
	}

	folder := watch.NewFolder(f.configDir, log)
	folderErr := make(chan error, 1)
	go func() {
		folderErr <- folder.Run(ctx, func(st watch.State) {
			cms, secrets, diags := compile.FromFolder(st)
			m.SourceUpdates.WithLabelValues("folder").Inc()
			builder.Update(snapshot.Input{ConfigMaps: cms, Secrets: secrets, Diagnostics: diags})
		})
	}()
	go builder.Run(ctx)
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
	log.Info("xds-server started", "xds", xdsL.Addr().String(), "admin", adminL.Addr().String(), "config_dir", f.configDir,
		"forward_proxy_port", opts.ForwardProxyPort)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "grace", f.shutdownGrace)
	case err := <-folderErr:
		if err != nil {
			runErr = fmt.Errorf("config folder: %w", err)
		}
	}
	shutdownCtx, done := context.WithTimeout(context.Background(), f.shutdownGrace)
	defer done()
	_ = adminSrv.Shutdown(shutdownCtx)
	xs.Stop(f.shutdownGrace)
	return runErr
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	o := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
