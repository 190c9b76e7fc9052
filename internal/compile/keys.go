package compile

import (
	"strings"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// A snapshot key names what a snapshot is built for: the gateways of a
// group ("egress-gateway"), or the sidecars that send through them
// ("sidecar/egress-gateway"). Group names hold no '/', so the two never
// collide.
const sidecarKeyPrefix = string(translate.RoleSidecar) + "/"

// Key is the snapshot key of a role and gateway group.
func Key(role translate.Role, group string) string {
	if role == translate.RoleSidecar {
		return sidecarKeyPrefix + group
	}
	return group
}

// SplitKey is the inverse of Key.
func SplitKey(key string) (translate.Role, string) {
	if g, ok := strings.CutPrefix(key, sidecarKeyPrefix); ok {
		return translate.RoleSidecar, g
	}
	return translate.RoleGateway, key
}
