package integration

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"

	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// httpOperationsRBAC is the filter of methods and path rules.
const httpOperationsRBAC = "envoy.filters.http.rbac.operations"

// operationRefused is what Envoy logs for a request outside the rules.
const operationRefused = "rbac_access_denied_matched_policy[" + translate.OperationNotAllowedPolicy + "]"

// httpRulesScenario: methods and paths per destination and per source, by
// real requests: allowed ones reach the service, others get 403 with the
// policy in the access log, paths are matched once normalized (a dot
// segment cannot climb out of a prefix) and escaped slashes are refused.
var httpRulesScenario = Scenario{
	Name:  "http-rules",
	About: "methods and paths: what a destination's rules (or an allow entry's own) admit passes, the rest gets 403 with the policy in the access log; dot segments are normalized away before matching, escaped slashes refused",
	Intent: func(e *Env) string {
		return `
- name: repos
  host: rules.example.com
  ports: [{number: 80, protocol: HTTP}]
  endpoints: [` + e.ep(fakeservices.ServiceHTTP) + `]
  methods: [GET, HEAD]
  paths: [{prefix: /repos/}, {exact: /rate_limit}]
- name: uploads
  host: uploads.example.com
  ports: [{number: 80, protocol: HTTP}]
  endpoints: [` + e.ep(fakeservices.ServiceHTTP) + `]
  methods: [GET]
  allow:
    - {cidr: ` + deniedCIDR + `}` + e.clientsWithRules("methods: [POST], paths: [{prefix: /upload/}]")
	},
	Config: func(e *Env, c *check) {
		rc := c.routes(e.listener("http", 80))
		rules := func(dest string) *rbacv3.RBAC {
			r := c.route(c.vhost(rc, clusterName("http-rules", dest, 80)))
			return unpack[*rbachttpv3.RBACPerRoute](c, r.GetTypedPerFilterConfig()[httpOperationsRBAC]).GetRbac().GetRules()
		}
		for _, d := range []string{"repos", "uploads"} {
			r := rules(d)
			c.equal(d+" rules action", r.GetAction(), rbacv3.RBAC_DENY)
			if _, ok := r.GetPolicies()[translate.OperationNotAllowedPolicy]; !ok {
				c.fail("%s: no policy %s in %v", d, translate.OperationNotAllowedPolicy, r.GetPolicies())
			}
		}
		h := c.hcm(c.listener(e.listener("http", 80)))
		c.equal("paths normalized", h.GetNormalizePath().GetValue() && h.GetMergeSlashes(), true)
		if f := httpFilters(h); !strings.Contains(strings.Join(f, ","), httpRBAC+","+httpOperationsRBAC+",") {
			c.fail("HTTP filters %v: want the rules right after the allow list", f)
		}
	},
	Traffic: func(t *testing.T, g *Traffic) {
		for _, c := range []struct {
			method, host, path string
			want               int
		}{
			{"GET", "rules.example.com", "/repos/egress-xds", http.StatusOK},
			{"HEAD", "rules.example.com", "/repos/egress-xds", http.StatusOK},
			{"GET", "rules.example.com", "/rate_limit", http.StatusOK},
			{"GET", "rules.example.com", "/rate_limit/more", http.StatusForbidden}, // exact
			{"POST", "rules.example.com", "/repos/egress-xds", http.StatusForbidden},
			{"GET", "rules.example.com", "/admin", http.StatusForbidden},
			{"GET", "rules.example.com", "/repos/../admin", http.StatusForbidden},     // normalized to /admin
			{"GET", "rules.example.com", "/repos/%2E%2E/admin", http.StatusForbidden}, // the same, escaped
			{"GET", "rules.example.com", "/repos%2F..%2Fadmin", http.StatusBadRequest},
			{"GET", "rules.example.com", "/repos//x", http.StatusOK}, // merged: /repos/x
			// An allow entry's own rules replace the destination's.
			{"POST", "uploads.example.com", "/upload/a", http.StatusOK},
			{"GET", "uploads.example.com", "/upload/a", http.StatusForbidden},
			{"POST", "uploads.example.com", "/other", http.StatusForbidden},
		} {
			r := g.request(t, c.method, c.host, c.path)
			if r.code != c.want {
				t.Errorf("%s http://%s%s: %d %q, want %d", c.method, c.host, c.path, r.code, r.body, c.want)
				continue
			}
			if c.want == http.StatusOK && c.method != "HEAD" && r.reply.Service != fakeservices.ServiceHTTP {
				t.Errorf("%s http://%s%s: not answered by the service: %+v", c.method, c.host, c.path, r.reply)
			}
			if c.want == http.StatusForbidden && !strings.Contains(r.body, "RBAC: access denied") {
				t.Errorf("%s http://%s%s: body %q", c.method, c.host, c.path, r.body)
			}
		}
		if r := g.request(t, "GET", "rules.example.com", "/repos//x"); r.reply.Path != "/repos/x" {
			t.Errorf("the service got %q, want the normalized /repos/x", r.reply.Path)
		}
		g.waitLog(t, g.gw, "the refused POST, with its policy", func(e logEntry) bool {
			return e.get("authority") == "rules.example.com" && e.get("method") == "POST" &&
				e.get("response_code") == "403" && e.get("response_code_details") == operationRefused
		})
		// The explicit proxy and absolute-form requests follow the same
		// rules.
		if r := g.proxyRequest(t, "POST", "http://rules.example.com/repos/x"); r.code != http.StatusForbidden {
			t.Errorf("POST through the explicit proxy: %d, want 403", r.code)
		}
		if r := g.proxyRequest(t, "GET", "http://rules.example.com/repos/x"); r.code != http.StatusOK {
			t.Errorf("GET through the explicit proxy: %d, want 200", r.code)
		}
	},
}

// clientsWithRules lists allow entries admitting the test clients, each
// with rules.
func (e *Env) clientsWithRules(rules string) string {
	var b strings.Builder
	for _, c := range e.ClientCIDRs {
		b.WriteString("\n    - {cidr: " + c + ", " + rules + "}")
	}
	return b.String()
}

// request sends one request with method to the gateway's HTTP listener.
func (g *Traffic) request(t *testing.T, method, host, path string) response {
	t.Helper()
	addr, err := g.gw.addr(g.env.listenerPort(80))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rawRequest(addr, method, host, path)
	if err != nil {
		t.Fatalf("%s http://%s%s: %v", method, host, path, err)
	}
	return r
}

// proxyRequest sends an absolute-form request with method through the
// explicit proxy.
func (g *Traffic) proxyRequest(t *testing.T, method, u string) response {
	t.Helper()
	addr, err := g.proxy.addr(g.env.ForwardProxyPort)
	if err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	r, err := rawRequest(addr, method, pu.Host, u)
	if err != nil {
		t.Fatalf("%s %s through the proxy: %v", method, u, err)
	}
	return r
}

// rawRequest sends the request line exactly as written, dot segments and
// escapes included: target is the path, or the absolute URL through a
// proxy.
func rawRequest(addr, method, host, target string) (response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return response{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	req := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return response{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return response{}, err
	}
	return readResponse(resp)
}
