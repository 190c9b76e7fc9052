package intent

import (
	"fmt"
	"net/url"
	"strings"
)

// Workload identities are SPIFFE IDs of the Kubernetes form
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, carried by
// the certificates sidecars present to the gateway's mesh port.

// WorkloadID is a parsed workload SPIFFE ID.
type WorkloadID struct {
	TrustDomain, Namespace, ServiceAccount string
}

// ParseWorkloadID parses spiffe://<td>/ns/<ns>/sa/<sa>; the error says what
// is wrong in words an operator can act on.
func ParseWorkloadID(s string) (WorkloadID, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "spiffe" {
		return WorkloadID{}, fmt.Errorf("%q is not a SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)", s)
	}
	if err := CheckTrustDomain(u.Host); err != nil || u.User != nil || u.Port() != "" {
		return WorkloadID{}, fmt.Errorf("%q: the trust domain %q is not valid (lower-case letters, digits, '.', '-', '_')", s, u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.RawPath != "" {
		return WorkloadID{}, fmt.Errorf("%q: a SPIFFE ID has no query, fragment or escaped characters", s)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return WorkloadID{}, fmt.Errorf("%q does not name a workload: the path must be /ns/<namespace>/sa/<service-account>", s)
	}
	id := WorkloadID{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}
	if !validLabel(id.Namespace) {
		return WorkloadID{}, fmt.Errorf("%q: %q is not a Kubernetes namespace name", s, id.Namespace)
	}
	if !validDNSName(id.ServiceAccount) {
		return WorkloadID{}, fmt.Errorf("%q: %q is not a Kubernetes service account name", s, id.ServiceAccount)
	}
	return id, nil
}

// CheckTrustDomain checks SPIFFE trust domain syntax.
func CheckTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("empty trust domain")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain longer than 255 characters")
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("character %q is not allowed in a trust domain (lower-case letters, digits, '.', '-', '_')", r)
		}
	}
	return nil
}

// identitiesAllowed checks, against the server's mesh settings, the
// workload identities an intent's allow lists name: they need the mesh
// (mutual TLS between sidecars and the gateway) and its trust domain.
func identitiesAllowed(in *Intent, opts ResolveOptions) Diagnostics {
	var diags Diagnostics
	for di := range in.Docs {
		d := &in.Docs[di]
		for i := range d.Destinations {
			if allow := d.Destinations[i].Allow; allow != nil {
				for j, s := range *allow {
					if field, msg := identityProblem(s, opts.TrustDomain); msg != "" {
						diags = append(diags, Diagnostic{Origin: d.Origin, Severity: SeverityError,
							Path: fmt.Sprintf("destinations[%d].allow[%d].%s", i, j, field), Message: msg})
					}
				}
			}
		}
	}
	return diags
}

// identityProblem is what is wrong, for a mesh of trustDomain ("" for no
// mesh), with a source that names a workload identity, and its field.
func identityProblem(s Source, trustDomain string) (field, msg string) {
	switch {
	case s.Principal == "" && s.Namespace == "":
		return "", ""
	case trustDomain == "":
		field = "principal"
		if s.Namespace != "" {
			field = "namespace"
		}
		return field, "workload identities are carried by mutual TLS from sidecars to the gateway's mesh port, which this server does not serve: start it with --mesh-port and --mesh-trust-domain, or use cidr"
	case s.Principal != "":
		if id, err := ParseWorkloadID(s.Principal); err == nil && id.TrustDomain != trustDomain {
			return "principal", fmt.Sprintf("trust domain %q is unknown: this mesh's trust domain is %q", id.TrustDomain, trustDomain)
		}
	}
	return "", ""
}
