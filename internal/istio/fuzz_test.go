package istio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzImport feeds the importer any input: it must not panic, and every
// ConfigMap it writes must validate and resolve as the server would. The
// golden inputs are the seeds (CI runs them as unit tests; go test -fuzz
// FuzzImport explores further).
func FuzzImport(f *testing.F) {
	ins, _ := filepath.Glob("testdata/*/in.*")
	for _, in := range ins {
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	_, opts := caseOptions(f, "testdata/none")
	f.Fuzz(func(t *testing.T, data []byte) {
		res := Import([]Input{{Name: "fuzz.yaml", Data: data}}, nil, opts)
		validOutput(t, res, opts)
	})
}

// TestImportMutations imports every golden input with each of its lines
// left out in turn, and with each line repeated: broken and odd objects
// must never make the importer panic or write ConfigMaps the server would
// refuse.
func TestImportMutations(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*/in.yaml")
	_, opts := caseOptions(t, "testdata/none")
	n := 0
	for _, in := range ins {
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.SplitAfter(b, []byte("\n"))
		for i := range lines {
			variants := [][]byte{bytes.Join(append(append([][]byte{}, lines[:i]...), lines[i+1:]...), nil)}
			if !testing.Short() && i%2 == 0 {
				variants = append(variants, bytes.Join(append(append(append([][]byte{}, lines[:i+1]...), lines[i]), lines[i+1:]...), nil))
			}
			for _, variant := range variants {
				res := Import([]Input{{Name: in, Data: variant}}, nil, opts)
				validOutput(t, res, opts)
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no inputs")
	}
}
