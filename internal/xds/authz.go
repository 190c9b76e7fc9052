package xds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/egress-xds/egress-xds/internal/snapshot"
)

// GroupPathPrefix is the path of the SPIFFE IDs that entitle a proxy to a
// gateway group: spiffe://<trust-domain>/gateway-group/<group>.
const GroupPathPrefix = "/gateway-group/"

// GroupSPIFFEID is the SPIFFE ID that entitles a proxy to group.
func GroupSPIFFEID(trustDomain, group string) string {
	return "spiffe://" + trustDomain + GroupPathPrefix + group
}

// Identity is what a proxy's client certificate proves.
type Identity struct {
	// Presented describes the certificate for messages: its SPIFFE ID, or
	// its subject and DNS names when it has none.
	Presented string
	// Group is the gateway group the certificate entitles; "" for none,
	// with the reason in Problem.
	Group   string
	Problem string
}

// IdentityOf applies the authorization rule to a verified client
// certificate: it must carry exactly one URI SAN, a SPIFFE ID
// spiffe://<trustDomain>/gateway-group/<group>, and entitles that group
// only. DNS names, the subject, and workload IDs (/ns/<ns>/sa/<sa>)
// entitle nothing.
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
	case !strings.HasPrefix(u.Path, GroupPathPrefix):
		id.Problem = "the SPIFFE ID does not name a gateway group (path " + GroupPathPrefix + "<group>)"
	default:
		g := strings.TrimPrefix(u.Path, GroupPathPrefix)
		if g == "" || strings.Contains(g, "/") || u.RawPath != "" {
			id.Problem = "the SPIFFE ID does not name a gateway group (path " + GroupPathPrefix + "<group>)"
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

// validTrustDomain checks the SPIFFE trust domain syntax: lower-case
// letters, digits, dots, dashes and underscores.
func validTrustDomain(td string) error {
	if td == "" {
		return errors.New("empty")
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("character %q is not allowed (lower-case letters, digits, '.', '-', '_')", r)
		}
	}
	if _, err := url.Parse("spiffe://" + td); err != nil {
		return err
	}
	return nil
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
	streams map[int64]*streamAuth
}

type streamAuth struct {
	id      *Identity // nil: no client certificate
	allowed string    // the group authorized on this stream, once one was
	ok      bool
}

func newAuthorizer(p *Proxies, trustDomain string, log *slog.Logger) *authorizer {
	return &authorizer{Proxies: p, trustDomain: trustDomain, log: log, streams: map[int64]*streamAuth{}}
}

func (a *authorizer) open(ctx context.Context, id int64) {
	st := &streamAuth{}
	if pr, ok := peer.FromContext(ctx); ok {
		if info, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 && len(info.State.PeerCertificates) > 0 {
			ident := IdentityOf(info.State.PeerCertificates[0], a.trustDomain)
			st.id = &ident
		}
	}
	a.mu.Lock()
	a.streams[id] = st
	a.mu.Unlock()
}

func (a *authorizer) close(id int64) {
	a.mu.Lock()
	delete(a.streams, id)
	a.mu.Unlock()
}

// authorize checks a request's node (nil: the stream's node so far).
func (a *authorizer) authorize(id int64, node *core.Node) error {
	a.mu.Lock()
	st := a.streams[id]
	if st == nil {
		a.mu.Unlock()
		return status.Error(codes.Internal, "xds: unknown stream")
	}
	group := snapshot.GroupOf(node)
	if node == nil && st.ok {
		group = st.allowed
	}
	if st.ok && group == st.allowed {
		a.mu.Unlock()
		return nil
	}
	ident := st.id
	var err error
	switch {
	case ident == nil:
		err = status.Errorf(codes.Unauthenticated,
			"xds: node %q asked for gateway group %q without a client certificate issued by the xDS client CA; this server requires one with the SPIFFE ID %s",
			node.GetId(), group, GroupSPIFFEID(a.trustDomain, orPlaceholder(group)))
	case ident.Group == "":
		err = status.Errorf(codes.PermissionDenied,
			"xds: node %q asked for gateway group %q with identity %s, which entitles no gateway group: %s; want %s",
			node.GetId(), group, ident.Presented, ident.Problem, GroupSPIFFEID(a.trustDomain, orPlaceholder(group)))
	case ident.Group != group:
		err = status.Errorf(codes.PermissionDenied,
			"xds: node %q asked for gateway group %q with identity %s, which entitles gateway group %q only",
			node.GetId(), group, ident.Presented, ident.Group)
	default:
		st.ok, st.allowed = true, group
	}
	a.mu.Unlock()
	if err != nil {
		presented := ""
		if ident != nil {
			presented = ident.Presented
		}
		a.log.Warn("proxy refused: not authorized for the gateway group it asked for",
			"node", node.GetId(), "group", group, "identity", presented, "error", status.Convert(err).Message())
		a.m.RefusedProxies.WithLabelValues(group, strings.ToLower(status.Code(err).String())).Inc()
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
	a.open(ctx, id)
	return a.Proxies.OnStreamOpen(ctx, id, typ)
}
func (a *authorizer) OnStreamClosed(id int64, node *core.Node) {
	a.close(id)
	a.Proxies.OnStreamClosed(id, node)
}
func (a *authorizer) OnStreamRequest(id int64, r *discovery.DiscoveryRequest) error {
	if err := a.authorize(id, r.GetNode()); err != nil {
		return err
	}
	return a.Proxies.OnStreamRequest(id, r)
}
func (a *authorizer) OnDeltaStreamOpen(ctx context.Context, id int64, typ string) error {
	a.open(ctx, id)
	return a.Proxies.OnDeltaStreamOpen(ctx, id, typ)
}
func (a *authorizer) OnDeltaStreamClosed(id int64, node *core.Node) {
	a.close(id)
	a.Proxies.OnDeltaStreamClosed(id, node)
}
func (a *authorizer) OnStreamDeltaRequest(id int64, r *discovery.DeltaDiscoveryRequest) error {
	if err := a.authorize(id, r.GetNode()); err != nil {
		return err
	}
	return a.Proxies.OnStreamDeltaRequest(id, r)
}

// OnFetchRequest refuses REST fetches: they carry no stream to authorize
// (the server registers none, this is defence in depth).
func (a *authorizer) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.PermissionDenied, "xds: fetch requests are not served when node authorization is on")
}
