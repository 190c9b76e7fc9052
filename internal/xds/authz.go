package xds

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// Identity is what a proxy's client certificate proves.
type Identity struct {
	// Presented describes the certificate for messages: its SPIFFE ID, or
	// its subject and DNS names when it has none.
	Presented string
	// Group is the gateway group the certificate entitles; "" for none.
	Group string
	// Workload is set for a workload SPIFFE ID (/ns/<ns>/sa/<sa>), which
	// entitles sidecar configuration only.
	Workload bool
	// Problem says why the certificate entitles nothing.
	Problem string
}

// IdentityOf applies the authorization rule to a verified client
// certificate: it must carry exactly one URI SAN, a SPIFFE ID of the trust
// domain, naming either a gateway group
// (spiffe://<trustDomain>/gateway-group/<group>: that group's gateway
// configuration only) or a workload (spiffe://<trustDomain>/ns/<ns>/sa/<sa>:
// sidecar configuration, which holds no key but its own, read from files,
// and the rate limit service's, which holds no secret at all: destination
// names and their limits). DNS names and the subject entitle nothing.
func IdentityOf(cert *x509.Certificate, trustDomain string) Identity {
	if len(cert.URIs) == 0 {
		return Identity{Presented: describe(cert), Problem: "the certificate has no SPIFFE ID (URI SAN)"}
	}
	if len(cert.URIs) > 1 {
		ids := make([]string, len(cert.URIs))
		for i, u := range cert.URIs {
			ids[i] = u.String()
		}
		return Identity{Presented: strings.Join(ids, ", "), Problem: "the certificate has more than one URI SAN; a SPIFFE certificate has exactly one"}
	}
	u := cert.URIs[0]
	id := Identity{Presented: u.String()}
	switch {
	case u.Scheme != "spiffe":
		id.Problem = "the URI SAN is not a SPIFFE ID"
	case u.Host != trustDomain || u.User != nil || u.Port() != "":
		id.Problem = fmt.Sprintf("the trust domain is not %q", trustDomain)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		id.Problem = "a SPIFFE ID has no query or fragment"
	case strings.HasPrefix(u.Path, "/ns/"):
		if _, err := intent.ParseWorkloadID(u.String()); err != nil {
			id.Problem = err.Error()
		} else {
			id.Workload = true
		}
	case !strings.HasPrefix(u.Path, translate.GatewayGroupPath):
		id.Problem = "the SPIFFE ID names neither a gateway group (path " + translate.GatewayGroupPath + "<group>) nor a workload (/ns/<namespace>/sa/<service-account>)"
	default:
		g := strings.TrimPrefix(u.Path, translate.GatewayGroupPath)
		if g == "" || strings.Contains(g, "/") || u.RawPath != "" {
			id.Problem = "the SPIFFE ID does not name a gateway group (path " + translate.GatewayGroupPath + "<group>)"
		} else {
			id.Group = g
		}
	}
	return id
}

func describe(cert *x509.Certificate) string {
	s := fmt.Sprintf("subject %q", cert.Subject.String())
	if len(cert.DNSNames) > 0 {
		s += fmt.Sprintf(", DNS names %v", cert.DNSNames)
	}
	return s
}

// authorizer wraps the Proxies callbacks with node authorization: each
// stream's client certificate is read when it opens, and every request is
// refused, closing the stream before anything is sent, unless the node
// cluster it asks for is the group the certificate entitles.
type authorizer struct {
	*Proxies
	trustDomain string
	log         *slog.Logger

	mu      sync.Mutex
	streams map[streamKey]*streamAuth
}

type streamAuth struct {
	id      *Identity // nil: no client certificate
	allowed string    // the group authorized on this stream, once one was
	ok      bool
}

func newAuthorizer(p *Proxies, trustDomain string, log *slog.Logger) *authorizer {
	return &authorizer{Proxies: p, trustDomain: trustDomain, log: log, streams: map[streamKey]*streamAuth{}}
}

func (a *authorizer) open(ctx context.Context, k streamKey) {
	st := &streamAuth{}
	if pr, ok := peer.FromContext(ctx); ok {
		if info, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 && len(info.State.PeerCertificates) > 0 {
			ident := IdentityOf(info.State.PeerCertificates[0], a.trustDomain)
			st.id = &ident
		}
	}
	a.mu.Lock()
	a.streams[k] = st
	a.mu.Unlock()
}

func (a *authorizer) close(k streamKey) {
	a.mu.Lock()
	delete(a.streams, k)
	a.mu.Unlock()
}

// authorize checks a request's node (nil: the stream's node so far).
func (a *authorizer) authorize(k streamKey, node *core.Node) error {
	a.mu.Lock()
	st := a.streams[k]
	if st == nil {
		a.mu.Unlock()
		return status.Error(codes.Internal, "xds: unknown stream")
	}
	key := snapshot.GroupOf(node)
	if node == nil && st.ok {
		key = st.allowed
	}
	if st.ok && key == st.allowed {
		a.mu.Unlock()
		return nil
	}
	role, group := compile.SplitKey(key)
	ident := st.id
	var err error
	switch {
	case ident == nil && role == translate.RoleRateLimit:
		err = status.Errorf(codes.Unauthenticated,
			"xds: rate limit service %q connected without a client certificate issued by the xDS client CA; this server requires a workload certificate (spiffe://%s/ns/<namespace>/sa/<service-account>, e.g. its pod's)",
			node.GetId(), a.trustDomain)
	case ident == nil && role == translate.RoleSidecar:
		err = status.Errorf(codes.Unauthenticated,
			"xds: sidecar %q of gateway group %q connected without a client certificate issued by the xDS client CA; this server requires its workload certificate (spiffe://%s/ns/<namespace>/sa/<service-account>)",
			node.GetId(), group, a.trustDomain)
	case ident == nil:
		err = status.Errorf(codes.Unauthenticated,
			"xds: node %q asked for gateway group %q without a client certificate issued by the xDS client CA; this server requires one with the SPIFFE ID %s",
			node.GetId(), group, translate.GatewaySPIFFEID(a.trustDomain, orPlaceholder(group)))
	case ident.Problem != "" && role == translate.RoleRateLimit:
		err = status.Errorf(codes.PermissionDenied,
			"xds: node %q asked for the rate limit service's configuration with identity %s, which entitles nothing: %s",
			node.GetId(), ident.Presented, ident.Problem)
	case ident.Problem != "":
		err = status.Errorf(codes.PermissionDenied,
			"xds: node %q asked for the %s configuration of gateway group %q with identity %s, which entitles nothing: %s",
			node.GetId(), role, group, ident.Presented, ident.Problem)
	case role == translate.RoleRateLimit && !ident.Workload:
		err = status.Errorf(codes.PermissionDenied,
			"xds: node %q asked for the rate limit service's configuration with identity %s, which entitles gateway group %q's gateway configuration only; the rate limit service presents a workload certificate (spiffe://%s/ns/<namespace>/sa/<service-account>)",
			node.GetId(), ident.Presented, ident.Group, a.trustDomain)
	case role == translate.RoleSidecar && !ident.Workload:
		err = status.Errorf(codes.PermissionDenied,
			"xds: node %q asked for sidecar configuration with identity %s, which entitles gateway group %q's gateway configuration only; a sidecar presents its workload's certificate (spiffe://%s/ns/<namespace>/sa/<service-account>)",
			node.GetId(), ident.Presented, ident.Group, a.trustDomain)
	case role == translate.RoleGateway && ident.Workload:
		err = status.Errorf(codes.PermissionDenied,
			"xds: node %q asked for gateway group %q with workload identity %s, which entitles sidecar configuration only (node metadata %s: sidecar); a gateway presents %s",
			node.GetId(), group, ident.Presented, snapshot.RoleMetadataKey, translate.GatewaySPIFFEID(a.trustDomain, orPlaceholder(group)))
	case role == translate.RoleGateway && ident.Group != group:
		err = status.Errorf(codes.PermissionDenied,
			"xds: node %q asked for gateway group %q with identity %s, which entitles gateway group %q only",
			node.GetId(), group, ident.Presented, ident.Group)
	default:
		st.ok, st.allowed = true, key
	}
	a.mu.Unlock()
	if err != nil {
		presented := ""
		if ident != nil {
			presented = ident.Presented
		}
		a.log.Warn("proxy refused: not authorized for the configuration it asked for",
			"node", node.GetId(), "group", key, "identity", presented, "error", status.Convert(err).Message())
		a.m.RefusedProxies.WithLabelValues(key, strings.ToLower(status.Code(err).String())).Inc()
	}
	return err
}

func orPlaceholder(group string) string {
	if group == "" {
		return "<group> (and set the node cluster)"
	}
	return group
}

// go-control-plane callbacks.

func (a *authorizer) OnStreamOpen(ctx context.Context, id int64, typ string) error {
	a.open(ctx, sotwStream(id))
	return a.Proxies.OnStreamOpen(ctx, id, typ)
}
func (a *authorizer) OnStreamClosed(id int64, node *core.Node) {
	a.close(sotwStream(id))
	a.Proxies.OnStreamClosed(id, node)
}
func (a *authorizer) OnStreamRequest(id int64, r *discovery.DiscoveryRequest) error {
	if err := a.authorize(sotwStream(id), r.GetNode()); err != nil {
		return err
	}
	return a.Proxies.OnStreamRequest(id, r)
}
func (a *authorizer) OnDeltaStreamOpen(ctx context.Context, id int64, typ string) error {
	a.open(ctx, deltaStream(id))
	return a.Proxies.OnDeltaStreamOpen(ctx, id, typ)
}
func (a *authorizer) OnDeltaStreamClosed(id int64, node *core.Node) {
	a.close(deltaStream(id))
	a.Proxies.OnDeltaStreamClosed(id, node)
}
func (a *authorizer) OnStreamDeltaRequest(id int64, r *discovery.DeltaDiscoveryRequest) error {
	if err := a.authorize(deltaStream(id), r.GetNode()); err != nil {
		return err
	}
	return a.Proxies.OnStreamDeltaRequest(id, r)
}

// OnFetchRequest refuses REST fetches: they carry no stream to authorize
// (the server registers none, this is defence in depth).
func (a *authorizer) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.PermissionDenied, "xds: fetch requests are not served when node authorization is on")
}
