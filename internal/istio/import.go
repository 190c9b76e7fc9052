// Package istio converts an Istio egress setup (ServiceEntry, Gateway,
// VirtualService, DestinationRule, AuthorizationPolicy, EnvoyFilter,
// Telemetry, mesh settings) into egress intent ConfigMaps, with a report
// of every input field: carried over to what, or not carried and why.
//
// The rule it never breaks: what it writes admits no more than the input
// did. Where an access restriction cannot be expressed, the destinations
// it governs are held back (or their allow lists shortened), the report
// says ACCESS NOT CARRIED, and the exit status is 1.
package istio

import (
	"fmt"
	"sort"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Options say how the Istio setup maps onto egress-xds.
type Options struct {
	// Group is the gateway group the intents name (gateways:).
	Group string
	// Namespace, when set, puts every destination in one ConfigMap of
	// that namespace; otherwise each goes to its ServiceEntry's.
	Namespace string
	// Name of the ConfigMaps written.
	Name string
	// TrustDomain of the mesh: Istio principals become SPIFFE IDs in it.
	TrustDomain string
	// GatewayLabels are the labels of Istio's egress gateway pods:
	// Gateways, AuthorizationPolicies, EnvoyFilters and Telemetry whose
	// selector they satisfy are the egress gateway's.
	GatewayLabels map[string]string
	// GatewayNamespace is the egress gateway's namespace, also taken as
	// Istio's root namespace (policies there without a selector apply
	// to it).
	GatewayNamespace string
	// GatewayService is the egress gateway's Service host: sidecar routes
	// to it are the mesh half of the guide's mesh → gateway pairs.
	GatewayService string
	// MeshNamespaces are the namespaces of the mesh's workloads, when the
	// operator says them: "any workload of the mesh" (principals "*",
	// namespaces "*", a Gateway server of ISTIO_MUTUAL) is then exactly
	// these namespaces. Without them it cannot be expressed.
	MeshNamespaces []string
	// Resolve is how the server will judge the output (reserved ports,
	// trust domain), to check it before it is written.
	Resolve intent.ResolveOptions
}

// Defaults of Options, as Istio installs its egress gateway.
const (
	DefaultGroup            = "egress-gateway"
	DefaultName             = "istio-import"
	DefaultTrustDomain      = "cluster.local"
	DefaultGatewayNamespace = "istio-system"
	DefaultGatewayService   = "istio-egressgateway.istio-system.svc.cluster.local"
)

// DefaultGatewayLabels are the labels of Istio's egress gateway pods.
func DefaultGatewayLabels() map[string]string {
	return map[string]string{"istio": "egressgateway", "app": "istio-egressgateway"}
}

func (o *Options) defaults() {
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if len(o.GatewayLabels) == 0 {
		o.GatewayLabels = DefaultGatewayLabels()
	}
	if o.GatewayNamespace == "" {
		o.GatewayNamespace = DefaultGatewayNamespace
	}
	if o.GatewayService == "" {
		o.GatewayService = DefaultGatewayService
	}
}

// ConfigMap is one intent ConfigMap written.
type ConfigMap struct {
	Namespace, Name string
	YAML            []byte // the manifest, comments included
	Destinations    int
}

// Result is what an import produced.
type Result struct {
	ConfigMaps []ConfigMap // sorted by namespace
	Entries    []Entry     // the report, in input order
	// Identities is set when a destination admits workload identities,
	// which the server serves only with --mesh-port.
	Identities bool
	// Held counts the destinations (host and port) held back.
	Held int
	// Files and Objects count what was read.
	Files, Objects int
}

// Report is the report as xds-server import writes it: one line per
// entry, the summary, and why the exit status is 1 when it is.
func (r *Result) Report() []byte {
	var b strings.Builder
	for _, e := range r.Entries {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	b.WriteString(r.Summary())
	b.WriteByte('\n')
	if r.Exit() != 0 {
		b.WriteString("exit 1: an access restriction was not carried (ACCESS NOT CARRIED) or input was not read (error); what is written admits less than the input, never more\n")
	}
	return []byte(b.String())
}

// Summary is the report's last line.
func (r *Result) Summary() string {
	n := map[Status]int{}
	for _, e := range r.Entries {
		n[e.Status]++
	}
	dests := 0
	for _, cm := range r.ConfigMaps {
		dests += cm.Destinations
	}
	return fmt.Sprintf("%d object(s) in %d file(s): %d carried, %d default, %d not carried, %d ACCESS NOT CARRIED, %d error(s); %d ConfigMap(s), %d destination(s), %d host:port(s) held back",
		r.Objects, r.Files, n[StatusCarried], n[StatusDefault], n[StatusNotCarried], n[StatusAccess], n[StatusError], len(r.ConfigMaps), dests, r.Held)
}

// Exit is the command's exit status: 1 when an access restriction could
// not be carried or some input could not be read, else 0.
func (r *Result) Exit() int {
	for _, e := range r.Entries {
		if e.Status == StatusAccess || e.Status == StatusError {
			return 1
		}
	}
	return 0
}

// importer holds one import's state.
type importer struct {
	opts Options
	rep  reporter
	objs []*object

	// by kind, sorted by namespace/name
	serviceEntries, gateways, virtualServices, destinationRules []*object
	policies, envoyFilters, others                              []*object

	slots    map[slotKey]*slot
	slotList []*slot // in creation order

	// secretMounts maps a folder mounted in the egress gateway to the
	// Secret mounted there (IstioOperator overlays).
	secretMounts map[string]string

	servers       map[string][]*server // egress Gateways by ns/name
	otherGateways map[string]bool      // Gateways that are not the egress gateway's
	assumed       map[string]bool      // egress Gateways named by routes, not among the inputs
	ruleUse       map[*object]map[string]bool

	sidecarObjs, peerAuthObjs, requestAuthObjs []*object

	// indexes, built on first use
	byHost     map[string][]*slot
	seExact    map[string]*object
	seWild     []string
	routeIndex map[string][]int
	accepted   []intent.Candidate
}

// Import converts the inputs. readErrs are the files ReadInputs could not
// read, reported first.
func Import(ins []Input, readErrs []Entry, opts Options) *Result {
	opts.defaults()
	im := &importer{opts: opts, slots: map[slotKey]*slot{}, secretMounts: map[string]string{},
		servers: map[string][]*server{}, otherGateways: map[string]bool{}, assumed: map[string]bool{}, ruleUse: map[*object]map[string]bool{}}
	objs, parseErrs := parseObjects(ins)
	im.objs = objs
	fileEntries := append(append([]Entry(nil), readErrs...), parseErrs...)

	im.classify()
	for _, o := range im.others {
		im.other(o)
	}
	for _, o := range im.serviceEntries {
		im.serviceEntry(o)
	}
	im.routes()
	im.destinationRulesApply()
	im.authorize()
	im.rateLimits()
	im.sweep()
	res := im.output()
	res.Entries = im.rep.sorted(fileEntries)
	res.Files, res.Objects = len(ins), len(objs)
	return res
}

// classify decodes each object's spec by kind and sorts objects by kind.
func (im *importer) classify() {
	var dups = map[string]*object{}
	for _, o := range im.objs {
		group, _, _ := strings.Cut(o.apiVersion, "/")
		key := group + " " + o.id()
		if first, ok := dups[key]; ok {
			im.rep.addf(o, "", StatusError, "defined again, first in %s %s: which one is meant would be a guess; this one is not read", first.file, first.loc)
			continue
		}
		dups[key] = o
		k := kindOf(o)
		if k == nil {
			im.others = append(im.others, o)
			continue
		}
		o.spec = k.newSpec()
		im.decodeSpec(o)
		switch o.kind {
		case "ServiceEntry":
			im.serviceEntries = append(im.serviceEntries, o)
		case "Gateway":
			im.gateways = append(im.gateways, o)
		case "VirtualService":
			im.virtualServices = append(im.virtualServices, o)
		case "DestinationRule":
			im.destinationRules = append(im.destinationRules, o)
		case "AuthorizationPolicy":
			im.policies = append(im.policies, o)
		case "EnvoyFilter":
			im.envoyFilters = append(im.envoyFilters, o)
		default:
			im.others = append(im.others, o)
		}
	}
	for _, l := range [][]*object{im.serviceEntries, im.gateways, im.virtualServices, im.destinationRules, im.policies, im.envoyFilters} {
		sortByName(l)
	}
}

func sortByName(l []*object) {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].meta, l[j].meta
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// decodeSpec decodes spec strictly; unknown fields are reported, as
// access restrictions for the kinds that restrict access. A spec with
// values that do not fit is broken: nothing of it is carried.
func (im *importer) decodeSpec(o *object) {
	spec := o.field("spec")
	access := o.kind == "AuthorizationPolicy" || o.kind == "Sidecar" || o.kind == "PeerAuthentication"
	for i := 0; i+1 < len(o.node.Content); i += 2 {
		switch k := o.node.Content[i].Value; k {
		case "apiVersion", "kind", "metadata", "spec":
		case "status":
			im.rep.add(o, "status", StatusNotCarried, "written by Istio, not configuration")
		default:
			st := StatusNotCarried
			if access {
				st = StatusAccess
			}
			im.rep.add(o, k, st, "unknown field (known: apiVersion, kind, metadata, spec, status)")
		}
	}
	if spec == nil {
		return
	}
	var d decoder
	d.decode(spec, o.spec, "spec")
	for _, p := range d.problems {
		switch {
		case !p.unknown:
			o.broken = true
			im.rep.add(o, p.path, StatusError, p.msg+"; the object is not carried")
		case access:
			// What an unknown field restricts is unknown: the policy is
			// read as admitting no one and refusing everything it may.
			o.broken = true
			im.rep.add(o, p.path, StatusAccess, p.msg+": what it restricts is not known, so the object is read as refusing all it can")
		default:
			im.rep.add(o, p.path, StatusNotCarried, p.msg)
		}
	}
}
