package snapshot

import (
	"fmt"
	"testing"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// Injection changes the resources of one group after translation and
// before the checks every build passes (translate.Check, then the
// consistency check of NewGroupSnapshot). It exists so that a test can make a real Envoy
// reject a version that our own checks let through: a NACK end to end,
// which no valid input produces.
type Injection func(group string, res *translate.Resources)

// InjectForTest makes every build of b pass its resources through f until
// the test ends or remove is called; each change triggers a rebuild.
//
// Only tests can set one: it needs the test's testing.TB and fails it
// outside a test binary (testing.Testing() is false in a `go build`
// binary), the builder's field is unexported and written nowhere else,
// and TestInjectionOnlyFromTests fails when a non-test file calls this.
// The server binary therefore never serves an injected resource.
func InjectForTest(t testing.TB, b *Builder, f Injection) (remove func()) {
	t.Helper()
	if !testing.Testing() {
		t.Fatal("snapshot.InjectForTest: only a test binary may inject resources")
		return func() {}
	}
	set := func(f Injection) {
		b.mu.Lock()
		b.inject = f
		b.mu.Unlock()
		b.Trigger()
	}
	set(f)
	removed := false
	remove = func() {
		if !removed {
			removed = true
			set(nil)
		}
	}
	t.Cleanup(remove)
	return remove
}

// injectInto applies the test's injection, if any, and checks the result
// as compile.Group checked the translation: what reaches Envoy has passed
// our checks, injected or not. Called with b.mu held.
func (b *Builder) injectInto(group string, res *translate.Resources) error {
	if b.inject == nil {
		return nil
	}
	b.inject(group, res)
	if err := translate.Check(res); err != nil {
		return fmt.Errorf("resources of %q with the test's injection failed validation: %w", group, err)
	}
	return nil
}
