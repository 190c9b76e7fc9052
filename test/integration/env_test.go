package integration

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

var update = flag.Bool("update", false, "rewrite compose/intents from the scenario table")

const (
	// namespace of every scenario ConfigMap: the mTLS Secrets live there.
	namespace = fakeservices.SecretNamespace
	// group is the gateway group (Envoy node.cluster) the intents select.
	group = bootstrap.DefaultCluster
	// composeIntents holds the scenario intents rendered for compose: what
	// `docker compose up` serves.
	composeIntents = "compose/intents"
	// fakesHost is the fake services' compose service name.
	fakesHost = "fakeservices"
)

// declaredPorts are the ports the scenario intents declare.
var declaredPorts = []uint32{80, 443, 5432, 6379}

type hostPort struct {
	Host string
	Port uint32
}

func (h hostPort) String() string { return net.JoinHostPort(h.Host, strconv.Itoa(int(h.Port))) }

// Env is where the scenarios run: how gateways reach the fake services, on
// which ports gateways listen, and where test traffic comes from.
type Env struct {
	Name string
	// Upstreams are the fake services as the gateways reach them, by
	// service (fakeservices.ServiceTLS ...) or database instance name.
	Upstreams map[string]hostPort
	// ClientCIDRs contain the source addresses of test traffic as the
	// gateways see them.
	ClientCIDRs      []string
	PortMap          map[uint32]uint32
	ForwardProxyPort uint32
	// SystemCABundle is the test CA file as the gateways see it: upstream
	// verification without a CA Secret uses it.
	SystemCABundle string
	// ListenerAddress is what gateway listeners bind: loopback for local
	// Envoy processes, every address in containers.
	ListenerAddress string
	// MeshPort is the gateways' mesh port; MeshCertDir where they read
	// their mesh certificate and the CA (the certs folder's mesh/).
	MeshPort    uint32
	MeshCertDir string
	// OriginationSecretDir, when set, is where the gateways read the mTLS
	// client certificate files (xds-server --origination-secret-dir): the
	// compose stack's xDS is plaintext beyond loopback, so its key may not
	// travel inline. Empty: inline, as the loopback server allows.
	OriginationSecretDir string
	// DNSResolver is the test DNS server the gateways resolve with
	// (--dns-resolver); empty: their system resolver.
	DNSResolver string
	// RateLimitAddress is the global rate limit service as the gateways
	// reach it (--ratelimit-address); empty: none.
	RateLimitAddress string
}

// composeEnv is docker-compose.yaml: fake services by their service name,
// gateways listening on the declared ports (sysctl, no port map), traffic
// from the Docker networks or published loopback ports.
func composeEnv() *Env {
	hp := func(p int) hostPort { return hostPort{fakesHost, uint32(p)} }
	return &Env{
		Name: "compose",
		Upstreams: map[string]hostPort{
			fakeservices.ServiceTLS: hp(fakeservices.TLSPort), fakeservices.ServiceMTLS: hp(fakeservices.MTLSPort),
			fakeservices.ServiceHTTP: hp(fakeservices.HTTPPort), fakeservices.ServiceFlaky: hp(fakeservices.FlakyPort),
			fakeservices.DBPrimary: hp(fakeservices.DBPrimaryPort), fakeservices.DBReplica: hp(fakeservices.DBReplicaPort),
			// No test DNS in the stack: the DNS scenarios' intents name
			// the one fake services' ports, and their traffic is skipped.
			altTLS: hp(fakeservices.TLSPort), altHTTP: hp(fakeservices.HTTPPort), altDB: hp(fakeservices.DBPrimaryPort),
		},
		ClientCIDRs:      []string{"10.0.0.0/8", "127.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"},
		ForwardProxyPort: 3128,
		SystemCABundle:   "/certs/" + fakeservices.CACertFile,
		MeshPort:         15443,
		MeshCertDir:      "/certs/" + fakeservices.MeshDir,
		// The gateways mount the certs volume at /certs.
		OriginationSecretDir: "/certs/" + fakeservices.SecretsDir,
		RateLimitAddress:     svcRateLimit + ":8081",
	}
}

// localEnv is everything on 127.0.0.1: the in-process fake services, and
// gateway listeners on free ports (a port map, as unprivileged gateways use).
func localEnv(t *testing.T, fakes *fakeservices.Services, caFile string) *Env {
	t.Helper()
	ups := map[string]hostPort{}
	for name, addr := range map[string]string{
		fakeservices.ServiceTLS: fakes.TLS, fakeservices.ServiceMTLS: fakes.MTLS, fakeservices.ServiceHTTP: fakes.HTTP,
		fakeservices.ServiceFlaky: fakes.Flaky, fakeservices.DBPrimary: fakes.DB[fakeservices.DBPrimary],
		fakeservices.DBReplica: fakes.DB[fakeservices.DBReplica],
	} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		ups[name] = hostPort{host, uint32(p)}
	}
	free := freePorts(t, len(declaredPorts)+2)
	pm := map[uint32]uint32{}
	for i, p := range declaredPorts {
		pm[p] = free[i]
	}
	return &Env{Name: "local", ListenerAddress: "127.0.0.1", Upstreams: ups, ClientCIDRs: []string{"127.0.0.1/32"}, PortMap: pm,
		ForwardProxyPort: free[len(declaredPorts)], SystemCABundle: caFile,
		MeshPort: free[len(declaredPorts)+1], MeshCertDir: filepath.Join(filepath.Dir(caFile), fakeservices.MeshDir)}
}

// freePorts returns n ports free on 127.0.0.1 (held together while chosen,
// so they differ).
func freePorts(t *testing.T, n int) []uint32 {
	t.Helper()
	ports, err := envoytest.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

func (e *Env) translateOptions() translate.Options {
	o := translate.Options{Role: translate.RoleGateway, ForwardProxyPort: e.ForwardProxyPort, PortMap: e.PortMap,
		SystemCABundle: e.SystemCABundle, ListenerAddress: e.ListenerAddress, Mesh: e.meshOptions(),
		OriginationSecretDir: e.OriginationSecretDir, SettingsNamespace: "egress-xds"}
	if e.DNSResolver != "" {
		o.DNSResolvers = []netip.AddrPort{netip.MustParseAddrPort(e.DNSResolver)}
	}
	if e.RateLimitAddress != "" {
		o.RateLimitService = &translate.RateLimitServiceOptions{Address: e.RateLimitAddress}
	}
	return o
}

// meshOptions are the mesh settings of xds-server for the env (the flags
// docker-compose.yaml gives it); sidecars are not part of the stack.
func (e *Env) meshOptions() *translate.MeshOptions {
	return &translate.MeshOptions{TrustDomain: fakeservices.MeshTrustDomain, Port: e.MeshPort, CertDir: e.MeshCertDir,
		GatewayAddress: fmt.Sprintf("{group}:%d", e.MeshPort)}
}

func (e *Env) mesh() string { return fmt.Sprintf("mesh_%d", e.MeshPort) }

func (e *Env) listenerPort(declared uint32) uint32 {
	if p, ok := e.PortMap[declared]; ok {
		return p
	}
	return declared
}

// listener names a gateway listener: tls_443, http_80, tcp_5432.
func (e *Env) listener(kind string, declared uint32) string {
	return fmt.Sprintf("%s_%d", kind, e.listenerPort(declared))
}

func (e *Env) forwardProxy() string { return fmt.Sprintf("forward_proxy_%d", e.ForwardProxyPort) }

// listeners are every listener the scenario intents give a gateway.
func (e *Env) listeners() []string { return e.listenersOf(declaredPorts...) }

// listenersOf are the listeners of intents declaring these ports (80 HTTP,
// 443 TLS, others TCP), with the forward proxy and the mesh port.
func (e *Env) listenersOf(declared ...uint32) []string {
	var out []string
	for _, p := range declared {
		switch p {
		case 80:
			out = append(out, e.listener("http", p))
		case 443:
			out = append(out, e.listener("tls", p))
		default:
			out = append(out, e.listener("tcp", p))
		}
	}
	return append(out, e.forwardProxy(), e.mesh())
}

// ep is the YAML endpoint of a fake service, with optional labels.
func (e *Env) ep(name string, labels ...string) string {
	u := e.Upstreams[name]
	s := fmt.Sprintf("{address: %s, port: %d", u.Host, u.Port)
	if len(labels) > 0 {
		s += ", labels: {" + strings.Join(labels, ", ") + "}"
	}
	return s + "}"
}

// upstreamPort is the port of a fake service as the gateways reach it.
func (e *Env) upstreamPort(name string) string { return strconv.Itoa(int(e.Upstreams[name].Port)) }

// addr is an upstream as Envoy's endpoints hold it.
func (e *Env) addr(name string) string { return e.Upstreams[name].String() }

// allowClients is an allow list admitting the test traffic.
// deniedSource is a local address the gateways see as a source outside
// ClientCIDRs: on loopback every 127.x address is ours, so a local
// gateway that admits 127.0.0.1 alone sees 127.0.0.2 as another source.
func (e *Env) deniedSource() (string, bool) {
	if e.Name == "local" && len(e.ClientCIDRs) == 1 && e.ClientCIDRs[0] == "127.0.0.1/32" {
		return "127.0.0.2", true
	}
	return "", false
}

func (e *Env) allowClients() string {
	var parts []string
	for _, c := range e.ClientCIDRs {
		parts = append(parts, "{cidr: "+c+"}")
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// clusterName is namespace/configmap/destination/port; the scenario name is
// its ConfigMap's name.
func clusterName(scenario, dest string, port uint32) string {
	return fmt.Sprintf("%s/%s/%s/%d", namespace, scenario, dest, port)
}

// manifest wraps destinations (a YAML list) into the scenario's ConfigMap.
func manifest(scenario, about, destinations string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Scenario %s: %s.\n", scenario, about)
	fmt.Fprintf(&b, `apiVersion: v1
kind: ConfigMap
metadata:
  name: %s
  namespace: %s
  labels:
    egress-xds.io/intent: "true"
data:
  egress.yaml: |
    gateways: [%s]
    destinations:
`, scenario, namespace, group)
	for _, line := range strings.Split(strings.Trim(destinations, "\n"), "\n") {
		b.WriteString("      " + line + "\n")
	}
	return b.String()
}

// render is the file content of a scenario's intent; "" for none.
func render(sc *Scenario, e *Env, intent func(*Env) string) string {
	if intent == nil {
		return ""
	}
	return manifest(sc.Name, sc.About, intent(e))
}

// writeIntents writes every scenario's intent into dir, one file each.
func writeIntents(t *testing.T, dir string, e *Env) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range scenarios {
		writeIntent(t, dir, scenarios[i].Name, render(&scenarios[i], e, scenarios[i].Intent))
	}
}

// writeIntent replaces a scenario's file atomically (through a hidden
// file, which the server's watcher skips); "" removes it.
func writeIntent(t *testing.T, dir, name, content string) {
	t.Helper()
	path := filepath.Join(dir, name+".yaml")
	if content == "" {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// The intents `docker compose up` serves are the scenario table rendered
// for compose (go test -run TestComposeIntentsAreCurrent -update rewrites
// them).
func TestComposeIntentsAreCurrent(t *testing.T) {
	want := t.TempDir()
	writeIntents(t, want, composeEnv())
	if *update {
		old, _ := filepath.Glob(filepath.Join(composeIntents, "*.yaml"))
		for _, f := range old {
			os.Remove(f)
		}
		writeIntents(t, composeIntents, composeEnv())
		return
	}
	got, _ := filepath.Glob(filepath.Join(composeIntents, "*.yaml"))
	exp, _ := filepath.Glob(filepath.Join(want, "*.yaml"))
	base := func(fs []string) (out []string) {
		for _, f := range fs {
			out = append(out, filepath.Base(f))
		}
		return out
	}
	if !slices.Equal(base(got), base(exp)) {
		t.Fatalf("%s holds %v, the scenarios render %v; run go test ./test/integration -run TestComposeIntentsAreCurrent -update",
			composeIntents, base(got), base(exp))
	}
	for _, f := range exp {
		w, _ := os.ReadFile(f)
		g, _ := os.ReadFile(filepath.Join(composeIntents, filepath.Base(f)))
		if string(w) != string(g) {
			t.Errorf("%s/%s is stale; run go test ./test/integration -run TestComposeIntentsAreCurrent -update",
				composeIntents, filepath.Base(f))
		}
	}
}
