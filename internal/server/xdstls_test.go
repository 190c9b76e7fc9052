package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

const trustDomain = "example.org"

type ca = testpki.CA

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	c, err := testpki.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issue signs a leaf: a server certificate for 127.0.0.1 and xds-server
// when uris is empty, else a client certificate with those URI SANs.
func issue(t *testing.T, c *ca, uris ...string) (tls.Certificate, []byte, []byte) {
	t.Helper()
	l := testpki.Leaf{CommonName: "leaf", URIs: uris, Client: true}
	if len(uris) == 0 {
		l = testpki.Leaf{CommonName: "leaf", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"xds-server"}, Server: true}
	}
	certPEM, keyPEM, err := c.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// pki is the files of a TLS-secured control plane.
type pki struct {
	serverCA, clientCA *ca
	dir                string
	opts               xds.TLSOptions
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{serverCA: newCA(t, "server-ca"), clientCA: newCA(t, "client-ca"), dir: t.TempDir()}
	p.opts = xds.TLSOptions{
		CertFile: filepath.Join(p.dir, "tls.crt"), KeyFile: filepath.Join(p.dir, "tls.key"),
		ClientCAFile: filepath.Join(p.dir, "ca.crt"), TrustDomain: trustDomain,
	}
	p.rotateServer(t)
	write(t, p.opts.ClientCAFile, string(p.clientCA.CertPEM))
	return p
}

// rotateServer writes a new server certificate and returns its serial.
func (p *pki) rotateServer(t *testing.T) *big.Int {
	t.Helper()
	pair, certPEM, keyPEM := issue(t, p.serverCA)
	// Key first, as a Secret update may: a moment of mismatch is tolerated.
	write(t, p.opts.KeyFile, string(keyPEM))
	write(t, p.opts.CertFile, string(certPEM))
	return pair.Leaf.SerialNumber
}

func startTLS(t *testing.T, dir string, opts xds.TLSOptions) *running {
	t.Helper()
	return startConfig(t, context.Background(), server.Config{ConfigDir: dir, XDSTLS: &opts})
}

// conn dials the server over TLS, trusting the server CA, presenting
// client (if any).
func (p *pki) conn(t *testing.T, r *running, client *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "xds-server", MinVersion: tls.VersionTLS12}
	cfg.RootCAs.AddCert(p.serverCA.Cert)
	if client != nil {
		// Sent whatever CAs the server asks for, as Envoy does (Go's
		// own choice would send no certificate the server's CAs did not
		// issue).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return client, nil }
	}
	cc, err := grpc.NewClient(r.XDSAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func clientCert(t *testing.T, c *ca, uris ...string) *tls.Certificate {
	t.Helper()
	pair, _, _ := issue(t, c, uris...)
	return &pair
}

// refusal opens a raw ADS stream, asks for clusters as node of cluster,
// and returns the stream's error; a response is a failure.
func refusal(t *testing.T, cc grpc.ClientConnInterface, mode xdstest.Mode, cluster string) error {
	t.Helper()
	return refusalOf(t, cc, mode, &corev3.Node{Id: "gw-" + mode.String(), Cluster: cluster})
}

func refusalOf(t *testing.T, cc grpc.ClientConnInterface, mode xdstest.Mode, node *corev3.Node) error {
	t.Helper()
	ctx := timeout(t)
	ads := discoverypb.NewAggregatedDiscoveryServiceClient(cc)
	var recv func() error
	if mode == xdstest.Delta {
		s, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		_ = s.Send(&discoverypb.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType})
		recv = func() error {
			resp, err := s.Recv()
			if err == nil {
				t.Errorf("%s: got %d resources, want a refusal", mode, len(resp.GetResources()))
			}
			return err
		}
	} else {
		s, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			return err
		}
		_ = s.Send(&discoverypb.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType})
		recv = func() error {
			resp, err := s.Recv()
			if err == nil {
				t.Errorf("%s: got %d resources, want a refusal", mode, len(resp.GetResources()))
			}
			return err
		}
	}
	for {
		if err := recv(); err != nil {
			return err
		}
	}
}

// wantStatus checks a refusal's code and that its message names what the
// proxy asked for and presented.
func wantStatus(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	st, _ := grpcstatus.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	for _, s := range contains {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("message %q does not contain %q", st.Message(), s)
		}
	}
}

// refusedClient runs an xdstest client that must be refused: it stops with
// an error and holds no resources.
func refusedClient(t *testing.T, cc grpc.ClientConnInterface, mode xdstest.Mode, cluster string) {
	t.Helper()
	c, err := xdstest.New(xdstest.Options{Conn: cc, NodeID: "refused-" + mode.String(), NodeCluster: cluster, Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := timeout(t)
	if err := c.Start(ctx); err == nil {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("the client was not refused")
		}
	}
	if c.Err() == nil || errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("client error %v, want a refusal", c.Err())
	}
	for typ, ts := range c.State().Types {
		if len(ts.Resources) != 0 || ts.Responses != 0 {
			t.Errorf("%s: refused client received %d resources in %d responses", xdstest.ShortType(typ), len(ts.Resources), ts.Responses)
		}
	}
}

// Over TLS with required client certificates, a proxy syncs the group its
// SPIFFE ID names and is refused, with a gRPC error naming the group asked
// for and the identity presented, for any other group, without a
// certificate, with a workload or foreign-trust-domain ID, or with a
// certificate from another CA. SotW and delta.
func TestSecureXDSNodeAuthorization(t *testing.T) {
	p := newPKI(t)
	r := startTLS(t, examples(t), p.opts)
	entitled := clientCert(t, p.clientCA, translate.GatewaySPIFFEID(trustDomain, group))
	entitledID := "spiffe://example.org/gateway-group/egress-gateway"
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			t.Run("entitled", func(t *testing.T) {
				c := dial(t, r, mode, "gw-ok-"+mode.String(), func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, entitled) })
				if err := c.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasVersions(served(t, r)))); err != nil {
					t.Fatalf("%v\n%s", err, c.State())
				}
				if n := len(c.State().Type(resourcev3.SecretType).Resources); n == 0 {
					t.Error("the entitled gateway got no secrets")
				}
			})
			t.Run("other group", func(t *testing.T) {
				cc := p.conn(t, r, entitled)
				wantStatus(t, refusal(t, cc, mode, "payments"), codes.PermissionDenied,
					`gateway group "payments"`, entitledID, `entitles gateway group "egress-gateway" only`)
				refusedClient(t, cc, mode, "payments")
				if n := testutil.ToFloat64(r.Metrics.RefusedProxies.WithLabelValues("payments", "permissiondenied")); n < 1 {
					t.Errorf("refusals counted: %v", n)
				}
				// The connection itself stays usable for the entitled group.
				c := dial(t, r, mode, "gw-same-conn", func(o *xdstest.Options) { o.Address, o.Conn = "", cc })
				if err := c.WaitFor(timeout(t), xdstest.Synced); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("no node cluster", func(t *testing.T) {
				wantStatus(t, refusal(t, p.conn(t, r, entitled), mode, ""), codes.PermissionDenied, `gateway group ""`, entitledID)
			})
			t.Run("no certificate", func(t *testing.T) {
				cc := p.conn(t, r, nil)
				wantStatus(t, refusal(t, cc, mode, group), codes.Unauthenticated,
					`gateway group "egress-gateway" without a client certificate issued by the xDS client CA`, entitledID)
				refusedClient(t, cc, mode, group)
			})
			t.Run("workload identity", func(t *testing.T) {
				cc := p.conn(t, r, clientCert(t, p.clientCA, "spiffe://example.org/ns/egress/sa/egress-gateway"))
				wantStatus(t, refusal(t, cc, mode, group), codes.PermissionDenied,
					`gateway group "egress-gateway"`, "spiffe://example.org/ns/egress/sa/egress-gateway", "entitles sidecar configuration only")
			})
			t.Run("other trust domain", func(t *testing.T) {
				cc := p.conn(t, r, clientCert(t, p.clientCA, "spiffe://evil.org/gateway-group/egress-gateway"))
				wantStatus(t, refusal(t, cc, mode, group), codes.PermissionDenied,
					"spiffe://evil.org/gateway-group/egress-gateway", `trust domain is not "example.org"`)
			})
			t.Run("two URI SANs", func(t *testing.T) {
				cc := p.conn(t, r, clientCert(t, p.clientCA, entitledID, "spiffe://example.org/gateway-group/payments"))
				wantStatus(t, refusal(t, cc, mode, group), codes.PermissionDenied, "more than one URI SAN")
			})
			t.Run("other CA", func(t *testing.T) {
				cc := p.conn(t, r, clientCert(t, newCA(t, "rogue-ca"), entitledID))
				if err := refusal(t, cc, mode, group); grpcstatus.Code(err) != codes.Unavailable {
					t.Fatalf("got %v, want the handshake refused (Unavailable)", err)
				}
				refusedClient(t, cc, mode, group)
				// A Go client that does not send it is Unauthenticated.
				cfg := &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "xds-server",
					Certificates: []tls.Certificate{*clientCert(t, newCA(t, "rogue-ca"), entitledID)}}
				cfg.RootCAs.AddCert(p.serverCA.Cert)
				goCC, err := grpc.NewClient(r.XDSAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
				if err != nil {
					t.Fatal(err)
				}
				defer goCC.Close()
				wantStatus(t, refusal(t, goCC, mode, group), codes.Unauthenticated, "issued by the xDS client CA")
			})
			t.Run("plaintext", func(t *testing.T) {
				cc, err := grpc.NewClient(r.XDSAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				defer cc.Close()
				if err := refusal(t, cc, mode, group); grpcstatus.Code(err) != codes.Unavailable {
					t.Fatalf("got %v, want Unavailable", err)
				}
			})
		})
	}
	if !strings.Contains(r.log.String(), "proxy refused") {
		t.Error("refusals are not logged")
	}
}

// TLS without client certificates: any proxy gets its group, as in
// plaintext.
func TestSecureXDSWithoutClientCertificates(t *testing.T) {
	p := newPKI(t)
	opts := p.opts
	opts.ClientCAFile, opts.TrustDomain = "", ""
	r := startTLS(t, examples(t), opts)
	c := dial(t, r, xdstest.Delta, "gw-anon", func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, nil) })
	if err := c.WaitFor(timeout(t), xdstest.Synced); err != nil {
		t.Fatal(err)
	}
}

// handshake returns the serial of the certificate the server presents to
// a new connection.
func handshake(t *testing.T, r *running, p *pki, client *tls.Certificate) *big.Int {
	t.Helper()
	cfg := &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "xds-server", NextProtos: []string{"h2"}, Certificates: []tls.Certificate{*client}}
	cfg.RootCAs.AddCert(p.serverCA.Cert)
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	conn, err := d.DialContext(timeout(t), "tcp", r.XDSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
}

// A certificate rotated on disk is served to new connections without a
// restart; streams keep running; a broken write keeps the previous
// certificate; a rotated client CA admits the proxies it issued.
func TestSecureXDSRotation(t *testing.T) {
	p := newPKI(t)
	r := startTLS(t, examples(t), p.opts)
	entitled := clientCert(t, p.clientCA, translate.GatewaySPIFFEID(trustDomain, group))
	first := handshake(t, r, p, entitled)
	old := dial(t, r, xdstest.SotW, "gw-old", func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, entitled) })
	if err := old.WaitFor(timeout(t), xdstest.Synced); err != nil {
		t.Fatal(err)
	}

	second := p.rotateServer(t)
	if second.Cmp(first) == 0 {
		t.Fatal("test bug: same serial")
	}
	if got := handshake(t, r, p, entitled); got.Cmp(second) != 0 {
		t.Fatalf("after rotation the server presents serial %v, want the new %v (old %v)", got, second, first)
	}
	c := dial(t, r, xdstest.Delta, "gw-new", func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, entitled) })
	if err := c.WaitFor(timeout(t), xdstest.Synced); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.Done():
		t.Fatalf("the stream of before the rotation ended: %v", old.Err())
	default:
	}

	// A half-written key: the previous certificate stays in service.
	write(t, p.opts.KeyFile, "-----BEGIN PRIVATE KEY-----\ntruncated")
	if got := handshake(t, r, p, entitled); got.Cmp(second) != 0 {
		t.Fatalf("with a broken key file the server presents %v, want the previous %v", got, second)
	}
	if !strings.Contains(r.log.String(), "reload failed") {
		t.Error("the failed reload is not logged")
	}
	third := p.rotateServer(t)
	if got := handshake(t, r, p, entitled); got.Cmp(third) != 0 {
		t.Fatalf("after repair the server presents %v, want %v", got, third)
	}

	// Client CA rotation: a proxy of the new CA is admitted.
	newClientCA := newCA(t, "client-ca-2")
	write(t, p.opts.ClientCAFile, string(p.clientCA.CertPEM)+string(newClientCA.CertPEM))
	c2 := dial(t, r, xdstest.SotW, "gw-new-ca", func(o *xdstest.Options) {
		o.Address, o.Conn = "", p.conn(t, r, clientCert(t, newClientCA, translate.GatewaySPIFFEID(trustDomain, group)))
	})
	if err := c2.WaitFor(timeout(t), xdstest.Synced); err != nil {
		t.Fatal(err)
	}
}

// Start fails clearly on unusable TLS settings.
func TestSecureXDSBadSettings(t *testing.T) {
	p := newPKI(t)
	missing := p.opts
	missing.CertFile = filepath.Join(p.dir, "missing.crt")
	noTD := p.opts
	noTD.TrustDomain = ""
	badTD := p.opts
	badTD.TrustDomain = "Example.org"
	badCA := p.opts
	badCA.ClientCAFile = filepath.Join(p.dir, "bad-ca.crt")
	if err := os.WriteFile(badCA.ClientCAFile, []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]xds.TLSOptions{"missing cert": missing, "no trust domain": noTD, "bad trust domain": badTD, "bad CA": badCA} {
		_, err := server.Start(context.Background(), server.Config{
			ConfigDir: t.TempDir(), XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", XDSTLS: &o,
		})
		if err == nil || !strings.Contains(err.Error(), "xds tls") {
			t.Errorf("%s: got %v, want an xds tls error", name, err)
		}
	}
}
