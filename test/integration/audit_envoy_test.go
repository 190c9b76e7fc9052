package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/discover"
	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/xdstest"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// Audit mode end to end with a real gateway, the adoption path of the
// README: a group in audit passes traffic to undeclared hosts (by Host,
// by SNI, CONNECT and absolute-form through the explicit proxy) and to
// declared hosts from a source outside their allow list or outside their
// methods and paths, and logs each; discover turns that log into intents
// (none for requests outside the rules: it counts them); applied, and the
// group switched to enforce, the same traffic passes, and anything else
// is refused (the requests outside the rules too). Audit
// never forwards to a refused network (here the gateway's own 127.0.0.1)
// nor to a name no intent could declare.
//
// Upstreams listen on 127.0.0.2 on the declared ports (free on 127.0.0.1,
// where the gateway listens, so no port map is needed: audit forwards to
// the declared port), and the test DNS server gives every *.audit.test
// name that address; sources are 127.0.0.1 (allowed), 127.0.0.3 (outside
// the allow lists, let through in audit) and 127.0.0.4 (never seen).
// The gateway subscribes with state-of-the-world xDS, then (a stack of
// its own) with delta.
func TestAuditEnvoy(t *testing.T) {
	bin := envoytest.Find(t)
	for _, mode := range []xdstest.Mode{xdstest.SotW, xdstest.Delta} {
		t.Run(mode.String(), func(t *testing.T) { testAudit(t, newAuditStack(t, bin.Path, mode)) })
	}
}

func testAudit(t *testing.T, a *auditStack) {

	// Audit: everything below passes.
	a.eventually(t, "the audit configuration", func() error { return a.httpGet(src1, "other-web.audit.test", "upstream other-web.audit.test") })
	a.auditedTraffic(t)
	for _, refused := range []struct{ host, why string }{
		{"loop.audit.test", "rbac_access_denied_matched_policy[refused_network]"}, // resolves to 127.0.0.1
		{"admin.localhost", ""},
		{"127.0.0.2", ""},
	} {
		code, body := a.httpCode(src1, refused.host)
		if code != http.StatusForbidden {
			t.Errorf("audit forwarded %s: %d %q", refused.host, code, body)
		}
		a.waitLog(t, refused.host+" refused", func(e map[string]any) bool {
			return e["authority"] == refused.host && e["response_code"] == float64(403) &&
				(refused.why == "" || e["response_code_details"] == refused.why)
		})
	}
	if err := a.tlsGet(src1, a.tlsPort, "loop.audit.test"); err == nil {
		t.Error("audit forwarded an SNI that resolves to the gateway's own address")
	}
	web, tlsDest := fmt.Sprintf("apps/audit-app/known-web/%d", a.httpPort), fmt.Sprintf("apps/audit-app/known-tls/%d", a.tlsPort)
	ruled := fmt.Sprintf("apps/audit-app/ruled-web/%d", a.httpPort)
	// A method outside the destination's rules passes in audit.
	if code, body := a.httpDo(src1, http.MethodPost, "ruled-web.audit.test"); code != http.StatusOK || body != "upstream ruled-web.audit.test" {
		t.Errorf("audit refused a POST outside ruled-web's methods: %d %q", code, body)
	}
	for what, match := range map[string]func(map[string]any) bool{
		"HTTP to an undeclared host": func(e map[string]any) bool {
			return e["audit"] == "not_declared" && e["authority"] == "other-web.audit.test" && e["port"] == strconv.Itoa(int(a.httpPort)) && e["group"] == group
		},
		"SNI of an undeclared host": func(e map[string]any) bool {
			return e["audit"] == "not_declared" && e["sni"] == "other-tls.audit.test" && e["listener"] == fmt.Sprintf("tls_%d", a.tlsPort)
		},
		"CONNECT to an undeclared host": func(e map[string]any) bool {
			return e["audit"] == "not_declared" && e["method"] == "CONNECT" && e["authority"] == fmt.Sprintf("tunnel.audit.test:%d", a.tlsPort)
		},
		"HTTP from a source outside the allow list": func(e map[string]any) bool {
			return e["audit"] == "source_not_allowed" && e["destination"] == web && e["policy"] == "allow: cidr 127.0.0.1/32" &&
				strings.HasPrefix(fmt.Sprint(e["downstream_address"]), "127.0.0.3:")
		},
		"HTTP outside the destination's methods": func(e map[string]any) bool {
			return e["audit"] == translate.AuditOutsideRules && e["destination"] == ruled && e["method"] == "POST" && e["response_code"] == float64(200)
		},
		"TLS from a source outside the allow list": func(e map[string]any) bool {
			return e["audit"] == "source_not_allowed" && e["destination"] == tlsDest && e["policy"] == "allow: cidr 127.0.0.1/32"
		},
	} {
		a.waitLog(t, what, match)
	}
	// Counted per destination and per reason; no stat names a requested host.
	for _, s := range []string{
		"vhost." + web + ".vcluster.source_not_allowed.upstream_rq_total",
		"vhost." + ruled + ".vcluster." + translate.AuditOutsideRules + ".upstream_rq_total",
		"tcp." + tlsDest + "/source_not_allowed.downstream_cx_total",
		fmt.Sprintf("tcp.tls_%d/audit_not_declared.downstream_cx_total", a.tlsPort),
		fmt.Sprintf("vhost.egress_not_declared.route.http_%d/audit_not_declared.upstream_rq_total", a.httpPort),
	} {
		if n := gatewayStat(t, a.gw, s); n < 1 {
			t.Errorf("%s = %d", s, n)
		}
	}
	if n := a.logLines(t, func(e map[string]any) bool { return e["authority"] == "other-web.audit.test" && e["audit"] == nil }); n != 0 {
		t.Errorf("an audited request was also logged without audit (%d lines): one line per request", n)
	}
	if s, err := stats(a.gw, `audit`); err == nil {
		for name := range s {
			if strings.Contains(name, "audit.test") {
				t.Errorf("a stat names a requested host: %s", name)
			}
		}
	}

	// Discover on the gateway's log, as `xds-server discover --config-dir`
	// does; apply what it proposes, then switch the group to enforce.
	logFile := filepath.Join(t.TempDir(), "gateway.log")
	if err := os.WriteFile(logFile, []byte(a.gw.stdout.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	res := a.discover(t, logFile)
	var names []string
	for _, p := range res.Proposals {
		names = append(names, p.ConfigMap)
		path := filepath.Join(a.dir, p.File)
		if p.Widening {
			path = filepath.Join(a.dir, "audit-app.yaml") // replaces it
		}
		if err := os.WriteFile(path, p.Manifest, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"egress-discovered/abs.audit.test", "egress-discovered/other-tls.audit.test",
		"egress-discovered/other-web.audit.test", "egress-discovered/tunnel.audit.test", "apps/audit-app"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("proposed %v, want %v; notes:\n%s", names, want, strings.Join(res.Notes, "\n"))
	}
	writeIntent(t, a.dir, "settings", auditSettings("enforce"))
	// Enforce: an undeclared host is refused again (which waits for the
	// change), the same traffic as before passes, sources never seen are
	// refused.
	a.eventually(t, "enforce", func() error {
		if code, body := a.httpCode(src1, "never.audit.test"); code != http.StatusForbidden {
			return fmt.Errorf("an undeclared host in enforce: %d %q", code, body)
		}
		return nil
	})
	// The lines of enforce follow the first refusal's: the audit lines of
	// the requests before it may be flushed after the 403 was answered.
	refused := func(e map[string]any) bool {
		return e["authority"] == "never.audit.test" && e["destination"] == "egress_not_declared" && e["response_code"] == float64(403)
	}
	a.waitLog(t, "the refused host in enforce", refused)
	mark := a.lineEnd(refused)
	a.eventually(t, "the discovered intents", func() error { return a.httpGet(src1, "other-web.audit.test", "upstream other-web.audit.test") })
	a.auditedTraffic(t)
	if err := a.tlsGet(src1, a.tlsPort, "never.audit.test"); err == nil {
		t.Error("enforce passed an undeclared SNI")
	}
	for _, host := range []string{"known-web.audit.test", "other-web.audit.test"} {
		if code, _ := a.httpCode(src4, host); code != http.StatusForbidden {
			t.Errorf("enforce passed %s from a source never seen: %d", host, code)
		}
	}
	if err := a.tlsGet(src4, a.tlsPort, "known-tls.audit.test"); err == nil {
		t.Error("enforce passed TLS from a source never seen")
	}
	// Discover proposes nothing for requests outside the rules: enforce
	// refuses them again, and lets the rules' own through.
	if code, _ := a.httpDo(src1, http.MethodPost, "ruled-web.audit.test"); code != http.StatusForbidden {
		t.Errorf("enforce passed a POST outside ruled-web's methods: %d", code)
	}
	if err := a.httpGet(src1, "ruled-web.audit.test", "upstream ruled-web.audit.test"); err != nil {
		t.Errorf("enforce: a GET within ruled-web's methods: %v", err)
	}
	a.waitLog(t, "the request outside the rules refused in enforce", func(e map[string]any) bool {
		return e["destination"] == ruled && e["method"] == "POST" && e["response_code"] == float64(403) &&
			e["response_code_details"] == "rbac_access_denied_matched_policy["+translate.OperationNotAllowedPolicy+"]"
	})
	// In enforce nothing is logged with audit: what passes is declared,
	// the rest refused with its reason.
	// The last request is logged too before the lines are read.
	a.waitLog(t, "the GET within ruled-web's methods", func(e map[string]any) bool {
		return e["destination"] == ruled && e["method"] == "GET" && e["response_code"] == float64(200) && e["audit"] == nil
	})
	for _, line := range strings.Split(a.gw.stdout.String()[mark:], "\n") {
		if strings.Contains(line, `"audit"`) {
			t.Errorf("enforce logged an audit line: %s", line)
		}
	}
}

// Sources of test traffic.
var (
	src1 = netip.MustParseAddr("127.0.0.1")
	src3 = netip.MustParseAddr("127.0.0.3")
	src4 = netip.MustParseAddr("127.0.0.4")
)

type auditStack struct {
	gw                          *localGateway
	dir                         string
	httpPort, tlsPort, fwdProxy uint32
	ca                          *testpki.CA
	opts                        translate.Options
}

func auditSettings(mode string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: egress-xds
  labels: {egress-xds.io/intent: "true", egress-xds.io/settings: "true"}
data:
  settings.yaml: |
    groups: [{name: %s, mode: %s}]
`, group, mode)
}

func newAuditStack(t *testing.T, bin string, mode xdstest.Mode) *auditStack {
	t.Helper()
	ca, err := testpki.NewCA("audit test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a := &auditStack{dir: filepath.Join(t.TempDir(), "config"), ca: ca}
	upstream := func(h http.Handler, cert *tls.Certificate) uint32 {
		for range 20 {
			l, err := net.Listen("tcp", "127.0.0.2:0")
			if err != nil {
				t.Fatal(err)
			}
			port := l.Addr().(*net.TCPAddr).Port
			// The gateway listens on the same port of 127.0.0.1.
			if probe, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				probe.Close()
				if cert != nil {
					l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{*cert}})
				}
				srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
				go func() { _ = srv.Serve(l) }()
				t.Cleanup(func() { srv.Close() })
				return uint32(port)
			}
			l.Close()
		}
		t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
		return 0
	}
	a.httpPort = upstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s", r.Host)
	}), nil)
	cert, err := ca.TLSCertificate(testpki.Leaf{DNSNames: []string{"*.audit.test"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	a.tlsPort = upstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls upstream %s", r.TLS.ServerName)
	}), &cert)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	up := netip.MustParseAddr("127.0.0.2")
	dns, err := fakeservices.StartDNS(ctx, "127.0.0.1", map[string][]netip.Addr{
		"known-web.audit.test": {up}, "other-web.audit.test": {up}, "ruled-web.audit.test": {up}, "abs.audit.test": {up}, "never.audit.test": {up},
		"known-tls.audit.test": {up}, "other-tls.audit.test": {up}, "tunnel.audit.test": {up},
		"loop.audit.test": {netip.MustParseAddr("127.0.0.1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	a.fwdProxy = freePorts(t, 1)[0]
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeIntent(t, a.dir, "settings", auditSettings("audit"))
	writeIntent(t, a.dir, "audit-app", fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: audit-app, namespace: apps, labels: {egress-xds.io/intent: "true"}}
data:
  egress.yaml: |
    # What the application was known to need before the audit.
    gateways: [%s]
    destinations:
      - name: known-web
        host: known-web.audit.test
        ports: [{number: %d, protocol: HTTP}]
        allow: [{cidr: 127.0.0.1/32}]
      - name: known-tls
        host: known-tls.audit.test
        ports: [{number: %d, protocol: TLS}]
        allow: [{cidr: 127.0.0.1/32}]
      - name: ruled-web
        host: ruled-web.audit.test
        ports: [{number: %d, protocol: HTTP}]
        methods: [GET]
`, group, a.httpPort, a.tlsPort, a.httpPort))
	a.opts = translate.Options{ListenerAddress: "127.0.0.1", ForwardProxyPort: a.fwdProxy, SettingsNamespace: "egress-xds",
		DNSResolvers: []netip.AddrPort{netip.MustParseAddrPort(dns.Addr)},
		// The gateway's own address stays refused; the upstreams' is
		// reachable, as a public one would be.
		AuditRefusedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("169.254.0.0/16")}}
	logs := &syncBuffer{}
	srv, err := server.Start(ctx, server.Config{
		ConfigDir: a.dir, XDSAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0", ShutdownGrace: time.Second,
		Translate: a.opts, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Error(err)
		}
		dns.Wait()
		if t.Failed() {
			t.Logf("xds-server log:\n%s", tail(logs.String(), 40))
		}
	})
	a.gw = startLocalGatewayFor(t, bin, "audit-gateway", srv.XDSAddr, mode)
	if err := waitReady(a.gw, 3); err != nil {
		t.Fatalf("gateway not ready: %v\n%s", err, tail(a.gw.stderr.String(), 40))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway access log:\n%s", tail(a.gw.stdout.String(), 40))
		}
	})
	if err := retry(waitTimeout, func() error {
		if !strings.Contains(logs.String(), "gateway group in audit mode") {
			return errors.New("the switch to audit is not logged")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return a
}

// auditedTraffic is what the audit lets through, and what the discovered
// intents must let through in enforce.
func (a *auditStack) auditedTraffic(t *testing.T) {
	t.Helper()
	checks := []struct {
		what string
		f    func() error
	}{
		{"HTTP to other-web by Host", func() error { return a.httpGet(src1, "other-web.audit.test", "upstream other-web.audit.test") }},
		{"HTTP to known-web from 127.0.0.3", func() error { return a.httpGet(src3, "known-web.audit.test", "upstream known-web.audit.test") }},
		{"TLS to other-tls by SNI", func() error { return a.tlsGet(src1, a.tlsPort, "other-tls.audit.test") }},
		{"TLS to known-tls from 127.0.0.3", func() error { return a.tlsGet(src3, a.tlsPort, "known-tls.audit.test") }},
		{"CONNECT to tunnel", func() error { return a.connectGet("tunnel.audit.test") }},
		{"absolute-form to abs", func() error { return a.proxyGet("abs.audit.test") }},
	}
	for _, c := range checks {
		if err := retry(5*time.Second, c.f); err != nil {
			t.Errorf("%s: %v", c.what, err)
		}
	}
}

func dialer(src netip.Addr) *net.Dialer {
	return &net.Dialer{Timeout: requestTimeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
}

func (a *auditStack) httpCode(src netip.Addr, host string) (int, string) {
	return a.httpDo(src, http.MethodGet, host)
}

func (a *auditStack) httpDo(src netip.Addr, method, host string) (int, string) {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d/", a.httpPort), nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Host = host
	c := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{DialContext: dialer(src).DialContext, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

func (a *auditStack) httpGet(src netip.Addr, host, want string) error {
	code, body := a.httpCode(src, host)
	if code != http.StatusOK || body != want {
		return fmt.Errorf("%s from %s: %d %q", host, src, code, body)
	}
	return nil
}

// tlsGet speaks TLS with sni through the gateway's TLS port, verifying the
// upstream's certificate: the gateway passed the handshake through.
func (a *auditStack) tlsGet(src netip.Addr, port uint32, sni string) error {
	conn, err := dialer(src).Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	return a.overTLS(conn, sni)
}

func (a *auditStack) overTLS(conn net.Conn, sni string) error {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	tc := tls.Client(conn, &tls.Config{ServerName: sni, RootCAs: a.ca.Pool()})
	if _, err := fmt.Fprintf(tc, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", sni); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "tls upstream "+sni {
		return fmt.Errorf("%s: %q", sni, b)
	}
	return nil
}

// connectGet tunnels TLS to host on the TLS port through the explicit
// proxy (CONNECT).
func (a *auditStack) connectGet(host string) error {
	conn, err := dialer(src1).Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.fwdProxy))
	if err != nil {
		return err
	}
	target := fmt.Sprintf("%s:%d", host, a.tlsPort)
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return fmt.Errorf("CONNECT %s: %s", target, resp.Status)
	}
	return a.overTLS(conn, host)
}

// proxyGet is an absolute-form request through the explicit proxy.
func (a *auditStack) proxyGet(host string) error {
	proxy, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", a.fwdProxy))
	c := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d/", host, a.httpPort))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("upstream %s:%d", host, a.httpPort); resp.StatusCode != http.StatusOK || string(b) != want {
		return fmt.Errorf("%s through the proxy: %s %q", host, resp.Status, b)
	}
	return nil
}

func (a *auditStack) eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := retry(waitTimeout, f); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (a *auditStack) entries(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(a.gw.stdout.String(), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// lineEnd is the offset in the gateway's log just after the first line
// match accepts (the caller has waited for it).
func (a *auditStack) lineEnd(match func(map[string]any) bool) int {
	log, off := a.gw.stdout.String(), 0
	for _, line := range strings.SplitAfter(log, "\n") {
		off += len(line)
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && match(e) {
			return off
		}
	}
	return len(log)
}

func (a *auditStack) logLines(t *testing.T, match func(map[string]any) bool) int {
	t.Helper()
	n := 0
	for _, e := range a.entries(t) {
		if match(e) {
			n++
		}
	}
	return n
}

func (a *auditStack) waitLog(t *testing.T, what string, match func(map[string]any) bool) {
	t.Helper()
	a.eventually(t, "the log line of "+what, func() error {
		if a.logLines(t, match) == 0 {
			return errors.New("not logged")
		}
		return nil
	})
}

// discover reads the log as `xds-server discover --config-dir DIR
// --tls-ports <the TLS port> LOG` does.
func (a *auditStack) discover(t *testing.T, logFile string) discover.Result {
	t.Helper()
	state, err := watch.LoadDir(a.dir)
	if err != nil {
		t.Fatal(err)
	}
	cms, _, diags := compile.FromFolder(state)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ro := a.opts.ResolveOptions()
	c := discover.NewCollector(discover.Options{TrustDomain: ro.TrustDomain, TLSPorts: map[uint32]bool{a.tlsPort: true}})
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.Read(f); err != nil {
		t.Fatal(err)
	}
	res := c.Propose(cms, ro)
	if c.Stats.OutsideRules < 1 {
		t.Errorf("discover did not count the request outside the rules: %+v", c.Stats)
	}
	for _, p := range res.Proposals {
		if !bytes.Contains(p.Manifest, []byte("127.0.0.")) {
			t.Errorf("%s proposes no source:\n%s", p.ConfigMap, p.Manifest)
		}
	}
	t.Logf("discover: %+v; notes: %v", c.Stats, res.Notes)
	return res
}

// A group in audit with real sidecars: the sidecar's explicit proxy passes
// a CONNECT to an undeclared host on to the gateway's mesh port (in
// enforce it answers 403 itself), and the gateway audits it with the
// workload's verified identity; a declared host whose allow list does not
// name the workload is let through and logged likewise. discover proposes
// the identity as a principal, and widens the allow list with it.
func TestSidecarAuditEnvoy(t *testing.T) {
	bin := envoytest.Find(t)
	ports := freePorts(t, 2)
	s := newMeshStack(t, bin, meshStackOptions{host: "127.0.0.1", proxyPort: ports[0], capturePort: ports[1]})
	writeIntent(t, s.configDir, "settings", auditSettings("audit"))
	sc := s.startSidecar(t, "it-sidecar-audit", checkoutID, "127.0.0.1", nil, 0)
	defer sc.stop()
	proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(s.proxyPort)))
	billing := fakeservices.MeshHost + ":443"
	// billing-api admits the billing namespace only: let through in audit.
	if err := retry(waitTimeout, func() error {
		conn, code, err := proxyConnect(proxy, billing)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("CONNECT %s: %d %v", billing, code, err)
		}
		rep, err := tlsRequest(conn, fakeservices.MeshHost, "/audited", s.ca.Pool())
		if err != nil || rep.SNI != fakeservices.MeshHost {
			return fmt.Errorf("TLS to %s: %+v %v", fakeservices.MeshHost, rep, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, match func(logEntry) bool) {
		t.Helper()
		(&Traffic{}).waitLog(t, s.gw, what, match)
	}
	wait("the audited source", func(e logEntry) bool {
		return e.get("listener") == s.env.mesh() && e.get("audit") == "source_not_allowed" && e.get("peer_identity") == checkoutID &&
			e.get("authority") == billing && e.get("policy") == "allow: namespace billing"
	})
	// Undeclared: passed on by the sidecar, audited by the gateway (which
	// cannot resolve the name here: no DNS in this stack).
	authority := notDeclaredHost + ":443"
	if _, code, err := proxyConnect(proxy, authority); err == nil && code == http.StatusForbidden {
		t.Errorf("the sidecar refused CONNECT %s in audit", authority)
	}
	wait("the undeclared host at the gateway", func(e logEntry) bool {
		return e.get("listener") == s.env.mesh() && e.get("audit") == "not_declared" && e.get("peer_identity") == checkoutID &&
			e.get("authority") == authority
	})
	out, _ := s.gw.logs()
	col := discover.NewCollector(discover.Options{TrustDomain: fakeservices.MeshTrustDomain})
	if err := col.Read(strings.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	state, err := watch.LoadDir(s.configDir)
	if err != nil {
		t.Fatal(err)
	}
	cms, _, _ := compile.FromFolder(state)
	res := col.Propose(cms, s.env.translateOptions().ResolveOptions())
	var all string
	for _, p := range res.Proposals {
		all += string(p.Manifest)
	}
	principal := `{principal: "` + checkoutID + `"}`
	if !strings.Contains(all, `host: "`+notDeclaredHost+`"`) || !strings.Contains(all, principal) ||
		!strings.Contains(all, "- "+principal+" # added by discover") {
		t.Errorf("proposals:\n%s\nnotes: %v", all, res.Notes)
	}
	// Every configuration accepted (the audit warning is the one problem
	// the server reports, so checkNoRejects does not apply).
	for _, p := range []gateway{sc, s.gw} {
		st, err := stats(p, `update_rejected$`)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range st {
			if v != 0 {
				t.Errorf("%s: %s = %d", p.name(), name, v)
			}
		}
	}
}
