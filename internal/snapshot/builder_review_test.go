package snapshot

import (
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// A review completes while a rebuild is translating (held here inside the
// build by an injection), and judges against what that rebuild serves,
// the state the next rebuild starts from: a newcomer of that rebuild
// holds its claims, a claim it gave up is free. Its answers are those of
// the same review once the rebuild is done.
func TestReviewDuringRebuild(t *testing.T) {
	b := NewBuilder(NewCache(nil, nil), translate.Options{ForwardProxyPort: 3128}, nil, slog.New(slog.DiscardHandler))
	b.Update(Input{ConfigMaps: []compile.ConfigMap{logCM("a", docA)}})
	b.Rebuild()

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	InjectForTest(t, b, func(string, *translate.Resources) {
		once.Do(func() { close(entered) })
		<-release
	})
	// The rebuild held: a gives up a.example.com for a2, b joins with
	// b.example.com.
	b.Update(Input{ConfigMaps: []compile.ConfigMap{logCM("a", docA2), logCM("b", docB)}})
	rebuilt := make(chan struct{})
	go func() { b.Rebuild(); close(rebuilt) }()
	<-entered

	reviews := []compile.ConfigMap{
		logCM("x", docB),  // b's claim, taken by the held rebuild
		logCM("y", docA),  // a's former claim, freed by it
		logCM("z", docA2), // a's new claim
		logCM("w", bad),   // its own error
	}
	review := func() []intent.Diagnostics {
		out := make([]intent.Diagnostics, len(reviews))
		for i, cm := range reviews {
			out[i] = b.Review(cm)
		}
		return out
	}
	answered := make(chan []intent.Diagnostics, 1)
	go func() { answered <- review() }()
	var during []intent.Diagnostics
	select {
	case during = <-answered:
	case <-time.After(time.Minute): // a bound on failure, not a synchronisation
		close(release)
		t.Fatal("a review waited for the rebuild")
	}
	select {
	case <-rebuilt:
		t.Fatal("the rebuild was not held during the review")
	default:
	}
	close(release)
	<-rebuilt
	if after := review(); !reflect.DeepEqual(during, after) {
		t.Errorf("answers during the rebuild\n%v\nafter it\n%v", during, after)
	}
	conflicts := func(ds intent.Diagnostics) bool {
		for _, d := range ds {
			if d.Severity == intent.SeverityError {
				return true
			}
		}
		return false
	}
	for i, want := range []bool{true, false, true, true} {
		if got := conflicts(during[i]); got != want {
			t.Errorf("review of %s: error %v, want %v: %v", reviews[i].Name, got, want, during[i])
		}
	}
}
