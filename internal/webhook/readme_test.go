package webhook

import (
	"os"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/egress-xds/egress-xds/internal/watch"
)

// The README's sample of a refusal at kubectl apply shows what the
// webhook answers for testdata/bad.yaml.
func TestReadmeDenialSample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "denied the request: "
	s := string(readme)
	i := strings.Index(s, "$ kubectl apply -f bad.yaml\n")
	j := strings.Index(s[max(i, 0):], marker)
	if i < 0 || j < 0 {
		t.Fatal("README.md has no sample of kubectl apply -f bad.yaml refused")
	}
	shown := s[i+j+len(marker):]
	shown = shown[:strings.Index(shown, "\n```")]

	cms, _, err := watch.ParseFile("../../testdata/bad.yaml")
	if err != nil || len(cms) != 1 {
		t.Fatalf("%v, %d ConfigMaps", err, len(cms))
	}
	resp := answer(t, newFixture(t, true).h, review(admissionv1.Create, &cms[0]))
	if resp.Allowed || resp.Result == nil {
		t.Fatalf("allowed: %+v", resp)
	}
	if shown != resp.Result.Message {
		t.Errorf("README.md shows the denial as\n%s\nthe webhook answers\n%s", shown, resp.Result.Message)
	}
}
