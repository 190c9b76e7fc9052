package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	lrlhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	lrlnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/local_ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

const (
	httpRateLimitFilter    = "envoy.filters.http.local_ratelimit"
	networkRateLimitFilter = "envoy.filters.network.local_ratelimit"
	// RateLimitedHeader marks responses refused by a local rate limit.
	RateLimitedHeader = "x-rate-limited"
)

func tokenBucket(rl *intent.RateLimit) *typev3.TokenBucket {
	return &typev3.TokenBucket{
		MaxTokens:     rl.MaxTokens,
		TokensPerFill: u32(rl.TokensPerFill),
		FillInterval:  dur(rl.FillInterval.Duration),
	}
}

func fullyOn(key string) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{
		DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
		RuntimeKey:   key,
	}
}

// httpRateLimitBase is the connection manager's local rate limit filter: no
// bucket of its own, so only routes with a per-route bucket are limited.
func (t *translator) httpRateLimitBase(listener string) *anypb.Any {
	return t.pack(&lrlhttpv3.LocalRateLimit{StatPrefix: listener})
}

// httpRateLimitPerRoute is a token bucket per destination route; over the
// limit Envoy answers 429 with x-rate-limited: true.
func (t *translator) httpRateLimitPerRoute(dp *destPort) *anypb.Any {
	rl := dp.dest.RateLimit
	if !rl.Local() {
		return nil
	}
	return t.pack(&lrlhttpv3.LocalRateLimit{
		StatPrefix:     dp.cluster,
		TokenBucket:    tokenBucket(rl),
		FilterEnabled:  fullyOn("egress_ratelimit.enabled"),
		FilterEnforced: fullyOn("egress_ratelimit.enforced"),
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: RateLimitedHeader, Value: "true"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	})
}

// networkRateLimit limits new connections per destination on TLS and TCP
// ports; connections over the limit are closed at once.
func (t *translator) networkRateLimit(dp *destPort) *listenerv3.Filter {
	rl := dp.dest.RateLimit
	if !rl.Local() {
		return nil
	}
	return &listenerv3.Filter{Name: networkRateLimitFilter, ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: t.pack(&lrlnetv3.LocalRateLimit{StatPrefix: dp.cluster, TokenBucket: tokenBucket(rl)}),
	}}
}
