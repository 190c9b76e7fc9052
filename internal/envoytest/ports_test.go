package envoytest

import (
	"net"
	"strconv"
	"testing"
)

// The ports are distinct, bindable, and below the ephemeral range that
// outgoing connections take their source ports from.
func TestFreePortsBelowTheEphemeralRange(t *testing.T) {
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	low := ephemeralLow()
	seen := map[uint32]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d given twice", p)
		}
		seen[p] = true
		if low-10000 >= 1000 && int(p) >= low {
			t.Errorf("port %d is in the ephemeral range (from %d)", p, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p))))
		if err != nil {
			t.Errorf("port %d: %v", p, err)
			continue
		}
		l.Close()
	}
	if len(ports) != 20 {
		t.Fatalf("%d ports, want 20", len(ports))
	}
}
