package istio

import (
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// The guide's EnvoyFilter inserts envoy.filters.http.local_ratelimit in
// the egress gateway's HTTP connection managers; it becomes rateLimit on
// every HTTP destination of the listener port it names (all of them
// without one). The global rate limit (envoy.filters.http.ratelimit and
// the rate_limits actions of route patches, Istio's recipe) is reported,
// not carried: its limits are the rate limit service's own configuration,
// descriptors by request attributes that no Istio object holds. Any other
// patch is reported with its path: egress-xds serves its own Envoy
// configuration.

const (
	localRateLimit  = "envoy.filters.http.local_ratelimit"
	globalRateLimit = "envoy.filters.http.ratelimit"
)

// localRateLimitConfig is envoy.extensions.filters.http.local_ratelimit.v3
// LocalRateLimit, as far as the importer reads it (protobuf field names).
type localRateLimitConfig struct {
	StatPrefix                            string          `json:"stat_prefix"`
	Status                                Raw             `json:"status"`
	TokenBucket                           *tokenBucket    `json:"token_bucket"`
	FilterEnabled                         *runtimePercent `json:"filter_enabled"`
	FilterEnforced                        *runtimePercent `json:"filter_enforced"`
	RequestHeadersToAddWhenNotEnforced    Raw             `json:"request_headers_to_add_when_not_enforced"`
	ResponseHeadersToAdd                  []headerOption  `json:"response_headers_to_add"`
	Descriptors                           Raw             `json:"descriptors"`
	Stage                                 Raw             `json:"stage"`
	LocalRateLimitPerDownstreamConnection bool            `json:"local_rate_limit_per_downstream_connection"`
	LocalClusterRateLimit                 Raw             `json:"local_cluster_rate_limit"`
	EnableXRatelimitHeaders               string          `json:"enable_x_ratelimit_headers"`
	VhRateLimits                          string          `json:"vh_rate_limits"`
	AlwaysConsumeDefaultTokenBucket       Raw             `json:"always_consume_default_token_bucket"`
	RateLimitedAsResourceExhausted        bool            `json:"rate_limited_as_resource_exhausted"`
	RateLimits                            Raw             `json:"rate_limits"`
}

type tokenBucket struct {
	MaxTokens     uint32    `json:"max_tokens"`
	TokensPerFill *uint32   `json:"tokens_per_fill"`
	FillInterval  *Duration `json:"fill_interval"`
}

type runtimePercent struct {
	RuntimeKey   string `json:"runtime_key"`
	DefaultValue *struct {
		Numerator   uint32 `json:"numerator"`
		Denominator string `json:"denominator"`
	} `json:"default_value"`
}

// fraction is the share of requests, 0 to 1; absent is 0 (Envoy's
// default for these two fields: the filter does nothing).
func (r *runtimePercent) fraction() float64 {
	if r == nil || r.DefaultValue == nil {
		return 0
	}
	den := map[string]float64{"": 100, "HUNDRED": 100, "TEN_THOUSAND": 10000, "MILLION": 1e6}[strings.ToUpper(r.DefaultValue.Denominator)]
	if den == 0 {
		return 0
	}
	return float64(r.DefaultValue.Numerator) / den
}

type headerOption struct {
	Append       *bool  `json:"append"`
	AppendAction string `json:"append_action"`
	KeepEmpty    bool   `json:"keep_empty_value"`
	Header       *struct {
		Key      string `json:"key"`
		Value    string `json:"value"`
		RawValue string `json:"raw_value"`
	} `json:"header"`
}

// filterValue is a patch's value when it is an HTTP filter.
type filterValue struct {
	Name        string `json:"name"`
	TypedConfig Raw    `json:"typed_config"`
	ConfigDisc  Raw    `json:"config_discovery"`
	Disabled    bool   `json:"disabled"`
	IsOptional  bool   `json:"is_optional"`
}

type typedStruct struct {
	Type    string `json:"@type"`
	TypeURL string `json:"type_url"`
	Value   Raw    `json:"value"`
}

func (im *importer) rateLimits() {
	for _, o := range im.envoyFilters {
		if o.broken {
			continue
		}
		ef := o.spec.(*EnvoyFilter)
		gateway := false
		switch {
		case ef.TargetRefs.Set():
			gateway = true
			im.rep.add(o, "spec.targetRefs", StatusNote, "cannot be told from the egress gateway: read as applying to it")
		case ef.WorkloadSelector != nil:
			gateway = im.selects(ef.WorkloadSelector.Labels)
			if gateway {
				im.rep.add(o, "spec.workloadSelector", StatusCarried, "the egress gateway")
			}
		default:
			gateway = o.meta.Namespace == im.opts.GatewayNamespace
		}
		if !gateway {
			im.rep.add(o, "", StatusNotCarried, "applies to other workloads than the egress gateway (their sidecars): egress-xds configures its gateways and sidecars itself")
			continue
		}
		if ef.Priority != 0 {
			im.rep.add(o, "spec.priority", StatusNotCarried, "orders EnvoyFilters: not needed")
		}
		for i, cp := range ef.ConfigPatches {
			im.patch(o, fmt.Sprintf("spec.configPatches[%d]", i), cp)
		}
	}
}

// patch carries one configPatch of an EnvoyFilter on the gateway.
func (im *importer) patch(o *object, p string, cp ConfigPatch) {
	var v filterValue
	name := ""
	if cp.Patch != nil && cp.Patch.Value.Set() {
		var d decoder
		d.decode(cp.Patch.Value.Node, &v, p+".patch.value")
		name = v.Name
	}
	other := func() {
		what := cp.ApplyTo
		if name != "" {
			what += " " + name
		}
		if cp.Patch != nil {
			what = cp.Patch.Operation + " " + what
		}
		im.rep.add(o, p, StatusAccess, "an Envoy patch on the egress gateway ("+strings.TrimSpace(what)+"), not carried: egress-xds serves its own configuration; review what it did, it may have refused traffic")
	}
	if cp.Patch != nil && im.globalRateLimit(o, p, cp, name) {
		return
	}
	if strings.ToUpper(cp.ApplyTo) != "HTTP_FILTER" || name != localRateLimit || cp.Patch == nil {
		other()
		return
	}
	switch strings.ToUpper(cp.Patch.Operation) {
	case "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "ADD":
	default:
		other()
		return
	}
	port := uint32(0)
	if m := cp.Match; m != nil {
		switch strings.ToUpper(m.Context) {
		case "", "ANY", "GATEWAY":
		default:
			im.rep.add(o, p+".match.context", StatusNotCarried, m.Context+": not the gateway's listeners")
			return
		}
		if m.Listener != nil {
			port = m.Listener.PortNumber
			if fc := m.Listener.FilterChain; fc != nil && (fc.Sni != "" || fc.Name != "" || fc.TransportProtocol != "" || fc.ApplicationProtocols != "" || fc.DestinationPort != 0) {
				im.rep.add(o, p+".match.listener.filterChain", StatusNotCarried, "a narrower filter chain match is not read: every HTTP destination of the listener is limited (narrower)")
			}
			if m.Listener.PortName != "" || m.Listener.Name != "" || m.Listener.ListenerFilter != "" {
				im.rep.add(o, p+".match.listener", StatusNotCarried, "listener names are Istio's: the port number alone is read")
			}
		}
		if m.RouteConfiguration.Set() || m.Cluster.Set() || m.Proxy.Set() {
			im.rep.add(o, p+".match", StatusNotCarried, "route, cluster and proxy matches are not read: every HTTP destination of the listener is limited (narrower)")
		}
		im.rep.add(o, p+".match", StatusCarried, "the egress gateway's HTTP listeners")
	}
	rl, ok := im.rateLimitConfig(o, p+".patch.value.typed_config", v.TypedConfig)
	if !ok {
		return
	}
	var slots []*slot
	for _, s := range im.slotList {
		if s.protocol != intent.ProtocolHTTP || port != 0 && s.gatewayPort != port {
			continue
		}
		if s.d.RateLimit == nil {
			r := *rl
			s.d.RateLimit = &r
			slots = append(slots, s)
		} else {
			im.rep.add(o, p, StatusNotCarried, "another EnvoyFilter already limits this destination; the first is kept", s)
		}
	}
	text := fmt.Sprintf("rateLimit: %d tokens, %d per %s; Istio's filter kept one bucket for the gateway's listener, egress-xds keeps one per destination", rl.MaxTokens, rl.TokensPerFill, rl.FillInterval.Duration)
	if len(slots) == 0 {
		im.rep.add(o, p, StatusNotCarried, text+": no HTTP destination to carry it to")
		return
	}
	im.rep.add(o, p, StatusCarried, text, slots...)
}

// rateLimitConfig reads the filter's typed_config: a TypedStruct (the
// guide's form) or the LocalRateLimit itself.
func (im *importer) rateLimitConfig(o *object, p string, tc Raw) (*intent.RateLimit, bool) {
	if !tc.Set() {
		im.rep.add(o, p, StatusNotCarried, "no typed_config: Envoy refuses the filter")
		return nil, false
	}
	var ts typedStruct
	var d decoder
	node, vp := tc.Node, p
	// Peek at @type: a TypedStruct wraps the config in value.
	var head struct {
		Type string         `json:"@type"`
		Rest map[string]Raw `json:",inline"`
	}
	d.decode(tc.Node, &head, p)
	switch {
	case strings.HasSuffix(head.Type, "udpa.type.v1.TypedStruct") || strings.HasSuffix(head.Type, "xds.type.v3.TypedStruct"):
		d = decoder{}
		d.decode(tc.Node, &ts, p)
		if !strings.HasSuffix(ts.TypeURL, "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit") || !ts.Value.Set() {
			im.rep.add(o, p, StatusNotCarried, "a TypedStruct of "+ts.TypeURL+": not a LocalRateLimit")
			return nil, false
		}
		node, vp = ts.Value.Node, p+".value"
	case strings.HasSuffix(head.Type, "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"):
		// the config inline, @type beside its fields
		c := *tc.Node
		c.Content = nil
		for i := 0; i+1 < len(tc.Node.Content); i += 2 {
			if tc.Node.Content[i].Value != "@type" {
				c.Content = append(c.Content, tc.Node.Content[i], tc.Node.Content[i+1])
			}
		}
		node = &c
	default:
		im.rep.add(o, p, StatusNotCarried, "@type "+head.Type+": not a LocalRateLimit")
		return nil, false
	}
	var cfg localRateLimitConfig
	d = decoder{}
	d.decode(node, &cfg, vp)
	for _, pr := range d.problems {
		im.rep.add(o, pr.path, StatusNotCarried, pr.msg)
	}
	tb := cfg.TokenBucket
	if tb == nil || tb.MaxTokens == 0 || tb.FillInterval == nil {
		im.rep.add(o, vp+".token_bucket", StatusNotCarried, "needs max_tokens and fill_interval")
		return nil, false
	}
	out := &intent.RateLimit{MaxTokens: tb.MaxTokens, TokensPerFill: 1, FillInterval: &intent.Duration{Duration: tb.FillInterval.Duration}}
	if tb.TokensPerFill != nil && *tb.TokensPerFill > 0 {
		out.TokensPerFill = *tb.TokensPerFill
	}
	im.rep.add(o, vp+".token_bucket", StatusCarried, fmt.Sprintf("rateLimit maxTokens %d, tokensPerFill %d, fillInterval %s", out.MaxTokens, out.TokensPerFill, out.FillInterval.Duration))
	en, enf := cfg.FilterEnabled.fraction(), cfg.FilterEnforced.fraction()
	switch {
	case en == 0 || enf == 0:
		im.rep.add(o, vp, StatusNotCarried, "filter_enabled or filter_enforced is 0% (or absent, which Envoy reads as 0%): Istio's filter limited nothing, so nothing is carried")
		return nil, false
	case en < 1 || enf < 1:
		im.rep.add(o, vp+".filter_enforced", StatusNotCarried, "a share of requests below 100%: egress-xds limits every request (narrower)")
	default:
		im.rep.add(o, vp+".filter_enabled", StatusCarried, "100%: every request is counted")
		im.rep.add(o, vp+".filter_enforced", StatusCarried, "100%: over the limit, requests get 429")
	}
	for i, h := range cfg.ResponseHeadersToAdd {
		hp := fmt.Sprintf("%s.response_headers_to_add[%d]", vp, i)
		if h.Header != nil && strings.EqualFold(h.Header.Key, "x-rate-limited") && h.Header.Value == "true" {
			im.rep.add(o, hp, StatusDefault, "egress-xds answers x-rate-limited: true with every 429")
		} else {
			im.rep.add(o, hp, StatusNotCarried, "only x-rate-limited: true is added to a 429")
		}
	}
	for _, f := range []field{{"stat_prefix", cfg.StatPrefix != ""}, {"status", cfg.Status.Set()}, {"descriptors", cfg.Descriptors.Set()},
		{"stage", cfg.Stage.Set()}, {"local_rate_limit_per_downstream_connection", cfg.LocalRateLimitPerDownstreamConnection},
		{"request_headers_to_add_when_not_enforced", cfg.RequestHeadersToAddWhenNotEnforced.Set()}, {"local_cluster_rate_limit", cfg.LocalClusterRateLimit.Set()},
		{"enable_x_ratelimit_headers", cfg.EnableXRatelimitHeaders != ""}, {"vh_rate_limits", cfg.VhRateLimits != ""},
		{"always_consume_default_token_bucket", cfg.AlwaysConsumeDefaultTokenBucket.Set()}, {"rate_limited_as_resource_exhausted", cfg.RateLimitedAsResourceExhausted},
		{"rate_limits", cfg.RateLimits.Set()}} {
		if f.set {
			why := "not carried: egress-xds's rate limit is one token bucket per destination, 429 over it"
			if f.name == "stat_prefix" {
				why = "stats are per destination (namespace/configmap/destination/port)"
			}
			im.rep.add(o, vp+"."+f.name, StatusNotCarried, why)
		}
	}
	return out, true
}

// globalRateLimit reports the patches of Istio's global rate limit
// recipe: the filter, and the rate_limits (descriptor actions) merged
// into virtual hosts or routes. Both refused requests over limits that
// live in the rate limit service's configuration (descriptors of
// arbitrary request attributes: paths, headers, addresses), which the
// import does not read and rateLimit.global (a budget per destination,
// or per source) cannot always say: ACCESS NOT CARRIED, with what to
// write instead, and the filter holds back the HTTP destinations it
// limited. False when the patch is none of these.
func (im *importer) globalRateLimit(o *object, p string, cp ConfigPatch, name string) bool {
	val := cp.Patch.Value.Node
	instead := "declare the limits as rateLimit.global on the destinations (requests per second, minute, hour or day, for the destination or per source) and serve with --ratelimit-address"
	switch {
	case strings.ToUpper(cp.ApplyTo) == "HTTP_FILTER" && name == globalRateLimit:
		var what []string
		if tc := mapValue(orEmpty(val), "typed_config"); tc != nil {
			if v := mapValue(tc, "value"); v != nil && mapValue(tc, "type_url") != nil {
				tc = v // a TypedStruct
			}
			if d := mapValue(tc, "domain"); d != nil {
				what = append(what, "domain "+intent.Quote(d.Value))
			}
			if c := mapValue(orEmpty(mapValue(orEmpty(mapValue(orEmpty(mapValue(tc, "rate_limit_service")), "grpc_service")), "envoy_grpc")), "cluster_name"); c != nil {
				what = append(what, "service "+intent.Quote(c.Value))
			}
			if f := mapValue(tc, "failure_mode_deny"); f != nil && f.Value == "true" {
				what = append(what, "failing closed")
			}
		}
		desc := "the global rate limit filter"
		if len(what) > 0 {
			desc += " (" + strings.Join(what, ", ") + ")"
		}
		port := uint32(0)
		if m := cp.Match; m != nil && m.Listener != nil {
			port = m.Listener.PortNumber
		}
		var held []*slot
		for _, s := range im.slotList {
			if s.protocol == intent.ProtocolHTTP && (port == 0 || s.gatewayPort == port) {
				s.hold("the egress gateway's global rate limit (EnvoyFilter " + o.id() + ") is not carried")
				held = append(held, s)
			}
		}
		im.rep.add(o, p, StatusAccess, desc+": its limits are the rate limit service's own configuration (descriptors by request attributes), which no Istio object holds: not carried, and the HTTP destinations it limited are held back (without it they would take more requests); "+instead, held...)
		return true
	case val != nil && (mapValue(val, "rate_limits") != nil || mapValue(orEmpty(mapValue(val, "route")), "rate_limits") != nil):
		im.rep.add(o, p, StatusAccess, "rate_limits ("+strings.ToLower(cp.ApplyTo)+"): the descriptors the global rate limit service counted requests by: not carried; "+instead)
		return true
	}
	return false
}

// orEmpty lets mapValue look into a node that may be missing.
func orEmpty(n *yaml.Node) *yaml.Node {
	if n == nil {
		return &yaml.Node{}
	}
	return n
}
