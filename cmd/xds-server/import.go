package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/egress-xds/egress-xds/internal/istio"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// importStdin is what "-" reads; tests replace it.
var importStdin io.Reader = os.Stdin

// importIstio converts Istio objects (files, folders, "-" for stdin;
// kubectl get -o yaml output included) into intent ConfigMaps and a
// report of every field. Exit 1 when an access restriction could not be
// carried or input could not be read; 2 on bad usage.
func importIstio(args []string, stdout, stderr io.Writer) int {
	c := newCmdLine("import", stdout, stderr)
	fs := c.FlagSet
	var o istio.Options
	var out, labels, meshNS string
	var forwardProxy, stats, mesh uint
	fs.StringVar(&o.Group, "group", istio.DefaultGroup, "gateway group the intents name (gateways:)")
	fs.StringVar(&out, "out", "", "folder to write <namespace>.yaml ConfigMaps and report.txt in (default: ConfigMaps on stdout, the report on stderr)")
	fs.StringVar(&o.Namespace, "namespace", "", "one ConfigMap, in this namespace (default: one per ServiceEntry namespace)")
	fs.StringVar(&o.Name, "name", istio.DefaultName, "name of the ConfigMaps written")
	fs.StringVar(&o.TrustDomain, "trust-domain", istio.DefaultTrustDomain, "the mesh's trust domain: Istio principals become SPIFFE IDs in it (serve with the same --mesh-trust-domain)")
	fs.StringVar(&meshNS, "mesh-namespaces", "", "comma-separated namespaces of the mesh's workloads: \"any workload of the mesh\" (principals \"*\", a Gateway server of ISTIO_MUTUAL) becomes these namespaces; without them it cannot be carried")
	fs.StringVar(&labels, "gateway-labels", "istio=egressgateway,app=istio-egressgateway", "labels of Istio's egress gateway pods: Gateways, AuthorizationPolicies and EnvoyFilters selecting them are the egress gateway's")
	fs.StringVar(&o.GatewayNamespace, "gateway-namespace", istio.DefaultGatewayNamespace, "namespace of Istio's egress gateway, also taken as Istio's root namespace")
	fs.StringVar(&o.GatewayService, "gateway-service", istio.DefaultGatewayService, "host of the egress gateway's Service, which the sidecars' routes name")
	fs.UintVar(&forwardProxy, "forward-proxy-port", 3128, "the server's --forward-proxy-port (a port intents cannot use)")
	fs.UintVar(&stats, "gateway-stats-port", 9902, "the server's --gateway-stats-port (a port intents cannot use)")
	fs.UintVar(&mesh, "mesh-port", translate.DefaultMeshPort, "the server's --mesh-port, for identities (a port intents cannot use)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if len(c.args) == 0 {
		return c.misuse("no input: name files or folders of Istio objects, or - for stdin, e.g. kubectl get serviceentries,authorizationpolicies -A -o yaml | xds-server import -")
	}
	var err error
	if o.GatewayLabels, err = parseLabels(labels); err != nil {
		return c.misuse("--gateway-labels: %v", err)
	}
	for _, n := range strings.Split(meshNS, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.MeshNamespaces = append(o.MeshNamespaces, n)
		}
	}
	sort.Strings(o.MeshNamespaces)
	o.Resolve.ReservedPorts = map[uint32]string{}
	for _, r := range []struct {
		port uint
		what string
	}{{mesh, "mesh port (mutual TLS from sidecars)"}, {stats, "Prometheus stats listener (bootstrap)"}, {forwardProxy, "forward proxy"}} {
		if r.port > 65535 {
			return c.misuse("%d is not a port", r.port)
		}
		if r.port != 0 {
			o.Resolve.ReservedPorts[uint32(r.port)] = r.what
		}
	}
	ins, readErrs := istio.ReadInputs(c.args, importStdin)
	res := istio.Import(ins, readErrs, o)
	report := res.Report()
	if out == "" {
		stdout.Write(res.YAML())
		stderr.Write(report)
		return res.Exit()
	}
	if err := writeImport(out, res, report); err != nil {
		return c.misuse("--out %s: %v", out, err)
	}
	for _, cm := range res.ConfigMaps {
		fmt.Fprintf(stdout, "wrote %s: ConfigMap %s/%s, %d destination(s)\n", filepath.Join(out, cm.Namespace+".yaml"), cm.Namespace, cm.Name, cm.Destinations)
	}
	fmt.Fprintf(stdout, "wrote %s\n%s\n", filepath.Join(out, "report.txt"), res.Summary())
	return res.Exit()
}

// writeImport writes the ConfigMaps and the report, and removes the
// ConfigMaps an earlier import wrote there that this one does not, so the
// folder holds the same files after every run on the same input.
func writeImport(dir string, res *istio.Result, report []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keep := map[string]bool{"report.txt": true}
	for _, cm := range res.ConfigMaps {
		name := cm.Namespace + ".yaml"
		keep[name] = true
		if err := os.WriteFile(filepath.Join(dir, name), cm.YAML, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "report.txt"), report, 0o644); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(old)
	for _, f := range old {
		if keep[filepath.Base(f)] {
			continue
		}
		b, err := os.ReadFile(f)
		if err == nil && bytes.HasPrefix(b, []byte(istio.Header)) {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// parseLabels reads k=v,k=v.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, errors.New("no labels")
	}
	return out, nil
}
