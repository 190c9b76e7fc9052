package watch

import (
	"fmt"
	"testing"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/state"
)

// BenchmarkFilesSave is a save of the files' last good content after one
// file of 100 (10,000 destinations) changed, written and fsynced in a state
// folder on the test's temporary folder: the changed file and the index.
//
//	go test ./internal/watch -run '^$' -bench BenchmarkFilesSave
func BenchmarkFilesSave(b *testing.B) {
	files := map[string][]byte{}
	for start := 0; start < 10000; start += benchinput.PerConfigMap {
		files[fmt.Sprintf("team-%d/egress.yaml", start)] = []byte(cmYAML(benchinput.Name(start), benchinput.Document(start, 10000)))
	}
	d, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	set := d.Set(filesSetName)
	save := func() {
		entries := make([]state.Entry, 0, len(files))
		for rel, data := range files {
			entries = append(entries, state.Entry{Key: rel, Data: data})
		}
		if err := set.Save([]byte(`{"Dir":"/bench"}`), entries); err != nil {
			b.Fatal(err)
		}
	}
	save()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		rel := fmt.Sprintf("team-%d/egress.yaml", n%100*benchinput.PerConfigMap)
		files[rel] = append(append([]byte(nil), files[rel]...), "# edit\n"...)
		save()
	}
}
