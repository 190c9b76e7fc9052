package istio

import (
	"fmt"
	"path"
	"strings"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// applyRule carries a DestinationRule's settings to a slot.
func (im *importer) applyRule(s *slot, o *object) {
	dr := o.spec.(*DestinationRule)
	used := im.ruleUse[o]
	if used == nil {
		used = map[string]bool{}
		im.ruleUse[o] = used
	}
	im.rep.add(o, "spec.host", StatusCarried, "the settings of "+s.cluster.host, s)
	var rp rulePolicy
	rp.merge(dr.TrafficPolicy, "spec.trafficPolicy", s.cluster.port, used)
	for _, name := range s.cluster.subsets {
		for i, sub := range dr.Subsets {
			if sub.Name == name {
				p := fmt.Sprintf("spec.subsets[%d]", i)
				used[p] = true
				im.rep.add(o, p+".name", StatusCarried, "subset "+name+": the endpoints its labels select", s)
				if len(sub.Labels) > 0 {
					im.rep.add(o, p+".labels", StatusCarried, "select endpoints "+labelText(sub.Labels), s)
				}
				rp.merge(sub.TrafficPolicy, p+".trafficPolicy", s.cluster.port, used)
			}
		}
	}
	for _, p := range rp.extra {
		im.rep.add(o, p, StatusNotCarried, "egress-xds connects to the upstream directly", s)
	}
	if dr.WorkloadSelector != nil {
		if im.selects(dr.WorkloadSelector.MatchLabels) {
			im.rep.add(o, "spec.workloadSelector", StatusCarried, "selects the egress gateway", s)
		} else if rp.tls != nil && strings.ToUpper(rp.tls.Mode) == "MUTUAL" {
			s.hold("the client certificate was presented for the workloads its DestinationRule selects only")
			im.rep.add(o, "spec.workloadSelector", StatusAccess, "only the sidecars of "+labelText(dr.WorkloadSelector.MatchLabels)+" presented the client certificate; here the gateway would present it for every source the destination admits: held back", s)
		} else {
			im.rep.add(o, "spec.workloadSelector", StatusNotCarried, "the sidecars of "+labelText(dr.WorkloadSelector.MatchLabels)+" applied it; here the gateway applies it for every source", s)
		}
	}
	if len(dr.ExportTo) > 0 {
		im.rep.add(o, "spec.exportTo", StatusNotCarried, "which proxies see the rule: here the gateway applies it", s)
	}
	im.loadBalancer(s, o, rp.lb, rp.lbP)
	im.connectionPool(s, o, rp.cp, rp.cpP)
	im.outlier(s, o, rp.od, rp.odP)
	im.originate(s, o, rp.tls, rp.tlP)
}

func (im *importer) loadBalancer(s *slot, o *object, lb *LoadBalancer, p string) {
	if lb == nil {
		return
	}
	if lb.Simple != "" {
		var v intent.LoadBalancer
		switch strings.ToUpper(lb.Simple) {
		case "ROUND_ROBIN", "UNSPECIFIED":
			v = intent.LBRoundRobin
		case "LEAST_REQUEST", "LEAST_CONN":
			v = intent.LBLeastRequest
		case "RANDOM":
			v = intent.LBRandom
		}
		switch {
		case v == "":
			im.rep.add(o, p+".simple", StatusNotCarried, lb.Simple+": not among ROUND_ROBIN, LEAST_REQUEST, RANDOM", s)
		case s.d.Resolution == intent.ResolutionDynamic:
			im.rep.add(o, p+".simple", StatusNotCarried, "a wildcard destination connects to the address each name resolves to: no load balancer", s)
		default:
			s.d.LoadBalancer = v
			im.rep.add(o, p+".simple", StatusCarried, "loadBalancer "+string(v), s)
		}
	}
	for _, f := range []field{{"consistentHash", lb.ConsistentHash.Set()}, {"localityLbSetting", lb.LocalityLbSetting.Set()},
		{"warmupDurationSecs", lb.WarmupDurationSecs != nil}, {"warmup", lb.Warmup.Set()}} {
		if f.set {
			im.rep.add(o, p+"."+f.name, StatusNotCarried, "egress-xds balances by ROUND_ROBIN, LEAST_REQUEST or RANDOM only", s)
		}
	}
}

func (im *importer) connectionPool(s *slot, o *object, cp *ConnectionPool, p string) {
	if cp == nil {
		return
	}
	out := s.d.ConnectionPool
	if out == nil {
		out = &intent.ConnectionPool{}
	}
	http := s.protocol == intent.ProtocolHTTP
	count := func(path, name string, v int32, dst *uint32, httpOnly bool) {
		switch {
		case v == 0:
		case v < 0:
			im.rep.add(o, path, StatusNotCarried, fmt.Sprintf("%d is not a limit", v), s)
		case httpOnly && !http:
			im.rep.add(o, path, StatusNotCarried, "applies to HTTP, and this destination port is "+string(s.protocol), s)
		default:
			*dst = uint32(v)
			im.rep.add(o, path, StatusCarried, fmt.Sprintf("connectionPool.%s %d", name, v), s)
		}
	}
	if t := cp.TCP; t != nil {
		count(p+".tcp.maxConnections", "maxConnections", t.MaxConnections, &out.MaxConnections, false)
		if t.ConnectTimeout != nil && t.ConnectTimeout.Duration > 0 {
			out.ConnectTimeout = &intent.Duration{Duration: t.ConnectTimeout.Duration}
			im.rep.add(o, p+".tcp.connectTimeout", StatusCarried, "connectionPool.connectTimeout "+t.ConnectTimeout.Duration.String(), s)
		}
		for _, f := range []field{{"tcpKeepalive", t.TCPKeepalive.Set()}, {"maxConnectionDuration", t.MaxConnectionDuration != nil}, {"idleTimeout", t.IdleTimeout != nil}} {
			if f.set {
				im.rep.add(o, p+".tcp."+f.name, StatusNotCarried, "Envoy's defaults apply", s)
			}
		}
	}
	if h := cp.HTTP; h != nil {
		count(p+".http.http1MaxPendingRequests", "maxPendingRequests", h.HTTP1MaxPendingRequests, &out.MaxPendingRequests, false)
		count(p+".http.http2MaxRequests", "maxRequests", h.HTTP2MaxRequests, &out.MaxRequests, false)
		count(p+".http.maxRequestsPerConnection", "maxRequestsPerConnection", h.MaxRequestsPerConnection, &out.MaxRequestsPerConnection, true)
		count(p+".http.maxRetries", "maxRetries", h.MaxRetries, &out.MaxRetries, false)
		if h.IdleTimeout != nil {
			if http && h.IdleTimeout.Duration > 0 {
				out.IdleTimeout = &intent.Duration{Duration: h.IdleTimeout.Duration}
				im.rep.add(o, p+".http.idleTimeout", StatusCarried, "connectionPool.idleTimeout "+h.IdleTimeout.Duration.String(), s)
			} else {
				im.rep.add(o, p+".http.idleTimeout", StatusNotCarried, "applies to HTTP, and this destination port is "+string(s.protocol), s)
			}
		}
		for _, f := range []field{{"h2UpgradePolicy", h.H2UpgradePolicy != ""}, {"useClientProtocol", h.UseClientProtocol}, {"maxConcurrentStreams", h.MaxConcurrentStreams != 0}} {
			if f.set {
				im.rep.add(o, p+".http."+f.name, StatusNotCarried, "the gateway speaks HTTP/1.1 upstream", s)
			}
		}
	}
	if *out != (intent.ConnectionPool{}) {
		s.d.ConnectionPool = out
	}
}

func (im *importer) outlier(s *slot, o *object, od *OutlierDetection, p string) {
	if od == nil {
		return
	}
	out := &intent.OutlierDetection{}
	errs := func(name string, v *uint32, dst **uint32) {
		switch {
		case v == nil:
		case *v == 0:
			im.rep.add(o, p+"."+name, StatusNotCarried, "0 turns this ejection off in Istio; egress-xds keeps Envoy's default (5)", s)
		default:
			x := *v
			*dst = &x
			im.rep.add(o, p+"."+name, StatusCarried, fmt.Sprintf("outlierDetection.%s %d", name, x), s)
		}
	}
	errs("consecutive5xxErrors", od.Consecutive5xxErrors, &out.Consecutive5xxErrors)
	errs("consecutiveGatewayErrors", od.ConsecutiveGatewayErrors, &out.ConsecutiveGatewayErrors)
	if od.Interval != nil && od.Interval.Duration > 0 {
		out.Interval = &intent.Duration{Duration: od.Interval.Duration}
		im.rep.add(o, p+".interval", StatusCarried, "outlierDetection.interval "+od.Interval.Duration.String(), s)
	}
	if od.BaseEjectionTime != nil && od.BaseEjectionTime.Duration > 0 {
		out.BaseEjectionTime = &intent.Duration{Duration: od.BaseEjectionTime.Duration}
		im.rep.add(o, p+".baseEjectionTime", StatusCarried, "outlierDetection.baseEjectionTime "+od.BaseEjectionTime.Duration.String(), s)
	}
	if m := od.MaxEjectionPercent; m != nil {
		if *m >= 0 && *m <= 100 {
			x := uint32(*m)
			out.MaxEjectionPercent = &x
			im.rep.add(o, p+".maxEjectionPercent", StatusCarried, fmt.Sprintf("outlierDetection.maxEjectionPercent %d", x), s)
		} else {
			im.rep.add(o, p+".maxEjectionPercent", StatusNotCarried, fmt.Sprintf("%d is not a percentage", *m), s)
		}
	}
	if od.ConsecutiveErrors != 0 {
		im.rep.add(o, p+".consecutiveErrors", StatusNotCarried, "deprecated by Istio: say consecutive5xxErrors or consecutiveGatewayErrors", s)
	}
	for _, f := range []field{{"minHealthPercent", od.MinHealthPercent != 0}, {"splitExternalLocalOriginErrors", od.SplitExternalLocalOriginErrors}, {"consecutiveLocalOriginFailures", od.ConsecutiveLocalOriginFailures != nil}} {
		if f.set {
			im.rep.add(o, p+"."+f.name, StatusNotCarried, "Envoy's defaults apply", s)
		}
	}
	if *out != (intent.OutlierDetection{}) {
		s.d.OutlierDetection = out
	}
}

// originate carries a DestinationRule's tls: origination for HTTP ports;
// nothing more to do for passthrough ports; a hold where the upstream
// needs TLS egress-xds cannot originate (its bytes would leave in clear).
func (im *importer) originate(s *slot, o *object, t *ClientTLS, p string) {
	if t == nil {
		return
	}
	mode := strings.ToUpper(t.Mode)
	switch {
	case mode == "DISABLE" || mode == "":
		im.rep.add(o, p+".mode", StatusCarried, "DISABLE: plain upstream connections", s)
		return
	case s.protocol.Passthrough():
		im.rep.add(o, p, StatusNotCarried, "port "+fmt.Sprint(s.key.port)+" is TLS passthrough: the workload's own TLS goes end to end, and originating TLS again would wrap TLS in TLS", s)
		return
	case mode == "ISTIO_MUTUAL":
		s.hold("the upstream expected Istio's mutual TLS")
		im.rep.add(o, p+".mode", StatusNotCarried, "ISTIO_MUTUAL to a host of the mesh: the gateway does not speak it: held back", s)
		return
	case mode != "SIMPLE" && mode != "MUTUAL":
		s.hold("its DestinationRule's tls mode " + t.Mode + " is not one egress-xds knows")
		im.rep.add(o, p+".mode", StatusNotCarried, t.Mode+" is not an Istio TLS mode: held back", s)
		return
	case s.protocol == intent.ProtocolTCP:
		s.hold("Istio originated TLS on a TCP port, which intents cannot say: its bytes would leave in clear")
		im.rep.add(o, p, StatusNotCarried, "TLS origination on a TCP port: intents originate TLS for HTTP ports only, and sending it in clear would expose it: held back", s)
		return
	}
	tls := &intent.TLSOrigination{Mode: intent.TLSMode(mode), Port: s.target}
	s.d.TLS = tls
	im.rep.add(o, p+".mode", StatusCarried, fmt.Sprintf("tls %s: the gateway originates TLS to port %d", mode, s.target), s)
	wildcard := strings.HasPrefix(s.key.host, "*.")
	if t.SNI != "" {
		if wildcard {
			im.rep.add(o, p+".sni", StatusNotCarried, "a wildcard destination sends each request's own host name", s)
		} else {
			tls.SNI = strings.ToLower(t.SNI)
			im.rep.add(o, p+".sni", StatusCarried, "tls.sni "+tls.SNI, s)
		}
	}
	if len(t.SubjectAltNames) > 0 {
		tls.SubjectAltNames = t.SubjectAltNames
		im.rep.add(o, p+".subjectAltNames", StatusCarried, "tls.subjectAltNames "+strings.Join(t.SubjectAltNames, ", "), s)
	}
	if t.InsecureSkipVerify != nil && *t.InsecureSkipVerify {
		tls.InsecureSkipVerify = true
		im.rep.add(o, p+".insecureSkipVerify", StatusCarried, "tls.insecureSkipVerify: no verification of the server (validate warns on every run)", s)
	}
	if t.CACrl != "" {
		im.rep.add(o, p+".caCrl", StatusNotCarried, "no revocation list is checked", s)
	}
	ns := im.outNamespace(s)
	switch {
	case t.CredentialName != "":
		name := t.CredentialName
		where := "the egress gateway's namespace " + im.opts.GatewayNamespace
		if !s.viaGateway {
			where = "the workloads' namespace"
		}
		if mode == "MUTUAL" {
			tls.ClientCertificate = &intent.SecretRef{Secret: name}
		}
		tls.CACertificates = &intent.SecretRef{Secret: name}
		keys := "ca.crt"
		if mode == "MUTUAL" {
			keys = "tls.crt, tls.key and ca.crt"
		}
		im.rep.add(o, p+".credentialName", StatusCarried, fmt.Sprintf("Secret %s/%s (%s; Istio read it in %s: copy it to %s; if it names them cert, key, cacert, rename them; without ca.crt, drop caCertificates to verify with the gateways' system CA bundle)%s",
			ns, name, keys, where, ns, im.secretDirNote(mode, ns, name)), s)
	case t.ClientCertificate != "" || t.PrivateKey != "" || t.CACertificates != "":
		if t.ClientCertificate != "" || t.PrivateKey != "" {
			name, from := im.secretForFile(t.ClientCertificate, t.PrivateKey)
			tls.ClientCertificate = &intent.SecretRef{Secret: name}
			im.rep.add(o, p+".clientCertificate", StatusCarried, fmt.Sprintf("Secret %s/%s (%s): key tls.crt holds the file %s", ns, name, from, path.Base(t.ClientCertificate)), s)
			im.rep.add(o, p+".privateKey", StatusCarried, fmt.Sprintf("Secret %s/%s: key tls.key holds the file %s%s", ns, name, path.Base(t.PrivateKey), im.secretDirNote(mode, ns, name)), s)
		}
		if t.CACertificates != "" {
			name, from := im.secretForFile(t.CACertificates)
			tls.CACertificates = &intent.SecretRef{Secret: name}
			im.rep.add(o, p+".caCertificates", StatusCarried, fmt.Sprintf("Secret %s/%s (%s): key ca.crt holds the file %s", ns, name, from, path.Base(t.CACertificates)), s)
		}
	}
	if mode == "MUTUAL" && tls.ClientCertificate == nil {
		s.hold("tls MUTUAL without a client certificate")
		im.rep.add(o, p, StatusNotCarried, "MUTUAL without credentialName or clientCertificate: held back", s)
	}
	if mode == "SIMPLE" && (t.ClientCertificate != "" || t.PrivateKey != "") {
		tls.ClientCertificate = nil
		im.rep.add(o, p+".clientCertificate", StatusNotCarried, "mode SIMPLE presents no client certificate", s)
	}
}

// secretDirNote says where the gateways read a client certificate when
// its key may not travel over xDS.
func (im *importer) secretDirNote(mode, ns, name string) string {
	if mode != "MUTUAL" {
		return ""
	}
	return fmt.Sprintf("; its key travels over SDS only with node authorization (--xds-client-ca), else mount the Secret in the gateways at <dir>/%s/%s/ and serve with --origination-secret-dir <dir> (README: Security)", ns, name)
}

// secretForFile names the Secret behind files Istio's gateway read from
// a mounted folder: the Secret an IstioOperator overlay mounted there,
// else one named after the folder.
func (im *importer) secretForFile(files ...string) (name, from string) {
	for _, f := range files {
		if f == "" {
			continue
		}
		dir := path.Dir(f)
		if s, ok := im.secretMounts[dir]; ok {
			return s, "the Secret the IstioOperator mounted at " + dir + " in the gateway, in namespace " + im.opts.GatewayNamespace + ": copy it to the intent's namespace"
		}
		return dnsLabel(path.Base(dir)), "named after the folder " + dir + " the gateway read it from: create it in the intent's namespace"
	}
	return "client-certificate", ""
}

func (im *importer) outNamespace(s *slot) string {
	if im.opts.Namespace != "" {
		return im.opts.Namespace
	}
	return s.namespace
}

// unusedRules reports rules, and parts of rules, no destination used.
func (im *importer) unusedRules() {
	for _, o := range im.destinationRules {
		if o.broken {
			continue
		}
		dr := o.spec.(*DestinationRule)
		if im.isGatewayService(dr.Host) {
			continue
		}
		used := im.ruleUse[o]
		if used == nil {
			im.rep.add(o, "spec", StatusNotCarried, "no destination goes to "+dr.Host+" (no ServiceEntry declares it, or it is held back)")
			continue
		}
		if tp := dr.TrafficPolicy; tp != nil {
			for i := range tp.PortLevelSettings {
				p := fmt.Sprintf("spec.trafficPolicy.portLevelSettings[%d]", i)
				if !used[p] {
					im.rep.add(o, p, StatusNotCarried, "no destination goes to this port")
				} else if tp.PortLevelSettings[i].Port != nil {
					im.rep.add(o, p+".port", StatusCarried, "the port these settings are for")
				}
			}
		}
		for i := range dr.Subsets {
			p := fmt.Sprintf("spec.subsets[%d]", i)
			if !used[p] {
				im.rep.add(o, p, StatusNotCarried, "no route uses this subset")
			}
		}
	}
}
