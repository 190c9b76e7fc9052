package translate_test

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenGroup is the gateway group every golden case is translated for.
const goldenGroup = "egress-gateway"

// goldenOptions are a server with authenticated xDS (keys may go inline),
// judging certificates at a fixed instant.
var goldenOptions = translate.Options{ForwardProxyPort: 3128, PrivateKeysInline: true, SettingsNamespace: "egress-xds",
	Now: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), CertificateExpiryWarning: translate.DefaultCertificateExpiryWarning}

// TestGolden translates testdata/<case>/in.yaml (ConfigMap and Secret
// manifests) and compares every kind of resource, and the diagnostics, with
// the files beside it. Run with -update to rewrite them, then review the diff.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/in.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, in := range cases {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			res, diags := translateFile(t, in, caseOptions(t, dir))
			compareGolden(t, filepath.Join(dir, "diagnostics.txt"), []byte(diags))
			if res == nil {
				return
			}
			if err := translate.CheckDeep(res); err != nil {
				t.Fatalf("CheckDeep: %v", err)
			}
			noDeprecated(t, res)
			// What the server publishes: marshalled, versioned, and
			// proved Consistent() by go-control-plane's rules.
			if _, err := snapshot.NewGroupSnapshot(res); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			compareGolden(t, filepath.Join(dir, "listeners.yaml"), render(t, res.Listeners))
			compareGolden(t, filepath.Join(dir, "routes.yaml"), render(t, res.Routes))
			compareGolden(t, filepath.Join(dir, "clusters.yaml"), render(t, res.Clusters))
			compareGolden(t, filepath.Join(dir, "endpoints.yaml"), render(t, res.Endpoints))
			compareGolden(t, filepath.Join(dir, "secrets.yaml"), render(t, res.Secrets))
			compareGolden(t, filepath.Join(dir, "ratelimit.yaml"), render(t, res.RateLimitConfigs))
		})
	}
}

// noDeprecated fails on any deprecated field or enum value in the
// resources: Envoy accepts them with a warning until a release refuses
// them by default.
func noDeprecated(t *testing.T, res *translate.Resources) {
	t.Helper()
	var found []string
	for _, l := range res.Listeners {
		found = append(found, xdstest.Deprecated(l, "listener "+l.Name)...)
	}
	for _, r := range res.Routes {
		found = append(found, xdstest.Deprecated(r, "route "+r.Name)...)
	}
	for _, c := range res.Clusters {
		found = append(found, xdstest.Deprecated(c, "cluster "+c.Name)...)
	}
	for _, e := range res.Endpoints {
		found = append(found, xdstest.Deprecated(e, "endpoints "+e.ClusterName)...)
	}
	for _, s := range res.Secrets {
		found = append(found, xdstest.Deprecated(s, "secret "+s.Name)...)
	}
	if len(found) > 0 {
		t.Errorf("deprecated or invalid:\n%s", strings.Join(found, "\n"))
	}
}

// translateFile runs the whole path a server runs on a manifest file and
// returns the group's resources (nil when it could not be built) and every
// diagnostic as text.
func translateFile(t *testing.T, path string, opts goldenCase) (*translate.Resources, string) {
	t.Helper()
	f := watch.LoadFile(path)
	if f.Err != nil {
		return nil, "manifest: " + f.Err.Error() + "\n"
	}
	f.Path = filepath.Base(path)
	sources, secrets, _ := compile.FromFolder(watch.State{Files: []watch.FileState{f}})
	intents, diags := compile.NewStore().Update(sources, opts.Options.ResolveOptions())
	res, tdiags, err := compile.Group(intents, compile.Key(opts.Role, goldenGroup), compile.Secrets(secrets), opts.Options)
	diags = append(diags, tdiags...)
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d.Error())
		b.WriteString("\n")
	}
	if err != nil {
		b.WriteString("error: " + err.Error() + "\n")
	}
	return res, b.String()
}

// goldenCase is a case's options.yaml: the proxy role translated for, how
// private keys reach the gateways, and the server's mesh settings; without
// the file, a gateway without mesh, with authenticated xDS.
type goldenCase struct {
	Role translate.Role
	translate.Options
}

func caseOptions(t *testing.T, dir string) goldenCase {
	t.Helper()
	c := goldenCase{Role: translate.RoleGateway, Options: goldenOptions}
	data, err := os.ReadFile(filepath.Join(dir, "options.yaml"))
	if os.IsNotExist(err) {
		return c
	}
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		Role         string   `json:"role"`
		DNSResolvers []string `json:"dnsResolvers"`
		// PortMap: declared port -> listener port (--port-map).
		PortMap map[uint32]uint32 `json:"portMap"`
		// PrivateKeysInline false: xDS does not authenticate proxies.
		PrivateKeysInline    *bool  `json:"privateKeysInline"`
		OriginationSecretDir string `json:"originationSecretDir"`
		Mesh                 *struct {
			TrustDomain        string `json:"trustDomain"`
			GatewayCertificate string `json:"gatewayCertificate"`
			TrustBundle        string `json:"trustBundle"`
			PrivateKeysOverXDS bool   `json:"privateKeysOverXDS"`
		} `json:"mesh"`
		// RateLimitService: the gateways' rate limit service (global
		// rate limits).
		RateLimitService *struct {
			Address         string `json:"address"`
			TLS             bool   `json:"tls"`
			CAFile          string `json:"caFile"`
			ClientCertDir   string `json:"clientCertDir"`
			Timeout         string `json:"timeout"`
			FailureModeDeny bool   `json:"failureModeDeny"`
		} `json:"rateLimitService"`
	}
	if err := yaml.UnmarshalStrict(data, &o); err != nil {
		t.Fatalf("%s/options.yaml: %v", dir, err)
	}
	if o.Role != "" {
		c.Role = translate.Role(o.Role)
	}
	if o.PrivateKeysInline != nil {
		c.PrivateKeysInline = *o.PrivateKeysInline
	}
	c.OriginationSecretDir = o.OriginationSecretDir
	if o.PortMap != nil {
		c.PortMap = o.PortMap
	}
	for _, r := range o.DNSResolvers {
		ap, err := netip.ParseAddrPort(r)
		if err != nil {
			t.Fatalf("%s/options.yaml: dnsResolvers: %v", dir, err)
		}
		c.DNSResolvers = append(c.DNSResolvers, ap)
	}
	if r := o.RateLimitService; r != nil {
		c.RateLimitService = &translate.RateLimitServiceOptions{Address: r.Address, TLS: r.TLS, CAFile: r.CAFile, ClientCertDir: r.ClientCertDir, FailureModeDeny: r.FailureModeDeny}
		if r.Timeout != "" {
			d, err := time.ParseDuration(r.Timeout)
			if err != nil {
				t.Fatalf("%s/options.yaml: rateLimitService.timeout: %v", dir, err)
			}
			c.RateLimitService.Timeout = d
		}
		if err := c.RateLimitService.Check(); err != nil {
			t.Fatalf("%s/options.yaml: %v", dir, err)
		}
	}
	if m := o.Mesh; m != nil {
		c.Mesh = &translate.MeshOptions{
			TrustDomain: m.TrustDomain, Port: translate.DefaultMeshPort, GatewayAddress: translate.DefaultGatewayAddress,
			PrivateKeysOverXDS: m.PrivateKeysOverXDS,
			SidecarProxyPort:   translate.DefaultSidecarProxyPort, SidecarCapturePort: translate.DefaultSidecarCapturePort,
		}
		secret := func(s string) *translate.SecretKey {
			if s == "" {
				return nil
			}
			ns, name, _ := strings.Cut(s, "/")
			return &translate.SecretKey{Namespace: ns, Name: name}
		}
		c.Mesh.GatewayCertificate, c.Mesh.TrustBundle = secret(m.GatewayCertificate), secret(m.TrustBundle)
		if err := c.Mesh.Check(); err != nil {
			t.Fatalf("%s/options.yaml: %v", dir, err)
		}
	}
	return c
}

func render[M proto.Message](t *testing.T, msgs []M) []byte {
	t.Helper()
	var docs []string
	for _, m := range msgs {
		j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(y))
	}
	return []byte(strings.Join(docs, "---\n"))
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if len(got) == 0 {
			_ = os.Remove(path)
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		want, err = nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the translation (run go test ./internal/translate -run TestGolden -update and review the diff):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, a, b)
		}
	}
	return "(no line differs)"
}
