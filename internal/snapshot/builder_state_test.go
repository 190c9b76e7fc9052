package snapshot

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/state"
	"github.com/egress-xds/egress-xds/internal/translate"
)

func stateBuilder(t *testing.T, d *state.Dir, source string) *Builder {
	t.Helper()
	b := NewBuilder(NewCache(nil, nil), translate.Options{ForwardProxyPort: 3128}, nil, slog.New(slog.DiscardHandler))
	b.SaveState(d, source)
	return b
}

// servedJSON is what b's store serves, as the state records it.
func servedJSON(t *testing.T, b *Builder) string {
	t.Helper()
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	var out []savedConfigMap
	for _, cm := range b.store.Served() {
		out = append(out, savedConfigMap{File: cm.File, ConfigMap: cm.ConfigMap})
	}
	raw, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

const (
	docA  = "gateways: [g]\ndestinations: [{name: d, host: a.example.com, ports: [{number: 443, protocol: TLS}]}]"
	docA2 = "gateways: [g]\ndestinations: [{name: d, host: a2.example.com, ports: [{number: 443, protocol: TLS}]}]"
	docB  = "gateways: [g]\ndestinations: [{name: d, host: b.example.com, ports: [{number: 443, protocol: TLS}]}]"
	docC  = "gateways: [g]\ndestinations: [{name: d, host: c.example.com, ports: [{number: 443, protocol: TLS}]}]"
	bad   = "gateways: [g]\ndestinations: [{name: d, host: b.example.com, ports: [{number: 70000, protocol: TLS}]}]"
)

// A restart restores exactly what was served at the last save, edits
// and deletions included, from the Set written entry by entry.
func TestBuilderStateRestoresWhatWasServed(t *testing.T) {
	d, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := stateBuilder(t, d, "folder x")
	for _, step := range [][]compile.ConfigMap{
		{logCM("a", docA), logCM("b", docB), logCM("c", docC)},
		{logCM("a", docA), logCM("b", bad), logCM("c", docC)}, // b keeps its served version
		{logCM("a", docA2), logCM("b", bad)},                  // a edited, c deleted
	} {
		b.Update(Input{ConfigMaps: step})
		b.Rebuild()
	}
	want := servedJSON(t, b)
	b2 := stateBuilder(t, d, "folder x")
	if got := servedJSON(t, b2); got != want {
		t.Fatalf("restored\n%s\nserved\n%s", got, want)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.Path(), servedSetName)); len(entries) != 3 {
		t.Errorf("set files %v, want the index and a and b", entries)
	}
	// Restored, b's served version outlives its broken edit.
	b2.Update(Input{ConfigMaps: []compile.ConfigMap{logCM("a", docA2), logCM("b", bad)}})
	b2.Rebuild()
	if got := servedJSON(t, b2); got != want {
		t.Fatalf("after a rebuild on the restored state\n%s\nwant\n%s", got, want)
	}
	// Another source's record is not restored.
	if got := servedJSON(t, stateBuilder(t, d, "kubernetes")); got != "null" {
		t.Fatalf("another source's record restored: %s", got)
	}
}

// The single-file record of earlier versions is restored, replaced by the
// Set at the next rebuild (even one that changes nothing served), and
// never read again.
func TestBuilderStateUpgradesSingleFileRecord(t *testing.T) {
	d, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old := servedRecord{Source: "folder x", ConfigMaps: []savedConfigMap{
		{File: "a.yaml", ConfigMap: logCM("a", docA).ConfigMap}, {File: "b.yaml", ConfigMap: logCM("b", docB).ConfigMap}}}
	if err := d.Save(servedRecordName, old); err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(old.ConfigMaps)
	if err != nil {
		t.Fatal(err)
	}
	b := stateBuilder(t, d, "folder x")
	if got := servedJSON(t, b); got != string(want) {
		t.Fatalf("restored\n%s\nwant\n%s", got, want)
	}
	// Both broken: nothing served changes, the Set is written anyway.
	b.Update(Input{ConfigMaps: []compile.ConfigMap{logCM("a", bad), logCM("b", bad)}})
	b.Rebuild()
	if _, err := os.Stat(filepath.Join(d.Path(), servedRecordName)); !os.IsNotExist(err) {
		t.Fatalf("the single-file record is still there: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d.Path(), servedRecordName), []byte("{not read again"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedJSON(t, stateBuilder(t, d, "folder x")); got != string(want) {
		t.Fatalf("restored from the set\n%s\nwant\n%s", got, want)
	}
}
