package fakeservices

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/watch"
)

func start(t *testing.T) *Services {
	t.Helper()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, LoopbackConfig(ca))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	return s
}

// httpsGet sends one request over a new TLS connection to addr.
func httpsGet(addr string, cfg *tls.Config) (*http.Response, Reply, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get("https://" + addr + "/path")
	if err != nil {
		return nil, Reply{}, err
	}
	defer resp.Body.Close()
	var rep Reply
	err = json.NewDecoder(resp.Body).Decode(&rep)
	return resp, rep, err
}

func TestTLSServerAnswersForItsNamesOnly(t *testing.T) {
	s := start(t)
	for _, name := range DefaultNames {
		_, rep, err := httpsGet(s.TLS, &tls.Config{ServerName: name, RootCAs: s.CA.Pool()})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rep.Service != ServiceTLS || !rep.TLS || rep.SNI != name || rep.Path != "/path" {
			t.Errorf("%s: %+v", name, rep)
		}
	}
	_, _, err := httpsGet(s.TLS, &tls.Config{ServerName: "wrong-cert.example.net", RootCAs: s.CA.Pool()})
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("a name the certificate lacks: %v, want a verification error", err)
	}
	_, _, err = httpsGet(s.TLS, &tls.Config{ServerName: "api.github.com", RootCAs: x509.NewCertPool()})
	if !errors.As(err, &verr) {
		t.Fatalf("another CA: %v, want a verification error", err)
	}
}

func TestMutualTLSRequiresAClientCertificateFromTheCA(t *testing.T) {
	s := start(t)
	base := &tls.Config{ServerName: "secure-api.partner.com", RootCAs: s.CA.Pool()}
	if _, _, err := httpsGet(s.MTLS, base); err == nil {
		t.Fatal("served without a client certificate")
	}
	other, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.TLSCertificate(testpki.Leaf{CommonName: GatewayClientName, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := base.Clone()
	cfg.Certificates = []tls.Certificate{foreign}
	if _, _, err := httpsGet(s.MTLS, cfg); err == nil {
		t.Fatal("served a client certificate from another CA")
	}
	own, err := s.CA.TLSCertificate(testpki.Leaf{CommonName: GatewayClientName, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{own}
	_, rep, err := httpsGet(s.MTLS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Service != ServiceMTLS || rep.Client != GatewayClientName {
		t.Fatalf("%+v", rep)
	}
}

func TestDatabasesGreetAndEcho(t *testing.T) {
	s := start(t)
	for _, name := range []string{DBPrimary, DBReplica} {
		c, err := net.DialTimeout("tcp", s.DB[name], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || line != "fake-db "+name+"\n" {
			t.Fatalf("greeting %q, %v", line, err)
		}
		if _, err := io.WriteString(c, "SELECT 1;\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := r.ReadString('\n'); err != nil || line != "SELECT 1;\n" {
			t.Fatalf("echo %q, %v", line, err)
		}
		c.Close()
	}
}

func get(t *testing.T, url string) (int, Reply) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep Reply
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	return resp.StatusCode, rep
}

func TestHTTPStatusAndDelay(t *testing.T) {
	s := start(t)
	if code, rep := get(t, "http://"+s.HTTP+"/x?status=418"); code != 418 || rep.Service != ServiceHTTP || rep.TLS {
		t.Fatalf("%d %+v", code, rep)
	}
	begin := time.Now()
	if code, _ := get(t, "http://"+s.HTTP+"/?delay=200ms"); code != 200 || time.Since(begin) < 200*time.Millisecond {
		t.Fatalf("%d after %v", code, time.Since(begin))
	}
}

func TestFlakyFailsOnDemand(t *testing.T) {
	s := start(t)
	control := func(q string, want int) {
		t.Helper()
		resp, err := http.Post("http://"+s.ControlAddr+"/flaky"+q, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST /flaky%s: %d", q, resp.StatusCode)
		}
	}
	if code, rep := get(t, "http://"+s.Flaky+"/"); code != 200 || rep.Service != ServiceFlaky || rep.Failing {
		t.Fatalf("healthy: %d %+v", code, rep)
	}
	control("?failing=true", 200)
	if code, rep := get(t, "http://"+s.Flaky+"/"); code != 503 || !rep.Failing {
		t.Fatalf("failing: %d %+v", code, rep)
	}
	if code, _ := get(t, "http://"+s.HTTP+"/"); code != 200 {
		t.Fatalf("the other HTTP service fails too: %d", code)
	}
	control("?failing=false", 200)
	if code, _ := get(t, "http://"+s.Flaky+"/"); code != 200 {
		t.Fatalf("recovered: %d", code)
	}
	control("?failing=maybe", 400)
	if code, _ := get(t, "http://"+s.ControlAddr+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
}

func TestCertsDirIsCreatedOnceAndReadableByTheServer(t *testing.T) {
	dir := t.TempDir()
	ca, created, err := LoadOrCreateCA(dir)
	if err != nil || !created {
		t.Fatalf("created=%v err=%v", created, err)
	}
	again, created, err := LoadOrCreateCA(dir)
	if err != nil || created || string(again.CertPEM) != string(ca.CertPEM) {
		t.Fatalf("second start: created=%v err=%v", created, err)
	}
	for _, f := range []string{CACertFile, CAKeyFile, SecretsFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v", f, st.Mode(), err)
		}
	}
	// xds-server reads the Secrets as it reads any manifest.
	data, err := os.ReadFile(filepath.Join(dir, SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	_, secrets, err := watch.ParseManifests(data)
	if err != nil || len(secrets) != 2 {
		t.Fatalf("%d secrets, %v", len(secrets), err)
	}
	byName := map[string]map[string][]byte{}
	for _, s := range secrets {
		if s.Namespace != SecretNamespace {
			t.Errorf("secret %s in namespace %s", s.Name, s.Namespace)
		}
		byName[s.Name] = s.Data
	}
	pair, err := tls.X509KeyPair(byName[ClientCertSecret]["tls.crt"], byName[ClientCertSecret]["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	if leaf.Subject.CommonName != GatewayClientName {
		t.Errorf("client CN %q", leaf.Subject.CommonName)
	}
	if string(byName[CASecret]["ca.crt"]) != string(ca.CertPEM) {
		t.Error("partner-ca does not hold the CA")
	}

	half := t.TempDir()
	if err := os.WriteFile(filepath.Join(half, CACertFile), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateCA(half); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Fatalf("a folder with a certificate and no key: %v", err)
	}
}

func TestStopsWithOpenConnections(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Start(ctx, LoopbackConfig(ca))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.DB[DBPrimary])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.HTTP + "/?delay=10s")
		slow <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	stopped := make(chan struct{})
	go func() { s.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after cancel")
	}
	<-slow
	if _, err := net.DialTimeout("tcp", s.HTTP, time.Second); err == nil {
		t.Fatal("still listening")
	}
}

// The test DNS answers its names, exact and under a wildcard, over UDP
// and TCP, says NXDOMAIN for the rest, and follows changes.
func TestDNS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d, err := StartDNS(ctx, "127.0.0.1", map[string][]netip.Addr{
		"web.example.test":     {netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")},
		"*.wild.example.test.": {netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("::1")},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); d.Wait() })
	for _, network := range []string{"udp", "tcp"} {
		r := d.Resolver(network)
		lookup := func(name string) ([]string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			addrs, err := r.LookupHost(ctx, name)
			slices.Sort(addrs)
			return addrs, err
		}
		for name, want := range map[string][]string{
			"web.example.test.":         {"127.0.0.2", "127.0.0.3"},
			"WEB.example.test.":         {"127.0.0.2", "127.0.0.3"},
			"a.wild.example.test.":      {"127.0.0.3", "::1"},
			"a.b.wild.example.test.":    {"127.0.0.3", "::1"},
			"wild.example.test.":        nil,
			"other.example.test.":       nil,
			"web.example.test.example.": nil,
		} {
			got, err := lookup(name)
			var dnsErr *net.DNSError
			switch {
			case want == nil && (!errors.As(err, &dnsErr) || !dnsErr.IsNotFound):
				t.Errorf("%s %s: %v %v, want not found", network, name, got, err)
			case want != nil && (err != nil || !slices.Equal(got, want)):
				t.Errorf("%s %s: %v %v, want %v", network, name, got, err, want)
			}
		}
	}
	if n := d.Queries("web.example.test"); n < 2 {
		t.Errorf("%d questions about web.example.test counted", n)
	}
	d.Set("web.example.test", netip.MustParseAddr("127.0.0.4"))
	if got, err := d.Resolver("udp").LookupHost(context.Background(), "web.example.test."); err != nil || !slices.Equal(got, []string{"127.0.0.4"}) {
		t.Errorf("after Set: %v %v", got, err)
	}
	d.Set("web.example.test")
	if _, err := d.Resolver("udp").LookupHost(context.Background(), "web.example.test."); err == nil {
		t.Error("a removed name still resolves")
	}
}
