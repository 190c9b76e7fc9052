package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/xdstest"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// Bounds of every wait and request: tests never hang.
const (
	waitTimeout    = 30 * time.Second
	requestTimeout = 15 * time.Second
)

// gateway is one running Envoy gateway, local process or container.
type gateway interface {
	name() string
	// addr is a 127.0.0.1 address reaching the gateway's listener port.
	addr(port uint32) (string, error)
	// admin GETs a path of the gateway's admin interface.
	admin(path string) ([]byte, error)
	// logs is the gateway's output so far; access logs are JSON lines.
	logs() (string, error)
}

// Traffic sends real requests through the gateways of a stack.
type Traffic struct {
	env      *Env
	gw       gateway // takes traffic by listener port, as DNS pointing at it would send it
	proxy    gateway // takes explicit-proxy traffic
	gateways []gateway
	ca       *x509.CertPool
	issuer   *fakeservices.CA  // issues the workload certificates of the mesh
	fakes    string            // fake services' control URL
	dns      *fakeservices.DNS // the test DNS server; nil where there is none
	// state is what the control plane serves, as an ADS client holds it.
	state func() *xdstest.State
}

type response struct {
	code   int
	header http.Header
	body   string
	reply  fakeservices.Reply // when a fake service answered
}

func (g *Traffic) dial(gw gateway, port uint32) (net.Conn, error) {
	addr, err := gw.addr(port)
	if err != nil {
		return nil, err
	}
	return net.DialTimeout("tcp", addr, 5*time.Second)
}

// tryGet sends GET http://host/path to the gateway's HTTP listener.
func (g *Traffic) tryGet(host, path string) (response, error) {
	return g.do(g.gw, g.env.listenerPort(80), "http://"+host+path, false)
}

func (g *Traffic) get(t *testing.T, host, path string) response {
	t.Helper()
	r, err := g.tryGet(host, path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// proxyGet sends an absolute-form request through the explicit proxy.
func (g *Traffic) proxyGet(t *testing.T, u string) response {
	t.Helper()
	r, err := g.do(g.proxy, g.env.ForwardProxyPort, u, true)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (g *Traffic) do(gw gateway, port uint32, u string, viaProxy bool) (response, error) {
	addr, err := gw.addr(port)
	if err != nil {
		return response{}, err
	}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
		},
	}
	if viaProxy {
		tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: addr})
	}
	c := &http.Client{Transport: tr, Timeout: requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		return response{}, err
	}
	return readResponse(resp)
}

func readResponse(resp *http.Response) (response, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return response{}, err
	}
	r := response{code: resp.StatusCode, header: resp.Header, body: string(body)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(body, &r.reply)
	}
	return r, nil
}

// passthrough opens TLS to sni through the gateway's TLS listener and
// sends one request; the handshake is the test's own, checked against the
// test CA.
func (g *Traffic) passthrough(sni, path string) (fakeservices.Reply, error) {
	conn, err := g.dial(g.gw, g.env.listenerPort(443))
	if err != nil {
		return fakeservices.Reply{}, err
	}
	return tlsRequest(conn, sni, path, g.ca)
}

// passthroughFrom is passthrough from the local source address src.
func (g *Traffic) passthroughFrom(src, sni, path string) (fakeservices.Reply, error) {
	addr, err := g.gw.addr(g.env.listenerPort(443))
	if err != nil {
		return fakeservices.Reply{}, err
	}
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return fakeservices.Reply{}, err
	}
	return tlsRequest(conn, sni, path, g.ca)
}

// tlsRequest sends GET path over TLS on conn, which it closes.
func tlsRequest(conn net.Conn, sni, path string, ca *x509.CertPool) (fakeservices.Reply, error) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	tc := tls.Client(conn, &tls.Config{ServerName: sni, RootCAs: ca, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		return fakeservices.Reply{}, err
	}
	if _, err := fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, sni); err != nil {
		return fakeservices.Reply{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return fakeservices.Reply{}, err
	}
	r, err := readResponse(resp)
	if err == nil && r.code != http.StatusOK {
		err = fmt.Errorf("%d %q", r.code, r.body)
	}
	return r.reply, err
}

// connect asks the explicit proxy for a tunnel; the connection is returned
// only when it was granted (200).
func (g *Traffic) connect(t *testing.T, authority string) (net.Conn, int) {
	t.Helper()
	conn, err := g.dial(g.proxy, g.env.ForwardProxyPort)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, resp.StatusCode
	}
	return &bufferedConn{Conn: conn, r: br}, resp.StatusCode
}

// bufferedConn reads what the proxy's response reader already buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (g *Traffic) tcp(t *testing.T, declared uint32) net.Conn {
	t.Helper()
	conn, err := g.dial(g.gw, g.env.listenerPort(declared))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// database reads a fake database's greeting, checks its echo and returns
// the instance's name.
func (g *Traffic) database(t *testing.T, conn net.Conn) string {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	r := bufio.NewReader(conn)
	greeting, err := r.ReadString('\n')
	name, ok := strings.CutPrefix(strings.TrimSpace(greeting), "fake-db ")
	if err != nil || !ok {
		t.Fatalf("database greeting %q: %v", greeting, err)
	}
	if _, err := io.WriteString(conn, "SELECT 1;\n"); err != nil {
		t.Fatal(err)
	}
	if echo, err := r.ReadString('\n'); err != nil || echo != "SELECT 1;\n" {
		t.Fatalf("database echo %q: %v", echo, err)
	}
	return name
}

// setFailing switches the flaky fake service.
func (g *Traffic) setFailing(t *testing.T, on bool) {
	t.Helper()
	c := &http.Client{Timeout: requestTimeout}
	resp, err := c.Post(g.fakes+"/flaky?failing="+strconv.FormatBool(on), "", nil)
	if err != nil {
		t.Error(err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("flaky control: %s", resp.Status)
	}
}

// stats are the counters and gauges of a gateway whose name matches the
// regular expression filter.
func stats(gw gateway, filter string) (map[string]int64, error) {
	body, err := gw.admin("/stats?filter=" + url.QueryEscape(filter))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, v, ok := strings.Cut(line, ": ")
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); ok && err == nil {
			out[name] = n
		}
	}
	return out, nil
}

// stat is one statistic, 0 when Envoy does not have it (yet).
func (g *Traffic) stat(t *testing.T, gw gateway, name string) int64 {
	t.Helper()
	s, err := stats(gw, "^"+regexpQuote(name)+"$")
	if err != nil {
		t.Fatal(err)
	}
	return s[name]
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// logEntry is one JSON access log line.
type logEntry map[string]any

// get returns a field as text: numbers as Envoy printed them.
func (e logEntry) get(key string) string {
	switch v := e[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// waitLog waits for an access log line of gw that matches.
func (g *Traffic) waitLog(t *testing.T, gw gateway, what string, match func(logEntry) bool) logEntry {
	t.Helper()
	var found logEntry
	g.eventually(t, what+" in the access log of "+gw.name(), func() error {
		ok, err := logged(gw, func(e logEntry) bool {
			if match(e) {
				found = e
				return true
			}
			return false
		})
		if err == nil && !ok {
			err = errors.New("no such line")
		}
		return err
	})
	return found
}

// logged reports whether the access log of gw holds a line that matches.
func logged(gw gateway, match func(logEntry) bool) (bool, error) {
	out, err := gw.logs()
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(out, "\n") {
		var e logEntry
		if i := strings.IndexByte(line, '{'); i >= 0 && json.Unmarshal([]byte(line[i:]), &e) == nil && match(e) {
			return true, nil
		}
	}
	return false, nil
}

// eventually retries f until it succeeds, for waitTimeout at most.
func (g *Traffic) eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := retry(waitTimeout, f); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func retry(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAccepted proves a gateway accepted every configuration it was sent
// (no *.update_rejected) and holds what the control plane serves.
func (g *Traffic) checkAccepted(t *testing.T, gw gateway) {
	t.Helper()
	g.eventually(t, gw.name()+" to hold what the control plane serves", func() error { return accepted(gw, g.state()) })
}

func accepted(gw gateway, st *xdstest.State) error {
	s, err := stats(gw, `update_(rejected|success)$`)
	if err != nil {
		return err
	}
	var problems []string
	for _, name := range []string{"cluster_manager.cds.update_success", "listener_manager.lds.update_success"} {
		if s[name] < 1 {
			problems = append(problems, fmt.Sprintf("%s = %d", name, s[name]))
		}
	}
	for name, v := range s {
		if strings.HasSuffix(name, "update_rejected") && v != 0 {
			problems = append(problems, fmt.Sprintf("%s = %d", name, v))
		}
	}
	if _, ok := s["listener_manager.lds.update_rejected"]; !ok {
		problems = append(problems, fmt.Sprintf("no update_rejected stats: %v", s))
	}
	body, err := gw.admin("/config_dump")
	if err != nil {
		return err
	}
	held, err := parseConfigDump(body)
	if err != nil {
		return err
	}
	for kind, want := range map[string][]string{
		"listeners": names(st.Listeners()), "clusters": names(st.Clusters()),
		"routes": names(st.Routes()), "secrets": names(st.Secrets()),
	} {
		got := held[kind]
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("holds %s %v, the control plane serves %v", kind, got, want))
		}
	}
	if len(held["errors"]) > 0 {
		problems = append(problems, fmt.Sprintf("listeners in error: %v", held["errors"]))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func names[T interface{ GetName() string }](ms []T) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.GetName())
	}
	return out
}

// parseConfigDump lists the dynamic resources an Envoy holds, by kind
// (listeners, clusters, routes, secrets), and listeners in error.
func parseConfigDump(body []byte) (map[string][]string, error) {
	var dump struct {
		Configs []struct {
			Listeners []struct {
				Name   string          `json:"name"`
				Active json.RawMessage `json:"active_state"`
				Error  json.RawMessage `json:"error_state"`
			} `json:"dynamic_listeners"`
			Clusters []struct {
				Cluster struct {
					Name string `json:"name"`
				} `json:"cluster"`
			} `json:"dynamic_active_clusters"`
			Routes []struct {
				RouteConfig struct {
					Name string `json:"name"`
				} `json:"route_config"`
			} `json:"dynamic_route_configs"`
			Secrets []struct {
				Name string `json:"name"`
			} `json:"dynamic_active_secrets"`
		} `json:"configs"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&dump); err != nil {
		return nil, fmt.Errorf("config_dump: %w", err)
	}
	out := map[string][]string{"listeners": {}, "clusters": {}, "routes": {}, "secrets": {}}
	for _, c := range dump.Configs {
		for _, l := range c.Listeners {
			if len(l.Active) > 0 {
				out["listeners"] = append(out["listeners"], l.Name)
			}
			if len(l.Error) > 0 {
				out["errors"] = append(out["errors"], l.Name+": "+string(l.Error))
			}
		}
		for _, cl := range c.Clusters {
			out["clusters"] = append(out["clusters"], cl.Cluster.Name)
		}
		for _, r := range c.Routes {
			out["routes"] = append(out["routes"], r.RouteConfig.Name)
		}
		for _, s := range c.Secrets {
			out["secrets"] = append(out["secrets"], s.Name)
		}
	}
	return out, nil
}

// waitReady waits until a gateway has initialised and every listener the
// scenarios give it is active.
func waitReady(gw gateway, listeners int) error {
	return retry(90*time.Second, func() error {
		ready, err := gw.admin("/ready")
		if err != nil {
			return err
		}
		if !bytes.Contains(ready, []byte("LIVE")) {
			return fmt.Errorf("/ready: %s", bytes.TrimSpace(ready))
		}
		s, err := stats(gw, `^(listener_manager\.total_listeners_(active|warming)|cluster_manager\.warming_clusters)$`)
		if err != nil {
			return err
		}
		if s["listener_manager.total_listeners_active"] < int64(listeners) || s["listener_manager.total_listeners_warming"] > 0 ||
			s["cluster_manager.warming_clusters"] > 0 {
			return fmt.Errorf("not ready: %v", s)
		}
		return nil
	})
}

// syncBuffer is a log sink tests read while it is written.
type syncBuffer = xdstest.LogBuffer

// tail is the end of a log, for failure messages.
func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// meshConnect does what a sidecar does for a TLS or TCP destination: it
// opens mutual TLS to the gateway's mesh port as workload id (a
// certificate of the test CA), checks that the gateway is its group's
// (spiffe://<td>/gateway-group/<group>), and asks for an HTTP/2 CONNECT
// tunnel to authority. It returns the response status and, for 200, the
// tunnel.
func (g *Traffic) meshConnect(t *testing.T, id, authority string) (int, net.Conn) {
	t.Helper()
	addr, err := g.gw.addr(g.env.MeshPort)
	if err != nil {
		t.Fatal(err)
	}
	code, conn, err := meshConnect(addr, g.issuer, id, fakeservices.MeshGatewayID(group), authority)
	if err != nil {
		t.Fatalf("CONNECT %s on the mesh port as %s: %v", authority, id, err)
	}
	return code, conn
}

func meshConnect(addr string, ca *fakeservices.CA, id, gatewayID, authority string) (int, net.Conn, error) {
	certPEM, keyPEM, err := ca.Issue(testpki.SPIFFE(id))
	if err != nil {
		return 0, nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return 0, nil, err
	}
	tr := &http2.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12,
		// As Envoy's SAN matcher does: the chain, then the SPIFFE ID,
		// no host name.
		InsecureSkipVerify: true,
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
	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+addr, pr)
	if err != nil {
		cancel()
		return 0, nil, err
	}
	req.Host = authority
	resp, err := tr.RoundTrip(req)
	if err != nil {
		cancel()
		return 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		pw.Close()
		cancel()
		return resp.StatusCode, nil, nil
	}
	return resp.StatusCode, &streamConn{r: resp.Body, w: pw, close: func() { resp.Body.Close(); cancel(); tr.CloseIdleConnections() }}, nil
}

// streamConn is an HTTP/2 CONNECT stream as a net.Conn; deadlines are the
// request's context.
type streamConn struct {
	r     io.ReadCloser
	w     *io.PipeWriter
	close func()
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *streamConn) Close() error                     { c.w.Close(); c.close(); return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// loggedLines are the gateway's access log lines that match.
func loggedLines(gw gateway, match func(logEntry) bool) ([]logEntry, error) {
	out, err := gw.logs()
	if err != nil {
		return nil, err
	}
	var lines []logEntry
	for _, line := range strings.Split(out, "\n") {
		var e logEntry
		if i := strings.IndexByte(line, '{'); i >= 0 && json.Unmarshal([]byte(line[i:]), &e) == nil && match(e) {
			lines = append(lines, e)
		}
	}
	return lines, nil
}
