package xds

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

// KeepaliveTimeout reaches gRPC-Go, which makes it the connection's
// TCP_USER_TIMEOUT: how long a proxy may leave sent data unread (the
// default is DefaultKeepaliveTimeout).
func TestKeepaliveTimeoutReachesTheConnection(t *testing.T) {
	for _, tc := range []struct{ set, want time.Duration }{{0, DefaultKeepaliveTimeout}, {7 * time.Second, 7 * time.Second}, {2 * time.Minute, 2 * time.Minute}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s := NewServer(ctx, snapshot.NewCache(nil, nil), nil, nil, Options{KeepaliveTimeout: tc.set})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cl := &xdstest.ConnListener{Listener: l}
		go func() { _ = s.Serve(cl) }()
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		if err := xdstest.WaitReady(ctx, cc); err != nil {
			t.Fatal(err)
		}
		conns := cl.Conns()
		if len(conns) != 1 {
			t.Fatalf("%d connections accepted, want 1", len(conns))
		}
		got, err := xdstest.TCPUserTimeout(conns[0])
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("KeepaliveTimeout %v: the connection's TCP_USER_TIMEOUT is %v, want %v", tc.set, got, tc.want)
		}
		_ = cc.Close()
		s.Stop(time.Second)
		cancel()
	}
}
