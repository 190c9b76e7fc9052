package server_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

// Config.XDSKeepaliveTimeout reaches the xDS server's connections (their
// TCP_USER_TIMEOUT, which gRPC-Go sets from the keepalive timeout).
func TestXDSKeepaliveTimeoutReachesTheConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var cl *xdstest.ConnListener
	cfg := server.Config{ConfigDir: t.TempDir(), XDSKeepaliveTimeout: 42 * time.Second}
	server.ListenWith(&cfg, func(network, address string) (net.Listener, error) {
		l, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		cl = &xdstest.ConnListener{Listener: l}
		return cl, nil
	})
	r := startConfig(t, ctx, cfg)
	cc, err := grpc.NewClient(r.XDSAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := xdstest.WaitReady(ctx, cc); err != nil {
		t.Fatal(err)
	}
	conns := cl.Conns()
	if len(conns) != 1 {
		t.Fatalf("%d connections accepted, want 1", len(conns))
	}
	if got, err := xdstest.TCPUserTimeout(conns[0]); err != nil || got != 42*time.Second {
		t.Fatalf("TCP_USER_TIMEOUT %v (%v), want 42s", got, err)
	}
}
