package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/egress-xds/egress-xds/internal/server"
)

const (
	githubCluster   = "apps/github/github/443"
	externalCluster = "apps/external-api/external-api/80"
)

func startState(t *testing.T, dir, stateDir string) *running {
	t.Helper()
	return startConfig(t, context.Background(), server.Config{ConfigDir: dir, StateDir: stateDir})
}

func clusterNames(r *running) []string {
	if gs := r.Cache.Snapshot(group); gs != nil {
		return gs.Type(resourcev3.ClusterType).Names
	}
	return nil
}

func waitClusters(t *testing.T, r *running, want ...string) {
	t.Helper()
	waitFor(t, "clusters "+strings.Join(want, ", "), func() bool {
		names := clusterNames(r)
		for _, w := range want {
			if !slices.Contains(names, w) {
				return false
			}
		}
		return true
	})
}

func waitDiagnostic(t *testing.T, r *running, substr string) {
	t.Helper()
	waitFor(t, "diagnostic "+substr, func() bool { return strings.Contains(r.Builder.Diagnostics().Error(), substr) })
}

// A restart never serves less than before it: ConfigMaps broken before
// the restart (an invalid intent, a file that is no longer YAML) keep the
// destinations they served, from the state folder.
func TestRestartWhileBrokenKeepsServedDestinations(t *testing.T) {
	dir, stateDir := examples(t), t.TempDir()
	r := startState(t, dir, stateDir)
	waitClusters(t, r, githubCluster, externalCluster)
	edit(t, filepath.Join(dir, "passthrough.yaml"), "number: 443", "number: 70000")
	write(t, filepath.Join(dir, "tls-origination.yaml"), "kind: [")
	waitDiagnostic(t, r, "70000 is not a valid port")
	waitDiagnostic(t, r, "tls-origination.yaml")
	r.stop() // what was saved, was saved at the change: a kill -9 is no different

	r2 := startState(t, dir, stateDir)
	waitSnapshot(t, r2)
	waitClusters(t, r2, githubCluster, externalCluster)
	waitDiagnostic(t, r2, "70000 is not a valid port")

	// Without the state folder they would be gone: it is what kept them.
	r3 := startState(t, dir, "")
	waitSnapshot(t, r3)
	if names := clusterNames(r3); slices.Contains(names, githubCluster) || slices.Contains(names, externalCluster) {
		t.Fatalf("served without state: %v", names)
	}
}

// A newcomer that sorts first takes nothing from a served destination:
// the served one keeps its allow list, now and after a restart, although
// on a cold start the newcomer's name would win.
func TestNewcomerDoesNotWidenServedDestination(t *testing.T) {
	dir, stateDir := examples(t), t.TempDir()
	r := startState(t, dir, stateDir)
	waitClusters(t, r, githubCluster)
	write(t, filepath.Join(dir, "0-open.yaml"), `apiVersion: v1
kind: ConfigMap
metadata: {name: aaa, namespace: aaa, labels: {egress-xds.io/intent: "true"}}
data:
  egress.yaml: |
    destinations: [{name: github, host: api.github.com, ports: [{number: 443, protocol: TLS}]}]
`)
	waitDiagnostic(t, r, "aaa/aaa: egress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by apps/github")
	if names := clusterNames(r); !slices.Contains(names, githubCluster) || slices.Contains(names, "aaa/aaa/github/443") {
		t.Fatalf("clusters: %v", names)
	}
	r.stop()
	r2 := startState(t, dir, stateDir)
	waitClusters(t, r2, githubCluster)
	waitDiagnostic(t, r2, "aaa/aaa: egress.yaml: destinations[0].ports[0]: host api.github.com port 443 is already declared by apps/github")
}

// A file deleted and written again 300 ms later (a git checkout) never
// leaves the served configuration.
func TestDeleteAndRewriteDoesNotFlap(t *testing.T) {
	dir := examples(t)
	r := start(t, dir)
	waitClusters(t, r, githubCluster)
	path := filepath.Join(dir, "passthrough.yaml")
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var missing atomic.Int32
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				if !slices.Contains(clusterNames(r), githubCluster) {
					missing.Add(1)
				}
			}
		}
	}()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	write(t, path, string(content))
	time.Sleep(3 * time.Second) // past the deletion grace
	close(stop)
	<-sampled
	if n := missing.Load(); n > 0 {
		t.Fatalf("the destination left the served configuration (%d samples)", n)
	}
}
