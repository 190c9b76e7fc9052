//go:build tools

// Package tools pins the rate limit service build.sh compiles.
package tools

import (
	_ "github.com/envoyproxy/ratelimit/src/service_cmd"
)
