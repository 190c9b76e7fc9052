package translate

import (
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egress-xds/egress-xds/internal/intent"
)

type validator interface{ ValidateAll() error }

// pack validates m and wraps it in an Any. Any contents are opaque to the
// outer message's ValidateAll, so every typed config is validated here.
func (t *translator) pack(m proto.Message) *anypb.Any {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			t.errs = append(t.errs, fmt.Errorf("%T: %w", m, err))
		}
	}
	// Deterministic: maps inside typed configs must serialize identically on
	// every replica and after every restart, or content versions would differ.
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		t.errs = append(t.errs, err)
	}
	return a
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func optDur(d *intent.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(d.Duration)
}

func u32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

func optU32(v uint32) *wrapperspb.UInt32Value {
	if v == 0 {
		return nil
	}
	return wrapperspb.UInt32(v)
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// adsSource points a resource reference at the ADS stream it came on.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// sharedField is one field of a message type, encoded once for the many
// messages that carry the same value: the access log of thousands of TCP
// proxies, the rules of every RBAC filter with the same allow list.
// Appending a field's encoding to a message's encoding is how protobuf
// defines setting it (a message field merges into an unset one, a
// repeated field appends), so the result decodes exactly as if the field
// had been set; the bytes are the same on every run.
type sharedField []byte

// encodeField validates values and encodes them as field name of parent's
// type (one entry per value for a repeated field).
func (t *translator) encodeField(parent proto.Message, name protoreflect.Name, values ...proto.Message) sharedField {
	fd := parent.ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil || fd.Kind() != protoreflect.MessageKind {
		t.errs = append(t.errs, fmt.Errorf("%T has no message field %s", parent, name))
		return nil
	}
	var b []byte
	for _, v := range values {
		if val, ok := v.(validator); ok {
			if err := val.ValidateAll(); err != nil {
				t.errs = append(t.errs, fmt.Errorf("%T.%s: %w", parent, name, err))
			}
		}
		enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(v)
		if err != nil {
			t.errs = append(t.errs, err)
		}
		b = protowire.AppendTag(b, fd.Number(), protowire.BytesType)
		b = protowire.AppendBytes(b, enc)
	}
	return b
}

// packWith packs m and appends the shared fields to it. m is validated
// without them; they were validated when encoded.
func (t *translator) packWith(m proto.Message, fields ...sharedField) *anypb.Any {
	a := t.pack(m)
	for _, f := range fields {
		a.Value = append(a.Value, f...)
	}
	return a
}
