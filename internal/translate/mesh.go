package translate

import (
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// The mesh: sidecars carry their workloads' egress traffic to the gateway
// over mutual TLS (HTTP/2: CONNECT tunnels for TLS and TCP destinations,
// plain requests for HTTP ones), and the gateway authorizes each
// destination by the workload identity in the sidecar's certificate.

// MeshOptions turn the mesh on. Identities are SPIFFE IDs: workloads
// spiffe://<td>/ns/<ns>/sa/<sa>, gateways spiffe://<td>/gateway-group/<group>
// (the same identity that entitles a gateway to its group's xDS).
type MeshOptions struct {
	TrustDomain string
	// Port is the gateway's mesh listener.
	Port uint32
	// GatewayAddress is where sidecars reach their group's gateways,
	// host:port; "{group}" is replaced by the group name.
	GatewayAddress string
	// GatewayCertificate names a kubernetes.io/tls Secret with the
	// gateways' serving certificate, sent to gateways over SDS. Only set
	// it when xDS is authenticated (PrivateKeysOverXDS): a private key
	// goes only to proxies that proved their identity. nil: gateways read
	// tls.crt and tls.key from CertDir.
	GatewayCertificate *SecretKey
	// TrustBundle names a Secret whose ca.crt holds the CAs of workload
	// and gateway certificates (public data, sent to every proxy). nil:
	// proxies read ca.crt from CertDir.
	TrustBundle *SecretKey
	// CertDir is where proxies find their certificate files (a mounted
	// Secret, cert-manager style); watched, so rotation needs no restart.
	CertDir string
	// PrivateKeysOverXDS says proxies are authenticated and authorized per
	// gateway group on the xDS connection.
	PrivateKeysOverXDS bool
	// SidecarProxyPort is the sidecar's explicit proxy (HTTP_PROXY), and
	// SidecarCapturePort its transparent capture listener (iptables
	// REDIRECT of outbound traffic), both on 127.0.0.1; 0 disables one.
	SidecarProxyPort   uint32
	SidecarCapturePort uint32
}

// Defaults of MeshOptions.
const (
	DefaultMeshPort           = 15443
	DefaultMeshCertDir        = "/etc/egress-xds/mesh"
	DefaultSidecarProxyPort   = 15001
	DefaultSidecarCapturePort = 15006
	// DefaultGatewayHost is the Service of a group's gateways in the
	// egress-xds namespace; DefaultGatewayAddress adds the default port.
	DefaultGatewayHost    = "{group}.egress-xds.svc.cluster.local"
	DefaultGatewayAddress = DefaultGatewayHost + ":15443"
)

// SDS names of the mesh certificates. The colon keeps them apart from
// every Secret an intent can name (namespace/name, no colon in either): a
// tenant in a namespace "mesh" cannot replace them, nor be given them.
const (
	MeshTrustBundleSecret  = "egress-xds:mesh/trust-bundle"
	MeshGatewayCertSecret  = "egress-xds:mesh/gateway-certificate"
	MeshWorkloadCertSecret = "egress-xds:mesh/workload-certificate"
)

// GatewayGroupPath is the path of the SPIFFE IDs of gateway groups.
const GatewayGroupPath = "/gateway-group/"

// GatewaySPIFFEID is the identity of a gateway group's gateways: their
// mesh certificate and their xDS client certificate.
func GatewaySPIFFEID(trustDomain, group string) string {
	return "spiffe://" + trustDomain + GatewayGroupPath + group
}

// Check reports mesh options that cannot work, naming the setting.
func (m *MeshOptions) Check() error {
	if m == nil {
		return nil
	}
	tdErr := intent.CheckTrustDomain(m.TrustDomain)
	switch {
	case m.Port == 0 || m.Port > 65535:
		return fmt.Errorf("mesh: port %d is not a valid port", m.Port)
	case tdErr != nil:
		return fmt.Errorf("mesh: trust domain %q: %v", m.TrustDomain, tdErr)
	case m.GatewayCertificate != nil && !m.PrivateKeysOverXDS:
		return fmt.Errorf("mesh: the gateway certificate Secret %s holds a private key, which is only sent over authenticated xDS (client certificates and node authorization); without them, mount it in the gateways under %s", m.GatewayCertificate, m.certDir())
	}
	_, _, err := m.gatewayAddress("group")
	return err
}

// gatewayAddress is where the sidecars of group reach its gateways.
func (m *MeshOptions) gatewayAddress(group string) (host string, port uint32, err error) {
	addr := strings.ReplaceAll(m.GatewayAddress, "{group}", group)
	host, portText, err := net.SplitHostPort(addr)
	p, perr := strconv.ParseUint(portText, 10, 16)
	if err != nil || perr != nil || host == "" || p == 0 {
		return "", 0, fmt.Errorf("mesh: gateway address %q is not host:port", addr)
	}
	return host, uint32(p), nil
}

func (m *MeshOptions) certDir() string {
	if m.CertDir == "" {
		return DefaultMeshCertDir
	}
	return m.CertDir
}

// meshSecrets adds the certificates a proxy of this role needs and reports
// false, with a diagnostic, when a Secret they come from is unusable: the
// mesh is then left out of the configuration, and the rest is served.
func (t *translator) meshSecrets(serving string) bool {
	m := t.opts.Mesh
	ok := true
	// The key stays in the proxy unless a Secret holds it: SDS then
	// carries only where to read the files, and Envoy re-reads them when
	// the directory changes.
	dir := &corev3.WatchedDirectory{Path: m.certDir()}
	bundle := &tlsv3.Secret{Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: fileSource(m.certDir(), keyCACert), WatchedDirectory: dir,
	}}}
	if k := m.TrustBundle; k != nil {
		if problem := t.caBundleProblem(*k, " (the mesh trust bundle)"); problem != "" {
			t.meshProblem(problem)
			ok = false
		}
		bundle = caSecret(*k, t.secrets)
	}
	cert := fileCertificateSecret(m.certDir())
	if k := m.GatewayCertificate; k != nil && serving == MeshGatewayCertSecret {
		problem, warning := t.keyPairProblem(*k, " (the gateways' mesh certificate)")
		if problem != "" {
			t.meshProblem(problem)
			ok = false
		}
		if warning != "" {
			t.diags = append(t.diags, intent.Diagnostic{Origin: intent.Origin{File: "mesh settings"}, Message: warning, Severity: intent.SeverityWarning})
		}
		cert = tlsCertificateSecret(*k, t.secrets)
	}
	if !ok {
		return false
	}
	bundle.Name, cert.Name = MeshTrustBundleSecret, serving
	t.addSecret(bundle)
	t.addSecret(cert)
	return true
}

func fileSource(dir, name string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path.Join(dir, name)}}
}

// meshProblem reports an unusable mesh Secret. Its origin is the mesh
// settings: a server flag names the Secret, not any ConfigMap.
func (t *translator) meshProblem(problem string) {
	t.diags = append(t.diags, intent.Diagnostic{
		Origin:   intent.Origin{File: "mesh settings"},
		Message:  problem + "; the mesh is not served until it is fixed",
		Severity: intent.SeverityError,
	})
}

// meshTLSContext is the common TLS context of both ends of the mesh: the
// proxy's own certificate, and the trust bundle with the SPIFFE IDs the
// peer may present.
func meshTLSContext(cert string, peer *matcherv3.StringMatcher) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		AlpnProtocols:                  []string{"h2"},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig(cert)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: peer,
				}}},
				ValidationContextSdsSecretConfig: sdsConfig(MeshTrustBundleSecret),
			},
		},
		TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
	}
}

// meshListener is the gateway's mesh port: it terminates the sidecars'
// mutual TLS (any workload of the trust domain may connect), then routes
// like the forward proxy, CONNECT for TLS and TCP destinations and plain
// requests for HTTP ones, with each destination's allow list matched
// against the caller's SPIFFE ID.
func (t *translator) meshListener(dps []*destPort) {
	m := t.opts.Mesh
	if !t.meshSecrets(MeshGatewayCertSecret) {
		return
	}
	name := listenerName(kindMesh, m.Port)
	l := t.listener(name, m.Port)
	down := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: meshTLSContext(MeshGatewayCertSecret, &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + m.TrustDomain + "/ns/"},
		}),
	}
	l.FilterChains = []*listenerv3.FilterChain{{
		Name:    name,
		Filters: []*listenerv3.Filter{t.connectionManager(name, dps, true)},
		TransportSocket: &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: t.pack(down)},
		},
	}}
	t.addListener(l, t.forwardProxyRoutes(name, dps), dps)
}
