package snapshot

import (
	"context"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/metrics"
	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
)

func tlsSecret(t *testing.T, ca *testpki.CA, name string, notAfter time.Time) corev1.Secret {
	t.Helper()
	c, k, err := ca.Issue(testpki.Leaf{CommonName: name, Client: true, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	return corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: map[string][]byte{"tls.crt": c, "tls.key": k}}
}

// Time alone changes what a certificate is judged: the builder rebuilds
// when a certificate nears its expiry (a warning, versions unchanged, so
// nothing is pushed) and when it expires (its destination held back),
// with no change of input; the expiry metric follows the Secrets.
func TestBuilderRejudgesCertificatesAsTimePasses(t *testing.T) {
	ca, err := testpki.NewCA("test-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	warnWithin := time.Hour
	soon := tlsSecret(t, ca, "soon", now.Add(warnWithin+2*time.Second)) // warned about in 2s
	expiring := tlsSecret(t, ca, "expiring", now.Add(4*time.Second))    // warned about now, expires in 4s
	doc := "gateways: [g]\ndestinations:\n" +
		"  - {name: soon, host: soon.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: MUTUAL, clientCertificate: {secret: soon}}}\n" +
		"  - {name: expiring, host: expiring.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: MUTUAL, clientCertificate: {secret: expiring}}}\n"
	cm := compile.ConfigMap{ConfigMap: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm", Labels: map[string]string{intent.LabelKey: "true"}},
		Data:       map[string]string{"egress.yaml": doc},
	}}
	m := metrics.New()
	cache := NewCache(nil, nil)
	b := NewBuilder(cache, translate.Options{ForwardProxyPort: 3128, PrivateKeysInline: true, CertificateExpiryWarning: warnWithin}, m, nil)
	b.Update(Input{ConfigMaps: []compile.ConfigMap{cm}, Secrets: []corev1.Secret{soon, expiring}})
	b.Rebuild()
	if got := b.Diagnostics().Error(); strings.Contains(got, "ns/soon") || !strings.Contains(got, "ns/expiring: tls.crt expires at") {
		t.Fatalf("diagnostics at the start:\n%s", got)
	}
	const group = "g"
	start := snapshotOf(t, cache, group)
	if len(start.Type(resourcev3.ClusterType).Names) != 2 {
		t.Fatalf("clusters %v", start.Type(resourcev3.ClusterType).Names)
	}
	if v := testutil.ToFloat64(m.SecretCertExpiry.WithLabelValues("ns/expiring", "tls.crt")); v != float64(now.Add(4*time.Second).Unix()) {
		t.Errorf("expiry metric %v, want %d", v, now.Add(4*time.Second).Unix())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	go b.Run(ctx)
	waitDiag(ctx, t, b, "Secret ns/soon: tls.crt expires at")
	if got := snapshotOf(t, cache, group); !sameVersions(got, start) {
		t.Error("a warning changed the snapshot versions: proxies would be pushed for nothing")
	}
	if n := testutil.ToFloat64(m.Builds.WithLabelValues("unchanged")); n == 0 {
		t.Error("no unchanged build counted for the warning")
	}
	waitDiag(ctx, t, b, "Secret ns/expiring: tls.crt expired at")
	if got := snapshotOf(t, cache, group).Type(resourcev3.ClusterType).Names; len(got) != 1 || !strings.Contains(got[0], "/soon/") {
		t.Errorf("after the expiry the clusters are %v, want soon's alone", got)
	}
	// Held back, its expiry is still exported (alerts keep firing); once
	// no intent uses the Secret, its series goes.
	if n := testutil.CollectAndCount(m.SecretCertExpiry); n != 2 {
		t.Errorf("%d expiry series, want 2", n)
	}
	cancel()
	cm.Data = map[string]string{"egress.yaml": "gateways: [g]\ndestinations:\n" +
		"  - {name: soon, host: soon.example.com, ports: [{number: 80, protocol: HTTP}], tls: {mode: MUTUAL, clientCertificate: {secret: soon}}}\n"}
	b.Update(Input{ConfigMaps: []compile.ConfigMap{cm}, Secrets: []corev1.Secret{soon, expiring}})
	b.Rebuild()
	if n := testutil.CollectAndCount(m.SecretCertExpiry); n != 1 {
		t.Errorf("%d expiry series after the Secret's last user went, want 1", n)
	}
}

func snapshotOf(t *testing.T, c *Cache, group string) *GroupSnapshot {
	t.Helper()
	gs := c.Snapshot(group)
	if gs == nil {
		t.Fatalf("no snapshot for %q", group)
	}
	return gs
}

func waitDiag(ctx context.Context, t *testing.T, b *Builder, want string) {
	t.Helper()
	for !strings.Contains(b.Diagnostics().Error(), want) {
		select {
		case <-ctx.Done():
			t.Fatalf("no diagnostic %q; have:\n%s", want, b.Diagnostics().Error())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
