package translate

import (
	"sort"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Access logs are JSON lines on stdout, one shape for every listener so one
// log pipeline parses them all. Fields that do not apply (HTTP fields on a
// TCP connection) are omitted.
var accessLogFields = map[string]string{
	"time":                           "%START_TIME%",
	"sni":                            "%REQUESTED_SERVER_NAME%",
	"authority":                      "%REQ(:AUTHORITY)%",
	"method":                         "%REQ(:METHOD)%",
	"path":                           "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"protocol":                       "%PROTOCOL%",
	"response_code":                  "%RESPONSE_CODE%",
	"response_flags":                 "%RESPONSE_FLAGS%",
	"response_code_details":          "%RESPONSE_CODE_DETAILS%",
	"connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
	"bytes_received":                 "%BYTES_RECEIVED%",
	"bytes_sent":                     "%BYTES_SENT%",
	"duration_ms":                    "%DURATION%",
	"upstream_host":                  "%UPSTREAM_HOST%",
	"upstream_cluster":               "%UPSTREAM_CLUSTER%",
	"upstream_failure":               "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
	"downstream_address":             "%DOWNSTREAM_REMOTE_ADDRESS%",
	"peer_identity":                  "%DOWNSTREAM_PEER_URI_SAN%",
	"request_id":                     "%REQ(X-REQUEST-ID)%",
	"user_agent":                     "%REQ(USER-AGENT)%",
}

// accessLog logs to stdout as JSON. destination is an operator that names
// the destination (%FILTER_CHAIN_NAME% on TLS and TCP listeners, whose
// chains are named after their destination, %ROUTE_NAME% on HTTP ones) or a
// literal; extra adds literal fields such as the reason a connection was
// refused.
func (t *translator) accessLog(listener, destination string, extra map[string]string) []*accesslogv3.AccessLog {
	key := listener + "\x00" + destination
	for _, k := range sortedExtra(extra) {
		key += "\x00" + k + "=" + extra[k]
	}
	if cached, ok := t.accessLogs[key]; ok {
		return cached
	}
	fields := make(map[string]any, len(accessLogFields)+2+len(extra))
	for k, v := range accessLogFields {
		fields[k] = v
	}
	fields["listener"] = listener
	fields["destination"] = destination
	for k, v := range extra {
		fields[k] = v
	}
	format, err := structpb.NewStruct(fields)
	if err != nil {
		t.errs = append(t.errs, err)
		return nil
	}
	cfg := &streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
		Format:          &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: format},
		OmitEmptyValues: true,
	}}}
	logs := []*accesslogv3.AccessLog{{
		Name:       "envoy.access_loggers.stdout",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: t.pack(cfg)},
	}}
	if t.accessLogs == nil {
		t.accessLogs = map[string][]*accesslogv3.AccessLog{}
	}
	// Built once per listener and shared by its chains: resources are never
	// mutated after translation.
	t.accessLogs[key] = logs
	return logs
}

func asMessages(logs []*accesslogv3.AccessLog) []proto.Message {
	out := make([]proto.Message, len(logs))
	for i, l := range logs {
		out[i] = l
	}
	return out
}

// notDeclaredLog is the access log of a listener routing by SNI or port
// (the gateways' TLS ports, the sidecars' capture listener), for the
// connections no intent declares. Envoy writes a listener's access log for
// every connection it closes, served or not (seen with Envoy 1.40: each
// tunnelled connection was also logged as not declared); the filter keeps
// those that matched no filter chain (response flag NR).
func (t *translator) notDeclaredLog(listener string) []*accesslogv3.AccessLog {
	var out []*accesslogv3.AccessLog
	for _, l := range t.accessLog(listener, notDeclaredRoute, map[string]string{"reason": NotDeclaredReason}) {
		out = append(out, &accesslogv3.AccessLog{Name: l.GetName(), ConfigType: l.GetConfigType(), Filter: &accesslogv3.AccessLogFilter{
			FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: []string{"NR"}}},
		}})
	}
	return out
}

// chainLogs are the access logs of a TLS or TCP listener's destination
// chains, written by the listener rather than by each chain's TCP proxy:
// xDS cannot update less than a listener, and a log format in every chain
// was half of each chain's size, resent with the whole listener on every
// edit. Envoy writes a listener's access logs for every connection it
// closes (as the TCP proxy's would), with the same connection info, so
// the line is the one the TCP proxy wrote; a CEL filter on the filter
// chain's name picks the logger: the destination's chains (named after
// it) log the usual line, the chains of refused sources (in enforce) the
// line with the reason. Chains with fields of their own (held back, and
// in audit the refused sources and undeclared names) keep their TCP
// proxy's log, and these loggers skip them. A logger is there only if
// a chain of its kind is.
func (t *translator) chainLogs(listener string, chains []*listenerv3.FilterChain) []*accesslogv3.AccessLog {
	var k chainKinds
	k.add(t, chains)
	return t.chainLogsOf(listener, k)
}

// chainKinds says which loggers a listener's chains need.
type chainKinds struct{ served, refused bool }

var (
	refusedSuffix = "/" + RefusedCluster
	ownLogSuffix  = []string{refusedSuffix, "/held_back", auditChainSuffix}
)

func (k *chainKinds) add(t *translator, chains []*listenerv3.FilterChain) {
	for _, c := range chains {
		switch n := c.GetName(); {
		case !strings.HasSuffix(n, ownLogSuffix[0]) && !strings.HasSuffix(n, ownLogSuffix[1]) && !strings.HasSuffix(n, ownLogSuffix[2]):
			k.served = true
		case strings.HasSuffix(n, refusedSuffix) && !t.audit():
			k.refused = true
		}
	}
}

func (k *chainKinds) merge(o chainKinds) {
	k.served, k.refused = k.served || o.served, k.refused || o.refused
}

// chainLogsOf are the loggers of chains of these kinds.
func (t *translator) chainLogsOf(listener string, k chainKinds) []*accesslogv3.AccessLog {
	const chain = "xds.filter_chain_name"
	own := ownLogSuffix
	served, refused := k.served, k.refused
	var out []*accesslogv3.AccessLog
	if served {
		expr := chain + " != ''"
		for _, suffix := range own {
			expr += " && !" + chain + ".endsWith('" + suffix + "')"
		}
		out = append(out, withFilter(t.accessLog(listener, "%FILTER_CHAIN_NAME%", nil), t.celFilter(expr)))
	}
	if refused {
		logs := t.accessLog(listener, "%FILTER_CHAIN_NAME%", map[string]string{"reason": SourceNotAllowedReason})
		out = append(out, withFilter(logs, t.celFilter(chain+".endsWith('"+refusedSuffix+"')")))
	}
	return out
}

// celFilter selects the connections for which expression is true.
func (t *translator) celFilter(expression string) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
		Name:       "envoy.access_loggers.extension_filters.cel",
		ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: t.pack(&celv3.ExpressionFilter{Expression: expression})},
	}}}
}

func sortedExtra(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
