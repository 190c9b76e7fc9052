package translate

import (
	"fmt"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Resource names read well in Envoy stats: Envoy's Prometheus tag
// extraction cuts cluster and stat-prefix names at the first dot, so names
// hold no dots. Kubernetes names never hold '_', so replacing '.' by '_'
// keeps them unique.

// DestinationID is namespace/configmap/destination, the stable identity of a
// destination; clusters, routes and stat prefixes append the port to it.
func DestinationID(o intent.Origin, dest string) string {
	return o.Namespace + "/" + strings.ReplaceAll(o.Name, ".", "_") + "/" + dest
}

func listenerName(kind string, port uint32) string { return fmt.Sprintf("%s_%d", kind, port) }

const (
	kindTLS          = "tls"
	kindHTTP         = "http"
	kindTCP          = "tcp"
	kindForwardProxy = "forward_proxy"
	kindMesh         = "mesh"

	// notDeclaredRoute is the route name (and access-log destination) of
	// requests for hosts no intent declares.
	notDeclaredRoute = "egress_not_declared"
	// dnsCacheName is the one DNS cache every dynamic forward proxy filter and
	// cluster shares; Envoy requires one configuration per cache name.
	dnsCacheName = "egress_dynamic_dns"
)

// tlsSecretName is the SDS name of a client certificate Secret.
func tlsSecretName(k SecretKey) string { return k.Namespace + "/" + k.Name }

// caSecretName is the SDS name of a CA bundle Secret.
func caSecretName(k SecretKey) string { return k.Namespace + "/" + k.Name + "/ca" }
