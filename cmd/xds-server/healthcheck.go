package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// healthcheck asks a running server's /readyz and exits 0 when it is ready:
// a probe for images without a shell or curl (distroless).
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("admin-address", "127.0.0.1:9090", "admin address of the server to check")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get("http://" + *addr + "/readyz")
	if err != nil {
		fmt.Fprintln(stderr, "not ready:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "not ready: %s: %s", resp.Status, body)
		return 1
	}
	fmt.Fprint(stdout, string(body))
	return 0
}
