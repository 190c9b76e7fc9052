package istio

import (
	"fmt"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// An ALLOW rule's to.operation methods and paths become the methods and
// paths of the allow entries it makes, on HTTP ports. Istio's semantics:
// rules are OR'ed, within a rule from, to and when are AND'ed, the to
// entries OR'ed; within one operation every field must match. So a rule
// admits each of its sources for each operation that names the
// destination, and an allow entry carries one operation's methods and
// paths (an entry's own replace the destination's, and entries are
// OR'ed, intent/httprules.go). What egress-xds cannot say (notPaths,
// suffix and template paths, methods it does not name) admits less,
// never more.

// readOperation reads an operation's methods and paths as egress-xds can
// say them, reporting each; ok is false when it admits no request here,
// narrowed when it admits less than in Istio.
func (im *importer) readOperation(o *object, op *Operation, p string) (out ops, ok, narrowed bool) {
	methods, mok, mn := im.readMethods(o, op, p)
	paths, pok, pn := im.readPaths(o, op, p)
	return ops{methods: methods, paths: paths}, mok && pok, mn || pn
}

func (im *importer) readMethods(o *object, op *Operation, p string) (out []string, ok, narrowed bool) {
	if len(op.Methods) == 0 && len(op.NotMethods) == 0 {
		return nil, true, false
	}
	all := len(op.Methods) == 0
	for i, m := range op.Methods {
		ep := fmt.Sprintf("%s.methods[%d]", p, i)
		switch known := matchingMethods(m); {
		case m == "*":
			all = true
			im.rep.add(o, ep, StatusCarried, "any method")
		case strings.Contains(m, "*"):
			out = union(out, known)
			what := "none of the methods egress-xds names matches: it admits no method here (narrower)"
			if len(known) > 0 {
				what = "methods " + strings.Join(known, ", ") + " (the methods egress-xds names that match; others are refused here: narrower)"
			}
			im.rep.add(o, ep, StatusAccess, intent.Quote(m)+": "+what)
			narrowed = true
		case len(known) == 1:
			out = union(out, known)
			im.rep.add(o, ep, StatusCarried, "method "+m)
		case strings.ToUpper(m) != m:
			im.rep.add(o, ep, StatusNotCarried, intent.Quote(m)+" matched no request in Istio (it refuses methods not in capitals with 400): nothing to carry")
		default:
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%s is not among the methods egress-xds names (%s): not admitted here (narrower)", intent.Quote(m), strings.Join(intent.Methods, ", ")))
			narrowed = true
		}
	}
	if all {
		out = nil
	}
	if len(op.NotMethods) > 0 {
		base := out
		if base == nil {
			base = intent.Methods
		}
		var keep []string
		for _, m := range base {
			if !slices.ContainsFunc(op.NotMethods, func(n string) bool { return methodMatches(n, m) }) {
				keep = append(keep, m)
			}
		}
		st, why := StatusCarried, ""
		if out == nil {
			st, why = StatusAccess, "; methods egress-xds does not name are refused here, which Istio admitted (narrower)"
			narrowed = true
		}
		if len(keep) == 0 {
			im.rep.add(o, p+".notMethods", StatusCarried, "refuses every method the operation admits: it admits no request")
			return nil, false, narrowed
		}
		im.rep.add(o, p+".notMethods", st, "the methods left: "+strings.Join(keep, ", ")+why)
		out = keep
	}
	if out == nil && !all {
		return nil, false, narrowed
	}
	return out, true, narrowed
}

// matchingMethods is the methods egress-xds names that an Istio method
// pattern (exact, prefix "P*", suffix "*T") matches.
func matchingMethods(pat string) []string {
	var out []string
	for _, m := range intent.Methods {
		if methodMatches(pat, m) {
			out = append(out, m)
		}
	}
	return out
}

func methodMatches(pat, m string) bool {
	switch {
	case pat == "*":
		return true
	case strings.HasPrefix(pat, "*"):
		return strings.HasSuffix(m, pat[1:])
	case strings.HasSuffix(pat, "*"):
		return strings.HasPrefix(m, strings.TrimSuffix(pat, "*"))
	}
	return pat == m
}

func (im *importer) readPaths(o *object, op *Operation, p string) (out []intent.PathRule, ok, narrowed bool) {
	if len(op.NotPaths) > 0 {
		im.rep.add(o, p+".notPaths", StatusAccess, "notPaths cannot be expressed (paths name what is admitted): this operation admits no request here (narrower)")
		return nil, false, true
	}
	if len(op.Paths) == 0 {
		return nil, true, false
	}
	anyPath := false
	for i, v := range op.Paths {
		ep := fmt.Sprintf("%s.paths[%d]", p, i)
		var pr intent.PathRule
		switch {
		case v == "*":
			im.rep.add(o, ep, StatusCarried, "any path")
			anyPath = true
			continue
		case strings.Contains(v, "{*}") || strings.Contains(v, "{**}"):
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%s: path templates cannot be expressed (paths are exact or prefixes): not admitted here (narrower)", intent.Quote(v)))
			narrowed = true
			continue
		case strings.HasPrefix(v, "*"):
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%s: suffix matches cannot be expressed (paths are exact or prefixes): not admitted here (narrower)", intent.Quote(v)))
			narrowed = true
			continue
		case strings.HasSuffix(v, "*"):
			pr.Prefix = strings.TrimSuffix(v, "*")
		default:
			pr.Exact = v
		}
		if why := pathRuleProblem(pr); why != "" {
			im.rep.add(o, ep, StatusAccess, fmt.Sprintf("%s: egress-xds refuses it (%s): not admitted here (narrower)", intent.Quote(v), why))
			narrowed = true
			continue
		}
		out = append(out, pr)
		what := "path " + pr.Exact
		if pr.Prefix != "" {
			what = "paths under prefix " + pr.Prefix
		}
		im.rep.add(o, ep, StatusCarried, what+" (matched once normalized, without the query, as Istio does)")
	}
	if anyPath {
		return nil, true, narrowed
	}
	return out, len(out) > 0, narrowed
}

// pathRuleProblem says why the server would refuse a path rule, as it
// says it; empty when it takes it.
func pathRuleProblem(pr intent.PathRule) string {
	d := intent.Destination{Name: "p", Host: "p.example.com", Ports: []intent.Port{{Number: 80, Protocol: intent.ProtocolHTTP}}, Paths: []intent.PathRule{pr}}
	b, err := yaml.Marshal(intent.Document{Destinations: []intent.Destination{d}})
	if err != nil {
		return err.Error()
	}
	_, diags := intent.ParseDocument(intent.Origin{}, b)
	for _, dg := range diags {
		if dg.Severity != intent.SeverityWarning {
			return dg.Message
		}
	}
	return ""
}

// httpFields names the HTTP-only fields of a rule's operations: Istio
// skips an ALLOW rule naming any of them for TLS and TCP traffic, every
// operation of it.
func httpFields(r *Rule) []string {
	var out []string
	for _, to := range r.To {
		if op := to.Operation; op != nil {
			for _, n := range setNames([]field{{"methods", len(op.Methods) > 0}, {"notMethods", len(op.NotMethods) > 0}, {"paths", len(op.Paths) > 0}, {"notPaths", len(op.NotPaths) > 0}}) {
				out = appendUnique(out, n)
			}
		}
	}
	return out
}

// deniedMethods is what a DENY operation's methods refuse, as egress-xds
// names methods (patterns expanded; an entry keeps an explicit list, so
// methods it does not name are refused with them): nil for "*", every
// method; some is false when none is in capitals (Istio matched nothing).
func deniedMethods(l []string) (out []string, some bool) {
	out = []string{}
	for _, m := range l {
		if m == "*" {
			return nil, true
		}
		if strings.ToUpper(m) != m {
			continue
		}
		some = true
		out = union(out, matchingMethods(m))
	}
	return out, some
}
