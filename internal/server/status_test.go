package server_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/egress-xds/egress-xds/internal/xds"
	"github.com/egress-xds/egress-xds/internal/xdstest"
)

func status(t *testing.T, r *running, query string) []xds.ProxyStatus {
	t.Helper()
	var out []xds.ProxyStatus
	body := get(t, "http://"+r.AdminAddr+"/debug/status"+query)
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("%v:\n%s", err, body)
	}
	return out
}

func states(p xds.ProxyStatus) map[string]xds.SyncState {
	out := map[string]xds.SyncState{}
	for k, v := range p.Types {
		out[k] = v.State
	}
	return out
}

var allSynced = map[string]xds.SyncState{"Cluster": xds.Synced, "ClusterLoadAssignment": xds.Synced, "Listener": xds.Synced,
	"RouteConfiguration": xds.Synced, "Secret": xds.Synced}

// A synced proxy is SYNCED on every type, over SotW and delta, also when it
// reconnects holding everything (nothing is sent, nothing ACKed).
func TestStatusSynced(t *testing.T) {
	r := start(t, examples(t))
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			node := "gw-status-" + mode.String()
			c := dial(t, r, mode, node)
			if err := c.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasVersions(served(t, r)))); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "SYNCED", func() bool {
				st := status(t, r, "?node="+node)
				return len(st) == 1 && reflect.DeepEqual(states(st[0]), allSynced)
			})
			st := status(t, r, "?node="+node)[0]
			if st.Group != group || st.Protocol != mode.String() || !strings.HasPrefix(st.Address, "127.0.0.1:") {
				t.Errorf("status: %+v", st)
			}
			held := c.State()
			_ = c.Close()
			waitFor(t, "the stream to close", func() bool { return len(status(t, r, "?node="+node)) == 0 })
			c2 := dial(t, r, mode, node, func(o *xdstest.Options) { o.Resume = held })
			waitFor(t, "SYNCED after a resume", func() bool {
				st := status(t, r, "?node="+node)
				return len(st) == 1 && reflect.DeepEqual(states(st[0]), allSynced)
			})
			if n := c2.State().TotalResourcesReceived(); n != 0 {
				t.Fatalf("resumed proxy was sent %d resources", n)
			}
		})
	}
	if st := status(t, r, "?group=nobody"); len(st) != 0 {
		t.Errorf("group filter: %+v", st)
	}
}

// A SotW NACK is traced to every ConfigMap with resources in the rejected
// type, shown as NACKED with Envoy's error, logged and passed to the hook.
func TestNACKAttributionSotW(t *testing.T) {
	r := start(t, examples(t))
	var mu sync.Mutex
	var hooked []xds.NACK
	r.XDS.Proxies.OnNACK(func(n xds.NACK) {
		mu.Lock()
		hooked = append(hooked, n)
		mu.Unlock()
	})
	served(t, r)
	reject := func(typeURL string, _ []proto.Message) error {
		if typeURL == resourcev3.ListenerType {
			return errors.New("test rejects listeners")
		}
		return nil
	}
	c := dial(t, r, xdstest.SotW, "gw-nack-sotw", func(o *xdstest.Options) { o.Validator = reject })
	if err := c.WaitFor(timeout(t), func(s *xdstest.State) bool { return s.Type(resourcev3.ListenerType).NACKs >= 1 }); err != nil {
		t.Fatal(err)
	}
	all := []string{"apps/docs", "apps/external-api", "apps/external-db", "apps/github", "apps/local-web", "apps/partner", "platform/cloud-apis"}
	var lds xds.TypeSyncStatus
	waitFor(t, "NACKED in the status", func() bool {
		st := status(t, r, "?node=gw-nack-sotw")
		if len(st) != 1 {
			return false
		}
		lds = st[0].Types["Listener"]
		return lds.State == xds.NACKed && st[0].Types["Cluster"].State == xds.Synced
	})
	if lds.NACKError != "test rejects listeners" || !reflect.DeepEqual(lds.NACKSources, all) || lds.NACKedVersion != served(t, r)[resourcev3.ListenerType] {
		t.Errorf("listener status: %+v", lds)
	}
	waitFor(t, "the hook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(hooked) == 1
	})
	mu.Lock()
	if h := hooked[0]; h.Node != "gw-nack-sotw" || h.Group != group || h.TypeURL != resourcev3.ListenerType ||
		!reflect.DeepEqual(h.ConfigMaps, all) || h.Error != "test rejects listeners" {
		t.Errorf("hook got %+v", h)
	}
	mu.Unlock()
	if log := r.log.String(); !strings.Contains(log, "configmaps=\"[apps/docs apps/external-api") {
		t.Errorf("NACK log line does not name the ConfigMaps:\n%s", log)
	}
}

// A delta NACK is traced to the ConfigMaps of the resources that response
// carried: after an edit, only the edited ConfigMap.
func TestNACKAttributionDelta(t *testing.T) {
	dir := examples(t)
	r := start(t, dir)
	served(t, r)
	const dbCluster = "apps/external-db/external-db/5432"
	rejectDB := func(typeURL string, res []proto.Message) error {
		for _, m := range res {
			if c, ok := m.(*clusterv3.Cluster); ok && c.GetName() == dbCluster {
				return errors.New("test rejects the database cluster")
			}
		}
		return nil
	}
	c := dial(t, r, xdstest.Delta, "gw-nack-delta", func(o *xdstest.Options) { o.Validator = rejectDB })
	if err := c.WaitFor(timeout(t), func(s *xdstest.State) bool { return s.Type(resourcev3.ClusterType).NACKs >= 1 }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first NACK in the status", func() bool {
		st := status(t, r, "?node=gw-nack-delta")
		return len(st) == 1 && st[0].Types["Cluster"].State == xds.NACKed && len(st[0].Types["Cluster"].NACKSources) > 1
	})
	edit(t, filepath.Join(dir, "database.yaml"), "connectTimeout: 5s", "connectTimeout: 3s")
	if err := c.WaitFor(timeout(t), func(s *xdstest.State) bool { return s.Type(resourcev3.ClusterType).NACKs >= 2 }); err != nil {
		t.Fatal(err)
	}
	var cds xds.TypeSyncStatus
	waitFor(t, "the second NACK in the status", func() bool {
		st := status(t, r, "?node=gw-nack-delta")
		if len(st) != 1 {
			return false
		}
		cds = st[0].Types["Cluster"]
		return cds.State == xds.NACKed && cds.NACKedVersion == served(t, r)[resourcev3.ClusterType]
	})
	if !reflect.DeepEqual(cds.NACKSources, []string{"apps/external-db"}) || cds.NACKError != "test rejects the database cluster" {
		t.Errorf("cluster status: %+v", cds)
	}
}

// histogramCount is the sample count of a histogram series.
func histogramCount(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metric
				}
			}
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// An edit observed by the folder source and ACKed by a connected proxy is
// one convergence sample per changed type; pushes record their sizes.
func TestConvergenceMetric(t *testing.T) {
	dir := examples(t)
	r := start(t, dir)
	before := served(t, r) // published before the proxy connects: no sample
	c := dial(t, r, xdstest.SotW, "gw-converge")
	if err := c.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasVersions(before))); err != nil {
		t.Fatal(err)
	}
	if n := histogramCount(t, r.Metrics.Registry, "egress_xds_convergence_seconds", map[string]string{"group": group}); n != 0 {
		t.Fatalf("%d convergence samples before any change", n)
	}
	if n := histogramCount(t, r.Metrics.Registry, "egress_xds_push_size_bytes", map[string]string{"group": group, "type": "Cluster"}); n == 0 {
		t.Error("no push size recorded")
	}
	start := time.Now()
	edit(t, filepath.Join(dir, "tls-origination.yaml"), "timeout: 10s", "timeout: 20s")
	if err := c.WaitFor(timeout(t), xdstest.All(xdstest.Synced, xdstest.HasVersions(servedEventually(t, r, resourcev3.RouteType)))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a convergence sample", func() bool {
		return histogramCount(t, r.Metrics.Registry, "egress_xds_convergence_seconds", map[string]string{"group": group}) >= 1
	})
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	if n := histogramCount(t, r.Metrics.Registry, "egress_xds_convergence_seconds", map[string]string{"group": group}); n != 1 {
		t.Fatalf("%d convergence samples for one changed type on one proxy", n)
	}
	mfs, _ := r.Metrics.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "egress_xds_convergence_seconds" {
			if s := mf.GetMetric()[0].GetHistogram().GetSampleSum(); s <= 0 || s > elapsed.Seconds() {
				t.Errorf("convergence %.3fs, want in (0, %.3f]", s, elapsed.Seconds())
			}
		}
	}
}
