package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// The mesh with real sidecars: workload -> sidecar Envoy (bootstrap
// envoy/bootstrap/sidecar.yaml) -> mutual TLS, HTTP/2 -> the gateway's mesh
// port -> fake service. Its own stack, not the scenario table's: the
// sidecars need the server's sidecar ports, the gateways' mesh certificate
// from a Secret (over authenticated xDS: see meshStack) and destinations
// that tell identities apart.

// The workloads of the sidecar tests.
var (
	checkoutID = fakeservices.WorkloadID("payments", "checkout")
	invoicesID = fakeservices.WorkloadID("billing", "invoices")
)

// sidecarsIntent is the intent of the sidecar tests: each destination
// admits a different set of identities, so one sidecar's requests are
// admitted and refused by what its certificate says.
//
//	                        checkout (payments)   invoices (billing)
//	api.github.com:443      yes (principal)       yes (namespace)
//	api.external-service:80 GET, HEAD (namespace) no
//	external-db:5432        yes (principal)       no
//	mesh-api:443            no                    yes (namespace)
//	*.wild.localhost:443    yes (namespace)       no
func sidecarsIntent(e *Env) string {
	return manifest(sidecarsConfigMap, "destinations admitting workloads by identity, reached through sidecars", `
- name: api
  host: api.github.com
  ports: [{number: 443, protocol: TLS}]
  endpoints: [`+e.ep(fakeservices.ServiceTLS)+`]
  allow: [{principal: "`+checkoutID+`"}, {namespace: billing}]
- name: origin
  host: api.external-service.com
  ports: [{number: 80, protocol: HTTP}]
  tls: {mode: SIMPLE}
  endpoints: [`+e.ep(fakeservices.ServiceTLS)+`]
  allow: [{namespace: payments, methods: [GET, HEAD]}]
- name: db
  host: external-db.example.com
  ports: [{number: 5432, protocol: TCP}]
  endpoints: [`+e.ep(fakeservices.DBPrimary)+`]
  allow: [{principal: "`+checkoutID+`"}]
- name: billing-api
  host: `+fakeservices.MeshHost+`
  ports: [{number: 443, protocol: TLS}]
  endpoints: [`+e.ep(fakeservices.ServiceTLS)+`]
  allow: [{namespace: billing}]
- name: wild
  host: "*.`+fakeservices.WildcardDomain+`"
  ports: [{number: 443, protocol: TLS, targetPort: `+e.upstreamPort(fakeservices.ServiceTLS)+`}]
  allow: [{namespace: payments}]`)
}

const (
	sidecarsConfigMap = "sidecars"
	// meshSecretNamespace holds the gateways' mesh certificate Secret.
	meshSecretNamespace = "egress-xds"
	meshSecretName      = "gateway-mesh"
	// xdsServerName is the name xDS clients verify the server by.
	xdsServerName = "xds-server"
)

// meshStack is a control plane with the mesh on, over authenticated xDS
// (node authorization: a workload certificate entitles sidecar
// configuration only), one gateway Envoy, and the fake services. The
// gateways' mesh certificate is a Secret sent over SDS: the mesh
// certificate folder (--mesh-cert-dir) is one path for every proxy, and on
// one machine it can hold one identity only, the sidecar's.
type meshStack struct {
	bin      envoytest.Binary
	env      *Env
	ca       *fakeservices.CA
	xdsAddr  string
	adminURL string
	// host is where the gateway's listeners and xDS listen, and sidecars
	// reach them: 127.0.0.1, or the root end of a test namespace's link.
	host string
	// meshDir is the mesh certificate folder: the trust bundle, and the
	// workload certificate of the sidecar that runs.
	meshDir string
	// xdsCA and the gateway's xDS client certificate.
	xdsCA, gwCert, gwKey string
	gw                   *envoyProc
	proxyPort            uint32
	capturePort          uint32
	// configDir is the server's folder of manifests.
	configDir string
}

type meshStackOptions struct {
	host                   string
	proxyPort, capturePort uint32
	// intent, when set, is the manifest served instead of
	// sidecarsIntent's, declaring the ports given.
	intent func(*Env) string
	ports  []uint32
}

func newMeshStack(t *testing.T, bin envoytest.Binary, o meshStackOptions) *meshStack {
	t.Helper()
	ca, err := fakeservices.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fakes, err := fakeservices.Start(ctx, fakeservices.LoopbackConfig(ca))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); fakes.Wait() })

	dir := t.TempDir()
	config := filepath.Join(dir, "config")
	certs := filepath.Join(config, "certs")
	s := &meshStack{bin: bin, ca: ca, host: o.host, meshDir: filepath.Join(dir, "mesh"),
		proxyPort: o.proxyPort, capturePort: o.capturePort, configDir: config}
	for _, d := range []string{certs, s.meshDir, filepath.Join(config, "intents"), filepath.Join(dir, "xds")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := fakeservices.WriteCertsDir(certs, ca); err != nil {
		t.Fatal(err)
	}
	s.env = localEnv(t, fakes, filepath.Join(certs, fakeservices.CACertFile))
	s.env.ListenerAddress = o.host
	intent, ports := sidecarsIntent, []uint32{80, 443, 5432}
	if o.intent != nil {
		intent, ports = o.intent, o.ports
	}
	writeIntent(t, filepath.Join(config, "intents"), sidecarsConfigMap, intent(s.env))

	// The gateways' mesh certificate, as a Secret (the same one the
	// gateway presents to xDS: spiffe://<td>/gateway-group/<group>).
	s.gwCert, s.gwKey = filepath.Join(certs, fakeservices.MeshDir, "tls.crt"), filepath.Join(certs, fakeservices.MeshDir, "tls.key")
	gwCert, err1 := os.ReadFile(s.gwCert)
	gwKey, err2 := os.ReadFile(s.gwKey)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(config, "mesh-secret.yaml"), fmt.Appendf(nil, `apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
type: kubernetes.io/tls
stringData:
  tls.crt: %q
  tls.key: %q
`, meshSecretName, meshSecretNamespace, gwCert, gwKey))
	writeFile(t, filepath.Join(s.meshDir, "ca.crt"), ca.CertPEM)

	// Authenticated xDS: the server's certificate for xdsServerName and
	// the host, the test CA for the proxies' client certificates.
	xdsCert, xdsKey, err := ca.Issue(testpki.Leaf{CommonName: xdsServerName, DNSNames: []string{xdsServerName},
		IPs: []net.IP{net.ParseIP(o.host)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	tlsOpts := &xds.TLSOptions{CertFile: filepath.Join(dir, "xds", "tls.crt"), KeyFile: filepath.Join(dir, "xds", "tls.key"),
		ClientCAFile: filepath.Join(dir, "xds", "ca.crt"), TrustDomain: fakeservices.MeshTrustDomain}
	writeFile(t, tlsOpts.CertFile, xdsCert)
	writeFile(t, tlsOpts.KeyFile, xdsKey)
	writeFile(t, tlsOpts.ClientCAFile, ca.CertPEM)
	s.xdsCA = tlsOpts.ClientCAFile

	topts := s.env.translateOptions()
	topts.Mesh.GatewayAddress = net.JoinHostPort(o.host, strconv.Itoa(int(s.env.MeshPort)))
	topts.Mesh.CertDir = s.meshDir
	topts.Mesh.GatewayCertificate = &translate.SecretKey{Namespace: meshSecretNamespace, Name: meshSecretName}
	topts.Mesh.SidecarProxyPort, topts.Mesh.SidecarCapturePort = o.proxyPort, o.capturePort

	logs := &syncBuffer{}
	sctx, scancel := context.WithCancel(context.Background())
	srv, err := server.Start(sctx, server.Config{
		ConfigDir: config, XDSAddress: net.JoinHostPort(o.host, "0"), AdminAddress: "127.0.0.1:0", XDSTLS: tlsOpts,
		Translate: topts, ShutdownGrace: time.Second,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		scancel()
		if err := srv.Wait(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("xds-server log:\n%s", tail(logs.String(), 60))
		}
	})
	s.xdsAddr, s.adminURL = srv.XDSAddr, "http://"+srv.AdminAddr

	boot, err := localBootstrap("it-mesh-gateway", s.xdsAddr)
	if err == nil {
		boot, err = withXDSTLS(boot, s.gwCert, s.gwKey, s.xdsCA)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.gw = startEnvoy(t, bin, envoyProcess{id: "it-mesh-gateway", boot: boot})
	if err := waitReady(s.gw, len(s.env.listenersOf(ports...))); err != nil {
		t.Fatalf("gateway not ready: %v\n%s", err, tail(s.gw.stderr.String(), 40))
	}
	return s
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// withXDSTLS adds to a bootstrap's xds_cluster the client side of
// authenticated xDS, as README "Securing xDS" shows: the proxy's
// certificate, and the server verified by the CA and its name.
func withXDSTLS(boot []byte, cert, key, ca string) ([]byte, error) {
	return editBootstrap(boot, func(doc map[string]any) error {
		c, err := xdsClusterOf(doc)
		if err != nil {
			return err
		}
		c["transport_socket"] = map[string]any{
			"name": "envoy.transport_sockets.tls",
			"typed_config": map[string]any{
				"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
				"sni":   xdsServerName,
				"common_tls_context": map[string]any{
					"alpn_protocols":   []any{"h2"},
					"tls_certificates": []any{map[string]any{"certificate_chain": map[string]any{"filename": cert}, "private_key": map[string]any{"filename": key}}},
					"validation_context": map[string]any{
						"trusted_ca":                    map[string]any{"filename": ca},
						"match_typed_subject_alt_names": []any{map[string]any{"san_type": "DNS", "matcher": map[string]any{"exact": xdsServerName}}},
					},
				},
			},
		}
		return nil
	})
}

// editBootstrap edits a bootstrap as a YAML document and checks the
// result is still a valid Bootstrap (strictly parsed, validated).
func editBootstrap(boot []byte, edit func(map[string]any) error) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(boot, &doc); err != nil {
		return nil, err
	}
	if err := edit(doc); err != nil {
		return nil, err
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	b, err := bootstrap.Parse(out)
	if err != nil {
		return nil, err
	}
	if err := b.ValidateAll(); err != nil {
		return nil, err
	}
	return out, nil
}

// field walks a YAML document by keys (maps) and indexes (lists).
func field(doc any, path ...any) (any, error) {
	cur := doc
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%v: not a map", path[:i+1])
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil, fmt.Errorf("%v: no such list item", path[:i+1])
			}
			cur = l[k]
		}
	}
	return cur, nil
}

func mapField(doc any, path ...any) (map[string]any, error) {
	v, err := field(doc, path...)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%v: not a map", path)
	}
	return m, nil
}

func xdsClusterOf(doc map[string]any) (map[string]any, error) {
	v, err := field(doc, "static_resources", "clusters")
	if err != nil {
		return nil, err
	}
	cs, _ := v.([]any)
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok && m["name"] == bootstrap.XDSClusterName {
			return m, nil
		}
	}
	return nil, errors.New("the bootstrap has no " + bootstrap.XDSClusterName)
}

// sidecarBootstrap is envoy/bootstrap/sidecar.yaml as shipped, rendered
// for one sidecar: its node id, the control plane at xdsAddr over
// authenticated xDS with the workload's certificate, admin on a free port
// of adminHost.
func sidecarBootstrap(id, xdsAddr, adminHost, cert, key, ca string) ([]byte, error) {
	host, port, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	boot, err := editBootstrap(bootstrap.SidecarYAML, func(doc map[string]any) error {
		node, err := mapField(doc, "node")
		if err != nil {
			return err
		}
		node["id"], node["cluster"] = id, group
		c, err := xdsClusterOf(doc)
		if err != nil {
			return err
		}
		sa, err := mapField(c, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address")
		if err != nil {
			return err
		}
		sa["address"], sa["port_value"] = host, p
		c["type"] = "STATIC"
		admin, err := mapField(doc, "admin", "address", "socket_address")
		if err != nil {
			return err
		}
		admin["address"], admin["port_value"] = adminHost, 0
		return nil
	})
	if err != nil {
		return nil, err
	}
	return withXDSTLS(boot, cert, key, ca)
}

// envoyProc is an Envoy process that can be stopped before the test ends.
type envoyProc struct {
	*localGateway
	stop func() // ends Envoy and waits for it
}

// sidecar is a running sidecar Envoy of a workload.
type sidecar struct {
	*envoyProc
	id string // the workload's SPIFFE ID
}

// startSidecar runs a sidecar Envoy for workload id: its certificate goes
// into the mesh certificate folder (and serves for xDS too), and the
// sidecar is ready once both its listeners are active and mesh_gateway has
// its certificates. wrap runs Envoy inside something (ip netns exec), gid
// as another group (the capture rule's exception).
func (s *meshStack) startSidecar(t *testing.T, name, id, adminHost string, wrap []string, gid int) *sidecar {
	t.Helper()
	certPEM, keyPEM, err := s.ca.Issue(testpki.SPIFFE(id))
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(s.meshDir, "tls.crt"), filepath.Join(s.meshDir, "tls.key")
	writeFile(t, cert, certPEM)
	writeFile(t, key, keyPEM)
	boot, err := sidecarBootstrap(name, s.xdsAddr, adminHost, cert, key, s.xdsCA)
	if err != nil {
		t.Fatal(err)
	}
	p := startEnvoy(t, s.bin, envoyProcess{id: name, cluster: group, boot: boot, wrap: wrap, gid: gid})
	sc := &sidecar{envoyProc: p, id: id}
	listeners := 0
	for _, port := range []uint32{s.proxyPort, s.capturePort} {
		if port != 0 {
			listeners++
		}
	}
	if err := waitReady(sc, listeners); err != nil {
		t.Fatalf("sidecar %s not ready: %v\n%s", name, err, tail(p.stderr.String(), 40))
	}
	return sc
}

// envoyProcess is how to run one Envoy.
type envoyProcess struct {
	id, cluster string
	boot        []byte
	wrap        []string // command prefix, e.g. ip netns exec NAME
	gid         int      // > 0: run with this group (and no supplementary groups)
}

// startEnvoy runs Envoy until the test ends or its stop is called, and
// waits for its admin address. Access logs are flushed every 100ms, not
// Envoy's default 10s, so that waiting for a line takes no longer than it
// must.
func startEnvoy(t *testing.T, bin envoytest.Binary, p envoyProcess) *envoyProc {
	t.Helper()
	if p.cluster == "" {
		p.cluster = group
	}
	dir := t.TempDir()
	bootPath, adminPath := filepath.Join(dir, "bootstrap.yaml"), filepath.Join(dir, "admin-address")
	writeFile(t, bootPath, p.boot)
	gw := &envoyProc{localGateway: &localGateway{id: p.id, stdout: &syncBuffer{}, stderr: &syncBuffer{}}}
	args := append(append([]string{}, p.wrap...), bin.Path, "-c", bootPath, "--admin-address-path", adminPath,
		"--service-node", p.id, "--service-cluster", p.cluster, "--concurrency", "1", "--disable-hot-restart",
		"--log-level", "warn", "--file-flush-interval-msec", "100")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = gw.stdout, gw.stderr
	if p.gid > 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(os.Geteuid()), Gid: uint32(p.gid), Groups: []uint32{}}}
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", args[0], err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	gw.stop = func() { cancel(); <-exited }
	t.Cleanup(func() {
		gw.stop()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", p.id, tail(gw.stderr.String(), 40))
		}
	})
	err := retry(30*time.Second, func() error {
		select {
		case <-exited:
			return errors.New("envoy exited")
		default:
		}
		b, err := os.ReadFile(adminPath)
		if err != nil || len(b) == 0 {
			return fmt.Errorf("no admin address yet: %v", err)
		}
		gw.adminAddr = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", p.id, err, tail(gw.stderr.String(), 40))
	}
	return gw
}

// proxyConnect asks an explicit proxy for a tunnel to authority, as an
// HTTPS_PROXY client does (HTTP/1.1 CONNECT); the tunnel is returned only
// when granted (200).
func proxyConnect(proxy, authority string) (net.Conn, int, error) {
	conn, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	code, tunnel, err := connectOn(conn, authority)
	return tunnel, code, err
}

// connectOn sends CONNECT authority on a connection to a proxy, which it
// closes unless the tunnel is granted.
func connectOn(conn net.Conn, authority string) (int, net.Conn, error) {
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority); err != nil {
		conn.Close()
		return 0, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return 0, nil, fmt.Errorf("CONNECT %s: %w", authority, err)
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return resp.StatusCode, nil, nil
	}
	return resp.StatusCode, &bufferedConn{Conn: conn, r: br}, nil
}

// proxyRequest sends an absolute-form GET through an explicit proxy, as
// an HTTP_PROXY client does.
func proxyRequest(proxy, u string) (response, error) { return proxyDo(proxy, http.MethodGet, u) }

func proxyDo(proxy, method, u string) (response, error) {
	tr := &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})}
	c := &http.Client{Transport: tr, Timeout: requestTimeout}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return response{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	return readResponse(resp)
}

// readGreeting reads a fake database's greeting, checks its echo and
// returns the instance's name.
func readGreeting(conn net.Conn) (string, error) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	r := bufio.NewReader(conn)
	greeting, err := r.ReadString('\n')
	name, ok := strings.CutPrefix(strings.TrimSpace(greeting), "fake-db ")
	if err != nil || !ok {
		return "", fmt.Errorf("database greeting %q: %v", greeting, err)
	}
	if _, err := io.WriteString(conn, "SELECT 1;\n"); err != nil {
		return "", err
	}
	if echo, err := r.ReadString('\n'); err != nil || echo != "SELECT 1;\n" {
		return "", fmt.Errorf("database echo %q: %v", echo, err)
	}
	return name, nil
}

// notDeclaredBody is the sidecar's and the gateway's answer for a host no
// intent declares.
func notDeclaredBody(host string) string { return translate.NotDeclaredBody + ": " + host }

// refusedByGateway waits for the gateway's mesh access log to show the
// request of authority refused to workload id by the allow list.
func (s *meshStack) refusedByGateway(t *testing.T, id, authority string) {
	t.Helper()
	(&Traffic{}).waitLog(t, s.gw, authority+" refused to "+id, func(e logEntry) bool {
		return e.get("listener") == s.env.mesh() && e.get("peer_identity") == id && e.get("authority") == authority &&
			e.get("response_code") == "403" && strings.Contains(e.get("response_code_details"), "rbac_access_denied")
	})
}

// admittedByGateway waits for the gateway's mesh access log to show a
// request of authority from workload id that it passed on.
func (s *meshStack) admittedByGateway(t *testing.T, id, authority string) {
	t.Helper()
	(&Traffic{}).waitLog(t, s.gw, authority+" admitted for "+id, func(e logEntry) bool {
		return e.get("listener") == s.env.mesh() && e.get("peer_identity") == id && e.get("authority") == authority &&
			e.get("response_code") == "200"
	})
}

// neverReachedGateway: nothing the gateway logged names authority.
func (s *meshStack) neverReachedGateway(t *testing.T, authority string) {
	t.Helper()
	out, _ := s.gw.logs()
	if strings.Contains(out, authority) {
		t.Errorf("the gateway saw %s, which the sidecar should have refused:\n%s", authority, tail(out, 20))
	}
}

// checkNoRejects: the proxies accepted every configuration (no
// *.update_rejected), and the server counted no NACK and no problem.
func (s *meshStack) checkNoRejects(t *testing.T, proxies ...gateway) {
	t.Helper()
	for _, p := range proxies {
		st, err := stats(p, `update_(rejected|success)$`)
		if err != nil {
			t.Error(err)
			continue
		}
		for name, v := range st {
			if strings.HasSuffix(name, "update_rejected") && v != 0 {
				t.Errorf("%s: %s = %d", p.name(), name, v)
			}
		}
		if st["listener_manager.lds.update_success"] < 1 {
			t.Errorf("%s: no LDS update accepted: %v", p.name(), st)
		}
	}
	checkControlPlane(t, &stack{adminURL: s.adminURL})
}

// Real sidecar Envoys as explicit proxies (HTTPS_PROXY/HTTP_PROXY) of two
// workloads, one after the other (their listeners are the same ports of
// 127.0.0.1, and their certificate is the one mesh folder), each over
// authenticated xDS with its workload certificate: CONNECT for TLS and TCP
// destinations (HTTP/1.1 from the workload, HTTP/2 to the gateway), an
// absolute-form request for an HTTP destination (TLS originated by the
// gateway); the gateway admits and refuses by the identity the sidecar's
// certificate proves, and what no intent declares is refused by the
// sidecar before it leaves.
func TestSidecarEnvoy(t *testing.T) {
	bin := envoytest.Find(t)
	ports := freePorts(t, 2)
	s := newMeshStack(t, bin, meshStackOptions{host: "127.0.0.1", proxyPort: ports[0], capturePort: ports[1]})
	proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(s.proxyPort)))
	gh, db, billing := "api.github.com:443", "external-db.example.com:5432", fakeservices.MeshHost+":443"
	wild := "api." + fakeservices.WildcardDomain

	tunnelTLS := func(t *testing.T, authority, sni string) {
		t.Helper()
		conn, code, err := proxyConnect(proxy, authority)
		if err != nil || code != http.StatusOK {
			t.Fatalf("CONNECT %s through the sidecar: %d %v, want 200", authority, code, err)
		}
		// The workload's own TLS, end to end, verified by the test CA.
		if rep, err := tlsRequest(conn, sni, "/through-sidecar", s.ca.Pool()); err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != sni {
			t.Fatalf("TLS to %s through the sidecar: %+v %v", sni, rep, err)
		}
	}
	refusedConnect := func(t *testing.T, authority string) {
		t.Helper()
		if _, code, err := proxyConnect(proxy, authority); err != nil || code != http.StatusForbidden {
			t.Fatalf("CONNECT %s: %d %v, want 403", authority, code, err)
		}
	}

	t.Run("checkout", func(t *testing.T) {
		sc := s.startSidecar(t, "it-sidecar-checkout", checkoutID, "127.0.0.1", nil, 0)
		defer sc.stop()
		tunnelTLS(t, gh, "api.github.com")
		s.admittedByGateway(t, checkoutID, gh)
		tunnelTLS(t, wild+":443", wild)

		conn, code, err := proxyConnect(proxy, db)
		if err != nil || code != http.StatusOK {
			t.Fatalf("CONNECT %s: %d %v, want 200", db, code, err)
		}
		if name, err := readGreeting(conn); err != nil || name != fakeservices.DBPrimary {
			t.Fatalf("the database through the sidecar: %q %v", name, err)
		}

		r, err := proxyRequest(proxy, "http://api.external-service.com/orders")
		if err != nil || r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceTLS || !r.reply.TLS ||
			r.reply.SNI != "api.external-service.com" || r.reply.Path != "/orders" {
			t.Fatalf("absolute-form request through the sidecar: %d %+v %q %v, want TLS originated by the gateway", r.code, r.reply, r.body, err)
		}
		s.admittedByGateway(t, checkoutID, "api.external-service.com")
		// Admitted by the allow list, refused by its entry's methods, with
		// the identity the gateway verified in the log.
		if r, err := proxyDo(proxy, http.MethodPost, "http://api.external-service.com/orders"); err != nil || r.code != http.StatusForbidden ||
			!strings.Contains(r.body, "RBAC: access denied") {
			t.Fatalf("a POST from payments, allowed GET and HEAD: %d %q %v, want 403 RBAC: access denied", r.code, r.body, err)
		}
		(&Traffic{}).waitLog(t, s.gw, "the POST refused by its methods", func(e logEntry) bool {
			return e.get("listener") == s.env.mesh() && e.get("peer_identity") == checkoutID && e.get("method") == "POST" &&
				e.get("response_code") == "403" && e.get("response_code_details") == operationRefused
		})

		// Admitted by the mesh, refused by the allow list: billing only.
		refusedConnect(t, billing)
		s.refusedByGateway(t, checkoutID, billing)

		// Not declared: the sidecar answers, the gateway never sees it.
		refusedConnect(t, notDeclaredHost+":443")
		if r, err := proxyRequest(proxy, "http://"+notDeclaredHost+"/"); err != nil || r.code != http.StatusForbidden ||
			strings.TrimSpace(r.body) != notDeclaredBody(notDeclaredHost) {
			t.Fatalf("absolute-form request to an undeclared host: %d %q %v, want 403 %q", r.code, r.body, err, notDeclaredBody(notDeclaredHost))
		}
		(&Traffic{}).waitLog(t, sc, "the refused CONNECT", func(e logEntry) bool {
			return e.get("authority") == notDeclaredHost+":443" && e.get("response_code") == "403" && e.get("destination") == "egress_not_declared"
		})
		s.neverReachedGateway(t, notDeclaredHost)
		// The other kind of request to a declared authority: 403 from the
		// sidecar, not an empty 404.
		refusedConnect(t, "api.external-service.com:80")
		if r, err := proxyRequest(proxy, "http://api.github.com:443/"); err != nil || r.code != http.StatusForbidden {
			t.Fatalf("plain request to a TLS destination's authority: %d %q %v, want 403", r.code, r.body, err)
		}
		s.checkNoRejects(t, sc, s.gw)
	})
	t.Run("invoices", func(t *testing.T) {
		sc := s.startSidecar(t, "it-sidecar-invoices", invoicesID, "127.0.0.1", nil, 0)
		defer sc.stop()
		tunnelTLS(t, gh, "api.github.com") // by namespace
		s.admittedByGateway(t, invoicesID, gh)
		tunnelTLS(t, billing, fakeservices.MeshHost)

		refusedConnect(t, db) // the checkout principal only
		s.refusedByGateway(t, invoicesID, db)
		refusedConnect(t, wild+":443")
		if r, err := proxyRequest(proxy, "http://api.external-service.com/orders"); err != nil || r.code != http.StatusForbidden ||
			!strings.Contains(r.body, "RBAC: access denied") {
			t.Fatalf("absolute-form request from billing: %d %q %v, want 403 RBAC: access denied", r.code, r.body, err)
		}
		s.refusedByGateway(t, invoicesID, "api.external-service.com")
		s.checkNoRejects(t, sc, s.gw)
	})
}
