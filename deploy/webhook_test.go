package deploy_test

import (
	"bytes"
	"net"
	"path"
	"strconv"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/webhook"
)

// certManagerObject is a cert-manager.io/v1 Issuer or Certificate, which
// the client-go scheme does not know: decoded strictly into the fields
// deploy/ uses (an unknown or misspelt one fails).
type certManagerObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              certManagerSpec `json:"spec"`
}

type certManagerSpec struct {
	// Issuer
	SelfSigned *struct{} `json:"selfSigned,omitempty"`
	CA         *struct {
		SecretName string `json:"secretName"`
	} `json:"ca,omitempty"`
	// Certificate
	IsCA        bool     `json:"isCA,omitempty"`
	CommonName  string   `json:"commonName,omitempty"`
	SecretName  string   `json:"secretName,omitempty"`
	DNSNames    []string `json:"dnsNames,omitempty"`
	URIs        []string `json:"uris,omitempty"`
	Duration    string   `json:"duration,omitempty"`
	RenewBefore string   `json:"renewBefore,omitempty"`
	Usages      []string `json:"usages,omitempty"`
	PrivateKey  *struct {
		Algorithm      string `json:"algorithm"`
		Size           int    `json:"size,omitempty"`
		RotationPolicy string `json:"rotationPolicy,omitempty"`
	} `json:"privateKey,omitempty"`
	IssuerRef *struct {
		Name  string `json:"name"`
		Kind  string `json:"kind"`
		Group string `json:"group,omitempty"`
	} `json:"issuerRef,omitempty"`
}

func (o *certManagerObject) DeepCopyObject() runtime.Object {
	c := *o
	return &c
}

func isCertManager(doc []byte) bool {
	return bytes.Contains(doc, []byte("apiVersion: cert-manager.io/v1\n"))
}

func decodeCertManager(doc []byte) (runtime.Object, error) {
	var o certManagerObject
	if err := yaml.UnmarshalStrict(doc, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

func certManager(t *testing.T, objs []object, kind, name string) *certManagerObject {
	t.Helper()
	for _, o := range find[*certManagerObject](objs) {
		if o.Kind == kind && o.Name == name {
			return o
		}
	}
	t.Fatalf("no cert-manager %s named %s", kind, name)
	return nil
}

// The webhook is registered as README documents it (failurePolicy Fail,
// intent ConfigMaps only, CREATE and UPDATE), reaches the server's pods
// through a Service on the port the server listens on, and is served
// with the cert-manager certificate whose CA is injected into caBundle.
func TestWebhook(t *testing.T) {
	objs := manifests(t)
	vwcs := find[*admissionregistrationv1.ValidatingWebhookConfiguration](objs)
	if len(vwcs) != 1 || len(vwcs[0].Webhooks) != 1 {
		t.Fatalf("want one ValidatingWebhookConfiguration with one webhook, got %d", len(vwcs))
	}
	vwc := vwcs[0]
	w := vwc.Webhooks[0]
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("failurePolicy %v, want Fail (README)", ptrString(w.FailurePolicy))
	}
	if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("sideEffects %v, want None", ptrString(w.SideEffects))
	}
	if w.MatchPolicy == nil || *w.MatchPolicy != admissionregistrationv1.Equivalent {
		t.Errorf("matchPolicy %v, want Equivalent", ptrString(w.MatchPolicy))
	}
	if strings.Join(w.AdmissionReviewVersions, ",") != "v1" {
		t.Errorf("admissionReviewVersions %v, want [v1]", w.AdmissionReviewVersions)
	}
	if w.TimeoutSeconds == nil || *w.TimeoutSeconds > 10 {
		t.Errorf("timeoutSeconds %v, want at most 10", w.TimeoutSeconds)
	}
	if w.ObjectSelector == nil || len(w.ObjectSelector.MatchExpressions) != 0 || len(w.ObjectSelector.MatchLabels) != 1 ||
		w.ObjectSelector.MatchLabels[intent.LabelKey] != "true" {
		t.Errorf("objectSelector %+v, want %s=true only", w.ObjectSelector, intent.LabelKey)
	}
	if len(w.Rules) != 1 {
		t.Fatalf("%d rules, want 1", len(w.Rules))
	}
	r := w.Rules[0]
	ops := make([]string, len(r.Operations))
	for i, op := range r.Operations {
		ops[i] = string(op)
	}
	if strings.Join(ops, ",") != "CREATE,UPDATE" || strings.Join(r.APIGroups, ",") != "" || len(r.APIGroups) != 1 ||
		strings.Join(r.APIVersions, ",") != "v1" || strings.Join(r.Resources, ",") != "configmaps" {
		t.Errorf("rule %+v, want CREATE and UPDATE of core v1 configmaps", r)
	}

	// Service → container port → --webhook-address.
	ref := w.ClientConfig.Service
	if ref == nil || w.ClientConfig.URL != nil {
		t.Fatalf("clientConfig %+v: want a Service", w.ClientConfig)
	}
	if ref.Namespace != namespace || ref.Path == nil || *ref.Path != webhook.Path {
		t.Errorf("clientConfig service %+v, want namespace %s and path %s", ref, namespace, webhook.Path)
	}
	svc := one[*corev1.Service](t, objs, ref.Name)
	d := one[*appsv1.Deployment](t, objs, "xds-server")
	checkService(t, svc, d, map[int32]bool{*ref.Port: true})
	c := d.Spec.Template.Spec.Containers[0]
	e := env(c)
	_, port, err := net.SplitHostPort(e["EGRESS_XDS_WEBHOOK_ADDRESS"])
	if err != nil {
		t.Fatalf("EGRESS_XDS_WEBHOOK_ADDRESS %q: %v", e["EGRESS_XDS_WEBHOOK_ADDRESS"], err)
	}
	for _, p := range svc.Spec.Ports {
		if p.Port == *ref.Port {
			if target := ports(c)[p.TargetPort.String()]; strconv.Itoa(int(target)) != port {
				t.Errorf("Service %s port %d reaches container port %d, the webhook listens on %s", svc.Name, p.Port, target, port)
			}
		}
	}

	// Certificate: for the Service's name, mounted where the flags look.
	cert := certManager(t, objs, "Certificate", "xds-server-webhook")
	if want := ref.Name + "." + ref.Namespace + ".svc"; !contains(cert.Spec.DNSNames, want) {
		t.Errorf("certificate DNS names %v lack %s, the name the API server verifies", cert.Spec.DNSNames, want)
	}
	if got := vwc.Annotations["cert-manager.io/inject-ca-from"]; got != cert.Namespace+"/"+cert.Name {
		t.Errorf("inject-ca-from %q, want %s/%s", got, cert.Namespace, cert.Name)
	}
	mounted := ""
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == cert.Spec.SecretName {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name {
					mounted = m.MountPath
				}
			}
		}
	}
	if mounted == "" {
		t.Fatalf("Secret %s of the webhook certificate is not mounted in xds-server", cert.Spec.SecretName)
	}
	if e["EGRESS_XDS_WEBHOOK_TLS_CERT"] != path.Join(mounted, "tls.crt") || e["EGRESS_XDS_WEBHOOK_TLS_KEY"] != path.Join(mounted, "tls.key") {
		t.Errorf("webhook certificate flags %q, %q; the Secret is mounted at %s", e["EGRESS_XDS_WEBHOOK_TLS_CERT"], e["EGRESS_XDS_WEBHOOK_TLS_KEY"], mounted)
	}
	// Its issuer chain: a CA Issuer whose CA certificate a self-signed
	// Issuer issues.
	if cert.Spec.IssuerRef == nil || cert.Spec.IssuerRef.Kind != "Issuer" {
		t.Fatalf("certificate issuerRef %+v, want an Issuer", cert.Spec.IssuerRef)
	}
	issuer := certManager(t, objs, "Issuer", cert.Spec.IssuerRef.Name)
	if issuer.Spec.CA == nil {
		t.Fatalf("Issuer %s is not a CA issuer", issuer.Name)
	}
	var ca *certManagerObject
	for _, o := range find[*certManagerObject](objs) {
		if o.Kind == "Certificate" && o.Spec.SecretName == issuer.Spec.CA.SecretName {
			ca = o
		}
	}
	if ca == nil || !ca.Spec.IsCA || ca.Spec.IssuerRef == nil || certManager(t, objs, "Issuer", ca.Spec.IssuerRef.Name).Spec.SelfSigned == nil {
		t.Errorf("the CA Secret %s is not issued as a CA by a self-signed Issuer", issuer.Spec.CA.SecretName)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func ptrString[T ~string](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return string(*p)
}
