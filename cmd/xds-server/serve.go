package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/xds"
)

type serveFlags struct {
	configDir      string
	kubernetes     bool
	kubeconfig     string
	namespaces     string
	xdsAddress     string
	adminAddress   string
	metricsAddress string
	logFormat      string
	logLevel       string
	shutdownGrace  time.Duration
	// keepaliveTimeout is --xds-keepalive-timeout (checkKeepaliveTimeout).
	keepaliveTimeout time.Duration
	stateDir         string
	translate        translateFlags
	xdsTLS           xdsTLSFlags
	webhook          webhookFlags
}

func serve(args []string, stdout, stderr io.Writer) int {
	return serveCommand(args, stdout, stderr, false)
}

// registerServe declares serve's flags (also listed by xds-server --help).
func registerServe(fs *flag.FlagSet, f *serveFlags) {
	fs.StringVar(&f.configDir, "config-dir", "", "folder of ConfigMap and Secret manifests to serve (watched: edits apply without restart)")
	fs.BoolVar(&f.kubernetes, "kubernetes", false, "watch intent ConfigMaps (label egress-xds.io/intent=true) and the Secrets they reference in Kubernetes, and report problems as Events")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "with --kubernetes: kubeconfig file (default: $KUBECONFIG or ~/.kube/config when present, else the in-cluster ServiceAccount)")
	fs.StringVar(&f.namespaces, "namespaces", "", "with --kubernetes: comma-separated namespaces to watch (default: all)")
	fs.StringVar(&f.xdsAddress, "xds-address", ":18000", "gRPC address of the ADS server (SotW and delta)")
	fs.StringVar(&f.adminAddress, "admin-address", "127.0.0.1:9090", "HTTP address of /healthz, /readyz, /metrics and /debug/ (config, config_dump, proxies, status)")
	fs.StringVar(&f.metricsAddress, "metrics-address", "", "HTTP address of /healthz, /readyz and /metrics alone, without /debug/ (for probes and Prometheus from outside the pod, with the admin address on loopback); empty: none")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&f.keepaliveTimeout, "xds-keepalive-timeout", xds.DefaultKeepaliveTimeout, "how long a proxy may leave the server's keepalive ping, or sent configuration, unread before its connection is closed (TCP_USER_TIMEOUT); between 1s and 10m: longer for fleets pushing very large updates to slow proxies, at the cost of slower dead-peer detection")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "how long SIGTERM waits for streams to close before closing connections")
	fs.StringVar(&f.stateDir, "state-dir", "", "folder keeping what a restart must not lose: the served version of every ConfigMap and the files' last good content (default with --config-dir: ."+"<folder>"+stateDirSuffix+" beside the folder; with --kubernetes: none); off: keep nothing")
	f.translate.register(fs)
	f.xdsTLS.register(fs)
	f.webhook.register(fs)
}

// serveCommand runs serve; top: reached as the default command (no
// command name), whose help is xds-server's.
func serveCommand(args []string, stdout, stderr io.Writer, top bool) int {
	c := newCmdLine("serve", stdout, stderr)
	c.top = top
	var f serveFlags
	registerServe(c.FlagSet, &f)
	if code, ok := c.parse(args); !ok {
		return code
	}
	if len(c.args) > 0 {
		return c.misuse("unexpected argument %q: serve takes flags only; to serve a folder of manifests: --config-dir %s", c.args[0], c.args[0])
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return c.misuse("%v", err)
	}
	f.translate.xdsTrustDomain = f.xdsTLS.trustDomain
	opts, err := f.translate.options()
	if err != nil {
		return c.misuse("%v", err)
	}
	switch {
	case f.kubernetes && f.configDir != "":
		return c.misuse("--config-dir and --kubernetes are mutually exclusive: one source at a time")
	case !f.kubernetes && (f.kubeconfig != "" || f.namespaces != ""):
		return c.misuse("--kubeconfig and --namespaces need --kubernetes")
	case !f.kubernetes && f.configDir == "":
		return c.misuse("a source is required: --config-dir (a folder of ConfigMap manifests, e.g. --config-dir examples) or --kubernetes")
	}
	if err := f.xdsTLS.check(); err != nil {
		return c.misuse("%v", err)
	}
	if err := checkKeepaliveTimeout(f.keepaliveTimeout); err != nil {
		return c.misuse("%v", err)
	}
	if err := f.webhook.check(f.kubernetes); err != nil {
		return c.misuse("%v", err)
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
	var kube *watch.KubeOptions
	if f.kubernetes {
		// client-go logs through klog: send it to the server's log.
		klog.SetSlogLogger(log.With("component", "client-go"))
		kube = &watch.KubeOptions{Kubeconfig: f.kubeconfig, Namespaces: strings.Split(f.namespaces, ",")}
	}
	srv, err := server.Start(ctx, serverConfig(f, opts, kube, log))
	if err != nil {
		return err
	}
	return srv.Wait()
}

// serverConfig is the control plane's configuration from serve's flags.
func serverConfig(f serveFlags, opts translate.Options, kube *watch.KubeOptions, log *slog.Logger) server.Config {
	stateDir, optional := stateDirOf(f)
	return server.Config{
		StateDir:            stateDir,
		StateOptional:       optional,
		ConfigDir:           f.configDir,
		Kubernetes:          kube,
		XDSAddress:          f.xdsAddress,
		AdminAddress:        f.adminAddress,
		MetricsAddress:      f.metricsAddress,
		Translate:           opts,
		ShutdownGrace:       f.shutdownGrace,
		Log:                 log,
		XDSTLS:              f.xdsTLS.options(),
		XDSKeepaliveTimeout: f.keepaliveTimeout,
		Webhook:             f.webhook.config(),
	}
}

// Bounds of --xds-keepalive-timeout: under a second cuts proxies that are
// merely busy; over ten minutes leaves dead ones holding streams.
const (
	minKeepaliveTimeout = time.Second
	maxKeepaliveTimeout = 10 * time.Minute
)

// checkKeepaliveTimeout refuses a --xds-keepalive-timeout out of bounds.
func checkKeepaliveTimeout(d time.Duration) error {
	if d < minKeepaliveTimeout || d > maxKeepaliveTimeout {
		return fmt.Errorf("--xds-keepalive-timeout %v: between 1s and 10m (a proxy that leaves a ping or sent data unread this long is disconnected)", d)
	}
	return nil
}

// stateDirSuffix names the default state folder beside a config folder.
const stateDirSuffix = ".egress-xds-state"

// stateDirOf is the state folder to use, and whether it is only the
// default (a folder that cannot be written is then a warning).
func stateDirOf(f serveFlags) (string, bool) {
	switch {
	case f.stateDir == "off":
		return "", false
	case f.stateDir != "":
		return f.stateDir, false
	case f.configDir == "":
		return "", false
	}
	abs, err := filepath.Abs(f.configDir)
	if err != nil {
		return "", true
	}
	return filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+stateDirSuffix), true
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
