package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

// meshPKI is a mesh whose one CA issues the workloads' and the gateways'
// certificates, and the proxies' xDS client certificates too.
type meshPKI struct {
	*pki
	gatewayCert tls.Certificate
	gatewayPEM  [2][]byte // cert, key
}

// startMesh runs a server with authenticated xDS and the mesh on, on the
// examples plus an intent whose destinations admit workload identities; the
// gateways' certificate and the trust bundle are Secrets in the folder.
func startMesh(t *testing.T) (*running, *meshPKI) {
	t.Helper()
	p := &meshPKI{pki: newPKI(t)}
	pair, certPEM, keyPEM := issue(t, p.clientCA, translate.GatewaySPIFFEID(trustDomain, group))
	p.gatewayCert, p.gatewayPEM = pair, [2][]byte{certPEM, keyPEM}
	dir := examples(t)
	write(t, filepath.Join(dir, "mesh.yaml"), fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: mesh, namespace: apps, labels: {egress-xds.io/intent: "true"}}
data:
  egress.yaml: |
    destinations:
      - name: checkout-only
        host: checkout.example.com
        ports: [{number: 443, protocol: TLS}]
        allow: [{principal: spiffe://%[1]s/ns/payments/sa/checkout}, {namespace: billing}]
---
apiVersion: v1
kind: Secret
metadata: {name: egress-gateway-mesh, namespace: egress-xds}
type: kubernetes.io/tls
stringData:
  tls.crt: %[2]q
  tls.key: %[3]q
---
apiVersion: v1
kind: Secret
metadata: {name: mesh-ca, namespace: egress-xds}
stringData:
  ca.crt: %[4]q
`, trustDomain, certPEM, keyPEM, p.clientCA.CertPEM))
	opts := p.opts
	r := startConfig(t, timeout(t), server.Config{ConfigDir: dir, XDSTLS: &opts, Translate: translate.Options{Mesh: &translate.MeshOptions{
		TrustDomain: trustDomain, Port: translate.DefaultMeshPort, GatewayAddress: "127.0.0.1:15443",
		GatewayCertificate: &translate.SecretKey{Namespace: "egress-xds", Name: "egress-gateway-mesh"},
		TrustBundle:        &translate.SecretKey{Namespace: "egress-xds", Name: "mesh-ca"},
		SidecarProxyPort:   translate.DefaultSidecarProxyPort, SidecarCapturePort: translate.DefaultSidecarCapturePort,
	}}})
	return r, p
}

func sidecarMetadata(o *xdstest.Options) {
	o.NodeMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{snapshot.RoleMetadataKey: structpb.NewStringValue("sidecar")}}
}

// Over authenticated xDS, a gateway gets the mesh port and its serving key;
// a sidecar with its workload certificate gets its configuration, which
// holds no private key at all (its own is read from files) and none of the
// gateways' origination keys; a sidecar without a workload identity, or a
// gateway asking for sidecar configuration, is refused.
func TestMeshOverSecureXDS(t *testing.T) {
	r, p := startMesh(t)
	workload := clientCert(t, p.clientCA, "spiffe://"+trustDomain+"/ns/payments/sa/checkout")
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			gw := dial(t, r, mode, "gw-"+mode.String(), func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, &p.gatewayCert) })
			if err := gw.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasResource(xdstest.ListenerType, "mesh_15443"))); err != nil {
				t.Fatalf("%v\n%s", err, gw.State())
			}
			if key := secretKey(gw.State().Secrets(), translate.MeshGatewayCertSecret); len(key) == 0 {
				t.Error("the authenticated gateway did not get its mesh serving key")
			}

			sc := dial(t, r, mode, "sidecar-"+mode.String(), sidecarMetadata, func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, workload) })
			if err := sc.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasResource(xdstest.ClusterType, "mesh_gateway"))); err != nil {
				t.Fatalf("%v\n%s", err, sc.State())
			}
			st := sc.State()
			if n := len(st.Clusters()); n != 1 {
				t.Errorf("the sidecar got %d clusters, want only mesh_gateway", n)
			}
			for _, s := range st.Secrets() {
				if tc := s.GetTlsCertificate(); tc.GetPrivateKey().GetInlineBytes() != nil || tc.GetPrivateKey().GetInlineString() != "" {
					t.Errorf("the sidecar was sent the private key of secret %q", s.Name)
				}
				if !strings.HasPrefix(s.Name, "egress-xds:mesh/") {
					t.Errorf("the sidecar was sent secret %q, which is not its own", s.Name)
				}
			}
			if !hasListener(st.Listeners(), "sidecar_capture_15006") || !hasListener(st.Listeners(), "sidecar_proxy_15001") {
				t.Errorf("sidecar listeners missing:\n%s", st)
			}
			// Operators find the sidecars' configuration under sidecar/<group>.
			if dump := get(t, "http://"+r.AdminAddr+"/debug/config_dump?group=sidecar/"+group); !strings.Contains(dump, "mesh_gateway") {
				t.Errorf("config dump of sidecar/%s:\n%.300s", group, dump)
			}

			t.Run("sidecar without certificate", func(t *testing.T) {
				wantStatus(t, sidecarRefusal(t, p.conn(t, r, nil), mode), codes.Unauthenticated,
					"sidecar", "spiffe://"+trustDomain+"/ns/<namespace>/sa/<service-account>")
			})
			t.Run("gateway identity asking for sidecar configuration", func(t *testing.T) {
				wantStatus(t, sidecarRefusal(t, p.conn(t, r, &p.gatewayCert), mode), codes.PermissionDenied,
					"sidecar configuration", "entitles gateway group")
			})
			t.Run("workload identity asking for the gateway configuration", func(t *testing.T) {
				wantStatus(t, refusal(t, p.conn(t, r, workload), mode, group), codes.PermissionDenied,
					"workload identity", "sidecar configuration only")
			})
			t.Run("workload of another trust domain", func(t *testing.T) {
				other := clientCert(t, p.clientCA, "spiffe://evil.org/ns/payments/sa/checkout")
				wantStatus(t, sidecarRefusal(t, p.conn(t, r, other), mode), codes.PermissionDenied, `trust domain is not "example.org"`)
			})
		})
	}
}

// sidecarRefusal is refusal for a node with the sidecar role.
func sidecarRefusal(t *testing.T, cc grpc.ClientConnInterface, mode xdstest.Mode) error {
	t.Helper()
	var o xdstest.Options
	sidecarMetadata(&o)
	return refusalOf(t, cc, mode, &corev3.Node{Id: "sidecar-" + mode.String(), Cluster: group, Metadata: o.NodeMetadata})
}

func hasListener(ls []*listenerv3.Listener, name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}

func secretNamed(ss []*tlsv3.Secret, name string) *tlsv3.Secret {
	for _, s := range ss {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func secretKey(ss []*tlsv3.Secret, name string) []byte {
	return secretNamed(ss, name).GetTlsCertificate().GetPrivateKey().GetInlineBytes()
}

// The certificates the mesh delivers over SDS form valid chains for the
// identities they claim: a Go TLS server set up exactly as the gateway's
// mesh listener says (its serving certificate and trust bundle from SDS,
// client certificates required, the listener's SAN matcher) and a Go
// client set up as the sidecar's mesh_gateway cluster says (its workload
// certificate from files, the trust bundle from SDS, the cluster's SAN
// matcher) complete a handshake on loopback, each seeing the other's
// SPIFFE ID; a workload of another CA, and a gateway of another group, are
// refused.
func TestMeshCertificatesFormValidChains(t *testing.T) {
	r, p := startMesh(t)
	workloadID := "spiffe://" + trustDomain + "/ns/payments/sa/checkout"
	workload := clientCert(t, p.clientCA, workloadID)
	gw := dial(t, r, xdstest.Delta, "gw", func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, &p.gatewayCert) })
	sc := dial(t, r, xdstest.Delta, "sidecar", sidecarMetadata, func(o *xdstest.Options) { o.Address, o.Conn = "", p.conn(t, r, workload) })
	for _, c := range []*xdstest.Client{gw, sc} {
		if err := c.WaitFor(timeout(t), xdstest.Synced); err != nil {
			t.Fatal(err)
		}
	}

	// The gateway side, from what the gateway was sent.
	gst := gw.State()
	serving := secretNamed(gst.Secrets(), translate.MeshGatewayCertSecret).GetTlsCertificate()
	servingPair, err := tls.X509KeyPair(serving.GetCertificateChain().GetInlineBytes(), serving.GetPrivateKey().GetInlineBytes())
	if err != nil {
		t.Fatalf("the gateway's mesh certificate from SDS: %v", err)
	}
	gwBundle := bundle(t, gst.Secrets())
	var down tlsv3.DownstreamTlsContext
	for _, l := range gst.Listeners() {
		if l.Name == "mesh_15443" {
			if err := l.FilterChains[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&down); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !down.GetRequireClientCertificate().GetValue() {
		t.Fatal("the mesh listener does not require client certificates")
	}
	clientSAN := down.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames()[0].GetMatcher().GetPrefix()

	// The sidecar side, from what the sidecar was sent.
	sst := sc.State()
	scBundle := bundle(t, sst.Secrets())
	var up tlsv3.UpstreamTlsContext
	var meshCluster *clusterv3.Cluster
	for _, c := range sst.Clusters() {
		if c.Name == "mesh_gateway" {
			meshCluster = c
		}
	}
	if err := meshCluster.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatal(err)
	}
	serverSAN := up.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact()
	if want := translate.GatewaySPIFFEID(trustDomain, group); serverSAN != want {
		t.Fatalf("the sidecar checks the gateway for %q, want %q", serverSAN, want)
	}

	// handshake runs the gateway with cert against a sidecar presenting
	// client; it returns the identities each side verified.
	handshake := func(cert tls.Certificate, client *tls.Certificate) (seenByGateway, seenBySidecar string, err error) {
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		defer l.Close()
		srvErr := make(chan error, 1)
		go func() {
			conn, err := l.Accept()
			if err != nil {
				srvErr <- err
				return
			}
			defer conn.Close()
			s := tls.Server(conn, &tls.Config{
				Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: gwBundle,
				NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12,
				VerifyConnection: func(cs tls.ConnectionState) error {
					id := uriSAN(cs.PeerCertificates[0])
					if !strings.HasPrefix(id, clientSAN) {
						return fmt.Errorf("client identity %q does not match the listener's %q", id, clientSAN)
					}
					seenByGateway = id
					return nil
				},
			})
			_ = s.SetDeadline(time.Now().Add(5 * time.Second))
			srvErr <- s.Handshake()
		}()
		// Envoy checks the chain and the SAN matchers, not a host name.
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{
			Certificates: []tls.Certificate{*client}, ServerName: up.GetSni(), NextProtos: []string{"h2"},
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				leaf, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return err
				}
				inter := x509.NewCertPool()
				for _, b := range raw[1:] {
					if c, err := x509.ParseCertificate(b); err == nil {
						inter.AddCert(c)
					}
				}
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: scBundle, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
					return err
				}
				if id := uriSAN(leaf); id != serverSAN {
					return fmt.Errorf("gateway identity %q is not %q", id, serverSAN)
				}
				seenBySidecar = uriSAN(leaf)
				return nil
			},
		})
		if err == nil {
			err = c.Handshake()
			c.Close()
		}
		if e := <-srvErr; err == nil {
			err = e
		}
		return seenByGateway, seenBySidecar, err
	}

	gwSaw, scSaw, err := handshake(servingPair, workload)
	if err != nil {
		t.Fatalf("mesh handshake with the SDS certificates failed: %v", err)
	}
	if gwSaw != workloadID || scSaw != translate.GatewaySPIFFEID(trustDomain, group) {
		t.Fatalf("identities seen: gateway saw %q, sidecar saw %q", gwSaw, scSaw)
	}
	if _, _, err := handshake(servingPair, clientCert(t, newCA(t, "rogue-ca"), workloadID)); err == nil {
		t.Error("a workload certificate of another CA was accepted")
	}
	otherGroup, _, _ := issue(t, p.clientCA, translate.GatewaySPIFFEID(trustDomain, "payments"))
	if _, _, err := handshake(otherGroup, workload); err == nil || !strings.Contains(err.Error(), "is not") {
		t.Errorf("a gateway of another group was accepted by the sidecar: %v", err)
	}
}

// bundle is the pool of the mesh trust bundle a proxy was sent.
func bundle(t *testing.T, ss []*tlsv3.Secret) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(secretNamed(ss, translate.MeshTrustBundleSecret).GetValidationContext().GetTrustedCa().GetInlineBytes()) {
		t.Fatal("no trust bundle in the secrets sent")
	}
	return pool
}

func uriSAN(c *x509.Certificate) string {
	if len(c.URIs) != 1 {
		return ""
	}
	return c.URIs[0].String()
}

// A gateway serving key held in a Secret is sent only over authenticated
// xDS: without client certificates the server refuses to start, and says
// how to mount the key instead.
func TestMeshKeyNeedsAuthenticatedXDS(t *testing.T) {
	_, err := server.Start(timeout(t), server.Config{
		ConfigDir: t.TempDir(), XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
		Translate: translate.Options{Mesh: &translate.MeshOptions{
			TrustDomain: trustDomain, Port: translate.DefaultMeshPort, GatewayAddress: translate.DefaultGatewayAddress,
			GatewayCertificate: &translate.SecretKey{Namespace: "egress-xds", Name: "egress-gateway-mesh"},
		}},
	})
	if err == nil || !strings.Contains(err.Error(), "only sent over authenticated xDS") {
		t.Fatalf("got %v, want a refusal to send the key over unauthenticated xDS", err)
	}
}
