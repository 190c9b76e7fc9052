package bootstrap

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// XDSTLS secures the gateway's xDS connection: TLS with a client
// certificate, which the server's node authorization reads the gateway
// group from (spiffe://<trust-domain>/gateway-group/<group>). Envoy reads
// the certificate, key and CA through file-based SDS and watches their
// folder, so a renewed certificate (cert-manager rewriting the mounted
// Secret) is used without a restart.
type XDSTLS struct {
	// CertDir holds tls.crt, tls.key and ca.crt in the gateway: a mounted
	// kubernetes.io/tls Secret, as cert-manager writes it.
	CertDir string
	// SDSDir is where the SDS files SDSFiles returns are, in the gateway
	// (next to the bootstrap).
	SDSDir string
	// ServerName is the SNI sent and the DNS name the server's certificate
	// must hold; default: the XDSHost.
	ServerName string
}

// Files of file-based SDS for the xDS connection, and their secrets.
const (
	XDSClientCertFile = "xds-client-certificate.yaml"
	XDSCAFile         = "xds-ca.yaml"

	xdsClientCertSecret = "xds_client_certificate"
	xdsCASecret         = "xds_ca"
)

func (x *XDSTLS) check() error {
	for name, dir := range map[string]string{"CertDir": x.CertDir, "SDSDir": x.SDSDir} {
		if !path.IsAbs(dir) || strings.ContainsFunc(dir, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("XDSTLS.%s %q is not an absolute path without spaces", name, dir)
		}
	}
	return nil
}

// xdsTransportSocket is the TLS of xds_cluster: HTTP/2 by ALPN (gRPC), at
// least TLS 1.2, the server verified against the CA and by DNS name.
func xdsTransportSocket(x *XDSTLS, serverName string) (*corev3.TransportSocket, error) {
	sds := func(name, file string) *tlsv3.SdsSecretConfig {
		return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
				Path: path.Join(x.SDSDir, file),
				// The SDS files come from a ConfigMap: reload them when
				// it is updated (its mount swaps a symlink).
				WatchedDirectory: &corev3.WatchedDirectory{Path: x.SDSDir},
			}},
		}}
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: serverName,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"h2"},
			TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(xdsClientCertSecret, XDSClientCertFile)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_DNS,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: serverName}},
						}},
					},
					ValidationContextSdsSecretConfig: sds(xdsCASecret, XDSCAFile),
				},
			},
		},
	}
	a, err := anypb.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// SDSFiles returns the file-based SDS files the bootstrap of x reads, by
// name (XDSClientCertFile, XDSCAFile), as YAML: each names the files of
// CertDir and watches that folder.
func SDSFiles(x XDSTLS) (map[string][]byte, error) {
	if err := x.check(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	file := func(name string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path.Join(x.CertDir, name)}}
	}
	watch := &corev3.WatchedDirectory{Path: x.CertDir}
	secrets := map[string]*tlsv3.Secret{
		XDSClientCertFile: {Name: xdsClientCertSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: file("tls.crt"), PrivateKey: file("tls.key"), WatchedDirectory: watch,
		}}},
		XDSCAFile: {Name: xdsCASecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: file("ca.crt"), WatchedDirectory: watch,
		}}},
	}
	out := map[string][]byte{}
	for name, s := range secrets {
		if err := s.ValidateAll(); err != nil {
			return nil, fmt.Errorf("bootstrap: %s: %w", name, err)
		}
		y, err := sdsYAML(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %s: %w", name, err)
		}
		out[name] = y
	}
	return out, nil
}

// sdsYAML is a file-based SDS file: a discovery response holding msg.
func sdsYAML(msg proto.Message) ([]byte, error) {
	a, err := anypb.New(msg)
	if err != nil {
		return nil, err
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{a}})
	if err != nil {
		return nil, err
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, err
	}
	return append([]byte("# File-based SDS for the xDS connection, rendered by envoy/bootstrap (SDSFiles).\n"), y...), nil
}

// secureXDS adds the TLS transport socket to xds_cluster, whose endpoint
// is host.
func secureXDS(c *clusterv3.Cluster, host string, x *XDSTLS) error {
	if err := x.check(); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	name := x.ServerName
	if name == "" {
		if _, err := netip.ParseAddr(host); err == nil {
			return errors.New("bootstrap: XDSTLS.ServerName is required when XDSHost is an IP address: the DNS name the server's certificate holds")
		}
		name = host
	}
	ts, err := xdsTransportSocket(x, name)
	if err != nil {
		return err
	}
	c.TransportSocket = ts
	return nil
}
