package integration

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/envoy/bootstrap"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

// validateAnys validates the messages packed in Any fields, which
// ValidateAll does not look into, as Envoy does.
func validateAnys(m protoreflect.Message, path string) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		return validateAnys(inner.ProtoReflect(), path)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = validateAnys(v.List().Get(i).Message(), p)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
					err = validateAnys(v.Message(), p+"["+k.String()+"]")
					return err == nil
				})
			}
		default:
			err = validateAnys(v.Message(), p)
		}
		return err == nil
	})
	return err
}

// The bootstrap the local Envoy run gives its gateways is a valid Envoy
// Bootstrap for the right node, control plane and admin address.
func TestLocalBootstrap(t *testing.T) {
	out, err := localBootstrap("it-gateway-1", "127.0.0.1:41234")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bootstrap.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if err := validateAnys(b.ProtoReflect(), "bootstrap"); err != nil {
		t.Fatal(err)
	}
	if b.GetNode().GetId() != "it-gateway-1" || b.GetNode().GetCluster() != group {
		t.Errorf("node %v", b.GetNode())
	}
	var xds *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == bootstrap.XDSClusterName {
			xds = c
		}
	}
	sa := xds.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if xds.GetType() != clusterv3.Cluster_STATIC || sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 41234 {
		t.Errorf("xds_cluster %v %s:%d", xds.GetType(), sa.GetAddress(), sa.GetPortValue())
	}
	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	if admin.GetAddress() != "127.0.0.1" || admin.GetPortValue() != 0 {
		t.Errorf("admin %s:%d, want 127.0.0.1 and a free port", admin.GetAddress(), admin.GetPortValue())
	}
	if _, err := localBootstrap("it", "no-port"); err == nil {
		t.Error("an address without a port was accepted")
	}
	if got := b.GetDynamicResources().GetAdsConfig().GetApiType(); got != corev3.ApiConfigSource_GRPC {
		t.Errorf("the SotW gateway subscribes with %v", got)
	}
	out, err = localBootstrapFor("it-gateway-1", "127.0.0.1:41234", xdstest.Delta)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = bootstrap.Parse(out); err != nil {
		t.Fatal(err)
	}
	if got := b.GetDynamicResources().GetAdsConfig().GetApiType(); got != corev3.ApiConfigSource_DELTA_GRPC {
		t.Errorf("the delta gateway subscribes with %v", got)
	}
}

// The shipped bootstrap, which the compose gateways mount, holds valid
// typed configs too.
func TestShippedBootstrapAnys(t *testing.T) {
	b, err := bootstrap.Default()
	if err != nil {
		t.Fatal(err)
	}
	if err := validateAnys(b.ProtoReflect(), "bootstrap"); err != nil {
		t.Fatal(err)
	}
}
