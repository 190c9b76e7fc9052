package deploy_test

import (
	"crypto/x509"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// certificates are deploy/'s cert-manager Certificates by Secret name.
func certificates(objs []object) map[string]*certManagerObject {
	out := map[string]*certManagerObject{}
	for _, c := range find[*certManagerObject](objs) {
		if c.Kind == "Certificate" {
			out[c.Spec.SecretName] = c
		}
	}
	return out
}

// fileIn checks that file is in the folder where container c mounts the
// Secret secret, and that the Secret is not readable by others.
func fileIn(t *testing.T, d *appsv1.Deployment, c corev1.Container, what, file, secret string) {
	t.Helper()
	dir, vol := mountOf(d.Spec.Template.Spec, c, secret)
	if dir == "" || path.Dir(file) != dir {
		t.Errorf("%s: %s %q is not in the Secret %s (mounted at %q)", d.Name, what, file, secret, dir)
		return
	}
	if vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode&0o007 != 0 {
		t.Errorf("%s: the Secret %s is readable by others", d.Name, secret)
	}
}

// servicePort is the port of Service name that host:port reaches, by the
// Service's names in the namespace.
func servicePort(t *testing.T, objs []object, name, hostPort string) *corev1.ServicePort {
	t.Helper()
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("%q: %v", hostPort, err)
	}
	if names := serviceNames(name); !slices.Contains(names, host) {
		t.Errorf("%s does not name the Service %s (%v)", hostPort, name, names)
	}
	s := one[*corev1.Service](t, objs, name)
	for i, p := range s.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return &s.Spec.Ports[i]
		}
	}
	t.Fatalf("%s: the Service %s has no port %s", hostPort, name, port)
	return nil
}

func serviceNames(name string) []string {
	return []string{name, name + "." + namespace, name + "." + namespace + ".svc", name + "." + namespace + ".svc.cluster.local"}
}

// rateLimitPod is deploy/'s objects, its Certificates, and the rate limit
// service's Deployment, container and environment.
func rateLimitPod(t *testing.T) ([]object, map[string]*certManagerObject, *appsv1.Deployment, corev1.Container, map[string]string) {
	t.Helper()
	objs := manifests(t)
	d := one[*appsv1.Deployment](t, objs, "ratelimit")
	c := d.Spec.Template.Spec.Containers[0]
	return objs, certificates(objs), d, c, env(c)
}

// The gateways reach the rate limit service over TLS, verifying it with
// the CA of their own xDS Secret against the name they dial, which the
// service's certificate carries; xds-server's flags are valid.
func TestRateLimitServiceForGateways(t *testing.T) {
	objs, certs, rl, c, re := rateLimitPod(t)
	srv := one[*appsv1.Deployment](t, objs, "xds-server")
	e := env(srv.Spec.Template.Spec.Containers[0])
	addr := e["EGRESS_XDS_RATELIMIT_ADDRESS"]
	o := translate.RateLimitServiceOptions{Address: addr, TLS: e["EGRESS_XDS_RATELIMIT_TLS"] == "true", CAFile: e["EGRESS_XDS_RATELIMIT_CA_FILE"],
		ClientCertDir: e["EGRESS_XDS_RATELIMIT_CLIENT_CERT_DIR"]}
	if err := o.Check(); err != nil || !o.TLS {
		t.Fatalf("xds-server reaches the rate limit service at %q, TLS %v: %v; want TLS", addr, o.TLS, err)
	}
	// Mutual TLS: the gateways present their xDS certificate, and the
	// service requires one of that CA naming what the gateways' carry
	// (xds_test.go checks the gateways' Certificate holds that name).
	if o.ClientCertDir != gatewayCertDir {
		t.Errorf("EGRESS_XDS_RATELIMIT_CLIENT_CERT_DIR %q: want the gateways' own xDS Secret, %s", o.ClientCertDir, gatewayCertDir)
	}
	if re["GRPC_CLIENT_TLS_SAN"] == "" || !strings.HasSuffix(re["GRPC_CLIENT_TLS_SAN"], ".local") {
		t.Errorf("GRPC_CLIENT_TLS_SAN %q: the service must require a name no public CA issues (its client CA pool includes the system roots)", re["GRPC_CLIENT_TLS_SAN"])
	}
	if path.Base(re["GRPC_CLIENT_TLS_CACERT"]) != "ca.crt" {
		t.Errorf("GRPC_CLIENT_TLS_CACERT %q: want the ca.crt of the service's xDS Secret", re["GRPC_CLIENT_TLS_CACERT"])
	}
	fileIn(t, rl, c, "GRPC_CLIENT_TLS_CACERT", re["GRPC_CLIENT_TLS_CACERT"], "ratelimit-xds")
	if *certs["ratelimit-xds"].Spec.IssuerRef != *certs["egress-gateway-xds"].Spec.IssuerRef {
		t.Error("the CA the service checks callers with is not the one of the gateways' certificates")
	}
	if o.CAFile != path.Join(gatewayCertDir, "ca.crt") {
		t.Errorf("EGRESS_XDS_RATELIMIT_CA_FILE %q: want the CA of the gateways' own xDS Secret, %s/ca.crt", o.CAFile, gatewayCertDir)
	}
	host, _, _ := net.SplitHostPort(addr)
	sp := servicePort(t, objs, "ratelimit", addr)
	if p := ports(c)[sp.TargetPort.String()]; strconv.Itoa(int(p)) != re["GRPC_PORT"] {
		t.Errorf("the Service's port %d targets %q (%d), the service's gRPC port is %s", sp.Port, sp.TargetPort.String(), p, re["GRPC_PORT"])
	}
	if re["GRPC_SERVER_USE_TLS"] != "true" {
		t.Error("the rate limit service's gRPC is plaintext")
	}
	serving := certs["ratelimit-tls"]
	if serving == nil || !slices.Contains(serving.Spec.DNSNames, host) || !slices.Contains(serving.Spec.Usages, "server auth") {
		t.Fatalf("no serving Certificate naming %s: %+v", host, serving)
	}
	if *serving.Spec.IssuerRef != *certs["egress-gateway-xds"].Spec.IssuerRef {
		t.Error("the service's certificate and the gateways' CA come from different issuers")
	}
	fileIn(t, rl, c, "GRPC_SERVER_TLS_CERT", re["GRPC_SERVER_TLS_CERT"], "ratelimit-tls")
	fileIn(t, rl, c, "GRPC_SERVER_TLS_KEY", re["GRPC_SERVER_TLS_KEY"], "ratelimit-tls")
	checkService(t, one[*corev1.Service](t, objs, "ratelimit"), rl, map[int32]bool{sp.Port: true})
	checkHardened(t, "ratelimit", rl.Spec.Template.Spec, c)
	if a := rl.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the rate limit service must not get an API token")
	}
	// Its HTTP port answers the readiness probe, and the debug port stays
	// inside the pod.
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthcheck" || strconv.Itoa(int(ports(c)[p.HTTPGet.Port.String()])) != re["PORT"] {
		t.Errorf("readiness probe %+v: want /healthcheck on PORT %s", p, re["PORT"])
	}
	if re["DEBUG_HOST"] != "127.0.0.1" || re["HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED"] != "true" {
		t.Errorf("DEBUG_HOST %q, HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED %q", re["DEBUG_HOST"], re["HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED"])
	}
	// The image is the version the tests build and prove.
	mod, err := os.ReadFile("../tools/ratelimit/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github\.com/envoyproxy/ratelimit v\S+-([0-9a-f]{12})\b`).FindSubmatch(mod)
	if m == nil || c.Image != "envoyproxy/ratelimit:"+string(m[1][:8]) {
		t.Errorf("image %q: want envoyproxy/ratelimit:<the first 8 hex digits of the commit tools/ratelimit/go.mod pins>", c.Image)
	}
}

// The rate limit service fetches its configuration from xds-server over
// secure xDS as the rate limit role, with a workload certificate that node
// authorization admits for that role: the name of its ServiceAccount.
func TestRateLimitServiceFetchesOverXDS(t *testing.T) {
	objs, certs, rl, c, e := rateLimitPod(t)
	if e["CONFIG_TYPE"] != "GRPC_XDS_SOTW" || e["CONFIG_GRPC_XDS_NODE_METADATA"] != snapshot.RoleMetadataKey+"="+string(translate.RoleRateLimit) {
		t.Errorf("CONFIG_TYPE %q, CONFIG_GRPC_XDS_NODE_METADATA %q: want GRPC_XDS_SOTW and %s=%s", e["CONFIG_TYPE"], e["CONFIG_GRPC_XDS_NODE_METADATA"], snapshot.RoleMetadataKey, translate.RoleRateLimit)
	}
	sp := servicePort(t, objs, "xds-server", e["CONFIG_GRPC_XDS_SERVER_URL"])
	if sp.Port != bootstrap.DefaultXDSPort {
		t.Errorf("CONFIG_GRPC_XDS_SERVER_URL %q is not the xDS port %d", e["CONFIG_GRPC_XDS_SERVER_URL"], bootstrap.DefaultXDSPort)
	}
	if e["CONFIG_GRPC_XDS_SERVER_USE_TLS"] != "true" || !slices.Contains(certs["xds-server-tls"].Spec.DNSNames, e["CONFIG_GRPC_XDS_SERVER_TLS_SAN"]) {
		t.Errorf("xDS TLS %q, SAN %q: want TLS, checking a name of xds-server's certificate", e["CONFIG_GRPC_XDS_SERVER_USE_TLS"], e["CONFIG_GRPC_XDS_SERVER_TLS_SAN"])
	}
	id := certs["ratelimit-xds"]
	if id == nil || len(id.Spec.URIs) != 1 || len(id.Spec.DNSNames) != 0 || !slices.Contains(id.Spec.Usages, "client auth") {
		t.Fatalf("ratelimit-xds Certificate %+v: want exactly one URI SAN and client auth", id)
	}
	for what, file := range map[string]string{"CONFIG_GRPC_XDS_CLIENT_TLS_CERT": "tls.crt", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY": "tls.key", "CONFIG_GRPC_XDS_SERVER_TLS_CACERT": "ca.crt"} {
		if path.Base(e[what]) != file {
			t.Errorf("%s %q: want the Secret's %s", what, e[what], file)
		}
		fileIn(t, rl, c, what, e[what], "ratelimit-xds")
	}
	if *id.Spec.IssuerRef != *certs["xds-server-tls"].Spec.IssuerRef {
		t.Error("the service's xDS certificate and xds-server's come from different issuers")
	}
	// What xds-server's node authorization makes of that identity.
	srv := one[*appsv1.Deployment](t, objs, "xds-server")
	td := env(srv.Spec.Template.Spec.Containers[0])["EGRESS_XDS_XDS_TRUST_DOMAIN"]
	want := "spiffe://" + td + "/ns/" + namespace + "/sa/" + rl.Spec.Template.Spec.ServiceAccountName
	if id.Spec.URIs[0] != want {
		t.Errorf("the service's identity %s, want its ServiceAccount's %s", id.Spec.URIs[0], want)
	}
	one[*corev1.ServiceAccount](t, objs, rl.Spec.Template.Spec.ServiceAccountName)
	ca, err := testpki.NewCA("deploy-test", 3600e9)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.TLSCertificate(testpki.Leaf{URIs: id.Spec.URIs, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(leaf.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if ident := xds.IdentityOf(x, td); ident.Problem != "" || !ident.Workload {
		t.Errorf("node authorization reads %s as %+v: not a workload identity, which the rate limit role requires", want, ident)
	}
}

// Redis takes mutual TLS only, from the rate limit service, whose client
// certificate comes from the same CA as Redis's.
func TestRedisForTheRateLimitService(t *testing.T) {
	objs, certs, rl, rc, e := rateLimitPod(t)
	if e["BACKEND_TYPE"] != "redis" || e["REDIS_TLS"] != "true" || e["REDIS_TYPE"] != "SINGLE" || e["REDIS_SOCKET_TYPE"] != "tcp" {
		t.Errorf("BACKEND_TYPE %q REDIS_TLS %q REDIS_TYPE %q REDIS_SOCKET_TYPE %q", e["BACKEND_TYPE"], e["REDIS_TLS"], e["REDIS_TYPE"], e["REDIS_SOCKET_TYPE"])
	}
	sp := servicePort(t, objs, "redis", e["REDIS_URL"])
	host, _, _ := net.SplitHostPort(e["REDIS_URL"])
	for _, what := range []string{"REDIS_TLS_CACERT", "REDIS_TLS_CLIENT_CERT", "REDIS_TLS_CLIENT_KEY"} {
		fileIn(t, rl, rc, what, e[what], "ratelimit-xds")
	}
	if !slices.Contains(certs["ratelimit-xds"].Spec.Usages, "client auth") {
		t.Error("the service's certificate cannot authenticate a client")
	}
	rd := one[*appsv1.Deployment](t, objs, "redis")
	c := rd.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	serving := certs["redis-tls"]
	if serving == nil || !slices.Contains(serving.Spec.DNSNames, host) || *serving.Spec.IssuerRef != *certs["ratelimit-xds"].Spec.IssuerRef {
		t.Fatalf("Redis's Certificate %+v does not name %s or comes from another issuer than the service's", serving, host)
	}
	for flag, file := range map[string]string{"--tls-cert-file": "tls.crt", "--tls-key-file": "tls.key", "--tls-ca-cert-file": "ca.crt"} {
		i := slices.Index(c.Args, flag)
		if i < 0 || i+1 == len(c.Args) || path.Base(c.Args[i+1]) != file {
			t.Errorf("redis %s: want the Secret's %s in %q", flag, file, args)
			continue
		}
		fileIn(t, rd, c, flag, c.Args[i+1], "redis-tls")
	}
	if !strings.Contains(args, "--port 0 ") || !strings.Contains(args, "--tls-auth-clients yes") ||
		!strings.Contains(args, "--tls-port "+strconv.Itoa(int(ports(c)[sp.TargetPort.String()]))) {
		t.Errorf("redis %q: want no plaintext port, clients' certificates required, TLS on the Service's target port", args)
	}
	if !regexp.MustCompile(`^redis:\d+\.\d+\.\d+$`).MatchString(c.Image) {
		t.Errorf("redis image %q is not pinned to a release", c.Image)
	}
	checkService(t, one[*corev1.Service](t, objs, "redis"), rd, map[int32]bool{sp.Port: true})
	checkHardened(t, "redis", rd.Spec.Template.Spec, c)
}

// Only the gateways reach the rate limit service's gRPC port, and only the
// service reaches Redis.
func TestRateLimitNetworkPolicies(t *testing.T) {
	objs := manifests(t)
	for _, c := range []struct{ policy, to, port, from string }{
		{"ratelimit", "ratelimit", "grpc-ratelimit", "egress-gateway"},
		{"redis", "redis", "tls-redis", "ratelimit"},
	} {
		np := one[*networkingv1.NetworkPolicy](t, objs, c.policy)
		to := one[*appsv1.Deployment](t, objs, c.to)
		from := one[*appsv1.Deployment](t, objs, c.from)
		for k, v := range np.Spec.PodSelector.MatchLabels {
			if to.Spec.Template.Labels[k] != v {
				t.Errorf("NetworkPolicy %s selects %s=%s, which the pods of %s lack", np.Name, k, v, c.to)
			}
		}
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			t.Errorf("NetworkPolicy %s: policy types %v", np.Name, np.Spec.PolicyTypes)
		}
		admitted := false
		for _, r := range np.Spec.Ingress {
			opens := len(r.Ports) == 0
			for _, p := range r.Ports {
				opens = opens || p.Port == nil || p.Port.String() == c.port
			}
			if !opens {
				continue
			}
			if len(r.From) == 0 {
				t.Errorf("NetworkPolicy %s opens %s to every pod", np.Name, c.port)
			}
			for _, f := range r.From {
				if f.PodSelector == nil || f.NamespaceSelector != nil || f.IPBlock != nil {
					t.Errorf("NetworkPolicy %s opens %s beyond pods of its namespace: %+v", np.Name, c.port, f)
					continue
				}
				for k, v := range f.PodSelector.MatchLabels {
					if from.Spec.Template.Labels[k] != v {
						t.Errorf("NetworkPolicy %s admits %s=%s to %s, not the pods of %s", np.Name, k, v, c.port, c.from)
					}
				}
				admitted = admitted || len(f.PodSelector.MatchLabels) > 0
			}
		}
		if !admitted {
			t.Errorf("NetworkPolicy %s does not admit %s to %s", np.Name, c.from, c.port)
		}
	}
}
