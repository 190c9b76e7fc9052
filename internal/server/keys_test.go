package server_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

const partnerKey = "apps/partner-client-cert"

// startAs runs a server configured for address (":18000", not loopback)
// while it really listens on 127.0.0.1, so that the rule for private keys
// sees what an operator's server would see.
func startAs(t *testing.T, address string, cfg server.Config) *running {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	cfg.XDSAddress, cfg.AdminAddress = address, "127.0.0.1:0"
	cfg.Translate.ForwardProxyPort = 3128
	cfg.ShutdownGrace = time.Second
	cfg.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	server.ListenWith(&cfg, func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") })
	srv, err := server.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &running{Server: srv, log: logs, cancel: cancel}
	t.Cleanup(r.stop)
	return r
}

// synced connects a gateway of the group (over conn when given) and
// returns its secrets once it holds what the group is served.
func synced(t *testing.T, r *running, mode xdstest.Mode, opts ...func(*xdstest.Options)) map[string]*tlsv3.Secret {
	t.Helper()
	c := dial(t, r, mode, "gw-"+mode.String(), opts...)
	want := served(t, r)
	for typ := range want {
		// A type with no resources (no secrets) is never asked for.
		if len(r.Cache.Snapshot(group).Type(typ).Names) == 0 {
			delete(want, typ)
		}
	}
	if err := c.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasVersions(want))); err != nil {
		t.Fatalf("%v\n%s", err, c.State())
	}
	out := map[string]*tlsv3.Secret{}
	for _, s := range c.Secrets() {
		out[s.Name] = s
	}
	return out
}

func inlineKey(s *tlsv3.Secret) bool {
	k := s.GetTlsCertificate().GetPrivateKey()
	return len(k.GetInlineBytes()) > 0 || k.GetInlineString() != ""
}

// What an unauthenticated peer of a plaintext xDS port on every interface
// gets, over SotW and delta: no private key in any secret, the MUTUAL
// destination held back with a diagnostic naming the fixes, everything
// else served, and a warning in the log at start.
func TestPlaintextBeyondLoopbackSendsNoPrivateKey(t *testing.T) {
	r := startAs(t, ":18000", server.Config{ConfigDir: examples(t)})
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			secrets := synced(t, r, mode)
			for name, s := range secrets {
				if inlineKey(s) {
					t.Errorf("secret %s carries a private key to an unauthenticated proxy", name)
				}
			}
			if _, ok := secrets[partnerKey]; ok {
				t.Errorf("secret %s was served", partnerKey)
			}
			clusters := r.Cache.Snapshot(group).Type(resourcev3.ClusterType).Names
			if strings.Contains(strings.Join(clusters, " "), "apps/partner/") || len(clusters) != 9 { // 8 destinations and source_not_allowed
				t.Errorf("clusters %v: want the examples without partner", clusters)
			}
		})
	}
	diags := r.Builder.Diagnostics().Error()
	for _, want := range []string{"destinations[0].tls.clientCertificate.secret", "Secret " + partnerKey + ": its private key is not sent",
		"--xds-client-ca", "--origination-secret-dir", "destination partner is held back"} {
		if !strings.Contains(diags, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, diags)
		}
	}
	log := r.log.String()
	if !strings.Contains(log, "xDS is plaintext on a non-loopback address") || !strings.Contains(log, "origination_keys=\"held back\"") {
		t.Errorf("no startup warning:\n%s", log)
	}
}

// On loopback alone (a laptop) and to proxies that proved their identity,
// the key is sent inline, and nothing is warned about.
func TestPrivateKeyInlineOnLoopbackOrWithClientAuth(t *testing.T) {
	t.Run("loopback", func(t *testing.T) {
		r := startAs(t, "127.0.0.1:18000", server.Config{ConfigDir: examples(t)})
		if s := synced(t, r, xdstest.SotW)[partnerKey]; s == nil || !inlineKey(s) {
			t.Errorf("no inline key for %s on loopback: %v", partnerKey, s)
		}
		if strings.Contains(r.log.String(), "msg=\"xDS ") {
			t.Errorf("warnings on loopback:\n%s", r.log.String())
		}
	})
	t.Run("client auth", func(t *testing.T) {
		p := newPKI(t)
		r := startAs(t, ":18000", server.Config{ConfigDir: examples(t), XDSTLS: &p.opts})
		entitled := clientCert(t, p.clientCA, translate.GatewaySPIFFEID(trustDomain, group))
		s := synced(t, r, xdstest.Delta, func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, entitled) })[partnerKey]
		if s == nil || !inlineKey(s) {
			t.Errorf("no inline key for %s with node authorization: %v", partnerKey, s)
		}
		if strings.Contains(r.log.String(), "msg=\"xDS ") {
			t.Errorf("warnings with node authorization:\n%s", r.log.String())
		}
	})
}

// TLS without client certificates proves nothing about the proxy: keys
// are held back, and the server says so at start.
func TestTLSWithoutClientAuthWarnsAndHoldsKeys(t *testing.T) {
	p := newPKI(t)
	opts := p.opts
	opts.ClientCAFile, opts.TrustDomain = "", ""
	r := startAs(t, "0.0.0.0:18000", server.Config{ConfigDir: examples(t), XDSTLS: &opts})
	secrets := synced(t, r, xdstest.SotW, func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, nil) })
	if _, ok := secrets[partnerKey]; ok {
		t.Errorf("%s served over TLS without client certificates", partnerKey)
	}
	if !strings.Contains(r.log.String(), "xDS has TLS but no client certificates") {
		t.Errorf("no startup warning:\n%s", r.log.String())
	}
}

// With --origination-secret-dir the destination is served to anyone, but
// its secret only says where the gateway reads the files.
func TestOriginationSecretDirServesFileReferences(t *testing.T) {
	r := startAs(t, ":18000", server.Config{ConfigDir: examples(t),
		Translate: translate.Options{OriginationSecretDir: "/etc/egress-xds/secrets"}})
	s := synced(t, r, xdstest.Delta)[partnerKey]
	tc := s.GetTlsCertificate()
	if s == nil || inlineKey(s) || tc.GetPrivateKey().GetFilename() != "/etc/egress-xds/secrets/apps/partner-client-cert/tls.key" ||
		tc.GetWatchedDirectory().GetPath() != "/etc/egress-xds/secrets/apps/partner-client-cert" {
		t.Errorf("secret %s: %v", partnerKey, s)
	}
	if log := r.log.String(); !strings.Contains(log, "gateways read origination keys from /etc/egress-xds/secrets") {
		t.Errorf("the startup warning does not say keys come from files:\n%s", log)
	}
	// The server still checks the Secret, and exports its expiry.
	if v := testutil.ToFloat64(r.Metrics.SecretCertExpiry.WithLabelValues(partnerKey, "tls.crt")); v < float64(time.Now().Unix()) {
		t.Errorf("expiry metric %v", v)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:18000": true, "127.1.2.3:1": true, "[::1]:18000": true, "localhost:18000": true, "LOCALHOST:1": true,
		":18000": false, "0.0.0.0:18000": false, "[::]:18000": false, "10.0.0.1:18000": false, "xds-server:18000": false,
		"localhost.evil.com:1": false, "": false,
	} {
		if got := server.LoopbackOnly(addr); got != want {
			t.Errorf("LoopbackOnly(%q) = %v, want %v", addr, got, want)
		}
	}
	if !server.PrivateKeysInline(":18000", true) || server.PrivateKeysInline(":18000", false) {
		t.Error("PrivateKeysInline does not follow client authentication")
	}
}
