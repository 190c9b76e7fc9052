package xdstest

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// ConnListener is a listener that hands tests the connections it
// accepted, so they can look at what the server set on its sockets.
type ConnListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// Accept records each accepted connection.
func (l *ConnListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// Conns are the connections accepted so far.
func (l *ConnListener) Conns() []net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]net.Conn(nil), l.conns...)
}

// WaitReady connects cc and waits until it is ready (the HTTP/2
// handshake done: a gRPC server has configured the connection by then).
func WaitReady(ctx context.Context, cc *grpc.ClientConn) error {
	cc.Connect()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
	return nil
}

// TCPUserTimeout is a TCP connection's TCP_USER_TIMEOUT (Linux): how long
// sent data may stay unacknowledged before the kernel closes it.
func TCPUserTimeout(c net.Conn) (time.Duration, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, errors.New("xdstest: not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ms int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		ms, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, serr
}
