package integration

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/istio"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// The guide's production set (its Step 10: ServiceEntry, Gateway,
// VirtualService, DestinationRules, AuthorizationPolicy), imported by
// xds-server import and served to a real gateway Envoy with real sidecars:
// what the guide says is allowed (the payment and checkout service
// accounts of production reaching api.payment-provider.com) passes; the
// rest (another service account, a workload without a sidecar, an
// undeclared host) is refused.
//
// The one change to the guide's objects: its ServiceEntry gets the fake
// service as its endpoint, where the real api.payment-provider.com would
// be resolved. Beside them, an HTTP ServiceEntry and an AuthorizationPolicy
// with methods and paths (importedRules): imported as an allow entry with
// methods and paths, it lets a GET under its path through and refuses a
// POST, and other paths, with 403.
func TestImportedGuideEnvoy(t *testing.T) {
	bin := envoytest.Find(t)
	guide, err := os.ReadFile("../../internal/istio/testdata/guide-20-production-egress-setup/in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var imported []byte
	intent := func(e *Env) string {
		up := e.Upstreams[fakeservices.ServiceTLS]
		in := strings.Replace(string(guide), "  resolution: DNS\n  # Export to all namespaces",
			"  resolution: DNS\n  endpoints:\n    - address: "+up.Host+"\n      ports: {https: "+strconv.Itoa(int(up.Port))+"}\n  # Export to all namespaces", 1)
		if in == string(guide) {
			t.Fatal("the guide's ServiceEntry is not where the test expects it")
		}
		in += importedRules(e)
		res := istio.Import([]istio.Input{{Name: "production-egress-setup.yaml", Data: []byte(in)}}, nil, istio.Options{})
		if res.Exit() != 0 || len(res.ConfigMaps) != 1 || res.ConfigMaps[0].Destinations != 2 {
			t.Fatalf("import: exit %d, %d ConfigMaps\n%s", res.Exit(), len(res.ConfigMaps), res.Report())
		}
		imported = res.ConfigMaps[0].YAML
		return string(imported)
	}
	ports := freePorts(t, 2)
	s := newMeshStack(t, bin, meshStackOptions{host: "127.0.0.1", proxyPort: ports[0], capturePort: ports[1], intent: intent, ports: []uint32{80, 443}})
	proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(s.proxyPort)))
	const host = "api.payment-provider.com"
	authority := host + ":443"

	for _, sa := range []string{"payment-service", "checkout-service"} {
		t.Run(sa, func(t *testing.T) {
			id := fakeservices.WorkloadID("production", sa)
			sc := s.startSidecar(t, "it-import-"+sa, id, "127.0.0.1", nil, 0)
			defer sc.stop()
			conn, code, err := proxyConnect(proxy, authority)
			if err != nil || code != http.StatusOK {
				t.Fatalf("CONNECT %s through the sidecar of %s: %d %v, want 200\n%s", authority, sa, code, err, imported)
			}
			// The workload's own TLS to the payment API, end to end.
			if rep, err := tlsRequest(conn, host, "/charges", s.ca.Pool()); err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != host {
				t.Fatalf("TLS to %s through the sidecar: %+v %v", host, rep, err)
			}
			s.admittedByGateway(t, id, authority)
			// Not in the guide's ServiceEntries: refused by the sidecar.
			if _, code, err := proxyConnect(proxy, "api.github.com:443"); err != nil || code != http.StatusForbidden {
				t.Fatalf("CONNECT to an undeclared host: %d %v, want 403", code, err)
			}
			s.neverReachedGateway(t, "api.github.com")
			s.checkNoRejects(t, sc, s.gw)
		})
	}
	t.Run("unauthorized-app", func(t *testing.T) {
		// The guide: "From a disallowed service account (should fail)".
		id := fakeservices.WorkloadID("production", "unauthorized-app")
		sc := s.startSidecar(t, "it-import-unauthorized", id, "127.0.0.1", nil, 0)
		defer sc.stop()
		if _, code, err := proxyConnect(proxy, authority); err != nil || code != http.StatusForbidden {
			t.Fatalf("CONNECT %s from %s: %d %v, want 403", authority, id, code, err)
		}
		s.refusedByGateway(t, id, authority)
	})
	t.Run("methods and paths", func(t *testing.T) {
		if !strings.Contains(string(imported), "methods:") || !strings.Contains(string(imported), "prefix: /status/") {
			t.Fatalf("the policy's methods and paths are not in the import:\n%s", imported)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(s.env.listenerPort(80))))
		for _, c := range []struct {
			method, path string
			want         int
		}{
			{"GET", "/status/payments", http.StatusOK},
			{"POST", "/status/payments", http.StatusForbidden},
			{"GET", "/admin", http.StatusForbidden},
			{"GET", "/status/../admin", http.StatusForbidden}, // normalized to /admin
		} {
			r, err := rawRequest(addr, c.method, "status.payment-provider.com", c.path)
			if err != nil {
				t.Fatalf("%s %s: %v", c.method, c.path, err)
			}
			if r.code != c.want {
				t.Errorf("%s http://status.payment-provider.com%s: %d %q, want %d\n%s", c.method, c.path, r.code, r.body, c.want, imported)
			}
			if c.want == http.StatusOK && r.reply.Service != fakeservices.ServiceHTTP {
				t.Errorf("%s %s: not answered by the service: %+v", c.method, c.path, r.reply)
			}
		}
	})
	t.Run("without a sidecar", func(t *testing.T) {
		// DNS pointing at the gateway, no identity: the allow list names
		// identities only, so the gateway closes the connection.
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(s.env.listenerPort(443))))
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(requestTimeout))
		tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: s.ca.Pool()})
		if err := tc.Handshake(); err == nil {
			t.Fatalf("TLS to %s straight to the gateway, without a sidecar: handshake succeeded, want the connection closed", host)
		}
		// The explicit proxy: no identity either.
		fp := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(s.env.ForwardProxyPort)))
		if _, code, err := proxyConnect(fp, authority); err != nil || code != http.StatusForbidden {
			t.Fatalf("CONNECT %s through the gateway's explicit proxy: %d %v, want 403", authority, code, err)
		}
	})
}

// importedRules is an HTTP ServiceEntry beside the guide's, and an
// AuthorizationPolicy on the egress gateway admitting the test's address
// to GET under /status/ only.
func importedRules(e *Env) string {
	up := e.Upstreams[fakeservices.ServiceHTTP]
	return `
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payment-status, namespace: production}
spec:
  hosts: [status.payment-provider.com]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: ` + strconv.Itoa(int(up.Port)) + `}]
  resolution: STATIC
  endpoints: [{address: ` + up.Host + `}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payment-status, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  action: ALLOW
  rules:
  - from:
    - source: {ipBlocks: [127.0.0.0/8]}
    to:
    - operation: {hosts: [status.payment-provider.com], methods: [GET], paths: ["/status/*"]}
`
}
