package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMeshFlags(t *testing.T) {
	on := meshFlags{port: 15443, certDir: "/etc/egress-xds/mesh", sidecarProxyPort: 15001, sidecarCapturePort: 15006}
	if o, err := (&meshFlags{}).options(""); o != nil || err != nil {
		t.Errorf("no --mesh-port: got %+v %v, want the mesh off", o, err)
	}
	o, err := on.options("")
	if err != nil || o.TrustDomain != "cluster.local" || o.GatewayAddress != "{group}.egress-xds.svc.cluster.local:15443" || o.GatewayCertificate != nil {
		t.Errorf("defaults: %+v %v", o, err)
	}
	if o, err := on.options("example.org"); err != nil || o.TrustDomain != "example.org" {
		t.Errorf("the xDS trust domain is the mesh's default: %+v %v", o, err)
	}
	withSecrets := on
	withSecrets.gatewayCertificate, withSecrets.trustBundle = "egress-xds/gw", "egress-xds/ca"
	if o, err := withSecrets.options("example.org"); err != nil || o.GatewayCertificate.String() != "egress-xds/gw" || o.TrustBundle.String() != "egress-xds/ca" {
		t.Errorf("secrets: %+v %v", o, err)
	}
	for name, tc := range map[string]struct {
		f       meshFlags
		xdsTD   string
		message string
	}{
		"needs a port":        {meshFlags{trustDomain: "cluster.local"}, "", "need --mesh-port"},
		"two trust domains":   {func() meshFlags { f := on; f.trustDomain = "a.org"; return f }(), "b.org", "one mesh has one trust domain"},
		"bad trust domain":    {func() meshFlags { f := on; f.trustDomain = "A.org"; return f }(), "", "trust domain"},
		"secret not ns/name":  {func() meshFlags { f := on; f.trustBundle = "ca"; return f }(), "", "--mesh-trust-bundle-secret \"ca\" is not namespace/name"},
		"same sidecar ports":  {func() meshFlags { f := on; f.sidecarCapturePort = 15001; return f }(), "", "both 15001"},
		"bad gateway address": {func() meshFlags { f := on; f.gatewayAddress = "gateway"; return f }(), "", "not host:port"},
		"port out of range":   {func() meshFlags { f := on; f.port = 70000; return f }(), "", "not a valid port"},
	} {
		if _, err := tc.f.options(tc.xdsTD); err == nil || !strings.Contains(err.Error(), tc.message) {
			t.Errorf("%s: got %v, want %q", name, err, tc.message)
		}
	}
}

// validate judges workload identities as the server would: with the mesh
// and its trust domain.
func TestValidateWorkloadIdentities(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(path, []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: egress, namespace: payments, labels: {egress-xds.io/intent: "true"}}
data:
  egress.yaml: |
    destinations:
      - name: a
        host: a.example.com
        ports: [{number: 443, protocol: TLS}]
        allow: [{principal: "spiffe://example.org/ns/payments/sa/checkout"}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCmd("validate", path); code != 1 || !strings.Contains(out, "start it with --mesh-port") {
		t.Errorf("without the mesh: exit %d\n%s", code, out)
	}
	if code, out, _ := runCmd("validate", "--mesh-port", "15443", path); code != 1 || !strings.Contains(out, `trust domain "example.org" is unknown`) {
		t.Errorf("another trust domain: exit %d\n%s", code, out)
	}
	if code, out, errOut := runCmd("validate", "--mesh-port", "15443", "--mesh-trust-domain", "example.org", path); code != 0 {
		t.Errorf("with the mesh: exit %d\n%s%s", code, out, errOut)
	}
}
