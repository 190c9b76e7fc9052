// Command fakeservices runs the fake external services of the end-to-end
// stack (docker-compose.yaml); see package fakeservices.
//
//	fakeservices [flags]                serve until SIGTERM
//	fakeservices healthcheck [--url U]  exit 0 when the services answer
//
// The CA comes from --certs-dir, which is created with the partner Secrets
// when it holds no CA yet (the compose volume on a first start).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(args[1:], stderr)
	}
	fs := flag.NewFlagSet("fakeservices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := fakeservices.DefaultConfig(nil)
	certsDir := fs.String("certs-dir", "/certs", "folder of the test CA (ca.crt, ca.key); created with the partner Secrets when empty")
	names := fs.String("names", strings.Join(fakeservices.DefaultNames, ","), "DNS names of the TLS servers' certificate")
	fs.StringVar(&def.TLSAddr, "tls-addr", def.TLSAddr, "HTTPS server")
	fs.StringVar(&def.MTLSAddr, "mtls-addr", def.MTLSAddr, "HTTPS server requiring a client certificate from the CA")
	fs.StringVar(&def.HTTPAddr, "http-addr", def.HTTPAddr, "plain HTTP server")
	fs.StringVar(&def.FlakyAddr, "flaky-addr", def.FlakyAddr, "HTTP server failing on demand (POST /flaky?failing=true on the control address)")
	fs.StringVar(&def.Control, "control-addr", def.Control, "control: /healthz and /flaky")
	primary := fs.String("db-primary-addr", def.DBAddrs[fakeservices.DBPrimary], "TCP echo database, primary")
	replica := fs.String("db-replica-addr", def.DBAddrs[fakeservices.DBReplica], "TCP echo database, replica")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	def.DBAddrs = map[string]string{fakeservices.DBPrimary: *primary, fakeservices.DBReplica: *replica}
	def.Names = strings.Split(*names, ",")
	def.Log = slog.New(slog.NewJSONHandler(stderr, nil))

	ca, created, err := fakeservices.LoadOrCreateCA(*certsDir)
	if err != nil {
		fmt.Fprintln(stderr, "fakeservices:", err)
		return 1
	}
	def.Log.Info("test CA ready", "dir", *certsDir, "created", created)
	def.CA = ca
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := fakeservices.Start(ctx, def)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	s.Wait()
	return 0
}

// healthcheck is the container's health probe: the image has no shell or
// curl.
func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:"+strconv.Itoa(fakeservices.ControlPort)+"/healthz", "health URL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, resp.Status)
		return 1
	}
	return 0
}
