package istio

import (
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// kind is an object kind the importer decodes, and its spec type.
type kind struct {
	group    string
	versions []string
	newSpec  func() any
}

var kinds = map[string]kind{
	"ServiceEntry":          {"networking.istio.io", []string{"v1alpha3", "v1beta1", "v1"}, func() any { return &ServiceEntry{} }},
	"Gateway":               {"networking.istio.io", []string{"v1alpha3", "v1beta1", "v1"}, func() any { return &Gateway{} }},
	"VirtualService":        {"networking.istio.io", []string{"v1alpha3", "v1beta1", "v1"}, func() any { return &VirtualService{} }},
	"DestinationRule":       {"networking.istio.io", []string{"v1alpha3", "v1beta1", "v1"}, func() any { return &DestinationRule{} }},
	"Sidecar":               {"networking.istio.io", []string{"v1alpha3", "v1beta1", "v1"}, func() any { return &Sidecar{} }},
	"EnvoyFilter":           {"networking.istio.io", []string{"v1alpha3"}, func() any { return &EnvoyFilter{} }},
	"AuthorizationPolicy":   {"security.istio.io", []string{"v1beta1", "v1"}, func() any { return &AuthorizationPolicy{} }},
	"PeerAuthentication":    {"security.istio.io", []string{"v1beta1", "v1"}, func() any { return &PeerAuthentication{} }},
	"RequestAuthentication": {"security.istio.io", []string{"v1beta1", "v1"}, func() any { return &RequestAuthentication{} }},
	"Telemetry":             {"telemetry.istio.io", []string{"v1alpha1", "v1"}, func() any { return &Telemetry{} }},
	"IstioOperator":         {"install.istio.io", []string{"v1alpha1"}, func() any { return &IstioOperator{} }},
}

// kindOf is the kind of an object the importer decodes, or nil.
func kindOf(o *object) *kind {
	k, ok := kinds[o.kind]
	if !ok {
		return nil
	}
	group, version, _ := strings.Cut(o.apiVersion, "/")
	if group != k.group || !contains(k.versions, version) {
		return nil
	}
	return &k
}

type PeerAuthentication struct {
	Selector *LabelSelector `json:"selector"`
	Mtls     *struct {
		Mode string `json:"mode"`
	} `json:"mtls"`
	PortLevelMtls map[string]struct {
		Mode string `json:"mode"`
	} `json:"portLevelMtls"`
}

type RequestAuthentication struct {
	Selector   *LabelSelector `json:"selector"`
	TargetRef  Raw            `json:"targetRef"`
	TargetRefs Raw            `json:"targetRefs"`
	JwtRules   Raw            `json:"jwtRules"`
}

// other reports objects the importer carries nothing of, or only
// settings: telemetry, installation, mesh settings, and anything that is
// not Istio's.
func (im *importer) other(o *object) {
	group, _, _ := strings.Cut(o.apiVersion, "/")
	_, known := kinds[o.kind]
	switch {
	case known && kindOf(o) == nil:
		st := StatusNotCarried
		if group == "security.istio.io" || o.kind == "Sidecar" || o.kind == "EnvoyFilter" {
			st = StatusAccess
		}
		im.rep.add(o, "", st, o.apiVersion+" is not a version of "+o.kind+" the importer reads: nothing of it is carried")
	case o.broken:
	case o.kind == "Telemetry":
		im.telemetry(o)
	case o.kind == "IstioOperator":
		io := o.spec.(*IstioOperator)
		im.istioOperator(o, io)
	case o.kind == "Sidecar":
		im.sidecarObjs = append(im.sidecarObjs, o)
	case o.kind == "PeerAuthentication":
		im.peerAuthObjs = append(im.peerAuthObjs, o)
	case o.kind == "RequestAuthentication":
		im.requestAuth(o)
	case group == "monitoring.coreos.com":
		im.rep.add(o, "", StatusDefault, "Prometheus scraping: observability/prometheus.yaml scrapes the gateways' /stats/prometheus on port 9902 (http-envoy-prom) and the server's /metrics; per-destination stats are in Envoy's names")
	case o.apiVersion == "v1" && o.kind == "ConfigMap" && o.meta.Namespace == im.opts.GatewayNamespace && (o.meta.Name == "istio" || strings.HasPrefix(o.meta.Name, "istio-")):
		im.meshConfigMap(o)
	case o.apiVersion == "v1" && o.kind == "ConfigMap" && o.meta.Labels["egress-xds.io/intent"] == "true":
		im.rep.add(o, "", StatusNotCarried, "already an egress intent ConfigMap: apply it as it is")
	case o.apiVersion == "v1" && o.kind == "ConfigMap" && rateLimitServiceConfig(o) != "":
		im.rep.add(o, "data", StatusNotCarried, "the rate limit service's descriptors (domain "+rateLimitServiceConfig(o)+"), as the global rate limit filter that asked for them (see the EnvoyFilter): write the limits as rateLimit.global")
	case o.apiVersion == "v1" && o.kind == "Secret":
		im.rep.add(o, "", StatusNotCarried, "a Secret: the report says which Secrets the intents name and with which keys; the importer never copies keys")
	case strings.HasSuffix(group, ".istio.io"):
		st := StatusNotCarried
		if o.kind == "WasmPlugin" || group == "security.istio.io" {
			st = StatusAccess
		}
		im.rep.add(o, "", st, o.kind+" is not carried: egress-xds has no equivalent")
	default:
		im.rep.add(o, "", StatusNotCarried, "not an Istio object: ignored")
	}
}

func (im *importer) telemetry(o *object) {
	t := o.spec.(*Telemetry)
	if t.Selector != nil {
		im.rep.add(o, "spec.selector", StatusNote, "what it selects does not matter: every gateway logs and exports stats")
	}
	for _, f := range []field{{"spec.targetRef", t.TargetRef.Set()}, {"spec.targetRefs", t.TargetRefs.Set()}} {
		if f.set {
			im.rep.add(o, f.name, StatusNote, "what it targets does not matter: every gateway logs and exports stats")
		}
	}
	if len(t.AccessLogging) > 0 {
		im.rep.add(o, "spec.accessLogging", StatusDefault, "every listener of the gateways writes JSON access logs to stdout, for every connection and request, refused ones with the reason (README: What the gateways get); providers and filters are not chosen")
	}
	if len(t.Metrics) > 0 {
		im.rep.add(o, "spec.metrics", StatusDefault, "the gateways export Envoy's stats per destination on :9902/stats/prometheus; tag overrides are not carried: the destination is in each stat's name (namespace/configmap/destination/port)")
	}
	if t.Tracing.Set() {
		im.rep.add(o, "spec.tracing", StatusNotCarried, "egress-xds configures no tracing")
	}
}

func (im *importer) istioOperator(o *object, io *IstioOperator) {
	if io.Components.Set() {
		im.components(o, io.Components.Node)
	}
	for _, f := range []field{{"profile", io.Profile != ""}, {"values", io.Values.Set()}, {"unvalidatedValues", io.UnvalidatedValues.Set()},
		{"hub", io.Hub != ""}, {"tag", io.Tag.Set()}, {"revision", io.Revision != ""}, {"namespace", io.Namespace != ""}, {"installPackagePath", io.InstallPackagePath != ""}} {
		if f.set {
			im.rep.add(o, "spec."+f.name, StatusNotCarried, "installs Istio: not needed")
		}
	}
	if io.MeshConfig != nil {
		im.meshConfig(o, "spec.meshConfig", io.MeshConfig)
	}
}

// components reports the installation of gateways and reads the Secret
// mounts of the egress gateway (where DestinationRule file paths point).
func (im *importer) components(o *object, n *yaml.Node) {
	var c struct {
		EgressGateways []struct {
			Name    string `json:"name"`
			Enabled *bool  `json:"enabled"`
			K8s     *struct {
				Overlays []struct {
					Patches []struct {
						Path  string `json:"path"`
						Value Raw    `json:"value"`
					} `json:"patches"`
					Rest map[string]Raw `json:",inline"`
				} `json:"overlays"`
				Rest map[string]Raw `json:",inline"`
			} `json:"k8s"`
			Rest map[string]Raw `json:",inline"`
		} `json:"egressGateways"`
		Rest map[string]Raw `json:",inline"`
	}
	var d decoder
	d.decode(n, &c, "spec.components")
	for _, k := range sortedKeys(c.Rest) {
		im.rep.add(o, "spec.components."+k, StatusNotCarried, "installs Istio: not needed")
	}
	if len(d.problems) > 0 {
		im.rep.add(o, "spec.components.egressGateways", StatusNotCarried, "the egress gateway's Deployment: deploy/egress-gateway.yaml is egress-xds's (replicas, resources, affinity are set there)")
		return
	}
	mounts, secrets := map[string]string{}, map[string]string{}
	for i, g := range c.EgressGateways {
		p := "spec.components.egressGateways[" + strconv.Itoa(i) + "]"
		im.rep.add(o, p, StatusNotCarried, "the egress gateway's Deployment: deploy/egress-gateway.yaml is egress-xds's (replicas, resources, affinity are set there; gateways of group "+im.opts.Group+" run envoy/bootstrap/egress-gateway.yaml)")
		if g.K8s == nil {
			continue
		}
		for _, ov := range g.K8s.Overlays {
			for _, pt := range ov.Patches {
				if !pt.Value.Set() {
					continue
				}
				var v struct {
					Name      string `json:"name"`
					MountPath string `json:"mountPath"`
					Secret    *struct {
						SecretName string `json:"secretName"`
					} `json:"secret"`
					Rest map[string]Raw `json:",inline"`
				}
				var d decoder
				d.decode(pt.Value.Node, &v, "")
				switch {
				case v.MountPath != "" && v.Name != "":
					mounts[v.Name] = strings.TrimSuffix(v.MountPath, "/")
				case v.Secret != nil && v.Name != "":
					secrets[v.Name] = v.Secret.SecretName
				}
			}
		}
	}
	for vol, dir := range mounts {
		if s, ok := secrets[vol]; ok {
			im.secretMounts[dir] = s
		}
	}
	for _, dir := range sortedKeys(im.secretMounts) {
		im.rep.add(o, "spec.components.egressGateways", StatusNote, "mounts Secret "+im.secretMounts[dir]+" at "+dir+": DestinationRules reading files there name it")
	}
}

// meshConfig reports mesh settings: outbound policy, access logs.
func (im *importer) meshConfig(o *object, p string, mc *MeshConfig) {
	if op := mc.OutboundTrafficPolicy; op != nil {
		switch strings.ToUpper(op.Mode) {
		case "REGISTRY_ONLY":
			im.rep.add(o, p+".outboundTrafficPolicy.mode", StatusDefault, "REGISTRY_ONLY: egress-xds refuses every host no intent declares, always")
		case "", "ALLOW_ANY":
			im.rep.add(o, p+".outboundTrafficPolicy.mode", StatusNote, "ALLOW_ANY let workloads reach any host: egress-xds refuses every host no intent declares (narrower)")
		default:
			im.rep.add(o, p+".outboundTrafficPolicy.mode", StatusNotCarried, op.Mode+" is not an Istio mode")
		}
		if op.EgressProxy.Set() {
			im.rep.add(o, p+".outboundTrafficPolicy.egressProxy", StatusNotCarried, "where ALLOW_ANY traffic went: egress-xds refuses it")
		}
	}
	if mc.AccessLogFile != nil {
		im.rep.add(o, p+".accessLogFile", StatusDefault, "the gateways write JSON access logs to stdout")
	}
	for _, f := range []field{{"accessLogFormat", mc.AccessLogFormat != nil}, {"accessLogEncoding", mc.AccessLogEncoding != nil}} {
		if f.set {
			im.rep.add(o, p+"."+f.name, StatusNotCarried, "the access log is egress-xds's JSON (time, listener, destination, SNI, authority, method, path, response code and flags, bytes, duration, upstream host, downstream address, request id, user agent)")
		}
	}
	if mc.TrustDomain != nil {
		if *mc.TrustDomain == im.opts.TrustDomain {
			im.rep.add(o, p+".trustDomain", StatusCarried, "principals are SPIFFE IDs of "+*mc.TrustDomain)
		} else {
			im.rep.add(o, p+".trustDomain", StatusNote, "the mesh's trust domain is "+*mc.TrustDomain+", the import's "+im.opts.TrustDomain+": run it again with --trust-domain "+*mc.TrustDomain)
		}
	}
	if mc.RootNamespace != nil && *mc.RootNamespace != im.opts.GatewayNamespace {
		im.rep.add(o, p+".rootNamespace", StatusNote, "the root namespace is "+*mc.RootNamespace+": mesh-wide policies there are not read as the gateway's; the importer takes --gateway-namespace "+im.opts.GatewayNamespace)
	}
	for _, k := range sortedKeys(mc.Rest) {
		im.rep.add(o, p+"."+k, StatusNotCarried, "a mesh setting egress-xds has no use for")
	}
}

// meshConfigMap reads Istio's mesh settings ConfigMap (data.mesh).
func (im *importer) meshConfigMap(o *object) {
	data := o.field("data")
	var mesh *yaml.Node
	if data != nil && data.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(data.Content); i += 2 {
			if data.Content[i].Value == "mesh" {
				mesh = data.Content[i+1]
			} else {
				im.rep.add(o, "data."+data.Content[i].Value, StatusNotCarried, "not the mesh settings")
			}
		}
	}
	if mesh == nil || mesh.Kind != yaml.ScalarNode {
		im.rep.add(o, "", StatusNotCarried, "Istio's ConfigMap without data.mesh: nothing to carry")
		return
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(mesh.Value), &root); err != nil || len(root.Content) == 0 {
		im.rep.add(o, "data.mesh", StatusError, "not YAML mesh settings")
		return
	}
	var mc MeshConfig
	var d decoder
	d.decode(root.Content[0], &mc, "data.mesh")
	for _, p := range d.problems {
		im.rep.add(o, p.path, StatusError, p.msg)
	}
	im.meshConfig(o, "data.mesh", &mc)
	o.covered = append(o.covered, "") // the rest of the ConfigMap is Kubernetes'
}

func (im *importer) requestAuth(o *object) {
	ra := o.spec.(*RequestAuthentication)
	applies := ra.TargetRef.Set() || ra.TargetRefs.Set() || o.meta.Namespace == im.opts.GatewayNamespace && (ra.Selector == nil || im.selects(ra.Selector.MatchLabels))
	if !applies {
		im.rep.add(o, "", StatusNotCarried, "applies to other workloads than the egress gateway")
		return
	}
	im.requestAuthObjs = append(im.requestAuthObjs, o)
}

// rateLimitServiceConfig is the domain of an envoyproxy/ratelimit
// configuration a ConfigMap holds (a data value with domain and
// descriptors), or empty.
func rateLimitServiceConfig(o *object) string {
	data := o.field("data")
	if data == nil {
		return ""
	}
	for i := 1; i < len(data.Content); i += 2 {
		var cfg struct {
			Domain      string `yaml:"domain"`
			Descriptors []any  `yaml:"descriptors"`
		}
		if yaml.Unmarshal([]byte(data.Content[i].Value), &cfg) == nil && cfg.Domain != "" && cfg.Descriptors != nil {
			return intent.Quote(cfg.Domain)
		}
	}
	return ""
}
