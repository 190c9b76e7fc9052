package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/xds"
)

// /debug/config stays small and quick however many problems the input
// has: at most intent.MaxDiagnosticsPerConfigMap per ConfigMap (then a
// summary) and MaxDiagnosticsShown in all, with the rest counted.
func TestDebugConfigBoundedWithHugeDiagnostics(t *testing.T) {
	var diags intent.Diagnostics
	for i := range 50000 { // one broken file, as the sources report it
		diags = append(diags, intent.Diagnostic{Origin: intent.Origin{File: "huge.yaml", Namespace: "ns", Name: "cm", Key: "a.yaml"},
			Path: fmt.Sprintf("destinations[%d].name", i), Message: "is required", Severity: intent.SeverityError})
	}
	for i := range 3000 { // and many ConfigMaps with a problem each
		diags = append(diags, intent.Diagnostic{Origin: intent.Origin{File: fmt.Sprintf("z%04d.yaml", i)}, Message: "bad", Severity: intent.SeverityError})
	}
	// A ConfigMap that itself has thousands of problems, through the parser.
	doc := "destinations:\n" + strings.Repeat("- {name: a, host: a.example.com, ports: [{number: 0, protocol: TLS}]}\n", 2000)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "broken", Labels: map[string]string{intent.LabelKey: "true"}},
		Data: map[string]string{"egress.yaml": doc}}

	m := metrics.New()
	cache := snapshot.NewCache(nil, nil)
	b := snapshot.NewBuilder(cache, translate.Options{ForwardProxyPort: 3128}, m, nil)
	b.Update(snapshot.Input{ConfigMaps: []compile.ConfigMap{{ConfigMap: cm}}, Diagnostics: diags})
	b.Rebuild()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httptest.NewServer(Handler(Sources{Metrics: m, Cache: cache, Builder: b, Proxies: xds.NewServer(ctx, cache, m, nil, xds.Options{}).Proxies}))
	defer srv.Close()

	start := time.Now()
	resp, err := http.Get(srv.URL + "/debug/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v ConfigView
	dec := json.NewDecoder(&countingReader{r: resp.Body, limit: 512 << 10})
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	if len(v.Diagnostics) != MaxDiagnosticsShown {
		t.Fatalf("%d diagnostics listed", len(v.Diagnostics))
	}
	perCM := map[string]int{}
	summaries := 0
	for _, d := range v.Diagnostics {
		perCM[d.File+" "+d.ConfigMap]++
		if strings.HasPrefix(d.Message, "… and ") {
			summaries++
		}
	}
	if n := perCM["huge.yaml ns/cm"]; n != intent.MaxDiagnosticsPerConfigMap+1 {
		t.Errorf("huge.yaml: %d listed", n)
	}
	if n := perCM[" apps/broken"]; n != intent.MaxDiagnosticsPerConfigMap+1 {
		t.Errorf("apps/broken: %d listed", n)
	}
	if summaries != 2 {
		t.Errorf("%d summaries", summaries)
	}
	// 2 ConfigMaps of 51 lines, then 898 of the 3000 files listed.
	if v.DiagnosticsNotShown != 3000-898 {
		t.Errorf("not shown: %d", v.DiagnosticsNotShown)
	}
	resp, err = http.Get(srv.URL + "/debug/status")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/debug/status: %v %v", err, resp)
	}
	resp.Body.Close()
}

// countingReader fails past limit bytes: the response must stay smaller.
type countingReader struct {
	r     interface{ Read([]byte) (int, error) }
	n     int
	limit int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n += n; c.n > c.limit {
		return n, fmt.Errorf("response larger than %d bytes", c.limit)
	}
	return n, err
}
