package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/server"
	"github.com/egress-xds/egress-xds/internal/translate"
)

const limitedIntent = `apiVersion: v1
kind: ConfigMap
metadata:
  name: limited
  namespace: apps
  labels: {egress-xds.io/intent: "true"}
data:
  egress.yaml: |
    gateways: [%s]
    destinations:
      - name: paid
        host: paid.example.com
        ports: [{number: 80, protocol: HTTP}]
        rateLimit: {global: {requests: 100, per: minute, perSource: address}}
`

// rateLimitClient is envoyproxy/ratelimit's xDS client (GRPC_XDS_SOTW: this
// go-control-plane client, node id and metadata as its settings make them,
// no cluster), asking for its configuration.
func rateLimitClient(t *testing.T, addr string) sotw.ADSClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	md, _ := structpb.NewStruct(map[string]any{"egress-xds.io/role": "ratelimit"})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := sotw.NewADSClient(ctx, &core.Node{Id: "ratelimit-0", Metadata: md}, resourcev3.RateLimitConfigType)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	return c
}

// fetchConfig waits at most 15 s for the next response and ACKs it.
func fetchConfig(t *testing.T, c sotw.ADSClient) *rlsconfv3.RateLimitConfig {
	t.Helper()
	type result struct {
		resp *sotw.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() { r, err := c.Fetch(); ch <- result{r, err} }()
	var r result
	select {
	case r = <-ch:
	case <-time.After(15 * time.Second):
		t.Fatal("no rate limit configuration within 15 s")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.resp.Resources) != 1 {
		t.Fatalf("%d resources, want the one configuration", len(r.resp.Resources))
	}
	var cfg rlsconfv3.RateLimitConfig
	if err := anypb.UnmarshalTo(r.resp.Resources[0], &cfg, proto.UnmarshalOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// rateLimitVersion is the version a server serves the rate limit service.
func rateLimitVersion(r *running) string {
	return r.Cache.Snapshot(compile.RateLimitKey).Type(resourcev3.RateLimitConfigType).Version
}

// The rate limit service gets one configuration of every group's limits,
// as its own snapshot key, versioned like everything else: two replicas
// serve the same version, an edit moves it and reaches the service on
// its open stream.
func TestRateLimitServiceGetsItsConfiguration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "limited.yaml")
	write(t, path, fmt.Sprintf(limitedIntent, "other-group"))
	opts := translate.Options{RateLimitService: &translate.RateLimitServiceOptions{Address: "ratelimit:8081"}}
	a := startConfig(t, context.Background(), server.Config{ConfigDir: dir, Translate: opts})
	b := startConfig(t, context.Background(), server.Config{ConfigDir: dir, Translate: opts})

	ca, cb := rateLimitClient(t, a.XDSAddr), rateLimitClient(t, b.XDSAddr)
	cfg := fetchConfig(t, ca)
	fetchConfig(t, cb)
	if va, vb := rateLimitVersion(a), rateLimitVersion(b); va != vb || va == "" {
		t.Errorf("replicas serve versions %q and %q, want the same", va, vb)
	}
	if cfg.GetDomain() != translate.RateLimitDomain || len(cfg.GetDescriptors()) != 1 ||
		cfg.GetDescriptors()[0].GetValue() != "apps/limited/paid" || cfg.GetDescriptors()[0].GetDescriptors()[0].GetKey() != "address" ||
		cfg.GetDescriptors()[0].GetDescriptors()[0].GetRateLimit().GetRequestsPerUnit() != 100 {
		t.Fatalf("configuration %v: want the limit of a group no gateway of which is connected", cfg)
	}

	before := rateLimitVersion(a)
	edit(t, path, "requests: 100", "requests: 7")
	cfg = fetchConfig(t, ca)
	if after := rateLimitVersion(a); after == before || cfg.GetDescriptors()[0].GetDescriptors()[0].GetRateLimit().GetRequestsPerUnit() != 7 {
		t.Fatalf("after the edit: version %s (was %s), %v", after, before, cfg)
	}

	// The service is a proxy like the others in the status, under its key.
	var status []struct {
		Node  string                     `json:"node"`
		Group string                     `json:"group"`
		Types map[string]json.RawMessage `json:"types"`
	}
	getJSON(t, "http://"+a.AdminAddr+"/debug/status?group="+compile.RateLimitKey, &status)
	if len(status) != 1 || status[0].Node != "ratelimit-0" || len(status[0].Types) != 1 || status[0].Types["RateLimitConfig"] == nil {
		t.Errorf("status of the rate limit service: %+v", status)
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", u, err, b)
	}
}
