package watch

import (
	"fmt"
	"testing"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/state"
)

// BenchmarkFilesSave is a save of the files' last good content after one
// file of 100 (10,000 destinations) changed, written and fsynced in a state
// folder on the test's temporary folder.
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
	save := func() {
		if err := d.Save(filesRecordName, filesRecord{Dir: "/bench", Files: files}); err != nil {
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
