package translate_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// TestCheckFindsEveryReference takes away, one at a time, each resource
// of every golden case that some other resource names (every secret,
// endpoint set and route configuration the translator makes is named by
// one, and every cluster but the rate limit service's, which only gRPC
// services name, and a sidecar's gateway cluster while it routes
// nothing), and proves Check and a Cache's Check, warm from the
// whole set, both report the reference that misses: TCP proxies,
// connection managers, virtual hosts, EDS clusters and the SDS
// configurations of both TLS contexts are all read.
func TestCheckFindsEveryReference(t *testing.T) {
	cases, _ := filepath.Glob("testdata/*/in.yaml")
	kinds := map[string]int{}
	for _, in := range cases {
		orig, _ := translateFile(t, in, caseOptions(t, filepath.Dir(in)))
		if orig == nil {
			continue
		}
		t.Run(filepath.Base(filepath.Dir(in)), func(t *testing.T) {
			try := func(kind, name string, without *translate.Resources) {
				t.Helper()
				want := fmt.Sprintf("%s %q is referenced but not defined", kind, name)
				cache := translate.NewCache()
				if err := cache.Check(orig); err != nil {
					t.Fatal(err)
				}
				for what, err := range map[string]error{"Check": translate.Check(without), "a Cache's Check": cache.Check(without)} {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Errorf("without %s %q, %s says %v", kind, name, what, err)
					}
				}
				kinds[kind]++
			}
			for i, s := range orig.Secrets {
				r := copyResources(orig)
				r.Secrets = slices.Delete(slices.Clone(r.Secrets), i, i+1)
				try("secret", s.Name, r)
			}
			for i, e := range orig.Endpoints {
				r := copyResources(orig)
				r.Endpoints = slices.Delete(slices.Clone(r.Endpoints), i, i+1)
				try("endpoints", e.ClusterName, r)
			}
			for i, rc := range orig.Routes {
				r := copyResources(orig)
				r.Routes = slices.Delete(slices.Clone(r.Routes), i, i+1)
				try("route", rc.Name, r)
			}
			for i, c := range orig.Clusters {
				if c.Name == "mesh_gateway" && filepath.Base(filepath.Dir(in)) == "sidecar-empty" {
					continue
				}
				r := copyResources(orig)
				r.Clusters = slices.Delete(slices.Clone(r.Clusters), i, i+1)
				try("cluster", c.Name, r)
			}
		})
	}
	t.Logf("references taken away: %v", kinds)
}
