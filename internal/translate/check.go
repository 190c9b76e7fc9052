package translate

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
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
func Check(r *Resources) error { return check(r, false) }

// CheckDeep is Check plus ValidateAll on every typed config, unpacked from
// its Any.
func CheckDeep(r *Resources) error { return check(r, true) }

func check(r *Resources, deep bool) error {
	validate := func(m proto.Message) error { return m.(validator).ValidateAll() }
	if deep {
		validate = DeepValidate
	}
	// Validation is the costly part; clusters are checked on a second
	// goroutine while the rest is checked here.
	var clusterErrs []error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, x := range r.Clusters {
			if err := validate(x); err != nil {
				clusterErrs = append(clusterErrs, fmt.Errorf("cluster %q: %w", x.Name, err))
			}
		}
	}()
	var errs []error
	names := map[string]map[string]bool{}
	add := func(kind, name string, m proto.Message, validated bool) {
		if names[kind] == nil {
			names[kind] = map[string]bool{}
		}
		if names[kind][name] {
			errs = append(errs, fmt.Errorf("%s %q is defined twice", kind, name))
		}
		names[kind][name] = true
		if validated {
			return
		}
		if err := validate(m); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", kind, name, err))
		}
	}
	for _, x := range r.Listeners {
		add("listener", x.Name, x, false)
	}
	for _, x := range r.Routes {
		add("route", x.Name, x, false)
	}
	for _, x := range r.Endpoints {
		add("endpoints", x.ClusterName, x, false)
	}
	for _, x := range r.Secrets {
		add("secret", x.Name, x, false)
	}
	for _, x := range r.Clusters {
		add("cluster", x.Name, x, true)
	}
	refs, err := references(r)
	if err != nil {
		errs = append(errs, err)
	}
	for _, kind := range []string{"cluster", "route", "endpoints", "secret"} {
		for _, name := range sortedSet(refs[kind]) {
			if !names[kind][name] {
				errs = append(errs, fmt.Errorf("%s %q is referenced but not defined", kind, name))
			}
		}
	}
	wg.Wait()
	return errors.Join(append(clusterErrs, errs...)...)
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

// references lists the names each kind of resource is referenced by,
// reading the typed configs that can hold references: connection managers
// (RDS), TCP proxies (clusters) and TLS transport sockets (SDS).
func references(r *Resources) (map[string]map[string]bool, error) {
	refs := map[string]map[string]bool{"cluster": {}, "route": {}, "endpoints": {}, "secret": {}}
	var errs []error
	unpack := func(a *anypb.Any, m proto.Message) bool {
		if a == nil || !a.MessageIs(m) {
			return false
		}
		if err := a.UnmarshalTo(m); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.TypeUrl, err))
			return false
		}
		return true
	}
	sds := func(ctx *tlsv3.CommonTlsContext) {
		for _, c := range ctx.GetTlsCertificateSdsSecretConfigs() {
			refs["secret"][c.Name] = true
		}
		if c := ctx.GetValidationContextSdsSecretConfig(); c != nil {
			refs["secret"][c.Name] = true
		}
		if c := ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); c != nil {
			refs["secret"][c.Name] = true
		}
	}
	for _, l := range r.Listeners {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				var hcm hcmv3.HttpConnectionManager
				switch a := f.GetTypedConfig(); {
				case a.MessageIs((*tcpproxyv3.TcpProxy)(nil)):
					// Thousands of chains: read the cluster field off the
					// wire instead of unmarshalling every TCP proxy.
					n, err := tcpProxyCluster(a.Value)
					if err != nil {
						errs = append(errs, fmt.Errorf("listener %q: tcp_proxy: %w", l.Name, err))
					}
					if n != "" {
						refs["cluster"][n] = true
					}
				case unpack(a, &hcm):
					if n := hcm.GetRds().GetRouteConfigName(); n != "" {
						refs["route"][n] = true
					}
				}
			}
			var down tlsv3.DownstreamTlsContext
			if unpack(fc.GetTransportSocket().GetTypedConfig(), &down) {
				sds(down.GetCommonTlsContext())
			}
		}
	}
	for _, rc := range r.Routes {
		routeClusters(rc, refs["cluster"])
	}
	for _, c := range r.Clusters {
		if c.GetType() == clusterv3.Cluster_EDS {
			n := c.GetEdsClusterConfig().GetServiceName()
			if n == "" {
				n = c.Name
			}
			refs["endpoints"][n] = true
		}
		var up tlsv3.UpstreamTlsContext
		if unpack(c.GetTransportSocket().GetTypedConfig(), &up) {
			sds(up.GetCommonTlsContext())
		}
	}
	return refs, errors.Join(errs...)
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

func routeClusters(rc *routev3.RouteConfiguration, out map[string]bool) {
	for _, vh := range rc.VirtualHosts {
		for _, rt := range vh.Routes {
			if c := rt.GetRoute().GetCluster(); c != "" {
				out[c] = true
			}
		}
	}
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
