package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/webhook"
)

// admissionWebhook is the server's validating admission webhook; its
// methods do nothing on nil (no webhook configured).
type admissionWebhook struct {
	listener net.Listener
	http     *http.Server
	log      *slog.Logger
	// held are the Secrets the source holds, for the webhook's warnings.
	held atomic.Pointer[translate.Secrets]
}

// listenWebhook loads the webhook's certificate and listens; it judges
// with the builder's Review once the builder is ready.
func listenWebhook(cfg *webhook.Config, builder *snapshot.Builder, m *metrics.Metrics, log *slog.Logger) (*admissionWebhook, error) {
	certs, err := cfg.LoadCertificate(log)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("webhook listener: %w", err)
	}
	w := &admissionWebhook{listener: l, log: log}
	h := webhook.Handler(webhook.Options{Reviewer: builder, Metrics: m, Log: log, Secrets: w.secrets})
	w.http = webhook.NewHTTPServer(h, certs, log)
	return w, nil
}

func (w *admissionWebhook) secrets() translate.Secrets {
	if p := w.held.Load(); p != nil {
		return *p
	}
	return nil
}

// hold records the Secrets the source passed to the builder.
func (w *admissionWebhook) hold(secrets []corev1.Secret) {
	if w == nil {
		return
	}
	s := compile.Secrets(secrets)
	w.held.Store(&s)
}

func (w *admissionWebhook) addr() string {
	if w == nil {
		return ""
	}
	return w.listener.Addr().String()
}

func (w *admissionWebhook) serve() {
	if w == nil {
		return
	}
	go func() {
		if err := w.http.ServeTLS(w.listener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error("webhook server stopped", "error", err)
		}
	}()
}

func (w *admissionWebhook) shutdown(ctx context.Context) {
	if w != nil {
		_ = w.http.Shutdown(ctx)
	}
}
