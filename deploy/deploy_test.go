// Package deploy_test checks the manifests of deploy/: every object parses
// strictly with the client-go scheme, RBAC grants exactly what the
// Kubernetes source uses, and the pieces fit together (the Deployment
// runs as the bound ServiceAccount, probes and Services name real ports,
// the gateway's bootstrap ConfigMap is what envoy/bootstrap renders, and
// xDS is secured by the cert-manager Certificates of xds-certificates.yaml).
package deploy_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/egress-xds/egress-xds/internal/watch"
)

var update = flag.Bool("update", false, "rewrite egress-gateway-bootstrap.yaml from envoy/bootstrap (secure xDS)")

const (
	namespace      = "egress-xds"
	bootstrapCM    = "egress-gateway-bootstrap.yaml"
	bootstrapKey   = "egress-gateway.yaml"
	serviceAccount = "xds-server"
)

type object struct {
	file string
	obj  runtime.Object
}

// manifests parses every manifest of the folder (kustomization.yaml
// aside), strictly: an unknown or misspelt field fails.
func manifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	var out []object
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, _, err := strict.Decode(doc, nil, nil)
			if err != nil && isCertManager(doc) {
				obj, err = decodeCertManager(doc)
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			out = append(out, object{file: f, obj: obj})
		}
	}
	if len(out) == 0 {
		t.Fatal("no manifests")
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

func find[T runtime.Object](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func one[T runtime.Object](t *testing.T, objs []object, name string) T {
	t.Helper()
	var zero T
	for _, o := range find[T](objs) {
		if any(o).(interface{ GetName() string }).GetName() == name {
			return o
		}
	}
	t.Fatalf("no %T named %s", zero, name)
	return zero
}

// Every manifest is listed in kustomization.yaml and every listed file
// exists; every namespaced object is in the project's namespace, which the
// manifests create.
func TestKustomizationAndNamespaces(t *testing.T) {
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatal(err)
	}
	if k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml kind %q", k.Kind)
	}
	files, _ := filepath.Glob("*.yaml")
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	got := append([]string(nil), k.Resources...)
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("kustomization resources %v, files %v", got, want)
	}

	objs := manifests(t)
	one[*corev1.Namespace](t, objs, namespace)
	for _, o := range objs {
		m := o.obj.(interface {
			GetNamespace() string
			GetName() string
		})
		switch o.obj.(type) {
		case *corev1.Namespace, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *admissionregistrationv1.ValidatingWebhookConfiguration:
			if m.GetNamespace() != "" {
				t.Errorf("%s: cluster-scoped %s has a namespace", o.file, m.GetName())
			}
		default:
			if m.GetNamespace() != namespace {
				t.Errorf("%s: %T %s in namespace %q, want %s", o.file, o.obj, m.GetName(), m.GetNamespace(), namespace)
			}
		}
	}
}

type grant struct{ group, resource, verb string }

// RBAC grants exactly watch.RequiredRBAC, to the ServiceAccount the
// control plane runs as, and nothing else to anyone.
func TestRBACGrantsExactlyWhatTheCodeUses(t *testing.T) {
	objs := manifests(t)
	if rs := find[*rbacv1.Role](objs); len(rs) != 0 {
		t.Errorf("unexpected Roles: %d", len(rs))
	}
	if rbs := find[*rbacv1.RoleBinding](objs); len(rbs) != 0 {
		t.Errorf("unexpected RoleBindings: %d", len(rbs))
	}
	roles := find[*rbacv1.ClusterRole](objs)
	if len(roles) != 1 {
		t.Fatalf("%d ClusterRoles, want 1", len(roles))
	}
	role := roles[0]
	got := map[grant]bool{}
	for _, r := range role.Rules {
		if len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
			t.Errorf("rule %+v: resourceNames/nonResourceURLs are not expected", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" {
						t.Errorf("wildcard in rule %+v", r)
					}
					got[grant{g, res, v}] = true
				}
			}
		}
	}
	want := map[grant]bool{}
	for _, r := range watch.RequiredRBAC {
		for _, v := range r.Verbs {
			want[grant{r.APIGroup, r.Resource, v}] = true
		}
	}
	for g := range got {
		if !want[g] {
			t.Errorf("granted but not used by the code: %s %q/%s", g.verb, g.group, g.resource)
		}
	}
	for g := range want {
		if !got[g] {
			t.Errorf("used by the code but not granted: %s %q/%s", g.verb, g.group, g.resource)
		}
	}

	bindings := find[*rbacv1.ClusterRoleBinding](objs)
	if len(bindings) != 1 {
		t.Fatalf("%d ClusterRoleBindings, want 1", len(bindings))
	}
	b := bindings[0]
	if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != role.Name || b.RoleRef.APIGroup != rbacv1.GroupName {
		t.Errorf("binding roleRef %+v, want ClusterRole %s", b.RoleRef, role.Name)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != serviceAccount || b.Subjects[0].Namespace != namespace {
		t.Errorf("binding subjects %+v, want ServiceAccount %s/%s", b.Subjects, namespace, serviceAccount)
	}
	one[*corev1.ServiceAccount](t, objs, serviceAccount)
	d := one[*appsv1.Deployment](t, objs, "xds-server")
	if d.Spec.Template.Spec.ServiceAccountName != serviceAccount {
		t.Errorf("xds-server runs as %q", d.Spec.Template.Spec.ServiceAccountName)
	}
	gw := one[*appsv1.Deployment](t, objs, "egress-gateway")
	if a := gw.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the gateways must not get an API token")
	}
}

func env(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

func ports(c corev1.Container) map[string]int32 {
	out := map[string]int32{}
	for _, p := range c.Ports {
		out[p.Name] = p.ContainerPort
	}
	return out
}

// The control plane: two replicas in Kubernetes mode, admin on every
// interface, probed on the admin port, reachable through its Service for
// xDS and metrics.
func TestServerDeployment(t *testing.T) {
	objs := manifests(t)
	d := one[*appsv1.Deployment](t, objs, "xds-server")
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	e := env(c)
	if e["EGRESS_XDS_KUBERNETES"] != "true" {
		t.Error("not in Kubernetes mode (EGRESS_XDS_KUBERNETES)")
	}
	// /debug/ shows every tenant's destinations: loopback only; probes
	// and Prometheus use the metrics address, which serves no /debug/.
	if e["EGRESS_XDS_ADMIN_ADDRESS"] != "127.0.0.1:9090" {
		t.Errorf("EGRESS_XDS_ADMIN_ADDRESS %q, want 127.0.0.1:9090", e["EGRESS_XDS_ADMIN_ADDRESS"])
	}
	if e["EGRESS_XDS_METRICS_ADDRESS"] != "0.0.0.0:9091" {
		t.Errorf("EGRESS_XDS_METRICS_ADDRESS %q, want 0.0.0.0:9091", e["EGRESS_XDS_METRICS_ADDRESS"])
	}
	p := ports(c)
	if p["http-metrics"] != 9091 || p["grpc-xds"] != 18000 || len(p) != 3 {
		t.Errorf("container ports %v, want grpc-xds 18000, http-metrics 9091 and the webhook's", p)
	}
	for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("%s probe: not an HTTP probe", name)
			continue
		}
		if probe.HTTPGet.Port.String() != "http-metrics" && probe.HTTPGet.Port.IntValue() != 9091 {
			t.Errorf("%s probe on port %s, not the metrics port", name, probe.HTTPGet.Port.String())
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness path %s", c.ReadinessProbe.HTTPGet.Path)
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness path %s", c.LivenessProbe.HTTPGet.Path)
	}
	checkService(t, one[*corev1.Service](t, objs, "xds-server"), d, map[int32]bool{18000: true, 9091: true})
	checkHardened(t, "xds-server", spec, c)
}

// checkService checks that the Service selects the Deployment's pods and
// exposes the wanted ports through container ports that exist.
func checkService(t *testing.T, s *corev1.Service, d *appsv1.Deployment, want map[int32]bool) {
	t.Helper()
	for k, v := range s.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service %s selects %s=%s, which the pods of %s lack", s.Name, k, v, d.Name)
		}
	}
	if len(s.Spec.Selector) == 0 {
		t.Errorf("Service %s selects nothing", s.Name)
	}
	named := map[string]int32{}
	for _, c := range d.Spec.Template.Spec.Containers {
		for n, p := range ports(c) {
			named[n] = p
		}
	}
	got := map[int32]bool{}
	for _, p := range s.Spec.Ports {
		got[p.Port] = true
		if tp := p.TargetPort.String(); p.TargetPort.IntValue() == 0 && named[tp] == 0 {
			t.Errorf("Service %s port %d targets %q, not a container port of %s", s.Name, p.Port, tp, d.Name)
		}
	}
	for p := range want {
		if !got[p] {
			t.Errorf("Service %s does not expose %d", s.Name, p)
		}
	}
}

func checkHardened(t *testing.T, name string, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: not runAsNonRoot", name)
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("%s: container security context not hardened: %+v", name, sc)
	}
}

// The gateway runs a pinned official Envoy image with the repository's
// bootstrap, which points at the xds-server Service.
func TestGatewayDeployment(t *testing.T) {
	objs := manifests(t)
	d := one[*appsv1.Deployment](t, objs, "egress-gateway")
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	image, tag, ok := strings.Cut(c.Image, ":")
	if image != "envoyproxy/envoy" || !ok || !strings.HasPrefix(tag, "v1.") || strings.Count(tag, ".") != 2 {
		t.Errorf("gateway image %q: want the official image at a pinned version (envoyproxy/envoy:v1.X.Y)", c.Image)
	}
	args := strings.Join(append(append([]string(nil), c.Command...), c.Args...), " ")
	if !strings.Contains(args, "-c /etc/envoy/"+bootstrapKey) || !strings.Contains(args, "--service-cluster egress-gateway") ||
		!strings.Contains(args, "--service-node $(POD_NAME)") {
		t.Errorf("gateway command line %q", args)
	}
	cmName := ""
	for _, v := range spec.Volumes {
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && m.MountPath == "/etc/envoy" && v.ConfigMap != nil {
				cmName = v.ConfigMap.Name
			}
		}
	}
	cm := one[*corev1.ConfigMap](t, objs, cmName)
	files := deployBootstrap(t)
	for name, want := range files {
		if cm.Data[name] != string(want) {
			t.Errorf("%s: %s differs from what envoy/bootstrap renders: run go test ./deploy -update", bootstrapCM, name)
		}
	}
	if len(cm.Data) != len(files) {
		t.Errorf("%s holds %d files, want %d", bootstrapCM, len(cm.Data), len(files))
	}
	if want := string(files[bootstrapKey]); !strings.Contains(want, "address: xds-server") || !strings.Contains(want, "port_value: 18000") {
		t.Error("the bootstrap no longer connects to xds-server:18000: update the Service")
	}
	checkService(t, one[*corev1.Service](t, objs, "egress-gateway"), d, map[int32]bool{3128: true})
	checkHardened(t, "egress-gateway", spec, c)
}

// TestUpdateBootstrap rewrites the bootstrap ConfigMap with -update.
func TestUpdateBootstrap(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite " + bootstrapCM)
	}
	files := deployBootstrap(t)
	var b strings.Builder
	b.WriteString(`# Generated from envoy/bootstrap/egress-gateway.yaml with secure xDS
# (bootstrap.Params.XDSTLS) and its file-based SDS files (deploy_test.go
# fails when they differ; ` + "`go test ./deploy -update`" + ` rewrites this file).
apiVersion: v1
kind: ConfigMap
metadata:
  name: egress-gateway-bootstrap
  namespace: egress-xds
  labels:
    app.kubernetes.io/name: egress-gateway
    app.kubernetes.io/part-of: egress-xds
data:
`)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "  %s: |\n", name)
		for _, l := range strings.SplitAfter(string(files[name]), "\n") {
			if strings.TrimSpace(l) == "" {
				b.WriteString(strings.TrimLeft(l, " \t"))
				continue
			}
			fmt.Fprintf(&b, "    %s", l)
		}
	}
	if err := os.WriteFile(bootstrapCM, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The webhook fails closed, so voluntary disruptions keep one server.
func TestServerDisruptionBudget(t *testing.T) {
	objs := manifests(t)
	pdb := one[*policyv1.PodDisruptionBudget](t, objs, "xds-server")
	dep := one[*appsv1.Deployment](t, objs, "xds-server")
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || *dep.Spec.Replicas <= int32(pdb.Spec.MinAvailable.IntValue()) {
		t.Fatalf("minAvailable %v with %d replicas: a drain must keep one and be able to move one", pdb.Spec.MinAvailable, *dep.Spec.Replicas)
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Labels[k] != v {
			t.Fatalf("the budget's selector %v does not select the server's pods %v", pdb.Spec.Selector.MatchLabels, dep.Spec.Template.Labels)
		}
	}
}

// The server keeps its state on a volume of the pod, writable although
// the root file system is read-only.
func TestServerStateDir(t *testing.T) {
	dep := one[*appsv1.Deployment](t, manifests(t), "xds-server")
	c := dep.Spec.Template.Spec.Containers[0]
	dir := ""
	for _, e := range c.Env {
		if e.Name == "EGRESS_XDS_STATE_DIR" {
			dir = e.Value
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == dir && !m.ReadOnly {
			for _, v := range dep.Spec.Template.Spec.Volumes {
				mounted = mounted || (v.Name == m.Name && v.EmptyDir != nil)
			}
		}
	}
	if dir == "" || !mounted {
		t.Fatalf("state dir %q is not a writable emptyDir mount", dir)
	}
}
