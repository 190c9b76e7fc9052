package bootstrap

import (
	"flag"
	"os"
	"testing"

	"github.com/egress-xds/egress-xds/internal/envoytest"
)

var update = flag.Bool("update", false, "rewrite laptop.yaml from Laptop")

// laptop.yaml is Laptop rendered (go test ./envoy/bootstrap -run
// TestLaptopFile -update rewrites it), and Envoy accepts it.
func TestLaptopFile(t *testing.T) {
	want, err := Render(Laptop)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(LaptopFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(LaptopFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s is not Render(Laptop) (go test ./envoy/bootstrap -run TestLaptopFile -update rewrites it):\n%s", LaptopFile, want)
	}
	b, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if b.GetAdmin().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" || len(b.GetStaticResources().GetListeners()) != 0 {
		t.Errorf("the laptop gateway must listen on nothing but its loopback admin by itself: %v", b.GetStaticResources().GetListeners())
	}
	t.Run("envoy validates it", func(t *testing.T) { envoytest.MustValidate(t, envoytest.Find(t), string(got)) })
}
