package translate

import (
	"errors"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimithttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	ratelimitnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ratelimit/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// What the check reads in resources: the typed configs packed inside
// them (DeepValidate) and the names they reference.

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

// rateLimitReference is the gRPC cluster a global rate limit filter (of
// a filter chain or of a connection manager) calls: Envoy rejects the
// filter when that cluster is not defined.
func rateLimitReference(a *anypb.Any) ([]reference, error) {
	var svc *ratelimitconfv3.RateLimitServiceConfig
	switch {
	case a.MessageIs((*ratelimitnetv3.RateLimit)(nil)):
		var rl ratelimitnetv3.RateLimit
		if _, err := unpack(a, &rl); err != nil {
			return nil, err
		}
		svc = rl.RateLimitService
	case a.MessageIs((*ratelimithttpv3.RateLimit)(nil)):
		var rl ratelimithttpv3.RateLimit
		if _, err := unpack(a, &rl); err != nil {
			return nil, err
		}
		svc = rl.RateLimitService
	}
	if n := svc.GetGrpcService().GetEnvoyGrpc().GetClusterName(); n != "" {
		return []reference{{"cluster", n}}, nil
	}
	return nil, nil
}

// chainReferences reads the typed configs of a filter chain that can hold
// references: connection managers (RDS, and their HTTP filters' rate limit
// service), TCP proxies and rate limit filters (clusters) and TLS
// transport sockets (SDS).
func chainReferences(m proto.Message) ([]reference, error) {
	fc := m.(*listenerv3.FilterChain)
	var out []reference
	var errs []error
	for _, f := range fc.Filters {
		var hcm hcmv3.HttpConnectionManager
		a := f.GetTypedConfig()
		if refs, err := rateLimitReference(a); refs != nil || err != nil {
			out = append(out, refs...)
			errs = append(errs, err)
			continue
		}
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
		if err != nil {
			errs = append(errs, err)
		}
		if n := hcm.GetRds().GetRouteConfigName(); ok && n != "" {
			out = append(out, reference{"route", n})
		}
		for _, hf := range hcm.GetHttpFilters() {
			refs, err := rateLimitReference(hf.GetTypedConfig())
			out = append(out, refs...)
			errs = append(errs, err)
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
