package snapshot

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// A settled Update (the folder watcher debounced it already) is built at
// once; an unsettled one waits for Quiet, here longer than the test, and
// a settled Update after it starts the build.
func TestBuilderSettledInputSkipsQuiet(t *testing.T) {
	b := NewBuilder(NewCache(nil, nil), translate.Options{ForwardProxyPort: 3128}, nil, slog.New(slog.DiscardHandler))
	b.Quiet, b.MaxDelay = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	b.Update(Input{ConfigMaps: []compile.ConfigMap{logCM("a", "destinations: [{name: d, host: d.example.com, ports: [{number: 443, protocol: TLS}]}]")}})
	select {
	case <-b.Ready():
		t.Fatal("an unsettled Update was built before Quiet")
	case <-time.After(50 * time.Millisecond):
	}
	b.Update(Input{ConfigMaps: []compile.ConfigMap{logCM("a", "destinations: [{name: d, host: d.example.com, ports: [{number: 443, protocol: TLS}]}]")}, Settled: true})
	select {
	case <-b.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("a settled Update waited for Quiet")
	}
}
