package intent

import (
	"fmt"
	"slices"
	"strings"
)

// HTTP method and path rules: what a source may ask of a destination's HTTP
// ports. The destination's methods and paths apply to every source (to
// everyone when there is no allow list); an allow entry's own replace them
// for that entry, field by field. A request is allowed when its method is
// listed (or no methods are) and its path matches one of the paths (or no
// paths are given). Refused requests get 403. The gateway reads requests on
// HTTP ports only: TLS passthrough and TCP ports carry bytes it never sees
// into, so rules there are an error.

// PathRule matches a request path (without its query): exactly one field.
type PathRule struct {
	Prefix string `yaml:"prefix,omitempty"`
	Exact  string `yaml:"exact,omitempty"`
}

// Methods are the HTTP methods rules may name (RFC 9110 and PATCH);
// CONNECT is not among them: a CONNECT to an HTTP port is refused anyway.
var Methods = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}

// maxPathRuleLength bounds a path rule: Envoy's default request header
// limit is 60 KiB, a rule longer than any sane path is a mistake.
const maxPathRuleLength = 1024

// HasHTTPRules reports whether the destination or any of its allow entries
// narrows methods or paths.
func (d *Destination) HasHTTPRules() bool {
	if len(d.Methods) > 0 || len(d.Paths) > 0 {
		return true
	}
	if d.Allow != nil {
		for _, s := range *d.Allow {
			if len(s.Methods) > 0 || len(s.Paths) > 0 {
				return true
			}
		}
	}
	return false
}

// HasPathRules reports whether any rule of the destination names paths (the
// gateway then normalizes request paths before matching them).
func (d *Destination) HasPathRules() bool {
	if len(d.Paths) > 0 {
		return true
	}
	if d.Allow != nil {
		for _, s := range *d.Allow {
			if len(s.Paths) > 0 {
				return true
			}
		}
	}
	return false
}

// RulesFor returns the methods and paths that apply to an allow entry: its
// own, else the destination's, field by field.
func (d *Destination) RulesFor(s Source) (methods []string, paths []PathRule) {
	methods, paths = s.Methods, s.Paths
	if methods == nil {
		methods = d.Methods
	}
	if paths == nil {
		paths = d.Paths
	}
	return methods, paths
}

// validateHTTPRules checks the destination's methods and paths and those of
// its allow entries. nonHTTP names a port the rules cannot apply to, if
// any ("443 (TLS)").
func validateHTTPRules(r *reporter, p string, d *Destination, nonHTTP string) {
	check := func(at string, methods []string, paths []PathRule) {
		if methods == nil && paths == nil {
			return
		}
		if nonHTTP != "" {
			field := at + ".methods"
			if methods == nil {
				field = at + ".paths"
			}
			r.errorf(field, "methods and paths apply to HTTP requests, which the gateway reads on HTTP ports only: on port %s it cannot see a method or a path; put the HTTP ports in a destination of their own", nonHTTP)
			return
		}
		validateMethods(r, at+".methods", methods)
		validatePaths(r, at+".paths", paths)
	}
	check(p, d.Methods, d.Paths)
	if d.Allow != nil {
		for i, s := range *d.Allow {
			check(fmt.Sprintf("%s.allow[%d]", p, i), s.Methods, s.Paths)
		}
	}
}

func validateMethods(r *reporter, p string, methods []string) {
	if methods == nil {
		return
	}
	if len(methods) == 0 {
		r.errorf(p, "an empty list would refuse every request: list the methods allowed, or remove methods to allow every method")
		return
	}
	seen := map[string]int{}
	for i, m := range methods {
		pm := fmt.Sprintf("%s[%d]", p, i)
		switch {
		case !slices.Contains(Methods, m) && slices.Contains(Methods, strings.ToUpper(m)):
			r.errorf(pm, "%q: methods are written in capitals (%s)", m, strings.ToUpper(m))
		case m == "CONNECT":
			r.errorf(pm, "CONNECT is not a method of an HTTP port (the explicit proxy takes it for TLS and TCP ports); one of %s", strings.Join(Methods, ", "))
		case !slices.Contains(Methods, m):
			r.errorf(pm, "%s is not one of %s", clip(m), strings.Join(Methods, ", "))
		default:
			if j, dup := seen[m]; dup {
				r.errorf(pm, "%s is already listed at [%d]", m, j)
			}
			seen[m] = i
		}
	}
}

func validatePaths(r *reporter, p string, paths []PathRule) {
	if paths == nil {
		return
	}
	if len(paths) == 0 {
		r.errorf(p, "an empty list would refuse every request: list the paths allowed, or remove paths to allow every path")
		return
	}
	for i, pr := range paths {
		pp := fmt.Sprintf("%s[%d]", p, i)
		if (pr.Prefix == "") == (pr.Exact == "") {
			r.errorf(pp, "exactly one of prefix, exact must be set")
			continue
		}
		field, v := "exact", pr.Exact
		if pr.Prefix != "" {
			field, v = "prefix", pr.Prefix
		}
		if problem := pathProblem(v); problem != "" {
			r.errorf(pp+"."+field, "%s %s", clip(v), problem)
		}
	}
}

// pathProblem says why a path rule can never match a request the gateway
// passes on, and is empty when it can. The gateway normalizes request paths
// before it matches them (RFC 3986 dot segments removed, repeated slashes
// merged) and refuses escaped slashes, so a rule must be written in that
// form to match anything.
func pathProblem(v string) string {
	switch {
	case len(v) > maxPathRuleLength:
		return fmt.Sprintf("is %d characters long: at most %d", len(v), maxPathRuleLength)
	case !strings.HasPrefix(v, "/"):
		return "must start with /"
	case strings.ContainsAny(v, "?#"):
		return "holds a query or fragment: rules match the path alone"
	case strings.ContainsFunc(v, func(c rune) bool { return c <= ' ' || c == 0x7f }):
		return "holds a space or control character, which no request path has"
	case strings.Contains(v, "//"):
		return "holds \"//\": the gateway merges repeated slashes before matching, so it would never match"
	case hasDotSegment(v):
		return "holds a \".\" or \"..\" segment: the gateway removes them before matching, so it would never match"
	case strings.Contains(strings.ToLower(v), "%2f") || strings.Contains(strings.ToLower(v), "%5c"):
		return "holds an escaped slash: the gateway refuses such requests (400) before matching"
	}
	return ""
}

func hasDotSegment(v string) bool {
	for seg := range strings.SplitSeq(v, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
