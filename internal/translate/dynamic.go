package translate

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	setfilterstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	dfphttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_forward_proxy/v3"
	headertometav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	setfilterstatehttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_filter_state/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Requests for DYNAMIC destinations (wildcards) go through Envoy's dynamic
// forward proxy, which connects to the host and port of the Host header
// (CONNECT: the authority), 80 or 443 when it names no port. The upstream
// port is the destination's (tls.port, targetPort, else the port), whatever
// the client wrote: each such route sets the filter state the forward
// proxy filter and cluster read first (allow_dynamic_host_from_filter_state),
//   - envoy.upstream.dynamic_port: the declared upstream port;
//   - envoy.upstream.dynamic_host: the Host without its port, which
//     header_to_metadata cuts off (a host that keeps its port would keep it
//     in the DNS cache key and the connection).
// The route has matched the declared host by then, so only the port is
// ever replaced.

const (
	setFilterStateFilter = "envoy.filters.http.set_filter_state"
	// requestHostNamespace and requestHostKey hold the requested host
	// without its port, in the request's dynamic metadata.
	requestHostNamespace = "egress-xds"
	requestHostKey       = "host"
)

// dynamicFilters are the connection manager's filters for DYNAMIC
// destinations, in order: the requested host cut from its port, the
// per-route filter state (no values of its own), the forward proxy.
func (t *translator) dynamicFilters() []*hcmv3.HttpFilter {
	hostOnly := &headertometav3.Config{RequestRules: []*headertometav3.Config_Rule{{
		Header: ":authority",
		OnHeaderPresent: &headertometav3.Config_KeyValuePair{
			MetadataNamespace: requestHostNamespace,
			Key:               requestHostKey,
			RegexValueRewrite: &matcherv3.RegexMatchAndSubstitute{
				Pattern:      &matcherv3.RegexMatcher{Regex: `^(.+?)(:[0-9]+)?$`},
				Substitution: `\1`,
			},
		},
	}}}
	return []*hcmv3.HttpFilter{
		{Name: "envoy.filters.http.header_to_metadata", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(hostOnly)}},
		{Name: setFilterStateFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(&setfilterstatehttpv3.Config{})}},
		{Name: "envoy.filters.http.dynamic_forward_proxy", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: t.pack(&dfphttpv3.FilterConfig{
			ImplementationSpecifier:         &dfphttpv3.FilterConfig_DnsCacheConfig{DnsCacheConfig: t.dnsCacheConfig()},
			AllowDynamicHostFromFilterState: true,
			// Audit refuses some upstream addresses (audit.go): the
			// RBAC filter after this one reads the one resolved.
			SaveUpstreamAddress: t.audit(),
		})}},
	}
}

// dynamicUpstream is the per-route filter state of a DYNAMIC destination
// port: its requested host (when the metadata holds it) on its upstream
// port. Packed once per upstream port: wildcards mostly share 443.
func (t *translator) dynamicUpstream(dp *destPort) *anypb.Any {
	return t.dynamicUpstreamPort(dp.upstreamPort())
}

// dynamicUpstreamPort is the per-route filter state of requests to the
// requested host on port.
func (t *translator) dynamicUpstreamPort(port uint32) *anypb.Any {
	if a, ok := t.dynamicUpstreams[port]; ok {
		return a
	}
	text := func(s string) *corev3.SubstitutionFormatString {
		return &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: s},
			}},
			// Missing metadata renders empty, not "-": the value is then
			// skipped and the forward proxy uses the Host as it is.
			OmitEmptyValues: true,
		}
	}
	value := func(key, format string) *setfilterstatev3.FilterStateValue {
		return &setfilterstatev3.FilterStateValue{
			Key:         &setfilterstatev3.FilterStateValue_ObjectKey{ObjectKey: key},
			Value:       &setfilterstatev3.FilterStateValue_FormatString{FormatString: text(format)},
			SkipIfEmpty: true,
		}
	}
	a := t.pack(&setfilterstatehttpv3.Config{OnRequestHeaders: []*setfilterstatev3.FilterStateValue{
		value("envoy.upstream.dynamic_host", "%DYNAMIC_METADATA("+requestHostNamespace+":"+requestHostKey+")%"),
		value("envoy.upstream.dynamic_port", strconv.FormatUint(uint64(port), 10)),
	}})
	if t.dynamicUpstreams == nil {
		t.dynamicUpstreams = map[uint32]*anypb.Any{}
	}
	t.dynamicUpstreams[port] = a
	return a
}
