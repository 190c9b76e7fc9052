package translate

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Check is the last gate before resources reach Envoy: every resource
// passes ValidateAll(), names are unique per type, and every cluster, route
// configuration, endpoint set and secret a resource references is in the
// set. go-control-plane's Consistent() covers only EDS and RDS names; Envoy
// also rejects (or hangs warming on) missing clusters and SDS secrets, so
// those are checked here too. The typed configs inside resources were
// validated when the translator packed them; CheckDeep validates them again
// from the wire form, for tests.
func Check(r *Resources) error { return check(r, false, nil) }

// CheckDeep is Check plus ValidateAll on every typed config, unpacked from
// its Any.
func CheckDeep(r *Resources) error { return check(r, true, nil) }

// Check is Check, redoing only what changed since the last call: a
// resource, or a part of one (translate.Split), is recognised by identity,
// which the fragments of Translate keep while their inputs are unchanged,
// and which is never modified. What the last call's resources gave is
// kept, and nothing more.
func (c *Cache) Check(r *Resources) error {
	if c == nil {
		return Check(r)
	}
	return check(r, false, &c.checked)
}

// checkMemo holds what the last checked resources gave, by kind and name:
// clusters apart, checked on their own goroutine.
type checkMemo struct {
	clusters, others map[string]*checkedPart
}

// checkedPart is what checking m gave: its problems (its parts' too) and
// the names it references; for a resource split into parts, each part's.
type checkedPart struct {
	m     proto.Message
	err   error
	refs  []reference
	parts map[proto.Message]*checkedPart
}

type reference struct{ kind, name string }

// checker checks resources and their parts, reusing what the last check
// gave for the same ones.
type checker struct {
	validate  func(proto.Message) error
	last, now map[string]*checkedPart // nil: nothing kept
}

// resource checks m, of a kind and name, and returns what it gave; refs
// lists the references of m or, split into parts, of each part.
func (c *checker) resource(key string, m proto.Message, refs func(proto.Message) ([]reference, error)) *checkedPart {
	last := c.last[key]
	if last != nil && last.m == m {
		c.keep(key, last)
		return last
	}
	split := Split(m)
	if split.Field == 0 {
		p := c.part(m, refs)
		c.keep(key, p)
		return p
	}
	p := &checkedPart{m: m, parts: make(map[proto.Message]*checkedPart, len(split.Parts))}
	errs := []error{c.validate(split.Header)}
	for _, part := range split.Parts {
		pp := last.lastPart(part)
		if pp == nil {
			pp = c.part(part, refs)
		}
		p.parts[part] = pp
		if pp.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", partName(part), pp.err))
		}
		p.refs = append(p.refs, pp.refs...)
	}
	p.err = errors.Join(errs...)
	c.keep(key, p)
	return p
}

func (p *checkedPart) lastPart(m proto.Message) *checkedPart {
	if p == nil {
		return nil
	}
	return p.parts[m]
}

func (c *checker) part(m proto.Message, refs func(proto.Message) ([]reference, error)) *checkedPart {
	p := &checkedPart{m: m, err: c.validate(m)}
	if refs != nil {
		var err error
		p.refs, err = refs(m)
		p.err = errors.Join(p.err, err)
	}
	return p
}

func (c *checker) keep(key string, p *checkedPart) {
	if c.now != nil {
		c.now[key] = p
	}
}

func check(r *Resources, deep bool, memo *checkMemo) error {
	validate := func(m proto.Message) error { return m.(validator).ValidateAll() }
	if deep {
		validate = DeepValidate
	}
	cc, oc := &checker{validate: validate}, &checker{validate: validate}
	if memo != nil {
		cc.last, cc.now = memo.clusters, make(map[string]*checkedPart, len(r.Clusters))
		oc.last, oc.now = memo.others, make(map[string]*checkedPart, len(memo.others))
		defer func() { memo.clusters, memo.others = cc.now, oc.now }()
	}
	// Validation is the costly part; clusters are checked on a second
	// goroutine while the rest is checked here.
	var clusterErrs []error
	var clusterRefs [][]reference
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, x := range r.Clusters {
			p := cc.resource(x.Name, x, clusterReferences)
			if p.err != nil {
				clusterErrs = append(clusterErrs, fmt.Errorf("cluster %q: %w", x.Name, p.err))
			}
			clusterRefs = append(clusterRefs, p.refs)
		}
	}()
	var errs []error
	// References are looked up once every name is known.
	var refs [][]reference
	names := map[string]map[string]bool{}
	add := func(kind, name string, m proto.Message, partRefs func(proto.Message) ([]reference, error)) {
		if names[kind] == nil {
			names[kind] = map[string]bool{}
		}
		if names[kind][name] {
			errs = append(errs, fmt.Errorf("%s %q is defined twice", kind, name))
		}
		names[kind][name] = true
		if m == nil {
			return
		}
		// A listener or route configuration is checked as its own
		// fields and its chains or virtual hosts, each of which
		// ValidateAll checks alone.
		p := oc.resource(kind+"\x00"+name, m, partRefs)
		if p.err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", kind, name, p.err))
		}
		refs = append(refs, p.refs)
	}
	for _, x := range r.Listeners {
		add("listener", x.Name, x, chainReferences)
	}
	for _, x := range r.Routes {
		add("route", x.Name, x, virtualHostReferences)
	}
	for _, x := range r.Endpoints {
		add("endpoints", x.ClusterName, x, nil)
	}
	for _, x := range r.Secrets {
		add("secret", x.Name, x, nil)
	}
	wg.Wait()
	names["cluster"] = make(map[string]bool, len(r.Clusters))
	for _, x := range r.Clusters {
		add("cluster", x.Name, nil, nil)
	}
	missing := map[reference]bool{}
	for _, rs := range append(refs, clusterRefs...) {
		for _, ref := range rs {
			if !names[ref.kind][ref.name] {
				missing[ref] = true
			}
		}
	}
	for _, kind := range []string{"cluster", "route", "endpoints", "secret"} {
		var these []string
		for ref := range missing {
			if ref.kind == kind {
				these = append(these, ref.name)
			}
		}
		sort.Strings(these)
		for _, name := range these {
			errs = append(errs, fmt.Errorf("%s %q is referenced but not defined", kind, name))
		}
	}
	return errors.Join(append(clusterErrs, errs...)...)
}

func partName(m proto.Message) string {
	switch p := m.(type) {
	case *listenerv3.FilterChain:
		return p.Name
	case *routev3.VirtualHost:
		return p.Name
	}
	return ""
}

// DeepValidate runs ValidateAll on m and, recursively, on every message
// packed in an Any inside it.
func DeepValidate(m proto.Message) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	var err error
	eachAny(m.ProtoReflect(), func(a *anypb.Any) {
		if err != nil {
			return
		}
		inner, e := a.UnmarshalNew()
		if e != nil {
			err = fmt.Errorf("%s: %w", a.TypeUrl, e)
			return
		}
		if e := DeepValidate(inner); e != nil {
			err = fmt.Errorf("%s: %w", a.TypeUrl, e)
		}
	})
	return err
}

func eachAny(m protoreflect.Message, fn func(*anypb.Any)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		visit := func(v protoreflect.Value) {
			if a, ok := v.Message().Interface().(*anypb.Any); ok {
				fn(a)
				return
			}
			eachAny(v.Message(), fn)
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i))
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { visit(mv); return true })
			}
		default:
			visit(v)
		}
		return true
	})
}

// unpack reads a typed config known to hold references; false when a is
// of another type.
func unpack(a *anypb.Any, m proto.Message) (bool, error) {
	if a == nil || !a.MessageIs(m) {
		return false, nil
	}
	if err := a.UnmarshalTo(m); err != nil {
		return false, fmt.Errorf("%s: %w", a.TypeUrl, err)
	}
	return true, nil
}

// sdsReferences are the secrets a TLS context names.
func sdsReferences(ctx *tlsv3.CommonTlsContext) []reference {
	var out []reference
	for _, c := range ctx.GetTlsCertificateSdsSecretConfigs() {
		out = append(out, reference{"secret", c.Name})
	}
	if c := ctx.GetValidationContextSdsSecretConfig(); c != nil {
		out = append(out, reference{"secret", c.Name})
	}
	if c := ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); c != nil {
		out = append(out, reference{"secret", c.Name})
	}
	return out
}

// chainReferences reads the typed configs of a filter chain that can hold
// references: connection managers (RDS), TCP proxies (clusters) and TLS
// transport sockets (SDS).
func chainReferences(m proto.Message) ([]reference, error) {
	fc := m.(*listenerv3.FilterChain)
	var out []reference
	var errs []error
	for _, f := range fc.Filters {
		var hcm hcmv3.HttpConnectionManager
		a := f.GetTypedConfig()
		if a.MessageIs((*tcpproxyv3.TcpProxy)(nil)) {
			// Thousands of chains: read the cluster field off the wire
			// instead of unmarshalling every TCP proxy.
			n, err := tcpProxyCluster(a.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("tcp_proxy: %w", err))
			}
			if n != "" {
				out = append(out, reference{"cluster", n})
			}
			continue
		}
		ok, err := unpack(a, &hcm)
		errs = append(errs, err)
		if n := hcm.GetRds().GetRouteConfigName(); ok && n != "" {
			out = append(out, reference{"route", n})
		}
	}
	var down tlsv3.DownstreamTlsContext
	ok, err := unpack(fc.GetTransportSocket().GetTypedConfig(), &down)
	if ok {
		out = append(out, sdsReferences(down.GetCommonTlsContext())...)
	}
	return out, errors.Join(append(errs, err)...)
}

// virtualHostReferences are the clusters a virtual host's routes send to.
func virtualHostReferences(m proto.Message) ([]reference, error) {
	var out []reference
	for _, rt := range m.(*routev3.VirtualHost).Routes {
		if c := rt.GetRoute().GetCluster(); c != "" {
			out = append(out, reference{"cluster", c})
		}
	}
	return out, nil
}

// clusterReferences are a cluster's endpoints (EDS) and secrets (SDS).
func clusterReferences(m proto.Message) ([]reference, error) {
	c := m.(*clusterv3.Cluster)
	var out []reference
	if c.GetType() == clusterv3.Cluster_EDS {
		n := c.GetEdsClusterConfig().GetServiceName()
		if n == "" {
			n = c.Name
		}
		out = append(out, reference{"endpoints", n})
	}
	var up tlsv3.UpstreamTlsContext
	ok, err := unpack(c.GetTransportSocket().GetTypedConfig(), &up)
	if ok {
		out = append(out, sdsReferences(up.GetCommonTlsContext())...)
	}
	return out, err
}

// tcpProxyCluster reads TcpProxy.cluster (field 2) from the wire form.
func tcpProxyCluster(b []byte) (string, error) {
	const clusterField = 2
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == clusterField && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", protowire.ParseError(n)
			}
			return string(v), nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return "", nil
}
