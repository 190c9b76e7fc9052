package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	commonratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xdstest"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// Global rate limits end to end, every part real: Debian's redis-server,
// the envoyproxy/ratelimit service built from its Go module
// (tools/ratelimit/build.sh) fetching its configuration from xds-server
// over xDS, and two Envoy gateways of one group.
//
// Two gateways of one group on one machine cannot share listener ports,
// and the port map and listener address are server-wide: each gateway has
// an xds-server of its own, serving the same intent folder with its own
// port map, as two replicas with different flags would. Both produce the
// same rate limit configuration (content versions: the same input gives
// the same version), which the service fetches from the first. The limit
// is enforced by the one service they share, which is the point.

// rateLimitDeps finds what the test needs, or skips saying how to get it
// (fails under CI=true, unless .ci/run said why they cannot be there).
func rateLimitDeps(t *testing.T) (envoy, redis, ratelimit string) {
	t.Helper()
	envoy = envoytest.Find(t).Path
	redis = os.Getenv("EGRESS_XDS_REDIS_SERVER")
	if redis == "" {
		redis, _ = exec.LookPath("redis-server")
	}
	ratelimit = os.Getenv("EGRESS_XDS_RATELIMIT_BIN")
	var missing []string
	if redis == "" {
		missing = append(missing, "redis-server (Debian: apt-get install -y redis-server; or EGRESS_XDS_REDIS_SERVER)")
	}
	if ratelimit == "" {
		missing = append(missing, "the rate limit service (export EGRESS_XDS_RATELIMIT_BIN=$(tools/ratelimit/build.sh))")
	}
	if len(missing) == 0 {
		return envoy, redis, ratelimit
	}
	why := strings.Join(missing, " and ") + " not found"
	if said := os.Getenv("EGRESS_XDS_RATELIMIT_UNAVAILABLE"); said != "" {
		t.Skipf("global rate limits cannot be proved here (%s): %s", said, why)
	}
	if envoytest.CI() {
		t.Fatalf("CI=true needs %s", why)
	}
	t.Skipf("global rate limits need %s", why)
	return "", "", ""
}

// The declared ports of the rate limit intents.
const (
	rlHTTPPort = 80
	rlTCPPort  = 5432
)

func rateLimitIntent(upstream string, shared uint32) string {
	host, port, _ := net.SplitHostPort(upstream)
	ep := "{address: " + host + ", port: " + port + "}"
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: rl
  namespace: apps
  labels:
    egress-xds.io/intent: "true"
data:
  egress.yaml: |
    destinations:
      - name: shared
        host: shared.example.com
        ports: [{number: 80, protocol: HTTP}]
        endpoints: [%[1]s]
        rateLimit: {global: {requests: %[2]d, per: minute}}
      - name: per-client
        host: per-client.example.com
        ports: [{number: 80, protocol: HTTP}]
        endpoints: [%[1]s]
        rateLimit: {global: {requests: 2, per: minute, perSource: address}}
      - name: per-team
        host: per-team.example.com
        ports: [{number: 80, protocol: HTTP}]
        endpoints: [%[1]s]
        rateLimit: {global: {requests: 2, per: minute, perSource: namespace}}
      - name: per-workload
        host: per-workload.example.com
        ports: [{number: 80, protocol: HTTP}]
        endpoints: [%[1]s]
        rateLimit: {global: {requests: 1, per: minute, perSource: principal}}
      - name: db
        host: db.example.com
        ports: [{number: 5432, protocol: TCP}]
        endpoints: [%[1]s]
        rateLimit: {global: {requests: 2, per: minute, perSource: address}}
      - name: soft
        host: soft.example.com
        ports: [{number: 80, protocol: HTTP}]
        endpoints: [%[1]s]
        rateLimit: {global: {requests: 100, per: minute}}
      - name: hard
        host: hard.example.com
        ports: [{number: 80, protocol: HTTP}]
        endpoints: [%[1]s]
        rateLimit: {global: {requests: 100, per: minute, failureModeDeny: true}}
`, ep, shared)
}

// rlGateway is one gateway of the group and the ports it listens on.
type rlGateway struct {
	*localGateway
	http, tcp, mesh uint32
}

func TestGlobalRateLimitEnvoy(t *testing.T) {
	envoyBin, redisBin, rlBin := rateLimitDeps(t)
	dir := t.TempDir()

	redisAddr := startRedis(t, redisBin, dir)
	upstream := startUpstream(t)
	ca, err := fakeservices.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fakeservices.WriteCertsDir(certs, ca); err != nil {
		t.Fatal(err)
	}
	// Mutual TLS between the gateways and the service, as deploy/ sets it:
	// the service requires a certificate of the CA naming rlClientName.
	rlServer, rlClient := filepath.Join(dir, "rl-server"), filepath.Join(dir, "rl-client")
	writeKeyPair(t, ca, rlServer, testpki.Leaf{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	writeKeyPair(t, ca, rlClient, testpki.Leaf{DNSNames: []string{rlClientName}, Client: true})
	config := filepath.Join(dir, "config")
	intentFile := filepath.Join(config, "rl.yaml")
	replaceFile(t, intentFile, rateLimitIntent(upstream, 6))

	free := freePorts(t, 12)
	rlGRPC, rlHTTP, rlDebug := free[0], free[1], free[2]
	var gws [2]*rlGateway
	var xdsAddrs [2]string
	for i := range gws {
		p := free[3+4*i:]
		gws[i] = &rlGateway{http: p[0], tcp: p[1], mesh: p[2]}
		opts := translate.Options{
			Role: translate.RoleGateway, ForwardProxyPort: p[3], ListenerAddress: "127.0.0.1",
			PortMap:        map[uint32]uint32{rlHTTPPort: p[0], rlTCPPort: p[1]},
			SystemCABundle: filepath.Join(certs, fakeservices.CACertFile),
			Mesh: &translate.MeshOptions{TrustDomain: fakeservices.MeshTrustDomain, Port: p[2],
				CertDir: filepath.Join(certs, fakeservices.MeshDir), GatewayAddress: fmt.Sprintf("{group}:%d", p[2])},
			// Generous: a loaded 2-core machine must not turn a slow
			// answer into the failure mode.
			RateLimitService: &translate.RateLimitServiceOptions{Address: fmt.Sprintf("127.0.0.1:%d", rlGRPC), Timeout: 5 * time.Second,
				TLS: true, CAFile: filepath.Join(certs, fakeservices.CACertFile), ClientCertDir: rlClient},
		}
		xdsAddrs[i] = startXDSServer(t, config, opts, fmt.Sprintf("xds-server %d", i))
	}
	rl := startRateLimitService(t, rlBin, redisAddr, xdsAddrs[0], rlGRPC, rlHTTP, rlDebug,
		"GRPC_SERVER_USE_TLS=true", "GRPC_SERVER_TLS_CERT="+filepath.Join(rlServer, "tls.crt"), "GRPC_SERVER_TLS_KEY="+filepath.Join(rlServer, "tls.key"),
		"GRPC_CLIENT_TLS_CACERT="+filepath.Join(certs, fakeservices.CACertFile), "GRPC_CLIENT_TLS_SAN="+rlClientName)
	waitRateLimitConfig(t, rl, "requests_per_unit=6")
	for i, g := range gws {
		g.localGateway = startLocalGatewayFor(t, envoyBin, fmt.Sprintf("rl-gateway-%d", i), xdsAddrs[i], xdstest.SotW)
		// http, tcp, the explicit proxy, the mesh port.
		if err := waitReady(g.localGateway, 4); err != nil {
			t.Fatalf("gateway %d not ready: %v\n%s", i, err, tail(g.stderr.String(), 40))
		}
	}

	for i, g := range gws {
		// Nothing of the configuration is experimental in Envoy.
		if strings.Contains(g.stderr.String(), "work-in-progress") {
			t.Errorf("gateway %d warns of work-in-progress API features:\n%s", i, tail(g.stderr.String(), 5))
		}
	}

	t.Run("shared-budget", func(t *testing.T) {
		freshWindow(t, redisAddr)
		// Twelve requests, alternating gateways: six pass in all, not six
		// per gateway.
		passed, limited := 0, 0
		for i := range 12 {
			g := gws[i%2]
			code, h := rlRequest(t, g.http, "", "shared.example.com")
			switch {
			case code == http.StatusOK:
				passed++
			case code == http.StatusTooManyRequests && h.Get("x-rate-limited") == "true":
				limited++
			default:
				t.Fatalf("request %d through gateway %d: %d %v", i, i%2, code, h)
			}
		}
		if passed != 6 || limited != 6 {
			t.Fatalf("%d passed and %d got 429 with x-rate-limited: true, want 6 and 6: the budget is the group's, not each gateway's", passed, limited)
		}
		// Both gateways asked, and counted per destination.
		cl := "cluster.apps/rl/shared/80.ratelimit."
		for i, g := range gws {
			s, err := stats(g.localGateway, "^"+regexpQuote(cl)+"(ok|over_limit)$")
			if err != nil {
				t.Fatal(err)
			}
			if s[cl+"ok"] != 3 || s[cl+"over_limit"] != 3 {
				t.Errorf("gateway %d stats %v, want 3 ok and 3 over_limit", i, s)
			}
		}
		waitAccessLog(t, gws[0].localGateway, func(e logEntry) bool {
			return e.get("authority") == "shared.example.com" && e.get("response_code") == "429" && e.get("response_code_details") == "request_rate_limited"
		})
	})

	t.Run("only-gateways-may-call", func(t *testing.T) {
		// What the gateways present is taken (the test's own control);
		// no certificate, or one of the CA without the callers' name, or
		// one of another CA, is refused: a pod that reaches the port
		// cannot spend the destinations' budgets.
		other, err := fakeservices.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		gateway := loadKeyPair(t, rlClient)
		var none []tls.Certificate
		wrongName := issue(t, ca, testpki.Leaf{DNSNames: []string{"other-client.test.local"}, Client: true})
		otherCA := issue(t, other, testpki.Leaf{DNSNames: []string{rlClientName}, Client: true})
		addr := fmt.Sprintf("127.0.0.1:%d", rlGRPC)
		if err := rlCall(addr, ca, []tls.Certificate{gateway}); err != nil {
			t.Fatalf("the gateways' certificate: %v", err)
		}
		for what, certs := range map[string][]tls.Certificate{"no certificate": none, "another name": {wrongName}, "another CA": {otherCA}} {
			if err := rlCall(addr, ca, certs); err == nil {
				t.Errorf("%s: the service answered", what)
			}
		}
	})

	t.Run("per-address", func(t *testing.T) {
		freshWindow(t, redisAddr)
		for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
			var codes []int
			for i := range 3 {
				code, _ := rlRequest(t, gws[i%2].http, src, "per-client.example.com")
				codes = append(codes, code)
			}
			if fmt.Sprint(codes) != "[200 200 429]" {
				t.Errorf("from %s: %v, want [200 200 429]: each address has its own budget of 2", src, codes)
			}
		}
	})

	t.Run("per-namespace-and-principal", func(t *testing.T) {
		freshWindow(t, redisAddr)
		checkout, refunds := fakeservices.WorkloadID("payments", "checkout"), fakeservices.WorkloadID("payments", "refunds")
		invoices := fakeservices.WorkloadID("billing", "invoices")
		var got []string
		for i, c := range []struct{ id, host string }{
			// payments shares one budget of 2 per minute, billing has its own.
			{checkout, "per-team.example.com"}, {refunds, "per-team.example.com"}, {checkout, "per-team.example.com"},
			{invoices, "per-team.example.com"}, {invoices, "per-team.example.com"},
			// one request per minute per workload.
			{checkout, "per-workload.example.com"}, {refunds, "per-workload.example.com"}, {checkout, "per-workload.example.com"},
		} {
			code := meshGet(t, gws[i%2].mesh, ca, c.id, c.host)
			got = append(got, strconv.Itoa(code))
		}
		if want := "200 200 429 200 200 200 200 429"; strings.Join(got, " ") != want {
			t.Errorf("through the mesh: %s, want %s", strings.Join(got, " "), want)
		}
		// Without a workload identity (the plain HTTP port), every caller
		// is one source.
		var plain []int
		for i := range 3 {
			code, _ := rlRequest(t, gws[i%2].http, "", "per-team.example.com")
			plain = append(plain, code)
		}
		if fmt.Sprint(plain) != "[200 200 429]" {
			t.Errorf("without identity: %v, want [200 200 429]", plain)
		}
		// One counter per source: what the service was sent.
		keys, err := redisCommand(redisAddr, "KEYS", "*")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"per-team_namespace_payments_", "per-team_namespace_billing_", "per-team_namespace_" + translate.NoSource + "_",
			"per-workload_principal_" + checkout + "_", "per-workload_principal_" + refunds + "_"} {
			if !strings.Contains(keys, want) {
				t.Errorf("no Redis key with %q among %s", want, keys)
			}
		}
	})

	t.Run("tcp-connections-per-address", func(t *testing.T) {
		freshWindow(t, redisAddr)
		for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
			var got []bool
			for i := range 3 {
				got = append(got, tcpServed(t, gws[i%2].tcp, src))
			}
			if fmt.Sprint(got) != "[true true false]" {
				t.Errorf("connections from %s served: %v, want the first two of three", src, got)
			}
		}
		keys, err := redisCommand(redisAddr, "KEYS", "*")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(keys, "address_127.0.0.2") {
			t.Errorf("Redis keys %s: want one per address (the network filter's descriptor formatted)", keys)
		}
	})

	t.Run("edit-applies-without-restart", func(t *testing.T) {
		replaceFile(t, intentFile, rateLimitIntent(upstream, 3))
		waitRateLimitConfig(t, rl, "requests_per_unit=3")
		freshWindow(t, redisAddr)
		passed := 0
		for i := range 6 {
			if code, _ := rlRequest(t, gws[i%2].http, "", "shared.example.com"); code == http.StatusOK {
				passed++
			}
		}
		if passed != 3 {
			t.Fatalf("%d passed after the edit to 3 per minute, want 3", passed)
		}
	})

	t.Run("service-stopped", func(t *testing.T) {
		rl.stop()
		for i, g := range gws {
			if code, _ := rlRequest(t, g.http, "", "soft.example.com"); code != http.StatusOK {
				t.Errorf("gateway %d, fail open: %d, want 200", i, code)
			}
			if code, h := rlRequest(t, g.http, "", "hard.example.com"); code != http.StatusServiceUnavailable || h.Get("x-rate-limited") != "" {
				t.Errorf("gateway %d, failureModeDeny: %d %v, want 503", i, code, h)
			}
		}
		cl := "cluster.apps/rl/soft/80.ratelimit.failure_mode_allowed"
		if n := (&Traffic{}).stat(t, gws[0].localGateway, cl); n < 1 {
			t.Errorf("%s = %d, want the request let through counted", cl, n)
		}
		waitAccessLog(t, gws[0].localGateway, func(e logEntry) bool {
			return e.get("authority") == "hard.example.com" && e.get("response_code") == "503" && e.get("response_code_details") == "rate_limiter_error"
		})
		// The fail-closed filter counts under its stat prefix.
		hard := "cluster.apps/rl/hard/80.ratelimit.fail_closed.error"
		if n := (&Traffic{}).stat(t, gws[0].localGateway, hard); n < 1 {
			t.Errorf("%s = %d, want the refused request counted", hard, n)
		}
	})
}

// replaceFile writes a file whole at once (a rename), as an editor or
// kubectl would replace it.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startXDSServer runs an in-process xds-server on the folder.
func startXDSServer(t *testing.T, config string, opts translate.Options, name string) string {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Config{
		ConfigDir: config, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
		Translate: opts, ShutdownGrace: time.Second,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, tail(logs.String(), 30))
		}
	})
	return srv.XDSAddr
}

// startRedis runs redis-server on a free loopback port, nothing saved.
func startRedis(t *testing.T, bin, dir string) string {
	t.Helper()
	port := freePorts(t, 1)[0]
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	out := &syncBuffer{}
	stop := startProcess(t, "redis-server", out, nil, bin, "--port", strconv.Itoa(int(port)), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no")
	t.Cleanup(stop)
	err := retry(20*time.Second, func() error {
		r, err := redisCommand(addr, "PING")
		if err == nil && r != "PONG" {
			err = fmt.Errorf("PING: %s", r)
		}
		return err
	})
	if err != nil {
		t.Fatalf("redis-server: %v\n%s", err, tail(out.String(), 20))
	}
	return addr
}

// rateLimitService is the envoyproxy/ratelimit process.
type rateLimitService struct {
	debugAddr string
	out       *syncBuffer
	stop      func()
}

// startRateLimitService runs the service with Redis at redisAddr,
// fetching its configuration from xds-server at xdsAddr as the rate limit
// role (node metadata egress-xds.io/role=ratelimit), all on loopback.
func startRateLimitService(t *testing.T, bin, redisAddr, xdsAddr string, grpcPort, httpPort, debugPort uint32, extraEnv ...string) *rateLimitService {
	t.Helper()
	env := append([]string{
		"USE_STATSD=false", "DISABLE_STATS=true", "LOG_LEVEL=info", "LOG_FORMAT=text",
		"HOST=127.0.0.1", "PORT=" + strconv.Itoa(int(httpPort)),
		"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(int(grpcPort)),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + strconv.Itoa(int(debugPort)),
		"BACKEND_TYPE=redis", "REDIS_SOCKET_TYPE=tcp", "REDIS_TYPE=SINGLE", "REDIS_URL=" + redisAddr,
		"CONFIG_TYPE=GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL=" + xdsAddr,
		"CONFIG_GRPC_XDS_NODE_ID=ratelimit-0", "CONFIG_GRPC_XDS_NODE_METADATA=egress-xds.io/role=ratelimit",
		// Reconnect within a second, not the default 10 s.
		"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL=500ms", "XDS_CLIENT_BACKOFF_MAX_INTERVAL=1s",
	}, extraEnv...)
	s := &rateLimitService{debugAddr: fmt.Sprintf("127.0.0.1:%d", debugPort), out: &syncBuffer{}}
	s.stop = startProcess(t, "ratelimit", s.out, env, bin)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("ratelimit log:\n%s", tail(s.out.String(), 30))
		}
	})
	return s
}

// waitRateLimitConfig waits until the service has loaded a configuration
// holding want (its /rlconfig debug page).
func waitRateLimitConfig(t *testing.T, s *rateLimitService, want string) {
	t.Helper()
	var last string
	err := retry(30*time.Second, func() error {
		resp, err := (&http.Client{Timeout: requestTimeout}).Get("http://" + s.debugAddr + "/rlconfig")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = string(b)
		if !strings.Contains(last, want) {
			return fmt.Errorf("no %q yet", want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the rate limit service's configuration: %v\n%s\nlog:\n%s", err, last, tail(s.out.String(), 20))
	}
}

// startProcess runs a helper process; the returned stop (idempotent)
// sends SIGTERM and waits for it, at most 10 s.
func startProcess(t *testing.T, name string, out io.Writer, env []string, bin string, args ...string) func() {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stopped := false
	return func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
}

// startUpstream is the external service: HTTP 200 for any request.
func startUpstream(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "upstream "+r.Host+"\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// freshWindow empties Redis and makes sure the current minute, which the
// service's counters are aligned to, has 10 s left: enough for a phase's
// requests, so that no window starts in the middle of one.
func freshWindow(t *testing.T, redisAddr string) {
	t.Helper()
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < 10*time.Second {
		time.Sleep(left + 200*time.Millisecond)
	}
	if r, err := redisCommand(redisAddr, "FLUSHALL"); err != nil || r != "OK" {
		t.Fatalf("FLUSHALL: %q %v", r, err)
	}
}

// rlRequest sends GET / for host to a gateway's HTTP port, from src ("":
// any loopback address), and returns the status and headers.
func rlRequest(t *testing.T, port uint32, src, host string) (int, http.Header) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET http://%s/ on port %d: %v", host, port, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// tcpServed opens a connection to a gateway's TCP port from src and
// reports whether it reached the upstream (an HTTP answer) rather than
// being closed.
func tcpServed(t *testing.T, port uint32, src string) bool {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	_, _ = io.WriteString(conn, "GET / HTTP/1.0\r\nHost: db.example.com\r\n\r\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "HTTP/1.")
}

// meshGet does what a sidecar does for an HTTP destination: GET / for host
// over HTTP/2 on mutual TLS to the gateway's mesh port, as workload id.
func meshGet(t *testing.T, port uint32, ca *fakeservices.CA, id, host string) int {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(testpki.SPIFFE(id))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	gatewayID := fakeservices.MeshGatewayID(group)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: true, // the chain and the SPIFFE ID are checked below, as Envoy does
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return err
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != gatewayID {
				return fmt.Errorf("the gateway presents %v, want %s", leaf.URIs, gatewayID)
			}
			return nil
		},
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/", port), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s on the mesh port as %s: %v", host, id, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitAccessLog waits for a gateway's access log line.
func waitAccessLog(t *testing.T, gw *localGateway, match func(logEntry) bool) {
	t.Helper()
	err := retry(10*time.Second, func() error {
		ok, err := logged(gw, match)
		if err == nil && !ok {
			err = errors.New("not logged yet")
		}
		return err
	})
	if err != nil {
		t.Fatalf("access log of %s: %v\n%s", gw.id, err, tail(gw.stdout.String(), 10))
	}
}

// redisCommand sends one command in RESP and returns the reply: a status,
// an integer or a bulk string as text, an array as its elements joined by
// spaces.
func redisCommand(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	return readRESP(bufio.NewReader(conn))
}

func readRESP(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		var parts []string
		for range n {
			p, err := readRESP(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, " "), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// rlClientName is the name the rate limit service requires of its
// callers' certificates (GRPC_CLIENT_TLS_SAN), as deploy/ sets it.
const rlClientName = "ratelimit-client.test.local"

// writeKeyPair writes a certificate of ca and its key as tls.crt and
// tls.key in dir, as a mounted kubernetes.io/tls Secret.
func writeKeyPair(t *testing.T, ca *fakeservices.CA, dir string, l testpki.Leaf) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func loadKeyPair(t *testing.T, dir string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func issue(t *testing.T, ca *fakeservices.CA, l testpki.Leaf) tls.Certificate {
	t.Helper()
	c, err := ca.TLSCertificate(l)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rlCall asks the rate limit service at addr once, over TLS verifying it
// with ca, presenting certs.
func rlCall(addr string, ca *fakeservices.CA, certs []tls.Certificate) error {
	creds := credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: certs, MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain:      translate.RateLimitDomain,
		Descriptors: []*commonratelimitv3.RateLimitDescriptor{{Entries: []*commonratelimitv3.RateLimitDescriptor_Entry{{Key: "probe", Value: "probe"}}}},
	})
	return err
}
