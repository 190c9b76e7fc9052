package envoytest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// FreePorts returns n distinct TCP ports free on 127.0.0.1 now, for
// servers a test starts later (Envoy listeners, an API server). They are
// taken at random below the kernel's ephemeral range: a port picked with
// ":0" comes from that range, from which every outgoing connection also
// takes its source port, so a long-lived connection of a test running in
// parallel could hold it by the time the server binds (Envoy then rejects
// the listener: "Address already in use").
func FreePorts(n int) ([]uint32, error) {
	const floor = 10000
	low := ephemeralLow()
	var out []uint32
	seen := map[uint32]bool{}
	for tries := 0; len(out) < n && tries < 100*n+100; tries++ {
		var p uint32
		if low-floor >= 1000 {
			p = uint32(floor + rand.IntN(low-floor))
		}
		if seen[p] && p != 0 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p))))
		if err != nil {
			continue
		}
		p = uint32(l.Addr().(*net.TCPAddr).Port)
		_ = l.Close()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("found %d free ports on 127.0.0.1 of %d", len(out), n)
	}
	return out, nil
}

// ephemeralLow is the lowest port of the kernel's ephemeral range
// (Linux's default 32768 where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v < 1024 {
		return 32768
	}
	return v
}
