package admin

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/peer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// adminFixture serves the admin endpoints over one valid and one broken
// ConfigMap; connect adds a SotW proxy that ACKed clusters and NACKed
// listeners.
type adminFixture struct {
	srv     *httptest.Server
	proxies *xds.Proxies
	cache   *snapshot.Cache
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	cm := func(name, doc string) compile.ConfigMap {
		return compile.ConfigMap{File: name + ".yaml", ConfigMap: &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name, Labels: map[string]string{intent.LabelKey: "true"}},
			Data:       map[string]string{"egress.yaml": doc},
		}}
	}
	m := metrics.New()
	cache := snapshot.NewCache(nil, nil)
	b := snapshot.NewBuilder(cache, translate.Options{ForwardProxyPort: 3128}, m, nil)
	b.Update(snapshot.Input{ConfigMaps: []compile.ConfigMap{
		cm("github", "gateways: [egress-gateway]\ndestinations: [{name: github, host: api.github.com, ports: [{number: 443, protocol: TLS}]}]"),
		cm("broken", "destinations: [{name: x, host: x.example.com, ports: [{number: 70000, protocol: TLS}]}]"),
	}})
	b.Rebuild()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	proxies := xds.NewServer(ctx, cache, m, nil, xds.Options{}).Proxies
	srv := httptest.NewServer(Handler(Sources{Metrics: m, Cache: cache, Builder: b, Proxies: proxies, Description: "folder examples"}))
	t.Cleanup(srv.Close)
	return &adminFixture{srv: srv, proxies: proxies, cache: cache}
}

func (f *adminFixture) connect(t *testing.T) {
	t.Helper()
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 41234}})
	node := &core.Node{Id: "gw-a", Cluster: "egress-gateway"}
	if err := f.proxies.OnStreamOpen(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	gs := f.cache.Snapshot("egress-gateway")
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		v := gs.Type(typ).Version
		req := &discovery.DiscoveryRequest{Node: node, TypeUrl: typ}
		_ = f.proxies.OnStreamRequest(1, req)
		f.proxies.OnStreamResponse(ctx, 1, req, &discovery.DiscoveryResponse{TypeUrl: typ, VersionInfo: v, Nonce: "1"})
		answer := &discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: v, ResponseNonce: "1"}
		if typ == resourcev3.ListenerType {
			answer.VersionInfo = ""
			answer.ErrorDetail = &statusNACK
		}
		_ = f.proxies.OnStreamRequest(1, answer)
	}
}

func (f *adminFixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// timestamps and versions vary from run to run; goldens hold placeholders.
var (
	timestamp = regexp.MustCompile(`"connected": "[^"]+"`)
	version   = regexp.MustCompile(`"(version|current|sent|acked|nackedVersion)": "[0-9a-f]{32}"`)
)

func normalize(s string) string {
	s = timestamp.ReplaceAllString(s, `"connected": "TIME"`)
	return version.ReplaceAllString(s, `"$1": "VERSION"`)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./internal/admin -update rewrites it; the README documents it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// The admin JSON, as the README documents it: each endpoint's answer with
// no proxy and with one. Every endpoint has one style: camelCase names,
// lists [] when empty, never null.
func TestAdminJSONGolden(t *testing.T) {
	f := newAdminFixture(t)
	for _, c := range []struct {
		path, golden string
		connected    bool
	}{
		{"/debug/proxies", "proxies-none.json", false},
		{"/debug/status", "status-none.json", false},
		{"/debug/config", "config.json", false},
		{"/debug/proxies", "proxies.json", true},
		{"/debug/proxies?group=other", "proxies-none.json", true},
		{"/debug/status", "status.json", true},
		{"/debug/status?node=gw-b", "status-none.json", true},
	} {
		if c.connected {
			f.connect(t)
		}
		code, body := f.get(t, c.path)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", c.path, code, body)
		}
		checkStyle(t, c.path, body, false)
		golden(t, c.golden, normalize(body))
	}
}

// /debug/config_dump keeps the envelope's style and Envoy's proto names
// inside each resource, as Envoy's own /config_dump; an unknown group is
// a 404 that says when a group exists.
func TestConfigDumpJSON(t *testing.T) {
	f := newAdminFixture(t)
	code, body := f.get(t, "/debug/config_dump?group=egress-gateway")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	checkStyle(t, "config_dump", body, true)
	for _, want := range []string{`"connect_timeout"`, `"cluster_name"`, `"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"`, `"configMaps": [
            "apps/github"`} {
		if !strings.Contains(body, want) {
			t.Errorf("config_dump lacks %s", want)
		}
	}
	if strings.Contains(body, `"connectTimeout"`) {
		t.Error("config_dump has camelCase proto names")
	}
	code, body = f.get(t, "/debug/config_dump?group=nobody")
	if code != http.StatusNotFound || !strings.Contains(body, `no snapshot for group "nobody" (a group is built once an intent names it or a proxy of it connects)`) {
		t.Errorf("unknown group: %d %s", code, body)
	}
}

var camelCase = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// checkStyle fails on null anywhere and on a name that is not camelCase
// (map keys excepted: group names, type names); inside config_dump's
// resources, Envoy's names are Envoy's.
func checkStyle(t *testing.T, what, body string, dump bool) {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var walk func(path string, v any, names bool)
	walk = func(path string, v any, names bool) {
		switch x := v.(type) {
		case nil:
			t.Errorf("%s: null at %s", what, path)
		case []any:
			for _, e := range x {
				walk(path+"[]", e, names)
			}
		case map[string]any:
			for k, e := range x {
				if names && !camelCase.MatchString(k) {
					t.Errorf("%s: %s.%s is not camelCase", what, path, k)
				}
				// types and their entries are keyed by name, not fields;
				// a resource is Envoy's.
				switch {
				case dump && k == "resource":
					continue
				case k == "types" && !dump:
					for typ, tv := range e.(map[string]any) {
						walk(path+".types."+typ, tv, true)
					}
					continue
				}
				walk(path+"."+k, e, true)
			}
		}
	}
	walk("", v, true)
}

var statusNACK = rpcstatus.Status{Message: "Proto constraint validation failed: listener tls_443: invalid"}
