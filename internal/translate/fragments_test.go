package translate

import (
	"reflect"
	"testing"
	"time"
)

// TestOptionsFingerprint: every option but the two that only the Secrets'
// checks read moves the fingerprint, so that a new option cannot be left
// out of the cache key by mistake (TestIncrementalOptions in
// internal/compile proves the output equal under moving options).
func TestOptionsFingerprint(t *testing.T) {
	base := optionsFingerprint(Options{})
	typ := reflect.TypeOf(Options{})
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		var o Options
		v := reflect.ValueOf(&o).Elem().Field(i)
		switch v.Kind() {
		case reflect.Pointer:
			v.Set(reflect.New(f.Type.Elem()))
		case reflect.Map:
			v.Set(reflect.MakeMapWithSize(f.Type, 1))
			v.SetMapIndex(reflect.Zero(f.Type.Key()), reflect.Zero(f.Type.Elem()))
		case reflect.Slice:
			v.Set(reflect.MakeSlice(f.Type, 1, 1))
		case reflect.String:
			v.SetString("x")
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Uint32, reflect.Uint64:
			v.SetUint(1)
		case reflect.Int64:
			v.SetInt(1)
		case reflect.Struct: // time.Time
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
		default:
			t.Fatalf("option %s of kind %s: teach this test to set it", f.Name, v.Kind())
		}
		moved := optionsFingerprint(o) != base
		if judged := f.Name == "Now" || f.Name == "CertificateExpiryWarning"; moved == judged {
			t.Errorf("option %s: fingerprint moved %t", f.Name, moved)
		}
	}
}

// TestClusterSources: the clusters' sources patched from the last
// translation's are those built from scratch, a name twice included
// (which the check refuses), after which nothing is kept.
func TestClusterSources(t *testing.T) {
	port := func(name, cm string) *destPort { return &destPort{cluster: name, sources: []string{cm}} }
	a, b, c := port("a", "ns/x"), port("b", "ns/x"), port("c", "ns/y")
	b2 := port("b", "ns/y")
	cache := NewCache()
	for i, ports := range [][]*destPort{{a, b}, {a, b, c}, {a, c}, {a, b, b2, c}, {b, c}, {a, b2}} {
		got := cache.clusterSources(ports)
		want := (*Cache)(nil).clusterSources(ports)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: %v, from scratch %v", i, got, want)
		}
	}
	if cache.sources.ports == nil {
		t.Fatal("nothing kept after a list without a name twice")
	}
}
