package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/xdstest"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// The real-Envoy harness cannot run here; these tests run its plumbing
// against stand-ins, so what is left untested is Envoy itself.

// directGateway stands in for Envoy: each listener port is a fake service
// (or a CONNECT proxy), admin and logs are canned.
type directGateway struct {
	ports      map[uint32]string
	adminPaths map[string]string
	log        string
}

func (d *directGateway) name() string { return "direct" }

func (d *directGateway) addr(port uint32) (string, error) {
	if a, ok := d.ports[port]; ok {
		return a, nil
	}
	return "", fmt.Errorf("no listener on %d", port)
}

func (d *directGateway) admin(path string) ([]byte, error) {
	for prefix, body := range d.adminPaths {
		if strings.HasPrefix(path, prefix) {
			return []byte(body), nil
		}
	}
	return nil, fmt.Errorf("no admin path %s", path)
}

func (d *directGateway) logs() (string, error) { return d.log, nil }

// connectProxy tunnels CONNECT to the authorities it knows (403 for the
// rest) and answers absolute-form requests itself.
func connectProxy(t *testing.T, routes map[string]string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(fakeservices.Reply{Service: "proxy", Host: r.Host, Path: r.RequestURI})
			return
		}
		target, ok := routes[r.Host]
		if !ok {
			http.Error(w, "not declared", http.StatusForbidden)
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\n\r\n")
		go func() { _, _ = io.Copy(up, brw); up.Close() }()
		_, _ = io.Copy(conn, up)
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// meshGateway stands in for a gateway's mesh port: mutual TLS with the
// group's certificate, HTTP/2 CONNECT tunnels to the authorities it knows,
// for the workload identities allowed (403 for the rest).
func meshGateway(t *testing.T, ca *fakeservices.CA, routes map[string]string, allowed string) string {
	certPEM, keyPEM, err := ca.Issue(testpki.SPIFFE(fakeservices.MeshGatewayID(group)))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, ok := routes[r.Host]
		if r.Method != http.MethodConnect || !ok || r.TLS.PeerCertificates[0].URIs[0].String() != allowed {
			http.Error(w, "RBAC: access denied", http.StatusForbidden)
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		go func() { _, _ = io.Copy(up, r.Body) }()
		buf := make([]byte, 32*1024)
		for {
			n, err := up.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestTrafficHelpersAgainstFakes(t *testing.T) {
	s, fakes, ca := newLocalStack(t)
	env := s.env
	proxy := connectProxy(t, map[string]string{"external-db.example.com:5432": fakes.DB[fakeservices.DBPrimary]})
	checkout := fakeservices.WorkloadID("payments", "checkout")
	mesh := meshGateway(t, ca, map[string]string{fakeservices.MeshHost + ":443": fakes.TLS}, checkout)
	gw := &directGateway{
		ports: map[uint32]string{env.listenerPort(443): fakes.TLS, env.listenerPort(80): fakes.HTTP,
			env.listenerPort(5432): fakes.DB[fakeservices.DBReplica], env.ForwardProxyPort: proxy, env.MeshPort: mesh},
		adminPaths: map[string]string{"/stats": "cluster.apps/x/y/80.outlier_detection.ejections_enforced_total: 2\nP99(nan): x\n"},
		log: "[warning] not json\n" +
			`{"authority":"limited.example.com","response_code":429,"response_flags":"RL","sni":null}` + "\n",
	}
	g := &Traffic{env: env, gw: gw, proxy: gw, gateways: []gateway{gw}, ca: ca.Pool(), issuer: ca, fakes: "http://" + fakes.ControlAddr}

	code, tunnel := g.meshConnect(t, checkout, fakeservices.MeshHost+":443")
	if code != http.StatusOK {
		t.Fatalf("mesh CONNECT: %d", code)
	}
	if rep, err := tlsRequest(tunnel, fakeservices.MeshHost, "/through-the-mesh", ca.Pool()); err != nil || rep.SNI != fakeservices.MeshHost || rep.Path != "/through-the-mesh" {
		t.Fatalf("TLS through the mesh tunnel: %+v %v", rep, err)
	}
	if code, _ := g.meshConnect(t, fakeservices.WorkloadID("payments", "other"), fakeservices.MeshHost+":443"); code != http.StatusForbidden {
		t.Fatalf("mesh CONNECT of a refused workload: %d", code)
	}

	if rep, err := g.passthrough("api.github.com", "/x"); err != nil || rep.SNI != "api.github.com" || rep.Path != "/x" {
		t.Fatalf("passthrough: %+v %v", rep, err)
	}
	if _, err := g.passthrough(wrongCertHost, "/"); err == nil {
		t.Fatal("passthrough does not verify the server")
	}
	if r := g.get(t, "limited.example.com", "/p?status=429"); r.code != 429 || r.reply.Host != "limited.example.com" || r.reply.Path != "/p" {
		t.Fatalf("get: %d %+v", r.code, r.reply)
	}
	if name := g.database(t, g.tcp(t, 5432)); name != fakeservices.DBReplica {
		t.Fatalf("database %q", name)
	}
	conn, code := g.connect(t, "external-db.example.com:5432")
	if code != http.StatusOK {
		t.Fatalf("CONNECT: %d", code)
	}
	if name := g.database(t, conn); name != fakeservices.DBPrimary {
		t.Fatalf("database through the tunnel %q", name)
	}
	conn.Close()
	if _, code := g.connect(t, notDeclaredHost+":443"); code != http.StatusForbidden {
		t.Fatalf("CONNECT refused: %d", code)
	}
	if r := g.proxyGet(t, "http://api.external-service.com/via-proxy"); r.reply.Path != "http://api.external-service.com/via-proxy" {
		t.Fatalf("not an absolute-form request: %+v", r.reply)
	}
	g.setFailing(t, true)
	if !fakes.Failing() {
		t.Fatal("setFailing did not reach the fake services")
	}
	g.setFailing(t, false)
	if n := g.stat(t, gw, "cluster.apps/x/y/80.outlier_detection.ejections_enforced_total"); n != 2 {
		t.Fatalf("stat %d", n)
	}
	e := g.waitLog(t, gw, "a 429", func(e logEntry) bool { return e.get("response_code") == "429" })
	if e.get("authority") != "limited.example.com" || e.get("sni") != "" {
		t.Fatalf("log entry %v", e)
	}
}

// checkAccepted reads Envoy's own admin formats: stats text and the
// config_dump JSON (made here from Envoy's admin protos).
func TestCheckAcceptedReadsEnvoyAdmin(t *testing.T) {
	s, _, _ := newLocalStack(t)
	c := dialXDS(t, s, xdstest.SotW)
	st := c.State()
	pack := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ld := &adminv3.ListenersConfigDump{}
	for _, l := range st.Listeners() {
		ld.DynamicListeners = append(ld.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: l.GetName(), ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{Listener: pack(l)}})
	}
	cd := &adminv3.ClustersConfigDump{}
	for _, cl := range st.Clusters() {
		cd.DynamicActiveClusters = append(cd.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{Cluster: pack(cl)})
	}
	rd := &adminv3.RoutesConfigDump{}
	for _, rc := range st.Routes() {
		rd.DynamicRouteConfigs = append(rd.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{RouteConfig: pack(rc)})
	}
	sd := &adminv3.SecretsConfigDump{}
	for _, sec := range st.Secrets() {
		sd.DynamicActiveSecrets = append(sd.DynamicActiveSecrets, &adminv3.SecretsConfigDump_DynamicSecret{Name: sec.GetName(), Secret: pack(sec)})
	}
	dump, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&adminv3.ConfigDump{Configs: []*anypb.Any{pack(ld), pack(cd), pack(rd), pack(sd)}})
	if err != nil {
		t.Fatal(err)
	}
	gw := &directGateway{adminPaths: map[string]string{
		"/stats": "cluster_manager.cds.update_rejected: 0\ncluster_manager.cds.update_success: 3\n" +
			"listener_manager.lds.update_rejected: 0\nlistener_manager.lds.update_success: 2\n",
		"/config_dump": string(dump),
	}}
	g := &Traffic{env: s.env, gateways: []gateway{gw}, state: c.State}
	g.checkAccepted(t, gw)
	gw.adminPaths["/stats"] = strings.Replace(gw.adminPaths["/stats"], "lds.update_rejected: 0", "lds.update_rejected: 1", 1)
	if err := accepted(gw, st); err == nil || !strings.Contains(err.Error(), "listener_manager.lds.update_rejected = 1") {
		t.Fatalf("a NACK went unnoticed: %v", err)
	}
	if err := accepted(gw, &xdstest.State{}); err == nil || !strings.Contains(err.Error(), "holds listeners") {
		t.Fatalf("a difference with the control plane went unnoticed: %v", err)
	}

	held, err := parseConfigDump(dump)
	// Secrets: the partner's two and the mesh's two.
	if err != nil || len(held["listeners"]) != len(s.env.listeners()) || len(held["secrets"]) != 4 {
		t.Fatalf("%v %v", held, err)
	}
}

// The shell lines that reach a compose gateway's admin interface (the
// harness's, and the healthcheck of docker-compose.yaml) work with bash,
// against a stand-in admin answering chunked HTTP/1.1 as Envoy does.
func TestAdminScriptsWithBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	ready := "PRE_INITIALIZING"
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/ready" {
			fmt.Fprintln(w, ready)
			return
		}
		w.(http.Flusher).Flush() // chunked, like Envoy's streamed stats
		fmt.Fprintf(w, "path %s\n", r.URL.RequestURI())
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, bash, args...).Output()
	}

	out, err := run("-c", adminScriptFor(port), "admin", "/stats?filter=update_rejected")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "path /stats?filter=update_rejected\n" {
		t.Fatalf("%q", body)
	}

	p, _ := loadCompose(t)
	hc := []string(service(t, p, svcGateway1).HealthCheck.Test)
	if len(hc) != 4 || hc[0] != "CMD" || hc[1] != "bash" || hc[2] != "-c" {
		t.Fatalf("healthcheck %q", hc)
	}
	script := strings.Replace(hc[3], fmt.Sprintf("/dev/tcp/127.0.0.1/%d", bootstrap.DefaultAdminPort), fmt.Sprintf("/dev/tcp/127.0.0.1/%d", port), 1)
	if _, err := run("-c", script); err == nil {
		t.Fatal("healthy while Envoy initialises")
	}
	mu.Lock()
	ready = "LIVE"
	mu.Unlock()
	if _, err := run("-c", script); err != nil {
		t.Fatalf("unhealthy once LIVE: %v", err)
	}
}
