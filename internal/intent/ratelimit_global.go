package intent

import (
	"fmt"
	"slices"
	"strings"
)

// GlobalRateLimit is a budget shared by every gateway that serves the
// destination, counted by the rate limit service (envoyproxy/ratelimit,
// with Redis): Requests per Per for the destination as a whole, or for
// each source apart when PerSource is set. HTTP ports count requests
// (CONNECT tunnels of the explicit proxy and the mesh included), TLS and
// TCP ports new connections; all of a destination's ports share the one
// budget.
type GlobalRateLimit struct {
	Requests uint32 `yaml:"requests"`
	Per      Unit   `yaml:"per"`
	// PerSource counts each source apart: its SPIFFE ID (principal), its
	// namespace, or its address. Requests without a workload identity
	// (every port but the mesh port) count as one source.
	PerSource SourceKind `yaml:"perSource,omitempty"`
	// FailureModeDeny refuses requests while the rate limit service
	// cannot answer (a hard budget); unset: the server's default
	// (--ratelimit-failure-mode, fail open unless told otherwise).
	FailureModeDeny *bool `yaml:"failureModeDeny,omitempty"`
}

// Unit is the window of a global rate limit.
type Unit string

const (
	UnitSecond Unit = "second"
	UnitMinute Unit = "minute"
	UnitHour   Unit = "hour"
	UnitDay    Unit = "day"
)

var units = []Unit{UnitSecond, UnitMinute, UnitHour, UnitDay}

// SourceKind is what tells sources apart for a per-source limit.
type SourceKind string

const (
	SourcePrincipal SourceKind = "principal"
	SourceNamespace SourceKind = "namespace"
	SourceAddress   SourceKind = "address"
)

var sourceKinds = []SourceKind{SourcePrincipal, SourceNamespace, SourceAddress}

// validateRateLimit checks a destination's rate limits: the local token
// bucket, when any of its fields is set, and the global limit.
func validateRateLimit(r *reporter, p string, rl *RateLimit) {
	if rl == nil {
		return
	}
	p += ".rateLimit"
	if !rl.Local() && rl.Global == nil {
		r.errorf(p, "set a local token bucket (maxTokens, fillInterval), a global limit (global), or both")
		return
	}
	if rl.Local() {
		if rl.MaxTokens == 0 {
			r.errorf(p+".maxTokens", "must be at least 1")
		}
		if rl.TokensPerFill == 0 {
			rl.TokensPerFill = 1
		}
		if rl.FillInterval == nil {
			r.errorf(p+".fillInterval", "is required")
		} else if rl.FillInterval.Duration < minFillInterval {
			r.errorf(p+".fillInterval", "%s is below Envoy's minimum of 50ms", rl.FillInterval.Duration)
		}
	}
	if g := rl.Global; g != nil {
		pg := p + ".global"
		if g.Requests == 0 {
			r.errorf(pg+".requests", "must be at least 1 (remove the destination to refuse everyone)")
		}
		switch {
		case g.Per == "":
			r.errorf(pg+".per", "is required (%s)", unitList())
		case !slices.Contains(units, g.Per):
			r.errorf(pg+".per", "%s is not one of %s", clip(string(g.Per)), unitList())
		}
		if g.PerSource != "" && !slices.Contains(sourceKinds, g.PerSource) {
			r.errorf(pg+".perSource", "%s is not one of principal, namespace, address", clip(string(g.PerSource)))
		}
	}
}

func unitList() string {
	s := make([]string, len(units))
	for i, u := range units {
		s[i] = string(u)
	}
	return strings.Join(s, ", ")
}

// globalLimitsAllowed checks, against the server's options, the global
// rate limits of an intent: they need the rate limit service, and limits
// per principal or namespace need workload identities (the mesh).
func globalLimitsAllowed(in *Intent, opts ResolveOptions) Diagnostics {
	var diags Diagnostics
	for di := range in.Docs {
		d := &in.Docs[di]
		for i := range d.Destinations {
			rl := d.Destinations[i].RateLimit
			if rl == nil || rl.Global == nil {
				continue
			}
			p := fmt.Sprintf("destinations[%d].rateLimit.global", i)
			switch {
			case !opts.RateLimitService:
				diags = append(diags, Diagnostic{Origin: d.Origin, Severity: SeverityError, Path: p,
					Message: "global rate limits are counted by the rate limit service, which this server does not configure: start it with --ratelimit-address (the envoyproxy/ratelimit service's gRPC address), or use a local token bucket"})
			case (rl.Global.PerSource == SourcePrincipal || rl.Global.PerSource == SourceNamespace) && opts.TrustDomain == "":
				diags = append(diags, Diagnostic{Origin: d.Origin, Severity: SeverityError, Path: p + ".perSource",
					Message: "workload identities are carried by mutual TLS from sidecars to the gateway's mesh port, which this server does not serve: every request would count as one source; start it with --mesh-port and --mesh-trust-domain, or count per address"})
			}
		}
	}
	return diags
}
