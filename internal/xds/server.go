// Package xds runs the ADS gRPC server: go-control-plane's SotW and delta
// servers on one port over the group cache, with keepalive enforcement,
// stream limits, and a log line and a metric for every NACK.
package xds

import (
	"context"
	"log/slog"
	"net"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
)

// Server is the ADS endpoint.
type Server struct {
	GRPC    *grpc.Server
	Proxies *Proxies
}

// DefaultKeepaliveTimeout is Options.KeepaliveTimeout's default, Istio's
// (quick dead-peer detection).
const DefaultKeepaliveTimeout = 10 * time.Second

// Options tune the gRPC server.
type Options struct {
	// MaxConcurrentStreams per connection; an Envoy opens one ADS stream.
	MaxConcurrentStreams uint32
	// KeepaliveMinTime is the shortest ping interval a client may use.
	// The egress gateway bootstrap pings every 30s.
	KeepaliveMinTime time.Duration
	// KeepaliveTimeout is how long a proxy may leave the server's
	// keepalive ping unanswered, and, as gRPC-Go also makes it the
	// connection's TCP_USER_TIMEOUT, how long it may leave sent data
	// unread, before its connection is closed (default
	// DefaultKeepaliveTimeout). Longer suits fleets that push very large
	// updates to slow proxies, at the cost of slower dead-peer detection.
	KeepaliveTimeout time.Duration
	// TLS, if set, serves xDS over TLS; when it requires client
	// certificates, each proxy gets only the group its certificate
	// entitles (see IdentityOf).
	TLS *ServerTLS
}

// NewServer builds the gRPC server with the ADS service (SotW and delta).
func NewServer(ctx context.Context, cache *snapshot.Cache, m *metrics.Metrics, log *slog.Logger, o Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 16
	}
	if o.KeepaliveMinTime == 0 {
		o.KeepaliveMinTime = 10 * time.Second
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	proxies := newProxies(m, log, cache)
	var callbacks serverv3.Callbacks = proxies
	var creds []grpc.ServerOption
	if o.TLS != nil {
		creds = append(creds, grpc.Creds(credentials.NewTLS(o.TLS.Config())))
		if o.TLS.ClientAuth() {
			callbacks = newAuthorizer(proxies, o.TLS.TrustDomain(), log)
		}
	}
	g := grpc.NewServer(append(creds,
		grpc.MaxConcurrentStreams(o.MaxConcurrentStreams),
		// Accept the pings of idle ADS streams (Envoy's connection
		// keepalive) down to KeepaliveMinTime; faster ones get GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: o.KeepaliveMinTime, PermitWithoutStream: true}),
		// Ping idle proxies so half-open connections are found and their
		// streams closed.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: o.KeepaliveTimeout}),
		grpc.MaxRecvMsgSize(4<<20),
		// Static HTTP/2 receive windows of the protocol's default size:
		// proxies send small requests, and gRPC-Go's dynamic windows
		// would answer nearly every ACK with a bandwidth-estimation PING
		// that the proxy must answer, doubling the packets and system
		// calls of a push to a thousand delta gateways. A peer can also
		// not make the server buffer more than 64 KiB per stream.
		grpc.StaticStreamWindowSize(64<<10), grpc.StaticConnWindowSize(64<<10),
		// Proxies send small requests: a small read buffer per connection
		// saves memory at thousands of gateways.
		grpc.ReadBufferSize(8<<10),
		// Encode each group's resource lists once, not once per stream.
		grpc.ForceServerCodecV2(snapshot.Codec{}),
	)...)
	srv := serverv3.NewServer(ctx, cache, callbacks)
	discovery.RegisterAggregatedDiscoveryServiceServer(g, srv)
	return &Server{GRPC: g, Proxies: proxies}
}

// Serve accepts connections on l until Stop.
func (s *Server) Serve(l net.Listener) error { return s.GRPC.Serve(l) }

// Stop ends every stream gracefully (proxies reconnect elsewhere), waiting
// at most grace before closing connections.
func (s *Server) Stop(grace time.Duration) {
	done := make(chan struct{})
	go func() {
		s.GRPC.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		s.GRPC.Stop()
	}
}
