package integration

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
)

// fakeEnvoyEnv makes the test binary act as envoy (see fakeEnvoy).
const fakeEnvoyEnv = "EGRESS_XDS_IT_FAKE_ENVOY"

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnvoyEnv) == "1" {
		os.Exit(fakeEnvoy(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeEnvoy stands in for an envoy binary, so the process handling of the
// local Envoy run is tested here: it takes the command line the harness
// gives Envoy (only flags Envoy has), checks the bootstrap, serves /ready
// and /stats on a loopback admin port it reports through
// --admin-address-path, prints an access log line, and exits on SIGTERM.
func fakeEnvoy(args []string) int {
	fs := flag.NewFlagSet("envoy", flag.ContinueOnError)
	config := fs.String("c", "", "")
	adminPath := fs.String("admin-address-path", "", "")
	node := fs.String("service-node", "", "")
	cluster := fs.String("service-cluster", "", "")
	fs.Int("concurrency", 0, "")
	fs.Bool("disable-hot-restart", false, "")
	fs.String("log-level", "info", "")
	fs.Int("file-flush-interval-msec", 0, "")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "fake envoy:", err); return 1 }
	data, err := os.ReadFile(*config)
	if err != nil {
		return fail(err)
	}
	b, err := bootstrap.Parse(data)
	if err != nil {
		return fail(err)
	}
	if err := b.ValidateAll(); err != nil {
		return fail(err)
	}
	if b.GetNode().GetId() != *node || b.GetNode().GetCluster() != *cluster {
		return fail(fmt.Errorf("node %v, flags %s %s", b.GetNode(), *node, *cluster))
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 0 {
		return fail(errors.New("admin is not on a free loopback port"))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(*adminPath, []byte(l.Addr().String()), 0o644); err != nil {
		return fail(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "LIVE") })
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "listener_manager.total_listeners_active: 4\nlistener_manager.total_listeners_warming: 0\ncluster_manager.warming_clusters: 0\n")
	})
	go func() { _ = http.Serve(l, mux) }()
	fmt.Printf("{\"listener\":\"fake\",\"node\":%q}\n", *node)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return 0
}

// The local Envoy harness starts a gateway process with a rendered
// bootstrap, finds its admin interface, waits for it, reads its access
// log and stops it with SIGTERM.
func TestLocalGatewayProcess(t *testing.T) {
	t.Setenv(fakeEnvoyEnv, "1")
	gw := startLocalGateway(t, os.Args[0], "it-gateway-1", "127.0.0.1:18000")
	if err := waitReady(gw, 4); err != nil {
		t.Fatal(err)
	}
	g := &Traffic{}
	e := g.waitLog(t, gw, "the access log line", func(e logEntry) bool { return e.get("listener") == "fake" })
	if e.get("node") != "it-gateway-1" {
		t.Fatalf("%v", e)
	}
	if !strings.HasPrefix(gw.adminAddr, "127.0.0.1:") {
		t.Fatalf("admin %s", gw.adminAddr)
	}
}
