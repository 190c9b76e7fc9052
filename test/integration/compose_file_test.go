package integration

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
	"github.com/egress-xds/egress-xds/test/integration/fakeservices"
)

// loadCompose loads docker-compose.yaml as docker compose does, with env
// as the whole environment, so a broken file fails CI.
func loadCompose(t *testing.T, env ...string) (*types.Project, string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yaml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(env), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	return p, root
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("no service %s", name)
	}
	return s
}

// flag returns the value after name in a command line.
func flagValue(cmd []string, name string) string {
	if i := slices.Index(cmd, name); i >= 0 && i+1 < len(cmd) {
		return cmd[i+1]
	}
	return ""
}

// volume returns the mount of a service at target.
func volume(s types.ServiceConfig, target string) *types.ServiceVolumeConfig {
	for i := range s.Volumes {
		if s.Volumes[i].Target == target {
			return &s.Volumes[i]
		}
	}
	return nil
}

func networks(s types.ServiceConfig) []string {
	var out []string
	for n := range s.Networks {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func targets(s types.ServiceConfig) []uint32 {
	var out []uint32
	for _, p := range s.Ports {
		out = append(out, p.Target)
	}
	slices.Sort(out)
	return out
}

// The compose file agrees with the harness (composeEnv, service names and
// ports) and with the bootstrap, so the compose run is right by
// construction; and it keeps its promises: pinned images, no privileges,
// loopback-only ports, aliases for every declared host.
func TestComposeFile(t *testing.T) {
	p, root := loadCompose(t)
	env := composeEnv()
	var names []string
	for n := range p.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{svcClient, svcGateway1, svcGateway2, svcFakes, svcRateLimit, svcRedis, svcXDS}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
	certsDir := path.Dir(env.SystemCABundle)

	for _, s := range p.Services {
		if !slices.Contains(s.CapDrop, "ALL") || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: want cap_drop ALL and no-new-privileges", s.Name)
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" || port.Published != "" {
				t.Errorf("%s publishes %d on %q:%q; want 127.0.0.1 and a port Docker picks", s.Name, port.Target, port.HostIP, port.Published)
			}
		}
		// The rate limit project tags no releases: its image is pinned
		// to the commit the tests build (TestComposeRateLimit).
		if s.Build == nil && s.Name != svcRateLimit && !regexp.MustCompile(`:v?\d+\.\d+\.\d+$`).MatchString(s.Image) {
			t.Errorf("%s: image %q is not pinned to a release", s.Name, s.Image)
		}
	}

	xds := service(t, p, svcXDS)
	if xds.Build == nil || xds.Build.Context != root || filepath.Base(xds.Build.Dockerfile) != "Dockerfile" || !xds.ReadOnly {
		t.Errorf("xds-server: build %+v read_only %v; want the root Dockerfile, read-only", xds.Build, xds.ReadOnly)
	}
	if hc := strings.Join(xds.HealthCheck.Test, " "); hc != "CMD /xds-server healthcheck" {
		t.Errorf("xds-server healthcheck %q; want the binary's own healthcheck (distroless has no shell)", hc)
	}
	cmd := []string(xds.Command)
	mesh := env.meshOptions()
	if flagValue(cmd, "--config-dir") != "/config" || flagValue(cmd, "--system-ca-bundle") != env.SystemCABundle ||
		slices.Contains(cmd, "--port-map") || slices.Contains(cmd, "--forward-proxy-port") || env.ForwardProxyPort != 3128 ||
		flagValue(cmd, "--mesh-port") != strconv.Itoa(int(mesh.Port)) || flagValue(cmd, "--mesh-cert-dir") != mesh.CertDir ||
		flagValue(cmd, "--mesh-gateway-address") != mesh.GatewayAddress || slices.Contains(cmd, "--mesh-trust-domain") ||
		flagValue(cmd, "--origination-secret-dir") != env.OriginationSecretDir ||
		flagValue(cmd, "--ratelimit-address") != env.RateLimitAddress ||
		mesh.TrustDomain != "cluster.local" {
		t.Errorf("xds-server command %v disagrees with composeEnv %+v", cmd, env)
	}
	if v := volume(xds, "/config/intents"); v == nil || v.Type != types.VolumeTypeBind || !v.ReadOnly ||
		v.Source != filepath.Join(root, "test/integration", composeIntents) {
		t.Errorf("xds-server intents mount %+v", v)
	}
	if v := volume(xds, "/config/certs"); v == nil || v.Source != "certs" || !v.ReadOnly {
		t.Errorf("xds-server certs mount %+v", v)
	}
	if got := targets(xds); !slices.Equal(got, []uint32{adminPort, xdsPort}) {
		t.Errorf("xds-server ports %v", got)
	}

	// The gateways: the shipped bootstrap, reaching xds-server over control.
	def, err := bootstrap.Default()
	if err != nil {
		t.Fatal(err)
	}
	sa := def.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != svcXDS || sa.GetPortValue() != xdsPort || !slices.Contains(networks(xds), "control") {
		t.Errorf("the bootstrap connects to %s:%d; the server is %s:%d on %v", sa.GetAddress(), sa.GetPortValue(), svcXDS, xdsPort, networks(xds))
	}
	envoyMinor := goControlPlaneEnvoyMinor(t, root)
	for _, name := range []string{svcGateway1, svcGateway2} {
		gw := service(t, p, name)
		m := regexp.MustCompile(`^envoyproxy/envoy:v1\.(\d+)\.\d+$`).FindStringSubmatch(gw.Image)
		if m == nil {
			t.Errorf("%s: image %q, want the official envoyproxy/envoy:v1.X.Y", name, gw.Image)
		} else if minor, _ := strconv.Atoi(m[1]); minor < envoyMinor {
			t.Errorf("%s: Envoy 1.%d is older than the xDS API the server is built with (go-control-plane/envoy 1.%d)", name, minor, envoyMinor)
		}
		cmd := []string(gw.Command)
		boot := volume(gw, flagValue(cmd, "-c"))
		if cmd[0] != "envoy" || boot == nil || boot.Source != filepath.Join(root, "envoy/bootstrap/egress-gateway.yaml") || !boot.ReadOnly {
			t.Errorf("%s: command %v does not run the shipped bootstrap, mounted read-only (%+v)", name, cmd, boot)
		}
		if flagValue(cmd, "--service-node") != name || flagValue(cmd, "--service-cluster") != group {
			t.Errorf("%s: command %v; want --service-node %s --service-cluster %s", name, cmd, name, group)
		}
		if v := volume(gw, certsDir); v == nil || v.Source != "certs" || !v.ReadOnly {
			t.Errorf("%s: the test CA is not at %s: %+v", name, certsDir, v)
		}
		if gw.User == "" || gw.User == "root" || gw.User == "0" || len(gw.CapAdd) > 0 {
			t.Errorf("%s runs as %q with capabilities %v", name, gw.User, gw.CapAdd)
		}
		// No port map: listening on the declared ports must need no privilege.
		if len(env.PortMap) > 0 || gw.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" {
			t.Errorf("%s: sysctls %v, port map %v", name, gw.Sysctls, env.PortMap)
		}
		hc := strings.Join(gw.HealthCheck.Test, " ")
		if !strings.Contains(hc, fmt.Sprintf("/dev/tcp/127.0.0.1/%d", bootstrap.DefaultAdminPort)) || !strings.Contains(hc, "/ready") {
			t.Errorf("%s: healthcheck %q does not ask the admin interface for /ready", name, hc)
		}
		// Gateways start once the server is ready (xds-server healthcheck):
		// their first ADS request is then answered at once.
		if gw.DependsOn[svcXDS].Condition != types.ServiceConditionHealthy || gw.DependsOn[svcFakes].Condition != types.ServiceConditionHealthy {
			t.Errorf("%s depends on %+v", name, gw.DependsOn)
		}
		if got := networks(gw); !slices.Equal(got, []string{"control", "upstream", "workloads"}) {
			t.Errorf("%s networks %v", name, got)
		}
	}
	var listenerPorts []uint32
	for _, p := range declaredPorts {
		listenerPorts = append(listenerPorts, env.listenerPort(p))
	}
	listenerPorts = append(listenerPorts, env.ForwardProxyPort, env.MeshPort)
	slices.Sort(listenerPorts)
	if got := targets(service(t, p, svcGateway1)); !slices.Equal(got, listenerPorts) {
		t.Errorf("%s publishes %v, its listeners are %v", svcGateway1, got, listenerPorts)
	}
	if got := targets(service(t, p, svcGateway2)); !slices.Equal(got, []uint32{env.ForwardProxyPort}) {
		t.Errorf("%s publishes %v, want the forward proxy %d", svcGateway2, got, env.ForwardProxyPort)
	}

	// Every host the intents declare resolves to the first gateway from
	// the client, and to nothing else.
	want := append(declaredHosts(t, env), notDeclaredHost)
	slices.Sort(want)
	for _, s := range p.Services {
		for net, cfg := range s.Networks {
			var got []string
			if cfg != nil {
				got = slices.Sorted(slices.Values(cfg.Aliases))
			}
			if s.Name == svcGateway1 && net == "workloads" {
				if !slices.Equal(got, want) {
					t.Errorf("%s aliases on workloads %v, want the declared hosts %v", s.Name, got, want)
				}
			} else if len(got) > 0 {
				t.Errorf("%s has aliases %v on %s", s.Name, got, net)
			}
		}
	}

	fakes := service(t, p, svcFakes)
	if fakes.Build == nil || fakes.Build.Context != root || !strings.HasSuffix(fakes.Build.Dockerfile, "compose/fakeservices.Dockerfile") {
		t.Errorf("fakeservices build %+v", fakes.Build)
	}
	if got := networks(fakes); !slices.Equal(got, []string{"upstream"}) || fakes.HealthCheck == nil {
		t.Errorf("fakeservices: networks %v, healthcheck %v", got, fakes.HealthCheck)
	}
	if v := volume(fakes, certsDir); v == nil || v.ReadOnly || flagValue(fakes.Command, "--certs-dir") != certsDir {
		t.Errorf("fakeservices: the CA folder %s must be writable and its --certs-dir: %+v %v", certsDir, v, fakes.Command)
	}
	if got := targets(fakes); !slices.Equal(got, []uint32{fakeservices.ControlPort}) {
		t.Errorf("fakeservices publishes %v", got)
	}
	for name, u := range env.Upstreams {
		if u.Host != svcFakes {
			t.Errorf("upstream %s is %s, not the fakeservices service", name, u)
		}
	}

	client := service(t, p, svcClient)
	if got := networks(client); !slices.Equal(got, []string{"workloads"}) {
		t.Errorf("client networks %v: it must reach the outside only through the gateways", got)
	}
	if v := volume(client, certsDir); v == nil || !v.ReadOnly {
		t.Errorf("client: no read-only CA at %s", certsDir)
	}
	if client.DependsOn[svcGateway1].Condition != types.ServiceConditionHealthy || client.DependsOn[svcGateway2].Condition != types.ServiceConditionHealthy {
		t.Errorf("client depends on %+v", client.DependsOn)
	}
}

// The global rate limit service of the stack: the commit the tests build,
// its configuration from xds-server over xDS as the rate limit role, its
// counters in a Redis that nothing else reaches, its gRPC port where the
// gateways are told to ask.
func TestComposeRateLimit(t *testing.T) {
	p, root := loadCompose(t)
	env := composeEnv()
	rl := service(t, p, svcRateLimit)
	mod, err := os.ReadFile(filepath.Join(root, "tools/ratelimit/go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github\.com/envoyproxy/ratelimit v\S+-([0-9a-f]{12})\b`).FindSubmatch(mod)
	if m == nil || rl.Image != "envoyproxy/ratelimit:"+string(m[1][:8]) {
		t.Errorf("ratelimit image %q: want envoyproxy/ratelimit:<the first 8 hex digits of the commit tools/ratelimit/go.mod pins>", rl.Image)
	}
	e := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	if e(rl, "CONFIG_TYPE") != "GRPC_XDS_SOTW" || e(rl, "CONFIG_GRPC_XDS_SERVER_URL") != fmt.Sprintf("%s:%d", svcXDS, xdsPort) ||
		e(rl, "CONFIG_GRPC_XDS_NODE_METADATA") != snapshot.RoleMetadataKey+"="+string(translate.RoleRateLimit) {
		t.Errorf("ratelimit does not fetch its configuration from %s:%d as the rate limit role: %v", svcXDS, xdsPort, rl.Environment)
	}
	if e(rl, "BACKEND_TYPE") != "redis" || e(rl, "REDIS_URL") != svcRedis+":6379" {
		t.Errorf("ratelimit counts in %q %q, want redis at %s:6379", e(rl, "BACKEND_TYPE"), e(rl, "REDIS_URL"), svcRedis)
	}
	if env.RateLimitAddress != svcRateLimit+":"+e(rl, "GRPC_PORT") {
		t.Errorf("the gateways ask %s, the service listens on %s:%s", env.RateLimitAddress, svcRateLimit, e(rl, "GRPC_PORT"))
	}
	if e(rl, "DEBUG_HOST") != "127.0.0.1" {
		t.Errorf("ratelimit's debug port is open on %q", e(rl, "DEBUG_HOST"))
	}
	xds, gw := service(t, p, svcXDS), service(t, p, svcGateway1)
	for _, n := range networks(xds) {
		if !slices.Contains(networks(rl), n) || !slices.Contains(networks(gw), n) {
			t.Errorf("network %s: xds-server %v, ratelimit %v, gateway %v: want one the three share", n, networks(xds), networks(rl), networks(gw))
		}
	}
	redis := service(t, p, svcRedis)
	if got := networks(redis); len(got) != 1 || !slices.Contains(networks(rl), got[0]) {
		t.Errorf("redis networks %v: want one it shares with ratelimit alone", got)
	}
	for _, s := range p.Services {
		if s.Name != svcRedis && s.Name != svcRateLimit && slices.Contains(networks(s), networks(redis)[0]) {
			t.Errorf("%s reaches redis (network %s)", s.Name, networks(redis)[0])
		}
	}
	for _, s := range []types.ServiceConfig{rl, redis} {
		if s.User == "" || s.User == "root" || s.User == "0" || !s.ReadOnly || len(s.Ports) > 0 {
			t.Errorf("%s: user %q, read-only %v, published %v: want a user, read-only, nothing published", s.Name, s.User, s.ReadOnly, s.Ports)
		}
	}
	if rl.DependsOn[svcRedis].Condition != types.ServiceConditionHealthy || rl.DependsOn[svcXDS].Condition != types.ServiceConditionHealthy || redis.HealthCheck == nil {
		t.Errorf("ratelimit depends on %+v; redis healthcheck %v", rl.DependsOn, redis.HealthCheck)
	}
}

// The harness points the stack at its own folders.
func TestComposeFileTakesTheTestFolders(t *testing.T) {
	intents, certs := t.TempDir(), t.TempDir()
	p, _ := loadCompose(t, "EGRESS_XDS_INTENTS="+intents, "EGRESS_XDS_CERTS="+certs)
	for _, m := range []struct {
		svc, target, source string
		ro                  bool
	}{
		{svcXDS, "/config/intents", intents, true}, {svcXDS, "/config/certs", certs, true},
		{svcFakes, "/certs", certs, false}, {svcGateway1, "/certs", certs, true}, {svcClient, "/certs", certs, true},
	} {
		v := volume(service(t, p, m.svc), m.target)
		if v == nil || v.Type != types.VolumeTypeBind || v.Source != m.source || v.ReadOnly != m.ro {
			t.Errorf("%s %s: %+v, want a bind of %s (read-only %v)", m.svc, m.target, v, m.source, m.ro)
		}
	}
}

// goControlPlaneEnvoyMinor is Y of go-control-plane/envoy v1.Y in go.mod:
// the Envoy API release the server's resources are built from.
func goControlPlaneEnvoyMinor(t *testing.T, root string) int {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/envoyproxy/go-control-plane/envoy v1\.(\d+)\.`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod requires no github.com/envoyproxy/go-control-plane/envoy")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// destination is what the cross-checks read of an intent.
type destination struct {
	Host  string `yaml:"host"`
	Ports []struct {
		Protocol string `yaml:"protocol"`
	} `yaml:"ports"`
	TLS *struct {
		SNI string `yaml:"sni"`
	} `yaml:"tls"`
}

// destinations are those of every intent of the table, before and after
// its changes.
func destinations(t *testing.T, e *Env) []destination {
	t.Helper()
	var out []destination
	for i := range scenarios {
		sc := &scenarios[i]
		intents := []func(*Env) string{sc.Intent}
		if sc.Then != nil {
			intents = append(intents, sc.Then.Intent)
		}
		for _, in := range intents {
			text := render(sc, e, in)
			if text == "" {
				continue
			}
			cms, _, err := watch.ParseManifests([]byte(text))
			if err != nil || len(cms) != 1 {
				t.Fatalf("%s: %v", sc.Name, err)
			}
			var doc struct {
				Destinations []destination `yaml:"destinations"`
			}
			if err := yaml.Unmarshal([]byte(cms[0].Data["egress.yaml"]), &doc); err != nil {
				t.Fatalf("%s: %v", sc.Name, err)
			}
			out = append(out, doc.Destinations...)
		}
	}
	return out
}

// Names under localhost resolve to loopback wherever they are looked up
// (RFC 6761), so no alias can send them to the gateway: the scenario that
// uses them (dynamic-ports) runs its traffic with local gateways only.
func declaredHosts(t *testing.T, e *Env) []string {
	var out []string
	for _, d := range destinations(t, e) {
		// Names under localhost resolve to the gateway itself in a
		// container, and those of the test DNS zone only where it runs:
		// their scenarios' traffic runs with local gateways alone, and
		// no alias must make the gateway resolve them to itself.
		if d.Host == "localhost" || strings.HasSuffix(d.Host, ".localhost") || strings.HasSuffix(d.Host, "."+fakeservices.DNSZone) {
			continue
		}
		if !slices.Contains(out, d.Host) {
			out = append(out, d.Host)
		}
	}
	return out
}

// The fake TLS servers present a certificate for every TLS name the
// scenarios use, except the one meant to fail verification.
func TestFakeCertificateCoversTheScenarios(t *testing.T) {
	for _, d := range destinations(t, composeEnv()) {
		name := d.Host
		tls := d.TLS != nil
		if tls && d.TLS.SNI != "" {
			name = d.TLS.SNI
		}
		for _, p := range d.Ports {
			tls = tls || p.Protocol == "TLS" || p.Protocol == "HTTPS"
		}
		if covered := slices.Contains(fakeservices.DefaultNames, name); tls && covered != (name != wrongCertHost) {
			t.Errorf("%s: in the fake certificate: %v", name, covered)
		}
	}
}
