package translate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Parts is a resource split where it grows with the destinations: a
// listener into its filter chains and everything else, a route
// configuration into its virtual hosts and everything else. Checking,
// encoding and hashing a resource can then be done part by part, and
// only for the parts that changed: ValidateAll of a listener is that of
// its other fields and of each chain, and its encoding is that of its
// other fields with the chains' inserted in field order (ordered fields
// are what proto.Marshal writes).
type Parts struct {
	// Header is the resource without Field; the resource itself when it
	// has no parts.
	Header proto.Message
	// Field is the number of the repeated field the parts come from (0:
	// none).
	Field protowire.Number
	Parts []proto.Message
}

// Split splits a listener or a route configuration; any other resource
// is its own header.
func Split(m proto.Message) Parts {
	var parts []proto.Message
	switch r := m.(type) {
	case *listenerv3.Listener:
		for _, fc := range r.FilterChains {
			parts = append(parts, fc)
		}
	case *routev3.RouteConfiguration:
		for _, vh := range r.VirtualHosts {
			parts = append(parts, vh)
		}
	default:
		return Parts{Header: m}
	}
	h, field := splitHeader(m)
	return Parts{Header: h, Field: field, Parts: parts}
}

// header is Split's header, without listing the parts.
func header(m proto.Message) proto.Message {
	h, _ := splitHeader(m)
	return h
}

func splitHeader(m proto.Message) (proto.Message, protowire.Number) {
	var name protoreflect.Name
	switch m.(type) {
	case *listenerv3.Listener:
		name = "filter_chains"
	case *routev3.RouteConfiguration:
		name = "virtual_hosts"
	default:
		return m, 0
	}
	src := m.ProtoReflect()
	fd := src.Descriptor().Fields().ByName(name)
	dst := src.New()
	// A shallow copy: the header shares every other field's messages.
	src.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if f != fd {
			dst.Set(f, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	return dst.Interface(), fd.Number()
}
