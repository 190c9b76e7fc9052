package fakeservices

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS is a tiny authoritative DNS server for tests, on one address over
// UDP and TCP: A and AAAA records by name, exact or for every name under a
// domain ("*.example.test"), with a short TTL; NXDOMAIN for every other
// name, so a gateway reaches the scenarios' names only through it. Records
// can change while it runs (Set), as a DNS server's do.
type DNS struct {
	// Addr is the host:port it answers on, UDP and TCP.
	Addr string
	ttl  time.Duration

	mu      sync.Mutex
	records map[string][]netip.Addr // lower case, no trailing dot
	queries map[string]int          // questions asked, by name

	udp  net.PacketConn
	tcp  net.Listener
	wg   sync.WaitGroup
	done chan struct{}
}

// DNSTTL is the TTL of every answer: short, so re-resolution is quick to
// see (Envoy re-resolves no more often than its dns_min_refresh_rate).
const DNSTTL = time.Second

// StartDNS serves records on host (a loopback address) at a free port,
// the same for UDP and TCP, until ctx is done; Wait returns once it has
// stopped.
func StartDNS(ctx context.Context, host string, records map[string][]netip.Addr) (*DNS, error) {
	d := &DNS{ttl: DNSTTL, records: map[string][]netip.Addr{}, queries: map[string]int{}, done: make(chan struct{})}
	for name, addrs := range records {
		d.Set(name, addrs...)
	}
	var err error
	for range 10 {
		if d.udp, err = net.ListenPacket("udp", net.JoinHostPort(host, "0")); err != nil {
			return nil, fmt.Errorf("fakeservices: DNS: %w", err)
		}
		if d.tcp, err = net.Listen("tcp", d.udp.LocalAddr().String()); err == nil {
			break
		}
		d.udp.Close() // the port is taken over TCP: try another
	}
	if err != nil {
		return nil, fmt.Errorf("fakeservices: DNS: no port free over both UDP and TCP: %w", err)
	}
	d.Addr = d.udp.LocalAddr().String()
	d.wg.Add(2)
	go d.serveUDP()
	go d.serveTCP()
	go func() {
		<-ctx.Done()
		d.udp.Close()
		d.tcp.Close()
		d.wg.Wait()
		close(d.done)
	}()
	return d, nil
}

// Wait blocks until the server has stopped.
func (d *DNS) Wait() { <-d.done }

// Set replaces the records of name ("*.domain" for every name under
// domain); no addresses removes the name.
func (d *DNS) Set(name string, addrs ...netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := canonical(name)
	if len(addrs) == 0 {
		delete(d.records, key)
		return
	}
	d.records[key] = append([]netip.Addr(nil), addrs...)
}

// Queries is how many questions about name were asked.
func (d *DNS) Queries(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[canonical(name)]
}

func canonical(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// lookup finds name's addresses: its own records, else those of the
// closest "*.parent" above it.
func (d *DNS) lookup(name string) ([]netip.Addr, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries[name]++
	if a, ok := d.records[name]; ok {
		return a, true
	}
	for rest := name; ; {
		_, parent, ok := strings.Cut(rest, ".")
		if !ok {
			return nil, false
		}
		if a, ok := d.records["*."+parent]; ok {
			return a, true
		}
		rest = parent
	}
}

// answer builds the response to one query; nil for what is not a query.
func (d *DNS) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	resp := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	addrs, known := d.lookup(canonical(q.Name.String()))
	if !known {
		resp.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), resp)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil
	}
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: uint32(d.ttl / time.Second)}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			err = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

func (d *DNS) serveUDP() {
	defer d.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, from, err := d.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := d.answer(buf[:n]); out != nil {
			_, _ = d.udp.WriteTo(out, from)
		}
	}
}

// serveTCP answers length-prefixed queries (RFC 1035 4.2.2), several per
// connection, each connection for 10 s at most; open connections are
// closed when the server stops.
func (d *DNS) serveTCP() {
	defer d.wg.Done()
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	var conns sync.WaitGroup
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	}()
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		open[c] = struct{}{}
		mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer func() {
				mu.Lock()
				delete(open, c)
				mu.Unlock()
				c.Close()
			}()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			for {
				var n uint16
				if err := binary.Read(c, binary.BigEndian, &n); err != nil {
					return
				}
				q := make([]byte, n)
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				out := d.answer(q)
				if out == nil {
					return
				}
				if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)); err != nil {
					return
				}
			}
		}()
	}
}

// Resolver asks only this server, over network ("udp" or "tcp"), as a
// test client would.
func (d *DNS) Resolver(network string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, d.Addr)
	}}
}
