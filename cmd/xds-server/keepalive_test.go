package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// --xds-keepalive-timeout: 10s by default, bounded to 1s..10m with a
// clear misuse, and carried into the server's configuration.
func TestXDSKeepaliveTimeoutFlag(t *testing.T) {
	parse := func(args ...string) serveFlags {
		t.Helper()
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var f serveFlags
		registerServe(fs, &f)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := parse(); f.keepaliveTimeout != xds.DefaultKeepaliveTimeout || xds.DefaultKeepaliveTimeout != 10*time.Second {
		t.Errorf("default %v, want 10s", f.keepaliveTimeout)
	}
	f := parse("--xds-keepalive-timeout", "2m")
	if err := checkKeepaliveTimeout(f.keepaliveTimeout); err != nil {
		t.Fatal(err)
	}
	if got := serverConfig(f, translate.Options{}, nil, nil).XDSKeepaliveTimeout; got != 2*time.Minute {
		t.Errorf("server configuration has %v, want 2m", got)
	}
	for _, ok := range []string{"1s", "10m"} {
		if err := checkKeepaliveTimeout(parse("--xds-keepalive-timeout", ok).keepaliveTimeout); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"999ms", "0s", "-5s", "10m1s", "1h"} {
		code, _, errOut := runCmd("serve", "--config-dir", t.TempDir(), "--xds-keepalive-timeout", bad)
		if code != 2 || !strings.Contains(errOut, "--xds-keepalive-timeout") || !strings.Contains(errOut, "between 1s and 10m ") {
			t.Errorf("%s: exit %d: %s", bad, code, errOut)
		}
	}
	t.Setenv("EGRESS_XDS_XDS_KEEPALIVE_TIMEOUT", "0.5s")
	if code, _, errOut := runCmd("serve", "--config-dir", t.TempDir()); code != 2 || !strings.Contains(errOut, "--xds-keepalive-timeout 500ms") {
		t.Errorf("from the environment: exit %d: %s", code, errOut)
	}
}
