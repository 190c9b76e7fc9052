package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// envPrefix names the environment variables that set flags.
const envPrefix = "EGRESS_XDS_"

// applyEnv sets every flag not given on the command line from its
// environment variable (--config-dir: EGRESS_XDS_CONFIG_DIR).
func applyEnv(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
		}
	})
	return err
}

// envName is the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// translateFlags are the gateway-level translation settings shared by
// serve and validate, so that validate judges input as the server would.
type translateFlags struct {
	forwardProxyPort uint
	portMap          portMap
	systemCA         string
	listenerAddress  string
	statsPort        uint
	dnsResolvers     resolverList
	mesh             meshFlags
	// xdsTrustDomain is --xds-trust-domain, the mesh's default (serve).
	xdsTrustDomain string
	keys           keyFlags
	// settingsNamespace is where gateway group settings are obeyed from;
	// auditRefused the upstream networks audit never forwards to.
	settingsNamespace string
	auditRefused      prefixList
	rateLimit         rateLimitFlags
}

// meshFlags turn on the mesh: mutual TLS from sidecars to the gateways.
type meshFlags struct {
	port               uint
	trustDomain        string
	gatewayAddress     string
	gatewayCertificate string
	trustBundle        string
	certDir            string
	sidecarProxyPort   uint
	sidecarCapturePort uint
}

func (t *translateFlags) register(fs *flag.FlagSet) {
	fs.UintVar(&t.forwardProxyPort, "forward-proxy-port", 3128, "gateway port of the explicit HTTP proxy (CONNECT and absolute-form requests); 0 disables it")
	fs.Var(&t.portMap, "port-map", "listener port for a declared port, e.g. 443=8443,80=8080 for gateways running without privileges")
	fs.UintVar(&t.statsPort, "gateway-stats-port", 9902, "the gateways' Prometheus stats listener (envoy/bootstrap), kept out of intents; 0: none")
	fs.StringVar(&t.listenerAddress, "listener-address", "0.0.0.0", "address the gateways' listeners bind (127.0.0.1 for a gateway on a laptop)")
	fs.Var(&t.dnsResolvers, "dns-resolver", "DNS servers the gateways resolve upstream names with, IP[:port] (default port 53), comma-separated, in order, e.g. 10.0.0.10:53,[fd00::53]:53 (default: each gateway's system resolver, /etc/resolv.conf)")
	fs.StringVar(&t.systemCA, "system-ca-bundle", translate.DefaultSystemCABundle, "CA bundle path inside the gateway, used to verify upstream servers when an intent names no CA Secret")
	t.keys.register(fs)
	fs.StringVar(&t.settingsNamespace, "settings-namespace", "", "the one namespace whose settings ConfigMaps (label egress-xds.io/settings) set gateway groups' modes, e.g. audit; settings elsewhere are refused (default: the server's own namespace in a pod, else "+defaultSettingsNamespace+")")
	fs.Var(&t.auditRefused, "audit-refused-networks", "upstream networks a group in audit mode never forwards undeclared traffic to, comma-separated CIDRs (default: loopback, link-local, private and unique-local ranges: "+prefixList(translate.DefaultAuditRefusedNetworks).String()+")")
	t.rateLimit.register(fs)
	m := &t.mesh
	fs.UintVar(&m.port, "mesh-port", 0, fmt.Sprintf("gateway port of the mesh (mutual TLS from sidecars, e.g. %d); 0: no mesh, no sidecars", translate.DefaultMeshPort))
	fs.StringVar(&m.trustDomain, "mesh-trust-domain", "", "with --mesh-port: SPIFFE trust domain of workload and gateway identities (default: --xds-trust-domain, else cluster.local)")
	fs.StringVar(&m.gatewayAddress, "mesh-gateway-address", "", "where sidecars reach their group's gateways, host:port, {group} replaced (default "+translate.DefaultGatewayHost+":<mesh-port>)")
	fs.StringVar(&m.gatewayCertificate, "mesh-gateway-secret", "", "namespace/name of a kubernetes.io/tls Secret with the gateways' mesh certificate (SPIFFE ID spiffe://<td>/gateway-group/<group>), sent over SDS; needs --xds-client-ca. Default: gateways read tls.crt and tls.key from --mesh-cert-dir")
	fs.StringVar(&m.trustBundle, "mesh-trust-bundle-secret", "", "namespace/name of a Secret whose ca.crt is the mesh CA bundle, sent over SDS. Default: proxies read ca.crt from --mesh-cert-dir")
	fs.StringVar(&m.certDir, "mesh-cert-dir", translate.DefaultMeshCertDir, "folder in the proxies holding tls.crt, tls.key and ca.crt when they do not come from Secrets (watched: rotation without restart)")
	fs.UintVar(&m.sidecarProxyPort, "sidecar-proxy-port", translate.DefaultSidecarProxyPort, "sidecars' explicit proxy on 127.0.0.1 (HTTP_PROXY); 0: none")
	fs.UintVar(&m.sidecarCapturePort, "sidecar-capture-port", translate.DefaultSidecarCapturePort, "sidecars' transparent capture listener on 127.0.0.1 (iptables REDIRECT of outbound traffic); 0: none")
}

// options returns nil when the mesh is off.
func (m *meshFlags) options(xdsTrustDomain string) (*translate.MeshOptions, error) {
	if m.port == 0 {
		if m.trustDomain != "" || m.gatewayCertificate != "" || m.trustBundle != "" || m.gatewayAddress != "" {
			return nil, fmt.Errorf("--mesh-trust-domain, --mesh-gateway-secret, --mesh-trust-bundle-secret and --mesh-gateway-address need --mesh-port")
		}
		return nil, nil
	}
	td := m.trustDomain
	switch {
	case td == "" && xdsTrustDomain != "":
		td = xdsTrustDomain
	case td == "":
		td = "cluster.local"
	case xdsTrustDomain != "" && td != xdsTrustDomain:
		return nil, fmt.Errorf("--mesh-trust-domain %q differs from --xds-trust-domain %q: one mesh has one trust domain", td, xdsTrustDomain)
	}
	for name, p := range map[string]uint{"--mesh-port": m.port, "--sidecar-proxy-port": m.sidecarProxyPort, "--sidecar-capture-port": m.sidecarCapturePort} {
		if p > 65535 {
			return nil, fmt.Errorf("%s %d is not a valid port", name, p)
		}
	}
	if m.sidecarProxyPort != 0 && m.sidecarProxyPort == m.sidecarCapturePort {
		return nil, fmt.Errorf("--sidecar-proxy-port and --sidecar-capture-port are both %d", m.sidecarProxyPort)
	}
	addr := m.gatewayAddress
	if addr == "" {
		addr = net.JoinHostPort(translate.DefaultGatewayHost, strconv.Itoa(int(m.port)))
	}
	o := &translate.MeshOptions{
		TrustDomain: td, Port: uint32(m.port), GatewayAddress: addr, CertDir: m.certDir,
		SidecarProxyPort: uint32(m.sidecarProxyPort), SidecarCapturePort: uint32(m.sidecarCapturePort),
	}
	var err error
	if o.GatewayCertificate, err = secretFlag("--mesh-gateway-secret", m.gatewayCertificate); err != nil {
		return nil, err
	}
	if o.TrustBundle, err = secretFlag("--mesh-trust-bundle-secret", m.trustBundle); err != nil {
		return nil, err
	}
	// Whether keys may go over xDS is decided by the server, which knows
	// whether xDS is authenticated; Check here judges the rest.
	check := *o
	check.PrivateKeysOverXDS = true
	return o, check.Check()
}

func secretFlag(name, v string) (*translate.SecretKey, error) {
	if v == "" {
		return nil, nil
	}
	ns, n, ok := strings.Cut(v, "/")
	if !ok || ns == "" || n == "" || strings.Contains(n, "/") {
		return nil, fmt.Errorf("%s %q is not namespace/name", name, v)
	}
	return &translate.SecretKey{Namespace: ns, Name: n}, nil
}

func (t *translateFlags) options() (translate.Options, error) {
	if t.forwardProxyPort > 65535 {
		return translate.Options{}, fmt.Errorf("--forward-proxy-port %d is not a valid port", t.forwardProxyPort)
	}
	if t.statsPort > 65535 || (t.statsPort != 0 && t.statsPort == t.forwardProxyPort) {
		return translate.Options{}, fmt.Errorf("--gateway-stats-port %d is not a valid port or is the forward proxy port", t.statsPort)
	}
	if _, err := netip.ParseAddr(t.listenerAddress); err != nil {
		return translate.Options{}, fmt.Errorf("--listener-address %q is not an IP address", t.listenerAddress)
	}
	seen := map[uint32]uint32{}
	for from, to := range t.portMap {
		if other, dup := seen[to]; dup {
			return translate.Options{}, fmt.Errorf("--port-map maps both %d and %d to %d", other, from, to)
		}
		seen[to] = from
		if uint(to) == t.forwardProxyPort && t.forwardProxyPort != 0 {
			return translate.Options{}, fmt.Errorf("--port-map maps %d to the forward proxy port %d", from, to)
		}
	}
	mesh, err := t.mesh.options(t.xdsTrustDomain)
	if err != nil {
		return translate.Options{}, err
	}
	if mesh != nil && (uint(mesh.Port) == t.forwardProxyPort || uint(mesh.Port) == t.statsPort) {
		return translate.Options{}, fmt.Errorf("--mesh-port %d is the forward proxy or stats port", mesh.Port)
	}
	if err := t.keys.check(); err != nil {
		return translate.Options{}, err
	}
	rateLimit, err := t.rateLimit.options()
	if err != nil {
		return translate.Options{}, err
	}
	opts := translate.Options{
		Mesh:             mesh,
		Role:             translate.RoleGateway,
		ForwardProxyPort: uint32(t.forwardProxyPort),
		PortMap:          t.portMap,
		SystemCABundle:   t.systemCA,
		ListenerAddress:  t.listenerAddress,
		StatsPort:        uint32(t.statsPort),
		DNSResolvers:     t.dnsResolvers,
		// The server's own namespace by default: whoever may write
		// ConfigMaps there already controls the server.
		SettingsNamespace:    cmpOr(t.settingsNamespace, ownNamespace()),
		AuditRefusedNetworks: t.auditRefused,
		RateLimitService:     rateLimit,
	}
	t.keys.apply(&opts)
	return opts, nil
}

// defaultSettingsNamespace is the settings namespace outside a pod: the
// namespace deploy/ runs the server in.
const defaultSettingsNamespace = "egress-xds"

// serviceAccountNamespace is where Kubernetes tells a pod its namespace.
var serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// ownNamespace is the pod's namespace, or defaultSettingsNamespace.
func ownNamespace() string {
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return defaultSettingsNamespace
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// prefixList is a flag.Value of CIDRs; given, it replaces the default.
type prefixList []netip.Prefix

func (l prefixList) String() string {
	parts := make([]string, 0, len(l))
	for _, p := range l {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}

func (l *prefixList) Set(s string) error {
	var out prefixList
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil || p != p.Masked() {
			return fmt.Errorf("%q is not a CIDR (an address with its host bits zero and a prefix length, e.g. 10.0.0.0/8)", part)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return fmt.Errorf("%q names no network: audit always refuses some (at least the gateway's own loopback)", s)
	}
	*l = out
	return nil
}

// resolverList is a flag.Value of DNS server addresses, IP[:port] with
// port 53 by default ([v6]:port, or a bare v6 address).
type resolverList []netip.AddrPort

func (l *resolverList) String() string {
	if l == nil {
		return ""
	}
	parts := make([]string, 0, len(*l))
	for _, ap := range *l {
		parts = append(parts, ap.String())
	}
	return strings.Join(parts, ",")
}

// Set replaces the list: the flag given twice keeps the last value, as an
// environment variable and a flag would.
func (l *resolverList) Set(s string) error {
	var out resolverList
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		ap, err := parseResolver(part)
		if err != nil {
			return err
		}
		if slices.Contains(out, ap) {
			return fmt.Errorf("%s is listed twice", ap)
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		return fmt.Errorf("%q names no DNS server", s)
	}
	*l = out
	return nil
}

func parseResolver(s string) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		return netip.AddrPortFrom(ip.Unmap(), 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q is not a DNS server address: want IP or IP:port, e.g. 10.0.0.10:53 or [fd00::53]:53", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// portMap is a flag.Value of declared=listener port pairs.
type portMap map[uint32]uint32

func (m *portMap) String() string {
	if m == nil || len(*m) == 0 {
		return ""
	}
	var parts []string
	for k, v := range *m {
		parts = append(parts, fmt.Sprintf("%d=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (m *portMap) Set(s string) error {
	if *m == nil {
		*m = portMap{}
	}
	for _, pair := range strings.Split(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		from, to, ok := strings.Cut(pair, "=")
		f, err1 := strconv.ParseUint(from, 10, 16)
		t, err2 := strconv.ParseUint(to, 10, 16)
		if !ok || err1 != nil || err2 != nil || f == 0 || t == 0 {
			return fmt.Errorf("%q is not declared=listener, e.g. 443=8443", pair)
		}
		(*m)[uint32(f)] = uint32(t)
	}
	return nil
}

// parseTranslateFlags parses a command line whose flags include tf and
// returns the translation options; false means the command is done, with
// the exit code (see cmdLine.parse).
func parseTranslateFlags(c *cmdLine, args []string, tf *translateFlags) (translate.Options, int, bool) {
	if code, ok := c.parse(args); !ok {
		return translate.Options{}, code, false
	}
	opts, err := tf.options()
	if err != nil {
		return translate.Options{}, c.misuse("%v", err), false
	}
	return opts, 0, true
}
