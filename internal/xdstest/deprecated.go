package xdstest

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
)

// Deprecated lists, with their paths under root, the deprecated fields and
// enum values set anywhere in m, and the typed configs (Any fields, which
// ValidateAll does not look into) that fail their own ValidateAll. Envoy
// accepts deprecated fields with a warning until a release rejects them by
// default: a configuration that uses none keeps working across upgrades.
func Deprecated(m proto.Message, root string) []string {
	var out []string
	walk(func(s string) { out = append(out, s) }, m.ProtoReflect(), root)
	return out
}

func walk(report func(string), m protoreflect.Message, path string) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			report(fmt.Sprintf("%s: %v", path, err))
			return
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				report(fmt.Sprintf("%s (%s): %v", path, a.GetTypeUrl(), err))
			}
		}
		walk(report, inner.ProtoReflect(), path+"("+string(inner.ProtoReflect().Descriptor().FullName())+")")
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		if o, ok := fd.Options().(*descriptorpb.FieldOptions); ok && o.GetDeprecated() {
			report(p + " is deprecated")
		}
		visit := func(p string, v protoreflect.Value) {
			switch fd.Kind() {
			case protoreflect.MessageKind, protoreflect.GroupKind:
				walk(report, v.Message(), p)
			case protoreflect.EnumKind:
				ev := fd.Enum().Values().ByNumber(v.Enum())
				if o, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && o.GetDeprecated() {
					report(fmt.Sprintf("%s: enum value %s is deprecated", p, ev.Name()))
				}
			}
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(p, l.Get(i))
			}
		case fd.IsMap():
			fd := fd.MapValue()
			v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				if fd.Kind() == protoreflect.MessageKind {
					walk(report, v.Message(), p+"["+k.String()+"]")
				}
				return true
			})
		default:
			visit(p, v)
		}
		return true
	})
}
