package xds

import (
	"log/slog"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
)

func gatewayNode(id, group string) *core.Node { return &core.Node{Id: id, Cluster: group} }

func sidecarNode(id, group string) *core.Node {
	md, _ := structpb.NewStruct(map[string]any{snapshot.RoleMetadataKey: "sidecar"})
	return &core.Node{Id: id, Cluster: group, Metadata: md}
}

// rateLimitNode is envoyproxy/ratelimit as it connects: an id, the role in
// the metadata, no cluster.
func rateLimitNode(id string) *core.Node {
	md, _ := structpb.NewStruct(map[string]any{snapshot.RoleMetadataKey: "ratelimit"})
	return &core.Node{Id: id, Metadata: md}
}

// The authorization rule, case by case, with the exact answer a refused
// proxy gets: what it asked for, what it presented, what is required.
func TestAuthorizeRule(t *testing.T) {
	gw := &Identity{Presented: "spiffe://cluster.local/gateway-group/egress-gateway", Group: "egress-gateway"}
	workload := &Identity{Presented: "spiffe://cluster.local/ns/payments/sa/checkout", Workload: true}
	none := &Identity{Presented: `subject "CN=gw"`, Problem: "the certificate has no SPIFFE ID (URI SAN)"}
	for _, c := range []struct {
		name string
		id   *Identity // nil: no client certificate
		node *core.Node
		code codes.Code
		msg  string
	}{
		{"gateway of its group", gw, gatewayNode("gw-1", "egress-gateway"), codes.OK, ""},
		{"gateway of another group", gw, gatewayNode("gw-1", "payments"), codes.PermissionDenied,
			`xds: node "gw-1" asked for gateway group "payments" with identity spiffe://cluster.local/gateway-group/egress-gateway, which entitles gateway group "egress-gateway" only`},
		{"gateway without a certificate", nil, gatewayNode("gw-1", "egress-gateway"), codes.Unauthenticated,
			`xds: node "gw-1" asked for gateway group "egress-gateway" without a client certificate issued by the xDS client CA; this server requires one with the SPIFFE ID spiffe://cluster.local/gateway-group/egress-gateway`},
		{"gateway without a certificate or a node cluster", nil, gatewayNode("gw-1", ""), codes.Unauthenticated,
			`xds: node "gw-1" asked for gateway group "" without a client certificate issued by the xDS client CA; this server requires one with the SPIFFE ID spiffe://cluster.local/gateway-group/<group> (and set the node cluster)`},
		{"gateway with a workload identity", workload, gatewayNode("gw-1", "egress-gateway"), codes.PermissionDenied,
			`xds: node "gw-1" asked for gateway group "egress-gateway" with workload identity spiffe://cluster.local/ns/payments/sa/checkout, which entitles sidecar configuration only (node metadata egress-xds.io/role: sidecar); a gateway presents spiffe://cluster.local/gateway-group/egress-gateway`},
		{"identity that entitles nothing", none, gatewayNode("gw-1", "egress-gateway"), codes.PermissionDenied,
			`xds: node "gw-1" asked for the gateway configuration of gateway group "egress-gateway" with identity subject "CN=gw", which entitles nothing: the certificate has no SPIFFE ID (URI SAN)`},
		{"sidecar with its workload identity, any group", workload, sidecarNode("app-1", "other"), codes.OK, ""},
		{"sidecar with a gateway identity", gw, sidecarNode("app-1", "egress-gateway"), codes.PermissionDenied,
			`xds: node "app-1" asked for sidecar configuration with identity spiffe://cluster.local/gateway-group/egress-gateway, which entitles gateway group "egress-gateway"'s gateway configuration only; a sidecar presents its workload's certificate (spiffe://cluster.local/ns/<namespace>/sa/<service-account>)`},
		{"sidecar without a certificate", nil, sidecarNode("app-1", "egress-gateway"), codes.Unauthenticated,
			`xds: sidecar "app-1" of gateway group "egress-gateway" connected without a client certificate issued by the xDS client CA; this server requires its workload certificate (spiffe://cluster.local/ns/<namespace>/sa/<service-account>)`},
		{"rate limit service with a workload identity", workload, rateLimitNode("rl-1"), codes.OK, ""},
		{"rate limit service with a gateway identity", gw, rateLimitNode("rl-1"), codes.PermissionDenied,
			`xds: node "rl-1" asked for the rate limit service's configuration with identity spiffe://cluster.local/gateway-group/egress-gateway, which entitles gateway group "egress-gateway"'s gateway configuration only; the rate limit service presents a workload certificate (spiffe://cluster.local/ns/<namespace>/sa/<service-account>)`},
		{"rate limit service without a certificate", nil, rateLimitNode("rl-1"), codes.Unauthenticated,
			`xds: rate limit service "rl-1" connected without a client certificate issued by the xDS client CA; this server requires a workload certificate (spiffe://cluster.local/ns/<namespace>/sa/<service-account>, e.g. its pod's)`},
		{"rate limit service with an identity that entitles nothing", none, rateLimitNode("rl-1"), codes.PermissionDenied,
			`xds: node "rl-1" asked for the rate limit service's configuration with identity subject "CN=gw", which entitles nothing: the certificate has no SPIFFE ID (URI SAN)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := metrics.New()
			a := newAuthorizer(newProxies(m, slog.New(slog.DiscardHandler), nil), "cluster.local", slog.New(slog.DiscardHandler))
			k := sotwStream(1)
			a.streams[k] = &streamAuth{id: c.id}
			err := a.authorize(k, c.node)
			if st := status.Convert(err); st.Code() != c.code || st.Message() != c.msg && c.code != codes.OK {
				t.Fatalf("got %v %q\nwant %v %q", st.Code(), st.Message(), c.code, c.msg)
			}
		})
	}
}

// Authorization holds for the stream: a later request naming another
// group is refused; one without a node is the stream's; a stream the
// authorizer does not know is refused.
func TestAuthorizeStream(t *testing.T) {
	a := newAuthorizer(newProxies(metrics.New(), slog.New(slog.DiscardHandler), nil), "cluster.local", slog.New(slog.DiscardHandler))
	gw := &Identity{Presented: "spiffe://cluster.local/gateway-group/a", Group: "a"}
	k := deltaStream(1)
	a.streams[k] = &streamAuth{id: gw}
	if err := a.authorize(k, gatewayNode("gw", "a")); err != nil {
		t.Fatal(err)
	}
	if err := a.authorize(k, nil); err != nil {
		t.Fatalf("a request without node on an authorized stream: %v", err)
	}
	if err := a.authorize(k, gatewayNode("gw", "b")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("switching groups: %v", err)
	}
	if err := a.authorize(sotwStream(1), gatewayNode("gw", "a")); status.Code(err) != codes.Internal {
		t.Fatalf("the SotW stream of the same number is another stream: %v", err)
	}
}
