package integration

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	lrlhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	setfilterstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_filter_state/v3"
	lrlnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/local_ratelimit/v3"
	snidfpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_dynamic_forward_proxy/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// Scenario is one behaviour of the egress guide, proven by the same entry
// twice: Config on what a gateway receives over ADS (always, in CI), and
// Traffic by real requests through real Envoy gateways (when Envoy runs).
// Scenarios run in table order on one stack; each has its own hosts, so
// they do not interfere, except that the not-declared, forward-proxy and
// forward-proxy-kinds scenarios use listeners and destinations the others
// declare.
type Scenario struct {
	Name  string // also the ConfigMap and the file name
	About string
	// Intent is the scenario's destinations (a YAML list) for an Env; nil
	// for none.
	Intent func(*Env) string
	// Config holds once the gateway has the scenario's configuration; it
	// is retried until it does.
	Config  func(*Env, *check)
	Traffic func(*testing.T, *Traffic)
	// Then rewrites the intent while everything runs (a nil Intent deletes
	// the file) and checks again.
	Then *Step
}

// Step is a change of a scenario's intent and what must follow.
type Step struct {
	Intent  func(*Env) string
	Config  func(*Env, *check)
	Traffic func(*testing.T, *Traffic)
}

// Hosts and sources the scenarios rely on.
const (
	notDeclaredHost = "not-declared.example.org"
	wrongCertHost   = "wrong-cert.example.net" // not in fakeservices.DefaultNames
	deniedCIDR      = "203.0.113.0/24"         // TEST-NET-3: never a test client
)

// Envoy filter names the assertions look up.
const (
	netRateLimit  = "envoy.filters.network.local_ratelimit"
	tcpProxy      = "envoy.filters.network.tcp_proxy"
	httpRBAC      = "envoy.filters.http.rbac"
	httpRateLimit = "envoy.filters.http.local_ratelimit"
)

var scenarios = []Scenario{{
	Name:  "passthrough",
	About: "TLS to a declared host passes through by SNI, from an allowed source",
	Intent: func(e *Env) string {
		return `
- name: github
  host: api.github.com
  ports: [{number: 443, protocol: TLS}]
  endpoints: [` + e.ep(fakeservices.ServiceTLS) + `]
  allow: ` + e.allowClients() + `
  rateLimit: {maxTokens: 100, tokensPerFill: 100, fillInterval: 1s}`
	},
	Config: func(e *Env, c *check) {
		cl := clusterName("passthrough", "github", 443)
		fc := c.chain(c.listener(e.listener("tls", 443)), cl)
		c.equal("SNI", fc.GetFilterChainMatch().GetServerNames(), []string{"api.github.com"})
		c.equalSet("allowed sources", sourceRanges(fc), e.ClientCIDRs)
		c.equal("refused sources' chain", refusedChain(c, c.listener(e.listener("tls", 443)), cl), translate.RefusedCluster)
		c.equal("connection rate limit", filter[*lrlnetv3.LocalRateLimit](c, fc, netRateLimit).GetTokenBucket().GetMaxTokens(), uint32(100))
		c.equal("tcp_proxy cluster", filter[*tcpproxyv3.TcpProxy](c, fc, tcpProxy).GetCluster(), cl)
		c.equal("endpoints", c.endpoints(c.cluster(cl)), []string{e.addr(fakeservices.ServiceTLS)})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		rep, err := g.passthrough("api.github.com", "/repos/egress-xds")
		if err != nil {
			t.Fatal(err)
		}
		// The test's own handshake, verified by the test CA, reached the
		// fake server: the gateway did not terminate TLS.
		if rep.Service != fakeservices.ServiceTLS || rep.SNI != "api.github.com" || rep.Path != "/repos/egress-xds" {
			t.Fatalf("reply %+v", rep)
		}
		// Logged once, as served: the listener's not-declared log keeps
		// only connections that matched no chain (Envoy writes a
		// listener's access log for every connection).
		cl := clusterName("passthrough", "github", 443)
		g.waitLog(t, g.gw, "the passed connection", func(e logEntry) bool {
			return e.get("destination") == cl && e.get("sni") == "api.github.com"
		})
		if bad, err := logged(g.gw, func(e logEntry) bool {
			return e.get("sni") == "api.github.com" && strings.HasPrefix(e.get("reason"), "egress_not_declared")
		}); err != nil || bad {
			t.Fatalf("a served connection was also logged as not declared (%v)", err)
		}
		// One line, the destination's: the listener writes it for the
		// chain (its CEL filter picks one logger).
		lines, err := loggedLines(g.gw, func(e logEntry) bool { return e.get("sni") == "api.github.com" })
		if err != nil || len(lines) != 1 || lines[0].get("listener") == "" || lines[0].get("upstream_cluster") != cl ||
			lines[0].get("upstream_host") == "" || lines[0].get("bytes_sent") == "" || lines[0].get("reason") != "" {
			t.Fatalf("lines of the passed connection: %v (%v), want one, the destination's", lines, err)
		}
		t.Logf("passed connection: %v", lines[0])
	},
}, {
	Name:  "not-declared",
	About: "hosts no intent declares are refused, with the reason in the access log",
	Config: func(e *Env, c *check) {
		tl := c.listener(e.listener("tls", 443))
		c.equal("reason in the TLS listener's access log", accessLogField(c, tl.GetAccessLog(), "reason"), translate.NotDeclaredReason)
		hl := c.listener(e.listener("http", 80))
		c.equal("403 body format", localReplyFormat(c.hcm(hl)), "%LOCAL_REPLY_BODY%: %REQ(:AUTHORITY)%\n")
		vh := c.vhost(c.routes(e.listener("http", 80)), "egress_not_declared")
		c.equal("catch-all domains", vh.GetDomains(), []string{"*"})
		c.equal("catch-all answers", directResponses(vh), []string{"403 " + translate.NotDeclaredBody, "403 " + translate.NotDeclaredBody})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		if _, err := g.passthrough(notDeclaredHost, "/"); err == nil {
			t.Fatal("TLS to an undeclared SNI went through")
		}
		g.waitLog(t, g.gw, "the refused SNI", func(e logEntry) bool {
			return e.get("sni") == notDeclaredHost && strings.HasPrefix(e.get("reason"), "egress_not_declared")
		})
		r := g.get(t, notDeclaredHost, "/")
		if want := translate.NotDeclaredBody + ": " + notDeclaredHost; r.code != http.StatusForbidden || strings.TrimSpace(r.body) != want {
			t.Fatalf("HTTP to an undeclared host: %d %q, want 403 %q", r.code, r.body, want)
		}
		g.waitLog(t, g.gw, "the refused request", func(e logEntry) bool {
			return e.get("authority") == notDeclaredHost && e.get("response_code") == "403" && e.get("destination") == "egress_not_declared"
		})
	},
}, {
	Name:  "tls-origination",
	About: "plain HTTP in, verified HTTPS out (system CA bundle, SAN = SNI), with timeout and retries",
	Intent: func(e *Env) string {
		return `
- name: external-api
  host: api.external-service.com
  ports: [{number: 80, protocol: HTTP}]
  tls: {mode: SIMPLE, sni: api.external-service.com}
  endpoints: [` + e.ep(fakeservices.ServiceTLS) + `]
  timeout: 10s
  retries: {attempts: 2, perTryTimeout: 2s, on: [connect-failure]}`
	},
	Config: func(e *Env, c *check) {
		cl := clusterName("tls-origination", "external-api", 80)
		ctx := c.upstreamTLS(c.cluster(cl))
		c.equal("SNI", ctx.GetSni(), "api.external-service.com")
		c.equal("SANs", sans(ctx), []string{"api.external-service.com"})
		c.equal("trusted CA", ctx.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename(), e.SystemCABundle)
		c.equal("endpoints", c.endpoints(c.cluster(cl)), []string{e.addr(fakeservices.ServiceTLS)})
		vh := c.vhost(c.routes(e.listener("http", 80)), cl)
		c.equalSet("domains", vh.GetDomains(), []string{"api.external-service.com", "api.external-service.com:80"})
		ra := c.route(vh).GetRoute()
		c.equal("timeout", ra.GetTimeout().AsDuration(), 10*time.Second)
		c.equal("retries", ra.GetRetryPolicy().GetNumRetries().GetValue(), uint32(2))
	},
	Traffic: func(t *testing.T, g *Traffic) {
		r := g.get(t, "api.external-service.com", "/v1/things")
		rep := r.reply
		if r.code != http.StatusOK || rep.Service != fakeservices.ServiceTLS || !rep.TLS || rep.SNI != "api.external-service.com" ||
			rep.Host != "api.external-service.com" || rep.Path != "/v1/things" {
			t.Fatalf("%d %+v", r.code, rep)
		}
	},
}, {
	Name:  "upstream-verification",
	About: "TLS origination refuses a server whose certificate lacks the SNI",
	Intent: func(e *Env) string {
		return `
- name: wrong-cert
  host: ` + wrongCertHost + `
  ports: [{number: 80, protocol: HTTP}]
  tls: {mode: SIMPLE}
  endpoints: [` + e.ep(fakeservices.ServiceTLS) + `]`
	},
	Config: func(e *Env, c *check) {
		ctx := c.upstreamTLS(c.cluster(clusterName("upstream-verification", "wrong-cert", 80)))
		c.equal("SNI and SANs", ctx.GetSni()+" "+fmt.Sprint(sans(ctx)), wrongCertHost+" ["+wrongCertHost+"]")
		c.equal("trusted CA", ctx.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename(), e.SystemCABundle)
	},
	Traffic: func(t *testing.T, g *Traffic) {
		if r := g.get(t, wrongCertHost, "/"); r.code != http.StatusServiceUnavailable {
			t.Fatalf("%d %q, want 503", r.code, r.body)
		}
		g.waitLog(t, g.gw, "the upstream TLS failure", func(e logEntry) bool {
			return e.get("authority") == wrongCertHost && strings.Contains(strings.ToUpper(e.get("upstream_failure")), "TLS")
		})
	},
}, {
	Name:  "mtls-origination",
	About: "mutual TLS origination with the client certificate and CA delivered over SDS",
	Intent: func(e *Env) string {
		return `
- name: partner
  host: secure-api.partner.com
  ports: [{number: 80, protocol: HTTP}]
  tls:
    mode: MUTUAL
    clientCertificate: {secret: ` + fakeservices.ClientCertSecret + `}
    caCertificates: {secret: ` + fakeservices.CASecret + `}
  endpoints: [` + e.ep(fakeservices.ServiceMTLS) + `]`
	},
	Config: func(e *Env, c *check) {
		cl := clusterName("mtls-origination", "partner", 80)
		certName := namespace + "/" + fakeservices.ClientCertSecret
		caName := namespace + "/" + fakeservices.CASecret + "/ca"
		ctx := c.upstreamTLS(c.cluster(cl))
		var sds []string
		for _, s := range ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
			sds = append(sds, s.GetName())
		}
		c.equal("client certificate over SDS", sds, []string{certName})
		c.equal("CA over SDS", ctx.GetCommonTlsContext().GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName(), caName)
		c.equal("SNI and SANs", ctx.GetSni()+" "+fmt.Sprint(sans(ctx)), "secure-api.partner.com [secure-api.partner.com]")
		c.equal("endpoints", c.endpoints(c.cluster(cl)), []string{e.addr(fakeservices.ServiceMTLS)})
		// The secrets delivered are a client certificate the CA signed.
		var chain, key, ca []byte
		for _, s := range c.st.Secrets() {
			switch s.GetName() {
			case certName:
				chain = s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
				key = s.GetTlsCertificate().GetPrivateKey().GetInlineBytes()
			case caName:
				ca = s.GetValidationContext().GetTrustedCa().GetInlineBytes()
			}
		}
		if dir := e.OriginationSecretDir; dir != "" {
			// The key stays in the gateway's files; SDS says where.
			for _, s := range c.st.Secrets() {
				if f := s.GetTlsCertificate().GetPrivateKey().GetFilename(); s.GetName() == certName && f != dir+"/"+certName+"/tls.key" {
					c.fail("secret %s: key file %q, want it under %s", certName, f, dir)
				}
			}
			if len(key) != 0 {
				c.fail("secret %s: a private key delivered inline", certName)
			}
			return
		}
		if len(key) == 0 {
			c.fail("secret %s: no private key delivered", certName)
		}
		if err := signedBy(chain, ca); err != nil {
			c.fail("secrets %s and %s: %v", certName, caName, err)
		}
	},
	Traffic: func(t *testing.T, g *Traffic) {
		r := g.get(t, "secure-api.partner.com", "/orders")
		if r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceMTLS || r.reply.Client != fakeservices.GatewayClientName {
			t.Fatalf("%d %+v", r.code, r.reply)
		}
	},
}, {
	Name:  "database",
	About: "plain TCP to a database at fixed endpoints, round robin, with circuit breakers and outlier detection",
	Intent: func(e *Env) string {
		return `
- name: external-db
  host: external-db.example.com
  ports: [{number: 5432, protocol: TCP}]
  endpoints:
    - ` + e.ep(fakeservices.DBPrimary, "role: primary") + `
    - ` + e.ep(fakeservices.DBReplica, "role: replica") + `
  connectionPool: {maxConnections: 50, connectTimeout: 5s}
  outlierDetection: {consecutiveGatewayErrors: 3, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  loadBalancer: ROUND_ROBIN`
	},
	Config: func(e *Env, c *check) {
		cl := clusterName("database", "external-db", 5432)
		fc := c.chain(c.listener(e.listener("tcp", 5432)), cl)
		c.equal("tcp_proxy cluster", filter[*tcpproxyv3.TcpProxy](c, fc, tcpProxy).GetCluster(), cl)
		k := c.cluster(cl)
		c.equalSet("endpoints", c.endpoints(k), []string{e.addr(fakeservices.DBPrimary), e.addr(fakeservices.DBReplica)})
		c.equal("max connections", threshold(k).GetMaxConnections().GetValue(), uint32(50))
		c.equal("load balancer", k.GetLbPolicy(), clusterv3.Cluster_ROUND_ROBIN)
		c.equal("consecutive gateway errors", k.GetOutlierDetection().GetConsecutiveGatewayFailure().GetValue(), uint32(3))
	},
	Traffic: func(t *testing.T, g *Traffic) {
		seen := map[string]int{}
		for range 6 {
			conn := g.tcp(t, 5432)
			seen[g.database(t, conn)]++
			conn.Close()
		}
		if seen[fakeservices.DBPrimary] == 0 || seen[fakeservices.DBReplica] == 0 {
			t.Fatalf("connections per instance: %v, want both", seen)
		}
	},
}, {
	Name:  "rate-limit",
	About: "a local rate limit answers 429 with x-rate-limited: true once the bucket is empty",
	Intent: func(e *Env) string {
		return `
- name: limited
  host: limited.example.com
  ports: [{number: 80, protocol: HTTP}]
  endpoints: [` + e.ep(fakeservices.ServiceHTTP) + `]
  rateLimit: {maxTokens: 3, tokensPerFill: 3, fillInterval: 1m}`
	},
	Config: func(e *Env, c *check) {
		// Authorization comes first (the allow list, then the methods and
		// paths filter when a destination of the listener has rules: the
		// http-rules scenario's, sharing this listener), then the rate
		// limit; the listener's dynamic forward proxy filters
		// (dynamic-ports) sit before the router, which is last.
		hf := httpFilters(c.hcm(c.listener(e.listener("http", 80))))
		want := []string{httpRBAC}
		if slices.Contains(hf, httpOperationsRBAC) {
			want = append(want, httpOperationsRBAC)
		}
		want = append(want, httpRateLimit)
		if len(hf) > len(want) {
			c.equal("HTTP filters", append(slices.Clone(hf[:len(want)]), hf[len(hf)-1]), append(want, "envoy.filters.http.router"))
		} else {
			c.fail("HTTP filters %v: want %v, ..., router", hf, want)
		}
		vh := c.vhost(c.routes(e.listener("http", 80)), clusterName("rate-limit", "limited", 80))
		// The destination has no rules: the operations filter, if the
		// listener has one, does nothing for its requests.
		if _, ok := c.route(vh).GetTypedPerFilterConfig()[httpOperationsRBAC]; ok {
			c.fail("limited has no methods or paths, but its route has %s", httpOperationsRBAC)
		}
		rl := unpack[*lrlhttpv3.LocalRateLimit](c, c.route(vh).GetTypedPerFilterConfig()[httpRateLimit])
		tb := rl.GetTokenBucket()
		c.equal("bucket", fmt.Sprint(tb.GetMaxTokens(), tb.GetTokensPerFill().GetValue(), tb.GetFillInterval().AsDuration()), "3 3 1m0s")
		c.equal("enforced", rl.GetFilterEnforced().GetDefaultValue().GetNumerator(), uint32(100))
		var hdrs []string
		for _, h := range rl.GetResponseHeadersToAdd() {
			hdrs = append(hdrs, h.GetHeader().GetKey()+": "+h.GetHeader().GetValue())
		}
		c.equal("429 headers", hdrs, []string{translate.RateLimitedHeader + ": true"})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		var codes []int
		for range 5 {
			r := g.get(t, "limited.example.com", "/")
			codes = append(codes, r.code)
			if r.code == http.StatusTooManyRequests && r.header.Get(translate.RateLimitedHeader) != "true" {
				t.Fatalf("429 without %s: true: %v", translate.RateLimitedHeader, r.header)
			}
		}
		if fmt.Sprint(codes) != "[200 200 200 429 429]" {
			t.Fatalf("codes %v, want 3 x 200 then 429s", codes)
		}
	},
}, {
	Name:  "circuit-breaker",
	About: "requests over the connection pool limits get 503 with the overflow flag",
	Intent: func(e *Env) string {
		return `
- name: breaker
  host: breaker.example.com
  ports: [{number: 80, protocol: HTTP}]
  endpoints: [` + e.ep(fakeservices.ServiceHTTP) + `]
  connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}`
	},
	Config: func(e *Env, c *check) {
		th := threshold(c.cluster(clusterName("circuit-breaker", "breaker", 80)))
		c.equal("limits", fmt.Sprint(th.GetMaxConnections().GetValue(), th.GetMaxPendingRequests().GetValue(), th.GetMaxRequests().GetValue()), "1 1 1")
	},
	Traffic: func(t *testing.T, g *Traffic) {
		// One request active and one pending fit; the rest overflow at once.
		const n = 8
		out := make(chan response, n)
		errs := make(chan error, n)
		for range n {
			go func() {
				r, err := g.tryGet("breaker.example.com", "/?delay=1s")
				if err != nil {
					errs <- err
					return
				}
				out <- r
			}()
		}
		var ok, overflow int
		for range n {
			select {
			case err := <-errs:
				t.Fatal(err)
			case r := <-out:
				switch {
				case r.code == http.StatusOK:
					ok++
				case r.code == http.StatusServiceUnavailable && r.header.Get("x-envoy-overloaded") == "true":
					overflow++
				default:
					t.Fatalf("%d %v %q", r.code, r.header, r.body)
				}
			}
		}
		if ok == 0 || overflow == 0 {
			t.Fatalf("%d ok, %d overflowed; want both", ok, overflow)
		}
		g.waitLog(t, g.gw, "the overflow flag", func(e logEntry) bool {
			return e.get("authority") == "breaker.example.com" && strings.Contains(e.get("response_flags"), "UO")
		})
	},
}, {
	Name:  "outlier-detection",
	About: "an endpoint failing with 5xx is ejected and traffic goes to the healthy one",
	Intent: func(e *Env) string {
		return `
- name: flaky
  host: flaky.example.com
  ports: [{number: 80, protocol: HTTP}]
  endpoints: [` + e.ep(fakeservices.ServiceHTTP) + `, ` + e.ep(fakeservices.ServiceFlaky) + `]
  outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 50}
  loadBalancer: ROUND_ROBIN`
	},
	Config: func(e *Env, c *check) {
		k := c.cluster(clusterName("outlier-detection", "flaky", 80))
		od := k.GetOutlierDetection()
		c.equal("detection", fmt.Sprint(od.GetConsecutive_5Xx().GetValue(), od.GetEnforcingConsecutive_5Xx().GetValue(),
			od.GetBaseEjectionTime().AsDuration(), od.GetMaxEjectionPercent().GetValue()), "2 100 1m0s 50")
		c.equalSet("endpoints", c.endpoints(k), []string{e.addr(fakeservices.ServiceHTTP), e.addr(fakeservices.ServiceFlaky)})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		g.setFailing(t, true)
		t.Cleanup(func() { g.setFailing(t, false) })
		failures, streak := 0, 0
		for i := 0; i < 40 && streak < 8; i++ {
			r := g.get(t, "flaky.example.com", "/")
			switch {
			case r.code == http.StatusServiceUnavailable && r.reply.Service == fakeservices.ServiceFlaky:
				failures, streak = failures+1, 0
			case r.code == http.StatusOK && r.reply.Service == fakeservices.ServiceHTTP:
				streak++
			default:
				t.Fatalf("%d %+v", r.code, r.reply)
			}
		}
		if failures < 2 || streak < 8 {
			t.Fatalf("%d failures then %d successes in a row; want the failing endpoint ejected after 2", failures, streak)
		}
		stat := "cluster." + clusterName("outlier-detection", "flaky", 80) + ".outlier_detection.ejections_enforced_total"
		g.eventually(t, stat, func() error {
			if n := g.stat(t, g.gw, stat); n < 1 {
				return fmt.Errorf("%s = %d", stat, n)
			}
			return nil
		})
	},
}, {
	Name:  "source-denied",
	About: "sources outside a destination's allow list are refused, over HTTP (403) and TLS (closed)",
	Intent: func(e *Env) string {
		return `
- name: denied
  host: denied.example.com
  ports: [{number: 80, protocol: HTTP}]
  endpoints: [` + e.ep(fakeservices.ServiceHTTP) + `]
  allow: [{cidr: ` + deniedCIDR + `}]
- name: denied-tls
  host: denied-tls.example.com
  ports: [{number: 443, protocol: TLS}]
  endpoints: [` + e.ep(fakeservices.ServiceTLS) + `]
  allow: [{cidr: ` + deniedCIDR + `}]`
	},
	Config: func(e *Env, c *check) {
		vh := c.vhost(c.routes(e.listener("http", 80)), clusterName("source-denied", "denied", 80))
		c.equal("HTTP allowed sources", routeRBAC(c, c.route(vh)), []string{deniedCIDR})
		fc := c.chain(c.listener(e.listener("tls", 443)), clusterName("source-denied", "denied-tls", 443))
		c.equal("TLS allowed sources", sourceRanges(fc), []string{deniedCIDR})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		if r := g.get(t, "denied.example.com", "/"); r.code != http.StatusForbidden || !strings.Contains(r.body, "RBAC: access denied") {
			t.Fatalf("%d %q, want 403 RBAC: access denied", r.code, r.body)
		}
		g.waitLog(t, g.gw, "the denied request", func(e logEntry) bool {
			return e.get("authority") == "denied.example.com" && strings.Contains(e.get("response_code_details"), "rbac_access_denied")
		})
		_, err := g.passthrough("denied-tls.example.com", "/")
		var verr *tls.CertificateVerificationError
		if err == nil || errors.As(err, &verr) {
			t.Fatalf("TLS from a denied source: %v, want the connection closed", err)
		}
		g.waitLog(t, g.gw, "the refused connection", func(e logEntry) bool {
			return e.get("sni") == "denied-tls.example.com" && e.get("reason") == translate.SourceNotAllowedReason
		})
		lines, err := loggedLines(g.gw, func(e logEntry) bool { return e.get("sni") == "denied-tls.example.com" })
		if err != nil || len(lines) != 1 || !strings.HasSuffix(lines[0].get("destination"), "/source_not_allowed") ||
			lines[0].get("upstream_cluster") != translate.RefusedCluster || !strings.Contains(lines[0].get("response_flags"), "UH") {
			t.Fatalf("lines of the refused connection: %v (%v), want one, with the reason", lines, err)
		}
		t.Logf("refused connection: %v", lines[0])
	},
}, {
	Name:  "denied-source-spends-nothing",
	About: "a connection from a source outside the allow list takes no rate-limit token from the allowed sources and connects nowhere",
	Intent: func(e *Env) string {
		return `
- name: budget
  host: budget.example.com
  ports: [{number: 443, protocol: TLS}]
  endpoints: [` + e.ep(fakeservices.ServiceTLS) + `]
  allow: ` + e.allowClients() + `
  rateLimit: {maxTokens: 1, tokensPerFill: 1, fillInterval: 1h}`
	},
	Config: func(e *Env, c *check) {
		cl := clusterName("denied-source-spends-nothing", "budget", 443)
		l := c.listener(e.listener("tls", 443))
		fc := c.chain(l, cl)
		c.equalSet("admitted sources, matched before any filter runs", sourceRanges(fc), e.ClientCIDRs)
		c.equal("the bucket is on the admitted chain", filter[*lrlnetv3.LocalRateLimit](c, fc, netRateLimit).GetTokenBucket().GetMaxTokens(), uint32(1))
		c.equal("refused sources' chain", refusedChain(c, l, cl), translate.RefusedCluster)
	},
	Traffic: func(t *testing.T, g *Traffic) {
		denied, ok := g.env.deniedSource()
		if !ok {
			t.Skip("no source address outside the allowed ones in this environment")
		}
		cl := clusterName("denied-source-spends-nothing", "budget", 443)
		for i := range 5 {
			if _, err := g.passthroughFrom(denied, "budget.example.com", "/"); err == nil {
				t.Fatalf("attempt %d from %s went through", i, denied)
			}
		}
		g.eventually(t, "the refused connections counted", func() error {
			if n := g.stat(t, g.gw, "tcp."+cl+"/source_not_allowed.downstream_cx_total"); n < 5 {
				return fmt.Errorf("%d refused connections counted", n)
			}
			return nil
		})
		if n := g.stat(t, g.gw, "cluster."+cl+".upstream_cx_total"); n != 0 {
			t.Fatalf("refused sources caused %d upstream connections", n)
		}
		// The allowed source still has the bucket's one token...
		if rep, err := g.passthrough("budget.example.com", "/"); err != nil || rep.Service != fakeservices.ServiceTLS {
			t.Fatalf("the allowed source after the refused ones: %+v %v", rep, err)
		}
		// ...and only one: the bucket is real.
		if _, err := g.passthrough("budget.example.com", "/"); err == nil {
			t.Fatal("a second connection passed a bucket of one token")
		}
	},
}, {
	Name:  "forward-proxy",
	About: "the explicit proxy tunnels CONNECT and forwards absolute-form requests to declared destinations only",
	Config: func(e *Env, c *check) {
		c.equal("upgrades", upgrades(c.hcm(c.listener(e.forwardProxy())).GetUpgradeConfigs()), []string{"CONNECT"})
		rc := c.routes(e.forwardProxy())
		gh := clusterName("passthrough", "github", 443)
		vh := c.vhost(rc, gh)
		c.equal("CONNECT authority", vh.GetDomains(), []string{"api.github.com:443"})
		rt := c.route(vh)
		c.equal("CONNECT match", rt.GetMatch().GetConnectMatcher() != nil, true)
		c.equal("tunnel", rt.GetRoute().GetCluster()+" "+fmt.Sprint(upgrades(rt.GetRoute().GetUpgradeConfigs())), gh+" [CONNECT]")
		c.equal("database authority", c.vhost(rc, clusterName("database", "external-db", 5432)).GetDomains(), []string{"external-db.example.com:5432"})
		c.equalSet("HTTP authorities", c.vhost(rc, clusterName("tls-origination", "external-api", 80)).GetDomains(),
			[]string{"api.external-service.com:80", "api.external-service.com"})
		c.equal("refusals", directResponses(c.vhost(rc, "egress_not_declared")), []string{"403 " + translate.NotDeclaredBody, "403 " + translate.NotDeclaredBody})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		conn, code := g.connect(t, "api.github.com:443")
		if code != http.StatusOK {
			t.Fatalf("CONNECT api.github.com:443: %d", code)
		}
		rep, err := tlsRequest(conn, "api.github.com", "/via-connect", g.ca)
		if err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != "api.github.com" {
			t.Fatalf("TLS through the tunnel: %+v %v", rep, err)
		}
		if conn, code = g.connect(t, "external-db.example.com:5432"); code != http.StatusOK {
			t.Fatalf("CONNECT external-db.example.com:5432: %d", code)
		}
		g.database(t, conn)
		conn.Close()
		if _, code = g.connect(t, notDeclaredHost+":443"); code != http.StatusForbidden {
			t.Fatalf("CONNECT to an undeclared host: %d, want 403", code)
		}
		if r := g.proxyGet(t, "http://api.external-service.com/via-proxy"); r.code != http.StatusOK || r.reply.SNI != "api.external-service.com" {
			t.Fatalf("absolute-form request: %d %+v", r.code, r.reply)
		}
		if r := g.proxyGet(t, "http://"+notDeclaredHost+"/"); r.code != http.StatusForbidden {
			t.Fatalf("absolute-form request to an undeclared host: %d, want 403", r.code)
		}
	},
}, {
	Name:  "live-edit",
	About: "an edit of the intent applies without restarting anything",
	Intent: func(e *Env) string {
		return editedIntent(e, "[{cidr: "+deniedCIDR+"}]")
	},
	Config: func(e *Env, c *check) {
		vh := c.vhost(c.routes(e.listener("http", 80)), clusterName("live-edit", "edited", 80))
		c.equal("allowed sources", routeRBAC(c, c.route(vh)), []string{deniedCIDR})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		if r := g.get(t, "edited.example.com", "/"); r.code != http.StatusForbidden {
			t.Fatalf("%d before the edit, want 403", r.code)
		}
	},
	Then: &Step{
		Intent: func(e *Env) string { return editedIntent(e, e.allowClients()) },
		Config: func(e *Env, c *check) {
			vh := c.vhost(c.routes(e.listener("http", 80)), clusterName("live-edit", "edited", 80))
			c.equalSet("allowed sources", routeRBAC(c, c.route(vh)), e.ClientCIDRs)
		},
		Traffic: func(t *testing.T, g *Traffic) {
			g.eventually(t, "the edit to reach the gateway", func() error {
				if r := g.get(t, "edited.example.com", "/"); r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceHTTP {
					return fmt.Errorf("%d %q", r.code, r.body)
				}
				return nil
			})
		},
	},
}, {
	Name:  "delete-destination",
	About: "deleting a destination closes it",
	Intent: func(e *Env) string {
		return `
- name: deleted
  host: deleted.example.com
  ports: [{number: 80, protocol: HTTP}]
  endpoints: [` + e.ep(fakeservices.ServiceHTTP) + `]`
	},
	Config: func(e *Env, c *check) {
		cl := clusterName("delete-destination", "deleted", 80)
		c.vhost(c.routes(e.listener("http", 80)), cl)
		c.cluster(cl)
	},
	Traffic: func(t *testing.T, g *Traffic) {
		if r := g.get(t, "deleted.example.com", "/"); r.code != http.StatusOK {
			t.Fatalf("%d before the deletion, want 200", r.code)
		}
	},
	Then: &Step{
		Config: func(e *Env, c *check) {
			cl := clusterName("delete-destination", "deleted", 80)
			if findVHost(c.routes(e.listener("http", 80)), cl) != nil || findCluster(c.st, cl) != nil {
				c.fail("%s is still served", cl)
			}
		},
		Traffic: func(t *testing.T, g *Traffic) {
			g.eventually(t, "the deletion to reach the gateway", func() error {
				if r := g.get(t, "deleted.example.com", "/"); r.code != http.StatusForbidden || !strings.Contains(r.body, translate.NotDeclaredBody) {
					return fmt.Errorf("%d %q", r.code, r.body)
				}
				return nil
			})
		},
	},
}, {
	Name:  "mesh-identities",
	About: "on the mesh port, workloads are authorized by the identity in their certificate: an allowed service account and a workload of an allowed namespace get through, another service account is refused",
	Intent: func(e *Env) string {
		return `
- name: mesh-api
  host: ` + fakeservices.MeshHost + `
  ports: [{number: 443, protocol: TLS}]
  endpoints: [` + e.ep(fakeservices.ServiceTLS) + `]
  allow: [{principal: "` + fakeservices.WorkloadID("payments", "checkout") + `"}, {namespace: billing}]`
	},
	Config: func(e *Env, c *check) {
		identities := []string{"principal=" + fakeservices.WorkloadID("payments", "checkout"), "principal^=spiffe://" + fakeservices.MeshTrustDomain + "/ns/billing/sa/"}
		ml := c.listener(e.mesh())
		if len(ml.GetFilterChains()) == 1 {
			down := unpack[*tlsv3.DownstreamTlsContext](c, ml.GetFilterChains()[0].GetTransportSocket().GetTypedConfig())
			c.equal("client certificates required", down.GetRequireClientCertificate().GetValue(), true)
		}
		vh := c.vhost(c.routes(e.mesh()), clusterName("mesh-identities", "mesh-api", 443))
		c.equal("mesh domains", vh.GetDomains(), []string{fakeservices.MeshHost + ":443"})
		c.equal("identities allowed on the mesh port", routeRBAC(c, c.route(vh)), identities)
		// On the plain TLS port the same rules hold, and a plain
		// connection carries no identity: only the mesh gets through.
		tl, cl := c.listener(e.listener("tls", 443)), clusterName("mesh-identities", "mesh-api", 443)
		c.equal("no admitted chain on the TLS port", hasChain(tl, cl), false)
		c.equal("every source refused on the TLS port", refusedChain(c, tl, cl), translate.RefusedCluster)
	},
	Traffic: func(t *testing.T, g *Traffic) {
		for _, id := range []string{fakeservices.WorkloadID("payments", "checkout"), fakeservices.WorkloadID("billing", "invoices")} {
			code, tunnel := g.meshConnect(t, id, fakeservices.MeshHost+":443")
			if code != http.StatusOK {
				t.Fatalf("%s: CONNECT answered %d, want 200", id, code)
			}
			// TLS end to end inside the tunnel, verified by the test CA.
			rep, err := tlsRequest(tunnel, fakeservices.MeshHost, "/mesh", g.ca)
			if err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != fakeservices.MeshHost {
				t.Fatalf("%s: through the tunnel: %+v %v", id, rep, err)
			}
		}
		other := fakeservices.WorkloadID("payments", "other")
		if code, _ := g.meshConnect(t, other, fakeservices.MeshHost+":443"); code != http.StatusForbidden {
			t.Fatalf("%s: CONNECT answered %d, want 403", other, code)
		}
		g.waitLog(t, g.gw, "the refused workload", func(e logEntry) bool {
			return e.get("peer_identity") == other && strings.Contains(e.get("response_code_details"), "rbac_access_denied")
		})
		if _, err := g.passthrough(fakeservices.MeshHost, "/"); err == nil {
			t.Fatal("TLS without a workload identity went through the plain TLS port")
		}
	},
}, {
	Name: "dynamic-ports",
	About: "names resolved per request (DYNAMIC, wildcards) are reached on the declared upstream port (tls.port, targetPort), " +
		"whatever port the Host header or the CONNECT authority names",
	Intent: func(e *Env) string {
		return `
- name: origin
  host: ` + fakeservices.DynamicHost + `
  resolution: DYNAMIC
  ports: [{number: 80, protocol: HTTP}]
  tls: {mode: SIMPLE, port: ` + e.upstreamPort(fakeservices.ServiceTLS) + `}
- name: wild
  host: "*.` + fakeservices.WildcardDomain + `"
  ports:
    - {number: 80, protocol: HTTP, targetPort: ` + e.upstreamPort(fakeservices.ServiceHTTP) + `}
    - {number: 443, protocol: TLS, targetPort: ` + e.upstreamPort(fakeservices.ServiceTLS) + `}`
	},
	Config: func(e *Env, c *check) {
		origin, web, tls := clusterName("dynamic-ports", "origin", 80), clusterName("dynamic-ports", "wild", 80), clusterName("dynamic-ports", "wild", 443)
		for _, cl := range []string{origin, web, tls} {
			c.equal(cl+" cluster type", c.cluster(cl).GetClusterType().GetName(), "envoy.clusters.dynamic_forward_proxy")
		}
		rc := c.routes(e.listener("http", 80))
		c.equal("origin upstream port", dynamicPort(c, c.route(c.vhost(rc, origin))), e.upstreamPort(fakeservices.ServiceTLS))
		c.equal("wildcard HTTP upstream port", dynamicPort(c, c.route(c.vhost(rc, web))), e.upstreamPort(fakeservices.ServiceHTTP))
		c.equal("wildcard CONNECT upstream port", dynamicPort(c, c.route(c.vhost(c.routes(e.forwardProxy()), tls))), e.upstreamPort(fakeservices.ServiceTLS))
	},
	Traffic: func(t *testing.T, g *Traffic) {
		if g.env.Name == "compose" {
			t.Skip("the scenario's names are under localhost, which resolves to the gateway itself in a container; it runs with local gateways")
		}
		// With and without the declared port in the Host header: the
		// forward proxy connects to tls.port and targetPort either way.
		for _, host := range []string{fakeservices.DynamicHost, fakeservices.DynamicHost + ":80"} {
			r := g.get(t, host, "/dynamic")
			if r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceTLS || !r.reply.TLS || r.reply.SNI != fakeservices.DynamicHost {
				t.Fatalf("Host %s: %d %+v %q, want verified TLS to %s on its tls.port", host, r.code, r.reply, r.body, fakeservices.DynamicHost)
			}
		}
		web := "web." + fakeservices.WildcardDomain
		for _, host := range []string{web, web + ":80"} {
			if r := g.get(t, host, "/wild"); r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceHTTP || r.reply.Host != host {
				t.Fatalf("Host %s: %d %+v %q, want the HTTP service on targetPort", host, r.code, r.reply, r.body)
			}
		}
		api := "api." + fakeservices.WildcardDomain
		conn, code := g.connect(t, api+":443")
		if code != http.StatusOK {
			t.Fatalf("CONNECT %s:443: %d, want a tunnel to targetPort", api, code)
		}
		if rep, err := tlsRequest(conn, api, "/tunnel", g.ca); err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != api {
			t.Fatalf("TLS through the tunnel: %+v %v", rep, err)
		}
		if rep, err := g.passthrough(api, "/sni"); err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != api {
			t.Fatalf("TLS by SNI: %+v %v", rep, err)
		}
	},
}, {
	Name:  "dns",
	About: "resolution DNS: every address of the name, from the gateways' DNS servers, is an endpoint, re-resolved, balanced round robin",
	Intent: func(e *Env) string {
		return `
- name: web
  host: ` + dnsWebHost + `
  resolution: DNS
  ports: [{number: 80, protocol: HTTP, targetPort: ` + e.upstreamPort(altHTTP) + `}]
  loadBalancer: ROUND_ROBIN`
	},
	Config: func(e *Env, c *check) {
		k := c.cluster(clusterName("dns", "web", 80))
		cfg := dnsClusterConfig(c, k)
		c.equal("every address an endpoint", cfg.GetAllAddressesInSingleEndpoint(), false)
		c.equal("resolvers", resolverAddrs(c, cfg.GetTypedDnsResolverConfig()), e.resolvers())
		c.equal("endpoints", c.endpoints(k), []string{hostPort{dnsWebHost, e.Upstreams[altHTTP].Port}.String()})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		g.needsDNS(t)
		cl := clusterName("dns", "web", 80)
		want := []string{g.env.at(altHTTP, resolvedAddrs[0]), g.env.at(altHTTP, resolvedAddrs[1])}
		g.eventually(t, cl+" to hold both addresses", func() error { return g.clusterHostsAre(g.gw, cl, want) })
		seen := map[string]int{}
		for range 6 {
			r := g.get(t, dnsWebHost, "/dns")
			if r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceHTTP || r.reply.Host != dnsWebHost {
				t.Fatalf("%d %+v %q", r.code, r.reply, r.body)
			}
			seen[r.reply.Addr]++
		}
		if seen[want[0]] == 0 || seen[want[1]] == 0 || len(seen) != 2 {
			t.Fatalf("requests per address: %v, want both of %v", seen, want)
		}
		if g.dns.Queries(dnsWebHost) == 0 {
			t.Fatalf("the test DNS server was never asked about %s", dnsWebHost)
		}
	},
}, {
	Name:  "dns-round-robin",
	About: "resolution DNS_ROUND_ROBIN: one address at a time, the name's first, for every new connection; a new answer moves new connections",
	Intent: func(e *Env) string {
		return `
- name: pool
  host: ` + dnsRRHost + `
  resolution: DNS_ROUND_ROBIN
  ports: [{number: 443, protocol: TLS, targetPort: ` + e.upstreamPort(altTLS) + `}]`
	},
	Config: func(e *Env, c *check) {
		k := c.cluster(clusterName("dns-round-robin", "pool", 443))
		cfg := dnsClusterConfig(c, k)
		c.equal("one address at a time", cfg.GetAllAddressesInSingleEndpoint(), true)
		c.equal("resolvers", resolverAddrs(c, cfg.GetTypedDnsResolverConfig()), e.resolvers())
		c.equal("endpoints", c.endpoints(k), []string{hostPort{dnsRRHost, e.Upstreams[altTLS].Port}.String()})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		g.needsDNS(t)
		t.Cleanup(func() { g.dns.Set(dnsRRHost, dnsZone()[dnsRRHost]...) })
		cl := clusterName("dns-round-robin", "pool", 443)
		if n := len(g.clusterHosts(t, g.gw, cl)); n != 1 {
			t.Fatalf("%s has %d hosts, want one (logical DNS)", cl, n)
		}
		reached := func() string {
			rep, err := g.passthrough(dnsRRHost, "/rr")
			if err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != dnsRRHost {
				t.Fatalf("TLS to %s: %+v %v", dnsRRHost, rep, err)
			}
			return rep.Addr
		}
		// Both addresses are in the answer; every connection goes to one.
		first := reached()
		for range 5 {
			if got := reached(); got != first {
				t.Fatalf("connections reached %s and %s: want one address for every connection", first, got)
			}
		}
		other := g.env.at(altTLS, resolvedAddrs[0])
		otherIP := resolvedAddrs[0]
		if other == first {
			other, otherIP = g.env.at(altTLS, resolvedAddrs[1]), resolvedAddrs[1]
		}
		g.dns.Set(dnsRRHost, netip.MustParseAddr(otherIP))
		g.eventually(t, "new connections to follow the new answer ("+other+")", func() error {
			if got := reached(); got != other {
				return fmt.Errorf("a new connection reached %s", got)
			}
			return nil
		})
	},
}, {
	Name:  "wildcard-tls",
	About: "a wildcard TLS destination passes each name under it through by SNI, resolved per connection by the gateways' DNS servers; the bare domain and other names are refused",
	Intent: func(e *Env) string {
		return `
- name: sni
  host: "*.` + dnsSNIDomain + `"
  ports: [{number: 443, protocol: TLS, targetPort: ` + e.upstreamPort(altTLS) + `}]`
	},
	Config: func(e *Env, c *check) {
		cl := clusterName("wildcard-tls", "sni", 443)
		fc := c.chain(c.listener(e.listener("tls", 443)), cl)
		c.equal("SNI", fc.GetFilterChainMatch().GetServerNames(), []string{"*." + dnsSNIDomain})
		sni := filter[*snidfpv3.FilterConfig](c, fc, "envoy.filters.network.sni_dynamic_forward_proxy")
		c.equal("upstream port", sni.GetPortValue(), e.Upstreams[altTLS].Port)
		c.equal("resolvers of the SNI forward proxy", resolverAddrs(c, sni.GetDnsCacheConfig().GetTypedDnsResolverConfig()), e.resolvers())
		c.equal("tcp_proxy cluster", filter[*tcpproxyv3.TcpProxy](c, fc, tcpProxy).GetCluster(), cl)
		k := c.cluster(cl)
		c.equal("cluster type", k.GetClusterType().GetName(), "envoy.clusters.dynamic_forward_proxy")
		c.equal("one DNS cache", proto.Equal(dfpCache(c, k), sni.GetDnsCacheConfig()), true)
	},
	Traffic: func(t *testing.T, g *Traffic) {
		g.needsDNS(t)
		name := "a." + dnsSNIDomain
		rep, err := g.passthrough(name, "/wild")
		if want := g.env.at(altTLS, resolvedAddrs[1]); err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != name || rep.Addr != want {
			t.Fatalf("TLS to %s: %+v %v, want the TLS service at %s (the test DNS's answer)", name, rep, err, want)
		}
		for _, sni := range []string{dnsSNIDomain, dnsOtherHost} {
			_, err := g.passthrough(sni, "/")
			var verr *tls.CertificateVerificationError
			if err == nil || errors.As(err, &verr) {
				t.Fatalf("TLS to %s: %v, want the connection closed by the gateway", sni, err)
			}
			g.waitLog(t, g.gw, "the refused SNI "+sni, func(e logEntry) bool {
				return e.get("sni") == sni && strings.HasPrefix(e.get("reason"), "egress_not_declared")
			})
		}
	},
}, {
	Name: "dynamic-dns",
	About: "DYNAMIC and wildcard HTTP destinations resolve each requested name with the gateways' DNS servers " +
		"and reach the declared upstream port (tls.port, targetPort)",
	Intent: func(e *Env) string {
		return `
- name: dynamic
  host: ` + dnsDynamicHost + `
  resolution: DYNAMIC
  ports: [{number: 80, protocol: HTTP}]
  tls: {mode: SIMPLE, port: ` + e.upstreamPort(altTLS) + `}
- name: apps
  host: "*.` + dnsAppsDomain + `"
  ports: [{number: 80, protocol: HTTP, targetPort: ` + e.upstreamPort(altHTTP) + `}]`
	},
	Config: func(e *Env, c *check) {
		dyn, apps := clusterName("dynamic-dns", "dynamic", 80), clusterName("dynamic-dns", "apps", 80)
		for _, cl := range []string{dyn, apps} {
			c.equal(cl+" resolvers", resolverAddrs(c, dfpCache(c, c.cluster(cl)).GetTypedDnsResolverConfig()), e.resolvers())
		}
		rc := c.routes(e.listener("http", 80))
		c.equal("DYNAMIC upstream port", dynamicPort(c, c.route(c.vhost(rc, dyn))), e.upstreamPort(altTLS))
		c.equal("wildcard upstream port", dynamicPort(c, c.route(c.vhost(rc, apps))), e.upstreamPort(altHTTP))
		c.equal("wildcard domains", c.vhost(rc, apps).GetDomains(), []string{"*." + dnsAppsDomain, "*." + dnsAppsDomain + ":80"})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		g.needsDNS(t)
		r := g.get(t, dnsDynamicHost, "/dynamic")
		if want := g.env.at(altTLS, resolvedAddrs[0]); r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceTLS ||
			!r.reply.TLS || r.reply.SNI != dnsDynamicHost || r.reply.Addr != want {
			t.Fatalf("%s: %d %+v %q, want verified TLS to %s", dnsDynamicHost, r.code, r.reply, r.body, want)
		}
		for _, host := range []string{"x." + dnsAppsDomain, "y." + dnsAppsDomain + ":80"} {
			r := g.get(t, host, "/apps")
			if want := g.env.at(altHTTP, resolvedAddrs[1]); r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceHTTP ||
				r.reply.Host != host || r.reply.Addr != want {
				t.Fatalf("Host %s: %d %+v %q, want the HTTP service at %s", host, r.code, r.reply, r.body, want)
			}
		}
		for _, host := range []string{dnsAppsDomain, dnsOtherHost} {
			if r := g.get(t, host, "/"); r.code != http.StatusForbidden || !strings.Contains(r.body, translate.NotDeclaredBody) {
				t.Fatalf("Host %s: %d %q, want 403 not declared", host, r.code, r.body)
			}
		}
	},
}, {
	Name:  "target-port",
	About: "DNS destinations are reached on their targetPort (TLS, TCP) and tls.port (HTTP with TLS origination), not on the port workloads use",
	Intent: func(e *Env) string {
		return `
- name: ports
  host: ` + dnsPortsHost + `
  ports:
    - {number: 443, protocol: TLS, targetPort: ` + e.upstreamPort(altTLS) + `}
    - {number: 6379, protocol: TCP, targetPort: ` + e.upstreamPort(altDB) + `}
- name: origin
  host: ` + dnsOriginHost + `
  ports: [{number: 80, protocol: HTTP}]
  tls: {mode: SIMPLE, port: ` + e.upstreamPort(altTLS) + `}`
	},
	Config: func(e *Env, c *check) {
		for _, x := range []struct {
			dest     string
			port     uint32
			upstream hostPort
		}{
			{"ports", 443, hostPort{dnsPortsHost, e.Upstreams[altTLS].Port}},
			{"ports", 6379, hostPort{dnsPortsHost, e.Upstreams[altDB].Port}},
			{"origin", 80, hostPort{dnsOriginHost, e.Upstreams[altTLS].Port}},
		} {
			k := c.cluster(clusterName("target-port", x.dest, x.port))
			c.equal(k.GetName()+" endpoints", c.endpoints(k), []string{x.upstream.String()})
			c.equal(k.GetName()+" resolvers", resolverAddrs(c, dnsClusterConfig(c, k).GetTypedDnsResolverConfig()), e.resolvers())
		}
		c.equal("TCP chain", filter[*tcpproxyv3.TcpProxy](c, c.chain(c.listener(e.listener("tcp", 6379)), clusterName("target-port", "ports", 6379)), tcpProxy).GetCluster(),
			clusterName("target-port", "ports", 6379))
		c.equal("origination SNI", c.upstreamTLS(c.cluster(clusterName("target-port", "origin", 80))).GetSni(), dnsOriginHost)
	},
	Traffic: func(t *testing.T, g *Traffic) {
		g.needsDNS(t)
		rep, err := g.passthrough(dnsPortsHost, "/tls")
		if want := g.env.at(altTLS, resolvedAddrs[0]); err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != dnsPortsHost || rep.Addr != want {
			t.Fatalf("TLS to %s: %+v %v, want the TLS service at %s", dnsPortsHost, rep, err, want)
		}
		conn := g.tcp(t, 6379)
		if name := g.database(t, conn); name != resolvedAddrs[0] {
			t.Fatalf("TCP to %s reached database %s, want the one at %s", dnsPortsHost, name, resolvedAddrs[0])
		}
		conn.Close()
		r := g.get(t, dnsOriginHost, "/origin")
		if want := g.env.at(altTLS, resolvedAddrs[1]); r.code != http.StatusOK || !r.reply.TLS || r.reply.SNI != dnsOriginHost || r.reply.Addr != want {
			t.Fatalf("%s: %d %+v %q, want verified TLS to %s", dnsOriginHost, r.code, r.reply, r.body, want)
		}
	},
}, {
	Name:  "same-host-tls-and-http",
	About: "one host declared on a TLS port and an HTTP port: each port has its own chain, route and cluster, and works, and goes, on its own",
	Intent: func(e *Env) string {
		return sameHostIntent(e, true)
	},
	Config: func(e *Env, c *check) {
		tlsCl, httpCl := clusterName("same-host-tls-and-http", "both", 443), clusterName("same-host-tls-and-http", "both", 80)
		c.equal("SNI", c.chain(c.listener(e.listener("tls", 443)), tlsCl).GetFilterChainMatch().GetServerNames(), []string{dnsBothHost})
		c.equal("HTTP domains", c.vhost(c.routes(e.listener("http", 80)), httpCl).GetDomains(), []string{dnsBothHost, dnsBothHost + ":80"})
		rc := c.routes(e.forwardProxy())
		c.equal("CONNECT authority", c.vhost(rc, tlsCl).GetDomains(), []string{dnsBothHost + ":443"})
		c.equalSet("absolute-form authorities", c.vhost(rc, httpCl).GetDomains(), []string{dnsBothHost, dnsBothHost + ":80"})
		c.equal("TLS endpoints", c.endpoints(c.cluster(tlsCl)), []string{hostPort{dnsBothHost, e.Upstreams[altTLS].Port}.String()})
		c.equal("HTTP endpoints", c.endpoints(c.cluster(httpCl)), []string{hostPort{dnsBothHost, e.Upstreams[altHTTP].Port}.String()})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		g.needsDNS(t)
		tlsAt, httpAt := g.env.at(altTLS, resolvedAddrs[0]), g.env.at(altHTTP, resolvedAddrs[0])
		rep, err := g.passthrough(dnsBothHost, "/tls")
		if err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != dnsBothHost || rep.Addr != tlsAt {
			t.Fatalf("TLS to %s: %+v %v, want the TLS service at %s", dnsBothHost, rep, err, tlsAt)
		}
		if r := g.get(t, dnsBothHost, "/http"); r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceHTTP || r.reply.TLS || r.reply.Addr != httpAt {
			t.Fatalf("HTTP to %s: %d %+v %q, want plain HTTP at %s", dnsBothHost, r.code, r.reply, r.body, httpAt)
		}
		conn, code := g.connect(t, dnsBothHost+":443")
		if code != http.StatusOK {
			t.Fatalf("CONNECT %s:443: %d", dnsBothHost, code)
		}
		if rep, err := tlsRequest(conn, dnsBothHost, "/tunnel", g.ca); err != nil || rep.Addr != tlsAt {
			t.Fatalf("TLS through the tunnel: %+v %v", rep, err)
		}
		if r := g.proxyGet(t, "http://"+dnsBothHost+"/proxied"); r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceHTTP || r.reply.Addr != httpAt {
			t.Fatalf("absolute-form request: %d %+v %q", r.code, r.reply, r.body)
		}
	},
	Then: &Step{
		Intent: func(e *Env) string { return sameHostIntent(e, false) },
		Config: func(e *Env, c *check) {
			tlsCl := clusterName("same-host-tls-and-http", "both", 443)
			if findCluster(c.st, tlsCl) != nil {
				c.fail("%s is still served", tlsCl)
			}
			c.cluster(clusterName("same-host-tls-and-http", "both", 80))
		},
		Traffic: func(t *testing.T, g *Traffic) {
			g.needsDNS(t)
			g.eventually(t, "the TLS port to go", func() error {
				if _, err := g.passthrough(dnsBothHost, "/"); err == nil {
					return errors.New("TLS still passes")
				}
				return nil
			})
			if r := g.get(t, dnsBothHost, "/http"); r.code != http.StatusOK || r.reply.Service != fakeservices.ServiceHTTP {
				t.Fatalf("HTTP to %s without its TLS port: %d %+v %q", dnsBothHost, r.code, r.reply, r.body)
			}
		},
	},
}, {
	Name: "forward-proxy-kinds",
	About: "the explicit proxy reaches each kind of destination: CONNECT to TLS and TCP ports on their targetPort, absolute-form HTTP with origination on tls.port, " +
		"CONNECT and absolute-form to wildcards and DYNAMIC hosts; undeclared hosts, ports and bare wildcard domains are refused",
	Config: func(e *Env, c *check) {
		rc := c.routes(e.forwardProxy())
		for cl, domains := range map[string][]string{
			clusterName("target-port", "ports", 443):    {dnsPortsHost + ":443"},
			clusterName("target-port", "ports", 6379):   {dnsPortsHost + ":6379"},
			clusterName("target-port", "origin", 80):    {dnsOriginHost + ":80", dnsOriginHost},
			clusterName("wildcard-tls", "sni", 443):     {"*." + dnsSNIDomain + ":443"},
			clusterName("dynamic-dns", "apps", 80):      {"*." + dnsAppsDomain + ":80", "*." + dnsAppsDomain},
			clusterName("dynamic-dns", "dynamic", 80):   {dnsDynamicHost + ":80", dnsDynamicHost},
			clusterName("dns-round-robin", "pool", 443): {dnsRRHost + ":443"},
		} {
			c.equalSet(cl+" authorities", c.vhost(rc, cl).GetDomains(), domains)
		}
		c.equal("wildcard CONNECT upstream port", dynamicPort(c, c.route(c.vhost(rc, clusterName("wildcard-tls", "sni", 443)))), e.upstreamPort(altTLS))
		// The other kind of request to a declared authority is refused.
		c.equal("CONNECT to an HTTP port", directResponses(c.vhost(rc, clusterName("dns", "web", 80))), []string{"403 " + translate.NotDeclaredBody})
		c.equal("plain requests to a TLS port", directResponses(c.vhost(rc, clusterName("target-port", "ports", 443))), []string{"403 " + translate.NotDeclaredBody})
	},
	Traffic: func(t *testing.T, g *Traffic) {
		g.needsDNS(t)
		tunnel := func(authority, sni, want string) {
			t.Helper()
			conn, code := g.connect(t, authority)
			if code != http.StatusOK {
				t.Fatalf("CONNECT %s: %d, want a tunnel", authority, code)
			}
			if rep, err := tlsRequest(conn, sni, "/tunnel", g.ca); err != nil || rep.Service != fakeservices.ServiceTLS || rep.SNI != sni || rep.Addr != want {
				t.Fatalf("TLS through CONNECT %s: %+v %v, want the TLS service at %s", authority, rep, err, want)
			}
		}
		tunnel(dnsPortsHost+":443", dnsPortsHost, g.env.at(altTLS, resolvedAddrs[0]))
		tunnel("a."+dnsSNIDomain+":443", "a."+dnsSNIDomain, g.env.at(altTLS, resolvedAddrs[1]))
		conn, code := g.connect(t, dnsPortsHost+":6379")
		if code != http.StatusOK {
			t.Fatalf("CONNECT %s:6379: %d", dnsPortsHost, code)
		}
		if name := g.database(t, conn); name != resolvedAddrs[0] {
			t.Fatalf("CONNECT %s:6379 reached database %s", dnsPortsHost, name)
		}
		conn.Close()
		for u, want := range map[string]string{
			"http://" + dnsOriginHost + "/fp":   g.env.at(altTLS, resolvedAddrs[1]),
			"http://" + dnsDynamicHost + "/fp":  g.env.at(altTLS, resolvedAddrs[0]),
			"http://x." + dnsAppsDomain + "/fp": g.env.at(altHTTP, resolvedAddrs[1]),
		} {
			if r := g.proxyGet(t, u); r.code != http.StatusOK || r.reply.Addr != want {
				t.Fatalf("absolute-form %s: %d %+v %q, want the answer of %s", u, r.code, r.reply, r.body, want)
			}
		}
		for _, authority := range []string{dnsOtherHost + ":443", dnsSNIDomain + ":443", dnsPortsHost + ":8443", dnsWebHost + ":80"} {
			if _, code := g.connect(t, authority); code != http.StatusForbidden {
				t.Errorf("CONNECT %s: %d, want 403", authority, code)
			}
		}
		for _, u := range []string{"http://" + dnsOtherHost + "/", "http://" + dnsAppsDomain + "/", "http://" + dnsPortsHost + ":443/"} {
			if r := g.proxyGet(t, u); r.code != http.StatusForbidden {
				t.Errorf("absolute-form %s: %d %q, want 403", u, r.code, r.body)
			}
		}
	},
}, httpRulesScenario, {
	Name:  "zero-nacks",
	About: "over the whole run, every configuration was accepted",
	Config: func(e *Env, c *check) {
		for typ, ts := range c.st.Types {
			if ts.NACKs > 0 || ts.Rejected {
				c.fail("%s: %d NACKs, last: %s", typ, ts.NACKs, ts.LastError)
			}
		}
	},
	Traffic: func(t *testing.T, g *Traffic) {
		for _, gw := range g.gateways {
			g.checkAccepted(t, gw)
		}
	},
}}

// dynamicPort is the upstream port a DYNAMIC destination's route sets for
// the dynamic forward proxy (envoy.upstream.dynamic_port).
func dynamicPort(c *check, r *routev3.Route) string {
	cfg := unpack[*setfilterstatev3.Config](c, r.GetTypedPerFilterConfig()["envoy.filters.http.set_filter_state"])
	for _, v := range cfg.GetOnRequestHeaders() {
		if v.GetObjectKey() == "envoy.upstream.dynamic_port" {
			return v.GetFormatString().GetTextFormatSource().GetInlineString()
		}
	}
	c.fail("route %s sets no envoy.upstream.dynamic_port", r.GetName())
	return ""
}

// editedIntent is the live-edit destination with an allow list.
func editedIntent(e *Env, allow string) string {
	return `
- name: edited
  host: edited.example.com
  ports: [{number: 80, protocol: HTTP}]
  endpoints: [` + e.ep(fakeservices.ServiceHTTP) + `]
  allow: ` + allow
}

// sameHostIntent declares one host on a TLS port and an HTTP port, or on
// the HTTP port alone.
func sameHostIntent(e *Env, withTLS bool) string {
	ports := `
    - {number: 80, protocol: HTTP, targetPort: ` + e.upstreamPort(altHTTP) + `}`
	if withTLS {
		ports = `
    - {number: 443, protocol: TLS, targetPort: ` + e.upstreamPort(altTLS) + `}` + ports
	}
	return `
- name: both
  host: ` + dnsBothHost + `
  ports:` + ports
}
