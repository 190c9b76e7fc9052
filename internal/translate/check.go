package translate

import (
	"errors"
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Check is the last gate before resources reach Envoy: every resource and
// every typed config inside it passes ValidateAll(), names are unique per
// type, and every cluster, route configuration, endpoint set and secret a
// resource references is in the set. go-control-plane's Consistent() covers
// only EDS and RDS names; Envoy also rejects (or hangs warming on) missing
// clusters and SDS secrets, so those are checked here too.
func Check(r *Resources) error {
	var errs []error
	names := map[string]map[string]bool{}
	add := func(kind, name string, m proto.Message) {
		if names[kind] == nil {
			names[kind] = map[string]bool{}
		}
		if names[kind][name] {
			errs = append(errs, fmt.Errorf("%s %q is defined twice", kind, name))
		}
		names[kind][name] = true
		if err := DeepValidate(m); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", kind, name, err))
		}
	}
	for _, x := range r.Listeners {
		add("listener", x.Name, x)
	}
	for _, x := range r.Routes {
		add("route", x.Name, x)
	}
	for _, x := range r.Clusters {
		add("cluster", x.Name, x)
	}
	for _, x := range r.Endpoints {
		add("endpoints", x.ClusterName, x)
	}
	for _, x := range r.Secrets {
		add("secret", x.Name, x)
	}
	refs := references(r)
	for _, kind := range []string{"cluster", "route", "endpoints", "secret"} {
		for _, name := range sortedSet(refs[kind]) {
			if !names[kind][name] {
				errs = append(errs, fmt.Errorf("%s %q is referenced but not defined", kind, name))
			}
		}
	}
	return errors.Join(errs...)
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

// references lists the names each kind of resource is referenced by.
func references(r *Resources) map[string]map[string]bool {
	refs := map[string]map[string]bool{"cluster": {}, "route": {}, "endpoints": {}, "secret": {}}
	walkTyped := func(m proto.Message) {
		visitTyped(m, func(inner proto.Message) {
			switch x := inner.(type) {
			case *hcmv3.HttpConnectionManager:
				if n := x.GetRds().GetRouteConfigName(); n != "" {
					refs["route"][n] = true
				}
			case *tcpproxyv3.TcpProxy:
				if n := x.GetCluster(); n != "" {
					refs["cluster"][n] = true
				}
			case *tlsv3.SdsSecretConfig:
				refs["secret"][x.Name] = true
			}
		})
	}
	for _, l := range r.Listeners {
		walkTyped(l)
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
		walkTyped(c)
	}
	return refs
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

// visitTyped calls fn for m and every message inside it, Any contents
// included.
func visitTyped(m proto.Message, fn func(proto.Message)) {
	fn(m)
	var walk func(protoreflect.Message)
	walk = func(pm protoreflect.Message) {
		pm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Message() == nil || (fd.IsMap() && fd.MapValue().Message() == nil) {
				return true
			}
			each := func(v protoreflect.Value) {
				msg := v.Message().Interface()
				if a, ok := msg.(*anypb.Any); ok {
					if inner, err := a.UnmarshalNew(); err == nil {
						visitTyped(inner, fn)
					}
					return
				}
				fn(msg)
				walk(v.Message())
			}
			switch {
			case fd.IsList():
				for i := 0; i < v.List().Len(); i++ {
					each(v.List().Get(i))
				}
			case fd.IsMap():
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { each(mv); return true })
			default:
				each(v)
			}
			return true
		})
	}
	walk(m.ProtoReflect())
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

