package main

import (
	"fmt"
	"io"
	"time"
)

// healthcheck asks a running server's /readyz and exits 0 when it is ready:
// a probe for images without a shell or curl (distroless).
func healthcheck(args []string, stdout, stderr io.Writer) int {
	c := newCmdLine("healthcheck", stdout, stderr)
	var server adminClient
	server.register(c.FlagSet, 3*time.Second)
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(" (--admin-address ADDR)"); !ok {
		return code
	}
	body, err := server.get("/readyz")
	if err != nil {
		fmt.Fprintln(stderr, "not ready:", err)
		return 1
	}
	fmt.Fprint(stdout, string(body))
	return 0
}
