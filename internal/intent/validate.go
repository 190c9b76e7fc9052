package intent

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"
)

var (
	dnsLabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	secretRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	groupRE     = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9._]*[A-Za-z0-9])?$`)
	retryOnList = []string{"5xx", "connect-failure", "envoy-ratelimited", "gateway-error", "http3-post-connect-failure",
		"refused-stream", "reset", "reset-before-request", "retriable-4xx"}
)

// minFillInterval is Envoy's lower bound for a local rate limit token bucket.
const minFillInterval = 50 * time.Millisecond

// Validate checks a decoded document, fills in defaults and returns the
// problems found, each with its field path. Warnings do not reject it.
func Validate(origin Origin, doc *Document) Diagnostics {
	r := &reporter{origin: origin}
	validate(r, doc)
	return r.diags
}

func validate(r *reporter, doc *Document) {
	seenGroup := map[string]bool{}
	for i, g := range doc.Gateways {
		p := fmt.Sprintf("gateways[%d]", i)
		switch {
		case !groupRE.MatchString(g) || len(g) > 253:
			r.errorf(p, "%q is not a valid gateway group name (letters, digits, '-', '_', '.')", g)
		case seenGroup[g]:
			r.errorf(p, "%q is listed twice", g)
		}
		seenGroup[g] = true
	}
	if len(doc.Destinations) == 0 {
		r.errorf("destinations", "at least one destination is required")
	}
	names := map[string]int{}
	for i := range doc.Destinations {
		d := &doc.Destinations[i]
		p := fmt.Sprintf("destinations[%d]", i)
		validateDestination(r, p, d)
		if d.Name != "" {
			if j, dup := names[d.Name]; dup {
				r.errorf(p+".name", "%q is already the name of destinations[%d]", d.Name, j)
			} else {
				names[d.Name] = i
			}
		}
	}
}

func validateDestination(r *reporter, p string, d *Destination) {
	switch {
	case d.Name == "":
		r.errorf(p+".name", "is required")
	case !validLabel(d.Name):
		r.errorf(p+".name", "%q must be a DNS label: lowercase letters, digits and '-', at most 63 characters", d.Name)
	}
	d.Host = strings.ToLower(strings.TrimSuffix(d.Host, "."))
	validateHost(r, p+".host", d.Host)
	wildcard := strings.HasPrefix(d.Host, "*.")

	if len(d.Ports) == 0 {
		r.errorf(p+".ports", "at least one port is required")
	}
	seenPort := map[uint32]int{}
	var hasHTTP, hasTCP, hasNonHTTP bool
	var nonHTTP string // the first port HTTP rules cannot apply to
	for i, port := range d.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", p, i)
		if !validPort(port.Number) {
			r.errorf(pp+".number", "%d is not a valid port", port.Number)
		} else if j, dup := seenPort[port.Number]; dup {
			r.errorf(pp+".number", "port %d is already declared by ports[%d]", port.Number, j)
		} else {
			seenPort[port.Number] = i
		}
		switch port.Protocol {
		case ProtocolHTTP:
			hasHTTP = true
		case ProtocolTCP:
			hasTCP, hasNonHTTP = true, true
			nonHTTP = cmp.Or(nonHTTP, fmt.Sprintf("%d (TCP: bytes the gateway does not parse)", port.Number))
		case ProtocolTLS, ProtocolHTTPS:
			hasNonHTTP = true
			nonHTTP = cmp.Or(nonHTTP, fmt.Sprintf("%d (%s, passed through encrypted)", port.Number, port.Protocol))
		case "":
			r.errorf(pp+".protocol", "is required (TLS, HTTPS, HTTP or TCP)")
		default:
			r.errorf(pp+".protocol", "%q is not one of TLS, HTTPS, HTTP, TCP", port.Protocol)
		}
		if port.TargetPort != 0 && !validPort(port.TargetPort) {
			r.errorf(pp+".targetPort", "%d is not a valid port", port.TargetPort)
		}
		if port.TargetPort != 0 && port.Protocol == ProtocolHTTP && d.TLS != nil {
			r.errorf(pp+".targetPort", "is not used with TLS origination: set tls.port instead")
		}
	}

	validateResolution(r, p, d, wildcard, hasTCP)
	validateTLS(r, p, d, wildcard, hasHTTP)
	validateAllow(r, p+".allow", d.Allow)
	validateHTTPRules(r, p, d, nonHTTP)
	validateRateLimit(r, p, d.RateLimit)
	if d.Timeout != nil {
		positive(r, p+".timeout", d.Timeout)
		if !hasHTTP {
			r.errorf(p+".timeout", "applies to HTTP ports only, and this destination has none")
		}
	}
	if rt := d.Retries; rt != nil {
		if !hasHTTP {
			r.errorf(p+".retries", "applies to HTTP ports only, and this destination has none")
		}
		if rt.Attempts == 0 || rt.Attempts > 10 {
			r.errorf(p+".retries.attempts", "%d must be between 1 and 10", rt.Attempts)
		}
		if rt.PerTryTimeout != nil {
			positive(r, p+".retries.perTryTimeout", rt.PerTryTimeout)
		}
		if len(rt.On) == 0 {
			rt.On = []string{"connect-failure", "refused-stream", "reset", "5xx"}
		}
		for i, on := range rt.On {
			if !slices.Contains(retryOnList, on) {
				r.errorf(fmt.Sprintf("%s.retries.on[%d]", p, i), "%q is not one of %s", on, strings.Join(retryOnList, ", "))
			}
		}
	}
	if cp := d.ConnectionPool; cp != nil {
		if cp.ConnectTimeout != nil {
			positive(r, p+".connectionPool.connectTimeout", cp.ConnectTimeout)
		}
		if cp.IdleTimeout != nil {
			positive(r, p+".connectionPool.idleTimeout", cp.IdleTimeout)
		}
		if cp.MaxRequestsPerConnection != 0 && hasNonHTTP {
			r.warnf(p+".connectionPool.maxRequestsPerConnection", "applies to HTTP ports only; ignored on this destination's TLS and TCP ports")
		}
	}
	if od := d.OutlierDetection; od != nil {
		for name, v := range map[string]*uint32{"consecutive5xxErrors": od.Consecutive5xxErrors, "consecutiveGatewayErrors": od.ConsecutiveGatewayErrors} {
			if v != nil && *v == 0 {
				r.errorf(p+".outlierDetection."+name, "must be at least 1 (omit it to keep Envoy's default)")
			}
		}
		if od.Interval != nil {
			positive(r, p+".outlierDetection.interval", od.Interval)
		}
		if od.BaseEjectionTime != nil {
			positive(r, p+".outlierDetection.baseEjectionTime", od.BaseEjectionTime)
		}
		if od.MaxEjectionPercent != nil && *od.MaxEjectionPercent > 100 {
			r.errorf(p+".outlierDetection.maxEjectionPercent", "%d is more than 100", *od.MaxEjectionPercent)
		}
	}
	switch d.LoadBalancer {
	case "":
		if d.Resolution != ResolutionDynamic {
			d.LoadBalancer = LBRoundRobin
		}
	case LBRoundRobin, LBLeastRequest, LBRandom:
		if d.Resolution == ResolutionDynamic {
			r.errorf(p+".loadBalancer", "cannot be set with resolution DYNAMIC: the forward proxy connects to the address it resolves")
		}
	default:
		r.errorf(p+".loadBalancer", "%q is not one of ROUND_ROBIN, LEAST_REQUEST, RANDOM", d.LoadBalancer)
	}
}

func validateResolution(r *reporter, p string, d *Destination, wildcard, hasTCP bool) {
	if d.Resolution == "" {
		switch {
		case wildcard:
			d.Resolution = ResolutionDynamic
		case len(d.Endpoints) > 0 && allIPs(d.Endpoints):
			d.Resolution = ResolutionStatic
		default:
			d.Resolution = ResolutionDNS
		}
	}
	switch d.Resolution {
	case ResolutionDNS, ResolutionDNSRoundRobin:
		if wildcard {
			r.errorf(p+".resolution", "%s cannot resolve the wildcard host %q: use DYNAMIC (resolve each requested name) or STATIC", d.Resolution, d.Host)
		}
		if d.Resolution == ResolutionDNSRoundRobin && len(d.Endpoints) > 1 {
			r.errorf(p+".endpoints", "DNS_ROUND_ROBIN takes at most one endpoint, got %d", len(d.Endpoints))
		}
	case ResolutionStatic:
		if len(d.Endpoints) == 0 {
			r.errorf(p+".endpoints", "resolution STATIC needs at least one endpoint")
		}
	case ResolutionDynamic:
		if len(d.Endpoints) > 0 {
			r.errorf(p+".endpoints", "resolution DYNAMIC resolves the requested name and takes no endpoints")
		}
		if hasTCP {
			r.errorf(p+".resolution", "DYNAMIC needs a name per connection (SNI or Host), which plain TCP ports do not carry")
		}
	default:
		r.errorf(p+".resolution", "%q is not one of DNS, DNS_ROUND_ROBIN, STATIC, DYNAMIC", d.Resolution)
	}
	for i, ep := range d.Endpoints {
		pe := fmt.Sprintf("%s.endpoints[%d]", p, i)
		_, ipErr := netip.ParseAddr(ep.Address)
		switch {
		case ep.Address == "":
			r.errorf(pe+".address", "is required")
		case d.Resolution == ResolutionStatic && ipErr != nil:
			r.errorf(pe+".address", "%q is not an IP address (resolution STATIC)", ep.Address)
		case ipErr != nil && !validDNSName(strings.ToLower(ep.Address)):
			r.errorf(pe+".address", "%q is neither an IP address nor a DNS name", ep.Address)
		}
		if ep.Port != 0 && !validPort(ep.Port) {
			r.errorf(pe+".port", "%d is not a valid port", ep.Port)
		}
		if ep.Weight > 1<<16 {
			r.errorf(pe+".weight", "%d is more than 65536", ep.Weight)
		}
		for k := range ep.Labels {
			if k == "" || len(k) > 317 {
				r.errorf(pe+".labels", "label keys must be 1 to 317 characters")
			}
		}
	}
}

func validateTLS(r *reporter, p string, d *Destination, wildcard, hasHTTP bool) {
	t := d.TLS
	if t == nil {
		return
	}
	p += ".tls"
	if !hasHTTP {
		r.errorf(p, "TLS origination applies to HTTP ports, and this destination has none (TLS and HTTPS ports are passed through untouched)")
	}
	switch t.Mode {
	case TLSSimple, TLSMutual:
	case "":
		r.errorf(p+".mode", "is required (SIMPLE or MUTUAL)")
	default:
		r.errorf(p+".mode", "%q is not one of SIMPLE, MUTUAL", t.Mode)
	}
	if t.Port == 0 {
		t.Port = 443
	} else if !validPort(t.Port) {
		r.errorf(p+".port", "%d is not a valid port", t.Port)
	}
	switch {
	case wildcard && t.SNI != "":
		r.errorf(p+".sni", "cannot be set for a wildcard host: the gateway sends each request's own host name")
	case t.SNI == "" && !wildcard:
		t.SNI = d.Host
	case t.SNI != "" && !validDNSName(strings.ToLower(t.SNI)):
		r.errorf(p+".sni", "%q is not a DNS name", t.SNI)
	}
	if t.Mode == TLSMutual && t.ClientCertificate == nil {
		r.errorf(p+".clientCertificate", "is required for mode MUTUAL")
	}
	if t.Mode == TLSSimple && t.ClientCertificate != nil {
		r.errorf(p+".clientCertificate", "is only used with mode MUTUAL")
	}
	for name, ref := range map[string]*SecretRef{"clientCertificate": t.ClientCertificate, "caCertificates": t.CACertificates} {
		if ref != nil && (!secretRE.MatchString(ref.Secret) || len(ref.Secret) > 253) {
			r.errorf(p+"."+name+".secret", "%q is not a valid Secret name", ref.Secret)
		}
	}
	for i, san := range t.SubjectAltNames {
		if !validDNSName(strings.TrimPrefix(strings.ToLower(san), "*.")) {
			r.errorf(fmt.Sprintf("%s.subjectAltNames[%d]", p, i), "%q is not a DNS name", san)
		}
	}
	if t.InsecureSkipVerify {
		if t.CACertificates != nil || len(t.SubjectAltNames) > 0 {
			r.errorf(p+".insecureSkipVerify", "contradicts caCertificates/subjectAltNames: verification is either on or off")
		}
		r.warnf(p+".insecureSkipVerify", "server certificate verification is OFF for %s: anyone on the path can impersonate it", d.Host)
	}
}

func validateAllow(r *reporter, p string, allow *[]Source) {
	if allow == nil {
		return
	}
	if len(*allow) == 0 {
		r.errorf(p, "an empty list would refuse every source: list the sources allowed, remove allow to admit every source that reaches the gateway, or remove the destination to refuse everyone")
		return
	}
	for i, s := range *allow {
		ps := fmt.Sprintf("%s[%d]", p, i)
		set := 0
		for _, v := range []string{s.CIDR, s.Principal, s.Namespace} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			if set == 0 && (s.Methods != nil || s.Paths != nil) {
				r.errorf(ps, "exactly one of cidr, principal, namespace must be set (methods and paths for every source go on the destination itself)")
			} else {
				r.errorf(ps, "exactly one of cidr, principal, namespace must be set")
			}
			continue
		}
		switch {
		case s.CIDR != "":
			if _, err := ParseCIDR(s.CIDR); err != nil {
				r.errorf(ps+".cidr", "%q is not a CIDR (e.g. 10.0.0.0/8) or an IP address", s.CIDR)
			}
		case s.Principal != "":
			if _, err := ParseWorkloadID(s.Principal); err != nil {
				r.errorf(ps+".principal", "%v", err)
			}
		case s.Namespace != "":
			if !validLabel(s.Namespace) {
				r.errorf(ps+".namespace", "%q is not a Kubernetes namespace name (a DNS label)", s.Namespace)
			}
		}
	}
}

// ParseCIDR accepts a prefix or a single address (as /32 or /128); the
// translator parses allow lists with it too.
func ParseCIDR(s string) (netip.Prefix, error) {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func validateHost(r *reporter, p, host string) {
	if host == "" {
		r.errorf(p, "is required")
		return
	}
	if _, err := netip.ParseAddr(host); err == nil {
		r.errorf(p, "%q is an IP address: give the destination a DNS name and list the address under endpoints", host)
		return
	}
	name, wildcard := strings.CutPrefix(host, "*.")
	switch {
	case strings.Contains(name, "*"):
		r.errorf(p, "%s is not a DNS name (a wildcard may only be a leading \"*.\")", clip(host))
	case len(host) > maxDNSName:
		r.errorf(p, "%s is %d characters long: a DNS name has at most %d", clip(host), len(host), maxDNSName)
	default:
		if problem := nameProblem(name); problem != "" {
			r.errorf(p, "%s %s", clip(host), problem)
		} else if wildcard {
			if problem := publicSuffixProblem(host, name); problem != "" {
				r.errorf(p, "%s", problem)
			}
		}
	}
}

// DNS limits (RFC 1035): a name's text form, a label.
const (
	maxDNSName  = 253
	maxDNSLabel = 63
)

func validDNSName(s string) bool { return len(s) <= maxDNSName && nameProblem(s) == "" }

// nameProblem says why s is not a DNS name, and is empty when it is one.
// Length limits are named, with the length found.
func nameProblem(s string) string {
	if s == "" {
		return "is not a DNS name"
	}
	if len(s) > maxDNSName {
		return fmt.Sprintf("is %d characters long: a DNS name has at most %d", len(s), maxDNSName)
	}
	for l := range strings.SplitSeq(s, ".") {
		if len(l) > maxDNSLabel {
			return fmt.Sprintf("has a label of %d characters (%s): a DNS label has at most %d", len(l), clip(l), maxDNSLabel)
		}
		if !dnsLabelRE.MatchString(l) {
			return "is not a DNS name (lowercase letters, digits and '-' in labels separated by '.')"
		}
	}
	return ""
}

// validLabel: a DNS label, as destination names, Kubernetes namespaces and
// each part of a host name are.
func validLabel(s string) bool { return len(s) <= maxDNSLabel && dnsLabelRE.MatchString(s) }

func validPort(p uint32) bool { return p >= 1 && p <= 65535 }

func positive(r *reporter, p string, d *Duration) {
	if d.Duration <= 0 {
		r.errorf(p, "%s must be positive", d.Duration)
	}
}

func allIPs(eps []Endpoint) bool {
	for _, ep := range eps {
		if _, err := netip.ParseAddr(ep.Address); err != nil {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// probeLabel is a label no suffix rule names, to find wildcard rules of the
// Public Suffix List ("*.kawasaki.jp": every name under it is a suffix).
const probeLabel = "egress-xds-probe"

// publicSuffixProblem refuses a wildcard "*.domain" that would open names
// of unrelated owners: domain is a public suffix of the Public Suffix List,
// or every name directly under it is one. Both sections of the list count:
// the ICANN section (com, co.uk), where anyone registers a name, and the
// private one (github.io), where a company hands names to its customers;
// for egress control, "*.github.io" admits every GitHub Pages site. Names
// under an unlisted top-level domain (cluster.local, corp) are private ones
// the operator's DNS answers for, so they are not refused.
func publicSuffixProblem(host, domain string) string {
	const fix = "list the hosts, or use a wildcard under a domain of one owner (e.g. \"*.example.com\")"
	if ps, icann := publicsuffix.PublicSuffix(domain); ps == domain && listed(ps, icann) {
		return fmt.Sprintf("%q would admit every name under the public suffix %q (%s): %s", host, domain, whose(icann), fix)
	}
	probe := probeLabel + "." + domain
	if ps, icann := publicsuffix.PublicSuffix(probe); ps == probe {
		return fmt.Sprintf("%q would admit every name under %q, whose subdomains are all public suffixes (%s): %s", host, domain, whose(icann), fix)
	}
	return ""
}

// listed tells a rule of the list from its default rule "*", which makes
// the last label of any unlisted name a suffix; private rules all have a
// dot.
func listed(suffix string, icann bool) bool { return icann || strings.Contains(suffix, ".") }

func whose(icann bool) string {
	if icann {
		return "anyone can register a name under it"
	}
	return "listed in the private section of the Public Suffix List: its owner gives the names under it to unrelated users"
}
