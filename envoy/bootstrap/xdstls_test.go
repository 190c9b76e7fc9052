package bootstrap

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

var secureParams = XDSTLS{CertDir: "/etc/egress-xds/xds", SDSDir: "/etc/envoy"}

// The secure bootstrap is the shipped one plus TLS on xds_cluster: the
// server checked by CA and DNS name (the SNI), the client certificate and
// the CA read through file-based SDS that watches the mounted Secret.
func TestRenderSecureXDS(t *testing.T) {
	x := secureParams
	out, err := Render(Params{NodeID: "gw", XDSTLS: &x})
	if err != nil {
		t.Fatal(err)
	}
	b := check(t, out, want{node: "gw", cluster: DefaultCluster, host: DefaultXDSHost, port: DefaultXDSPort, admin: DefaultAdminPort})
	c, _ := xdsCluster(b)
	up := &tlsv3.UpstreamTlsContext{}
	if c.GetTransportSocket().GetName() != "envoy.transport_sockets.tls" || c.GetTransportSocket().GetTypedConfig().UnmarshalTo(up) != nil {
		t.Fatalf("xds_cluster transport socket %v", c.GetTransportSocket())
	}
	common := up.GetCommonTlsContext()
	certs := common.GetTlsCertificateSdsSecretConfigs()
	ca := common.GetCombinedValidationContext()
	san := ca.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
	if up.GetSni() != DefaultXDSHost || len(certs) != 1 || certs[0].GetSdsConfig().GetPathConfigSource().GetPath() != "/etc/envoy/"+XDSClientCertFile ||
		ca.GetValidationContextSdsSecretConfig().GetSdsConfig().GetPathConfigSource().GetPath() != "/etc/envoy/"+XDSCAFile ||
		len(san) != 1 || san[0].GetMatcher().GetExact() != DefaultXDSHost || san[0].GetSanType() != tlsv3.SubjectAltNameMatcher_DNS ||
		strings.Join(common.GetAlpnProtocols(), ",") != "h2" {
		t.Errorf("xds_cluster TLS %v", up)
	}
	files, err := SDSFiles(x)
	if err != nil {
		t.Fatal(err)
	}
	for name, wantSecret := range map[string]string{XDSClientCertFile: certs[0].GetName(), XDSCAFile: ca.GetValidationContextSdsSecretConfig().GetName()} {
		js, err := yaml.YAMLToJSONStrict(files[name])
		if err != nil {
			t.Fatal(err)
		}
		resp := &discoveryv3.DiscoveryResponse{}
		if err := protojson.Unmarshal(js, resp); err != nil || len(resp.GetResources()) != 1 {
			t.Fatalf("%s: %v %v", name, err, resp)
		}
		s := &tlsv3.Secret{}
		if err := resp.GetResources()[0].UnmarshalTo(s); err != nil || s.GetName() != wantSecret || s.ValidateAll() != nil {
			t.Fatalf("%s: secret %v (%v), want %s", name, s, err, wantSecret)
		}
		watched := s.GetTlsCertificate().GetWatchedDirectory().GetPath() + s.GetValidationContext().GetWatchedDirectory().GetPath()
		if watched != x.CertDir {
			t.Errorf("%s watches %q, want the certificate folder", name, watched)
		}
	}
	if !bytes.Contains(files[XDSClientCertFile], []byte("/etc/egress-xds/xds/tls.key")) || !bytes.Contains(files[XDSCAFile], []byte("/etc/egress-xds/xds/ca.crt")) {
		t.Errorf("SDS files:\n%s\n%s", files[XDSClientCertFile], files[XDSCAFile])
	}

	for _, bad := range []Params{
		{NodeID: "gw", XDSTLS: &XDSTLS{CertDir: "certs", SDSDir: "/etc/envoy"}},
		{NodeID: "gw", XDSTLS: &XDSTLS{CertDir: "/certs", SDSDir: ""}},
		{NodeID: "gw", XDSHost: "10.0.0.1", XDSTLS: &XDSTLS{CertDir: "/certs", SDSDir: "/etc/envoy"}},
	} {
		if _, err := Render(bad); err == nil {
			t.Errorf("%+v: no error", *bad.XDSTLS)
		}
	}
}

// securePKI writes, in dir, a CA, the xds-server's certificate (DNS name
// xds-server) and a gateway group's client certificate as cert-manager
// would mount them (tls.crt, tls.key, ca.crt).
func securePKI(t *testing.T, dir, group string) (srv xds.TLSOptions, gatewayDir string) {
	t.Helper()
	ca, err := testpki.NewCA("egress-xds-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for sub, leaf := range map[string]testpki.Leaf{
		"server":  {CommonName: "xds-server", DNSNames: []string{DefaultXDSHost}, Server: true},
		"gateway": testpki.SPIFFE(translate.GatewaySPIFFEID("cluster.local", group)),
	} {
		c, k, err := ca.Issue(leaf)
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(dir, sub, "tls.crt"), c)
		write(filepath.Join(dir, sub, "tls.key"), k)
		write(filepath.Join(dir, sub, "ca.crt"), ca.CertPEM)
	}
	s := filepath.Join(dir, "server")
	return xds.TLSOptions{CertFile: filepath.Join(s, "tls.crt"), KeyFile: filepath.Join(s, "tls.key"),
		ClientCAFile: filepath.Join(s, "ca.crt"), TrustDomain: "cluster.local"}, filepath.Join(dir, "gateway")
}

// writeSecure renders the secure bootstrap and its SDS files into dir.
func writeSecure(t *testing.T, dir string, p Params) string {
	t.Helper()
	out, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	files, err := SDSFiles(*p.XDSTLS)
	if err != nil {
		t.Fatal(err)
	}
	files["bootstrap.yaml"] = out
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "bootstrap.yaml")
}

// A real Envoy runs the secure bootstrap against a server with node
// authorization: it loads the certificate files through SDS, passes the
// server's checks and ACKs its group's configuration.
func TestSecureXDSWithEnvoy(t *testing.T) {
	bin := envoytest.Find(t)
	dir := t.TempDir()
	srvTLS, gwCerts := securePKI(t, dir, DefaultCluster)
	file := writeSecure(t, dir, Params{NodeID: "validate", XDSHost: "127.0.0.1", AdminPort: -1,
		XDSTLS: &XDSTLS{CertDir: gwCerts, SDSDir: dir, ServerName: DefaultXDSHost}})
	envoytest.MustValidateFile(t, bin, file)
	if t.Failed() {
		return
	}

	config := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fpPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logs := &xdstest.LogBuffer{}
	srv, err := server.Start(ctx, server.Config{ConfigDir: config, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
		XDSTLS: &srvTLS, ShutdownGrace: time.Second, Log: slog.New(slog.NewTextHandler(logs, nil)),
		Translate: translate.Options{ForwardProxyPort: uint32(fpPort), ListenerAddress: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = srv.Wait() }()
	_, port, _ := net.SplitHostPort(srv.XDSAddr)
	p, _ := strconv.Atoi(port)
	file = writeSecure(t, dir, Params{NodeID: "gw-secure", XDSHost: "127.0.0.1", XDSPort: p, AdminPort: -1,
		XDSTLS: &XDSTLS{CertDir: gwCerts, SDSDir: dir, ServerName: DefaultXDSHost}})
	var stderr xdstest.LogBuffer
	cmd := exec.CommandContext(ctx, bin.Path, "-c", file, "--service-node", "gw-secure", "--service-cluster", DefaultCluster,
		"--concurrency", "1", "--disable-hot-restart", "--log-level", "warn")
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	for testutil.ToFloat64(srv.Metrics.ACKs.WithLabelValues(DefaultCluster, "Listener")) < 1 {
		select {
		case <-ctx.Done():
			t.Fatalf("Envoy never ACKed its listeners over secure xDS\nenvoy:\n%s\nserver:\n%s", stderr.String(), logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if strings.Contains(logs.String(), "proxy refused") {
		t.Errorf("the gateway was refused:\n%s", logs.String())
	}
}
