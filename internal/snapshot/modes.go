package snapshot

import (
	"sort"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// Modes returns the mode of every gateway group of the last build (the
// groups built and the groups settings name), by group.
func (b *Builder) Modes() map[string]intent.GroupMode {
	b.modesMu.Lock()
	defer b.modesMu.Unlock()
	out := make(map[string]intent.GroupMode, len(b.modes))
	for g, m := range b.modes {
		out[g] = m
	}
	return out
}

// recordModes notes each group's mode: a change is logged (a switch to
// audit as a warning: it opens the group's egress), the metric follows.
// Called with b.mu held.
func (b *Builder) recordModes(intents []*intent.Intent, built []string) {
	set := intent.Modes(intents)
	now := map[string]intent.GroupMode{}
	for _, key := range built {
		if role, g := compile.SplitKey(key); role == translate.RoleGateway {
			now[g] = intent.GroupMode{Mode: intent.ModeEnforce}
		}
	}
	for g, m := range set {
		now[g] = m
	}
	groups := make([]string, 0, len(now))
	for g := range now {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	b.modesMu.Lock()
	prev := b.modes
	b.modes = now
	b.modesMu.Unlock()
	for _, g := range groups {
		m := now[g]
		was, known := prev[g]
		if !known {
			was.Mode = intent.ModeEnforce
		}
		switch {
		case m.Mode == was.Mode:
		case m.Mode == intent.ModeAudit:
			b.log.Warn("gateway group in audit mode: what enforce would refuse is let through and logged with \"audit\"",
				"group", g, "from", string(was.Mode), "to", string(m.Mode), "settings", m.Origin.String())
		default:
			b.log.Info("gateway group mode changed", "group", g, "from", string(was.Mode), "to", string(m.Mode), "settings", m.Origin.String())
		}
		if b.metrics != nil {
			b.metrics.GroupMode.DeletePartialMatch(map[string]string{"group": g})
			b.metrics.GroupMode.WithLabelValues(g, string(m.Mode)).Set(1)
		}
	}
	if b.metrics != nil {
		for g := range prev {
			if _, still := now[g]; !still {
				b.metrics.GroupMode.DeletePartialMatch(map[string]string{"group": g})
			}
		}
	}
}
