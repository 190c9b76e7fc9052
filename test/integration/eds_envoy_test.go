package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/envoytest"
)

// An edit of a STATIC destination's cluster reaches a real Envoy at once.
// Envoy re-creates the cluster, and the new one warms until it gets its
// endpoints, which Envoy does not ask for again (envoyproxy/envoy#13009):
// were they not sent again, the edit would wait for the 15 s EDS initial
// fetch timeout (Envoy then counts init_fetch_timeout and uses the copy it
// cached). The endpoints' version covers their cluster's, so they are.
func TestEnvoyClusterEditSendsItsEndpoints(t *testing.T) {
	bin := envoytest.Find(t)
	s := newGatewayStack(t, bin)
	s.mustPass(t, s.httpPort, "before the edit")
	const cluster = "apps/web/web/80"
	for i, timeout := range []string{"2s", "3s"} {
		writeIntent(t, s.dir, "web", webIntent(s.up, false, "connectionPool: {connectTimeout: "+timeout+"}"))
		want, _ := time.ParseDuration(timeout)
		err := retry(waitTimeout, func() error {
			got, err := activeConnectTimeout(s.gw, cluster)
			if err == nil && got != want {
				err = fmt.Errorf("cluster %s active with connect_timeout %v, want %v", cluster, got, want)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := gatewayStat(t, s.gw, "cluster."+cluster+".init_fetch_timeout"); n != 0 {
			t.Errorf("edit %d: the cluster waited for its endpoints until the initial fetch timeout (%d times)", i+1, n)
		}
		if strings.Contains(s.gw.stderr.String(), "initial fetch timed out") {
			t.Errorf("edit %d: Envoy logged an initial fetch timeout:\n%s", i+1, tail(s.gw.stderr.String(), 10))
		}
		s.mustPass(t, s.httpPort, "after the edit")
	}
}

// activeConnectTimeout is the connect timeout of a cluster the gateway has
// active (not warming), from its /config_dump.
func activeConnectTimeout(gw gateway, name string) (time.Duration, error) {
	body, err := gw.admin("/config_dump?resource=dynamic_active_clusters&mask=cluster.connect_timeout&name_regex=" +
		url.QueryEscape("^"+regexpQuote(name)+"$"))
	if err != nil {
		return 0, err
	}
	var dump struct {
		Configs []struct {
			Cluster struct {
				ConnectTimeout string `json:"connect_timeout"`
			} `json:"cluster"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		return 0, fmt.Errorf("config_dump: %w", err)
	}
	if len(dump.Configs) != 1 {
		return 0, fmt.Errorf("cluster %s is not active: %s", name, body)
	}
	return time.ParseDuration(dump.Configs[0].Cluster.ConnectTimeout)
}
