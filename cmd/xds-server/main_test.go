package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/testpki"
)

func runCmd(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// validate judges private keys as a server with the same settings would:
// with the defaults (plaintext xDS on :18000) the MUTUAL example is held
// back, naming the fixes; told the server authenticates proxies, listens
// on loopback alone, or has the Secrets mounted, everything is accepted.
func TestValidateExamples(t *testing.T) {
	code, out, errOut := runCmd("validate", "../../examples")
	if code != 1 || !strings.Contains(out, "1 error(s)") || !strings.Contains(out, "destinations[0].tls.clientCertificate.secret: Secret apps/partner-client-cert: its private key is not sent") ||
		!strings.Contains(out, "--xds-client-ca") || !strings.Contains(out, "--origination-secret-dir") {
		t.Fatalf("defaults: exit %d\n%s%s", code, out, errOut)
	}
	for _, flags := range [][]string{{"--xds-client-auth"}, {"--xds-address", "127.0.0.1:18000"}, {"--origination-secret-dir", "/etc/egress-xds/secrets"}} {
		code, out, errOut := runCmd(append(append([]string{"validate"}, flags...), "../../examples")...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", flags, code, out, errOut)
		}
		if !strings.Contains(out, "0 error(s), 0 warning(s); 7 of 7 intent ConfigMap(s) accepted") {
			t.Fatalf("%v: summary:\n%s", flags, out)
		}
	}
	if code, _, errOut := runCmd("validate", "--origination-secret-dir", "secrets", "../../examples"); code != 2 || !strings.Contains(errOut, "not an absolute path") {
		t.Fatalf("relative --origination-secret-dir: exit %d: %s", code, errOut)
	}
}

// validate prints every problem with file, ConfigMap, key and field path,
// and exits 1, like istioctl analyze.
func TestValidateReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := `apiVersion: v1
kind: ConfigMap
metadata: {name: egress, namespace: payments, labels: {egress-xds.io/intent: "true"}}
data:
  egress.yaml: |
    destinations:
      - {name: a, host: a.example.com, ports: [{number: 443, protocol: TLS}]}
      - {name: b, host: b.example.com, ports: [{number: 443, protocol: TLS}]}
      - {name: c, host: c.example.com, ports: [{number: 70000, protocol: TCP}], tls: {mode: SIMPLE}}
`
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd("validate", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		path + ": payments/egress: egress.yaml: destinations[2].ports[0].number: 70000 is not a valid port",
		path + ": payments/egress: egress.yaml: destinations[2].tls: TLS origination applies to HTTP ports",
		"2 error(s), 0 warning(s); 0 of 1 intent ConfigMap(s) accepted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("EGRESS_XDS_FORWARD_PROXY_PORT", "70000")
	code, _, errOut := runCmd("validate", "../../examples")
	if code != 2 || !strings.Contains(errOut, "--forward-proxy-port 70000 is not a valid port") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestPortMapFlag(t *testing.T) {
	code, out, errOut := runCmd("validate", "--xds-client-auth", "--port-map", "443=8443,80=8080", "../../examples")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCmd("validate", "--port-map", "443=8443,80=8443", "../../examples")
	if code != 2 || !strings.Contains(errOut, "to 8443") {
		t.Fatalf("two ports onto one: exit %d: %s", code, errOut)
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, errOut := runCmd("frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestHealthcheckNotReady(t *testing.T) {
	code, _, errOut := runCmd("healthcheck", "--admin-address", "127.0.0.1:1", "--timeout", "1s")
	if code != 1 || !strings.Contains(errOut, "not ready") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// The ConfigMap the README shows under "The intent format" parses and
// validates: the documented format is the one the server reads.
func TestReadmeIntentExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "## The intent format")
	start := strings.Index(s[i:], "```yaml\n")
	if i < 0 || start < 0 {
		t.Fatal("README has no intent example")
	}
	body := s[i+start+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	path := filepath.Join(t.TempDir(), "readme.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, _ := runCmd("validate", "--xds-client-auth", path)
	// Only the Secrets the example names are missing here.
	if !strings.Contains(out, "2 error(s), 0 warning(s); 1 of 1 intent ConfigMap(s) accepted") ||
		strings.Count(out, "not found; destination partner is held back") != 2 {
		t.Fatalf("the README's example does not validate:\n%s", out)
	}
}

func TestLoggerFormats(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "node", "gw-1")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"msg":"shown","node":"gw-1"`) {
		t.Fatalf("json at warn: %s", buf.String())
	}
	if _, err := newLogger(&buf, "xml", "info"); err == nil {
		t.Fatal("unknown format accepted")
	}
	if _, err := newLogger(&buf, "text", "loud"); err == nil {
		t.Fatal("unknown level accepted")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serve on the examples answers /readyz, and SIGTERM stops it cleanly
// within --shutdown-grace (exit 0).
func TestServeStopsOnSIGTERM(t *testing.T) {
	admin := freeAddr(t)
	done := make(chan int, 1)
	go func() {
		code, _, _ := runCmd("serve", "--config-dir", "../../examples", "--state-dir", t.TempDir(), "--xds-address", freeAddr(t),
			"--admin-address", admin, "--shutdown-grace", "2s")
		done <- code
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _, _ := runCmd("healthcheck", "--admin-address", admin, "--timeout", "1s"); code == 0 {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d before it was ready", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// serve's signal handler is installed before it listens, so the
	// signal reaches it and not the test process's default handler.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
}

// validate judges client certificates at the time it runs: an expired one
// is an error, one expiring within --certificate-expiry-warning a warning.
func TestValidateJudgesCertificateValidity(t *testing.T) {
	ca, err := testpki.NewCA("ca", 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	secret := func(name string, notAfter time.Time) string {
		c, k, err := ca.Issue(testpki.Leaf{CommonName: name, Client: true, NotAfter: notAfter})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: apps}\ndata: {tls.crt: %s, tls.key: %s}\n",
			name, base64.StdEncoding.EncodeToString(c), base64.StdEncoding.EncodeToString(k))
	}
	manifest := `apiVersion: v1
kind: ConfigMap
metadata: {name: egress, namespace: apps, labels: {egress-xds.io/intent: "true"}}
data:
  egress.yaml: |
    destinations:
      - {name: old, host: old.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: MUTUAL, clientCertificate: {secret: old}}}
      - {name: soon, host: soon.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: MUTUAL, clientCertificate: {secret: soon}}}
` + secret("old", time.Now().Add(-time.Minute)) + secret("soon", time.Now().Add(3*24*time.Hour))
	path := filepath.Join(t.TempDir(), "certs.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd("validate", "--xds-client-auth", path)
	if code != 1 || !strings.Contains(out, "Secret apps/old: tls.crt expired at") || !strings.Contains(out, "destination old is held back") ||
		!strings.Contains(out, "warning: destinations[1].tls.clientCertificate.secret: Secret apps/soon: tls.crt expires at") ||
		!strings.Contains(out, "1 error(s), 1 warning(s)") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if _, out, _ := runCmd("validate", "--xds-client-auth", "--certificate-expiry-warning", "48h", path); !strings.Contains(out, "1 error(s), 0 warning(s)") {
		t.Fatalf("a 48h threshold still warns:\n%s", out)
	}
}
