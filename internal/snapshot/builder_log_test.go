package snapshot

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

func logCM(name, doc string) compile.ConfigMap {
	return compile.ConfigMap{File: name + ".yaml", ConfigMap: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{intent.LabelKey: "true"}},
		Data:       map[string]string{"egress.yaml": doc},
	}}
}

// A problem is logged when it appears and when it is fixed; a rebuild for
// another reason (another ConfigMap edited) logs nothing about it again.
func TestBuilderLogsProblemsOnChange(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := NewBuilder(NewCache(nil, nil), translate.Options{ForwardProxyPort: 3128}, nil, log)
	good := func(n int) string {
		return fmt.Sprintf("destinations: [{name: d, host: d%d.example.com, ports: [{number: 443, protocol: TLS}]}]", n)
	}
	badPort := "destinations: [{name: d, host: d.example.com, ports: [{number: 70000, protocol: TLS}]}]"
	rebuild := func(cms ...compile.ConfigMap) []string {
		buf.Reset()
		b.Update(Input{ConfigMaps: cms})
		b.Rebuild()
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if strings.Contains(l, "intent") {
				out = append(out, l)
			}
		}
		return out
	}
	expect := func(step string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d lines, want %d:\n%s", step, len(got), len(want), strings.Join(got, "\n"))
		}
		for i := range want {
			if !strings.Contains(got[i], want[i]) {
				t.Errorf("%s: line %d\n%s\nlacks %q", step, i, got[i], want[i])
			}
		}
	}
	expect("first build", rebuild(logCM("a", badPort), logCM("b", good(1))),
		`level=ERROR msg="invalid intent" source="a.yaml: ns/a: egress.yaml" field=destinations[0].ports[0].number problem="70000 is not a valid port"`)
	expect("another ConfigMap edited", rebuild(logCM("a", badPort), logCM("b", good(2))))
	expect("same input", rebuild(logCM("a", badPort), logCM("b", good(2))))
	expect("a second problem", rebuild(logCM("a", badPort), logCM("b", "destinations: []")),
		`level=WARN msg="intent warning" source="b.yaml: ns/b" field="" problem="keeping the last valid version of this ConfigMap until the errors are fixed"`,
		`msg="invalid intent" source="b.yaml: ns/b: egress.yaml" field=destinations problem="at least one destination is required"`)
	expect("the first fixed", rebuild(logCM("a", good(3)), logCM("b", "destinations: []")),
		`level=INFO msg="intent problem fixed" source="a.yaml: ns/a: egress.yaml" field=destinations[0].ports[0].number problem="70000 is not a valid port" severity=error`)
	expect("the second fixed", rebuild(logCM("a", good(3)), logCM("b", good(2))),
		`msg="intent problem fixed" source="b.yaml: ns/b" field="" problem="keeping the last valid version`,
		`msg="intent problem fixed" source="b.yaml: ns/b: egress.yaml" field=destinations`)
}

// However many problems appear or are fixed at once, a rebuild logs at
// most MaxLoggedChanges of each, and one line counting the rest.
func TestBuilderLogsChangesBounded(t *testing.T) {
	var buf bytes.Buffer
	b := NewBuilder(NewCache(nil, nil), translate.Options{ForwardProxyPort: 3128}, nil, slog.New(slog.NewTextHandler(&buf, nil)))
	var broken, fixed []compile.ConfigMap
	for i := range MaxLoggedChanges + 20 {
		broken = append(broken, logCM(fmt.Sprintf("cm%03d", i), "destinations: []"))
		fixed = append(fixed, logCM(fmt.Sprintf("cm%03d", i), fmt.Sprintf("destinations: [{name: d, host: d%d.example.com, ports: [{number: 443, protocol: TLS}]}]", i)))
	}
	b.Update(Input{ConfigMaps: broken})
	b.Rebuild()
	if n := strings.Count(buf.String(), `msg="invalid intent"`); n != MaxLoggedChanges || !strings.Contains(buf.String(), "more intent problems appeared, not logged one by one: /debug/config lists the current ones\" count=20") {
		t.Fatalf("%d problems logged:\n%s", n, buf.String()[max(0, buf.Len()-500):])
	}
	buf.Reset()
	b.Update(Input{ConfigMaps: fixed})
	b.Rebuild()
	if n := strings.Count(buf.String(), `msg="intent problem fixed"`); n != MaxLoggedChanges || !strings.Contains(buf.String(), `msg="more intent problems fixed, not logged one by one" count=20`) {
		t.Fatalf("%d fixes logged:\n%s", n, buf.String()[max(0, buf.Len()-500):])
	}
}
