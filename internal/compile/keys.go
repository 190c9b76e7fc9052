package compile

import (
	"strings"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// A snapshot key names what a snapshot is built for: the gateways of a
// group ("egress-gateway"), the sidecars that send through them
// ("sidecar/egress-gateway"), or the rate limit service, which counts for
// every group ("ratelimit/egress-xds", its domain). Group names hold no
// '/', so these never collide.
const (
	sidecarKeyPrefix   = string(translate.RoleSidecar) + "/"
	rateLimitKeyPrefix = string(translate.RoleRateLimit) + "/"
)

// RateLimitKey is the snapshot key of the rate limit service.
const RateLimitKey = rateLimitKeyPrefix + translate.RateLimitDomain

// Key is the snapshot key of a role and gateway group (the rate limit
// service has one key, whatever the group).
func Key(role translate.Role, group string) string {
	switch role {
	case translate.RoleSidecar:
		return sidecarKeyPrefix + group
	case translate.RoleRateLimit:
		return RateLimitKey
	}
	return group
}

// SplitKey is the inverse of Key; the rate limit service's group is its
// domain.
func SplitKey(key string) (translate.Role, string) {
	if g, ok := strings.CutPrefix(key, sidecarKeyPrefix); ok {
		return translate.RoleSidecar, g
	}
	if g, ok := strings.CutPrefix(key, rateLimitKeyPrefix); ok {
		return translate.RoleRateLimit, g
	}
	return translate.RoleGateway, key
}
