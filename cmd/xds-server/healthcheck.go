package main

import (
	"flag"
	"fmt"
	"io"
	"time"
)

// healthcheck asks a running server's /readyz and exits 0 when it is ready:
// a probe for images without a shell or curl (distroless).
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var server adminClient
	server.register(fs, 3*time.Second)
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	body, err := server.get("/readyz")
	if err != nil {
		fmt.Fprintln(stderr, "not ready:", err)
		return 1
	}
	fmt.Fprint(stdout, string(body))
	return 0
}
