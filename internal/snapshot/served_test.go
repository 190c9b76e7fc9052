package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/state"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The served record is written as json.Marshal writes it, whatever was
// encoded before: kept ConfigMaps, new ones, ones changed in place, files
// changed, none at all.
func TestServedEncoderWritesWhatMarshalWrites(t *testing.T) {
	cm := func(i int) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("cm-%d", i)},
			Data: map[string]string{"egress.yaml": fmt.Sprintf("destinations: [{name: d%d, host: \"h%d.example\\u2028<&>\"}]\n", i, i)}}
	}
	a, b, c := cm(1), cm(2), cm(3)
	var e servedEncoder
	steps := []struct {
		what string
		rec  servedRecord
		edit func()
	}{
		{"none (nil)", servedRecord{Source: "folder x"}, nil},
		{"none (empty)", servedRecord{Source: "folder x", ConfigMaps: []savedConfigMap{}}, nil},
		{"two", servedRecord{Source: "folder x", ConfigMaps: []savedConfigMap{{File: "a.yaml", ConfigMap: a}, {File: "b.yaml", ConfigMap: b}}}, nil},
		{"a third", servedRecord{Source: "folder x", ConfigMaps: []savedConfigMap{{File: "a.yaml", ConfigMap: a}, {File: "b.yaml", ConfigMap: b}, {ConfigMap: c}}}, nil},
		{"one changed in place", servedRecord{Source: "folder x", ConfigMaps: []savedConfigMap{{File: "a.yaml", ConfigMap: a}, {File: "b.yaml", ConfigMap: b}, {ConfigMap: c}}},
			func() { b.Data["egress.yaml"] = "destinations: []\n"; b.Labels = map[string]string{"x": "y"} }},
		{"a file renamed", servedRecord{Source: "folder x", ConfigMaps: []savedConfigMap{{File: "a2.yaml", ConfigMap: a}, {File: "b.yaml", ConfigMap: b}, {ConfigMap: c}}}, nil},
		{"one left", servedRecord{Source: "kubernetes", ConfigMaps: []savedConfigMap{{ConfigMap: c}}}, nil},
	}
	for _, s := range steps {
		if s.edit != nil {
			s.edit()
		}
		got, err := e.encode(s.rec)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(s.rec)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", s.what, got, want)
		}
		if len(e.items) != len(s.rec.ConfigMaps) {
			t.Errorf("%s: %d encodings kept for %d ConfigMaps", s.what, len(e.items), len(s.rec.ConfigMaps))
		}
	}
}

// BenchmarkServedRecord is the record of the served versions at 10,000
// destinations (100 ConfigMaps, internal/benchinput) after one edit:
// encoded by servedEncoder (kept=true) or whole by json.Marshal.
//
//	go test ./internal/snapshot -run '^$' -bench BenchmarkServedRecord
func BenchmarkServedRecord(b *testing.B) {
	var rec servedRecord
	for start := 0; start < 10000; start += benchinput.PerConfigMap {
		rec.ConfigMaps = append(rec.ConfigMaps, savedConfigMap{ConfigMap: &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: benchinput.Name(start)},
			Data:       map[string]string{"egress.yaml": benchinput.Document(start, 10000)}}})
	}
	for _, kept := range []bool{true, false} {
		b.Run(fmt.Sprintf("kept=%t", kept), func(b *testing.B) {
			var e servedEncoder
			if _, err := e.encode(rec); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for n := 0; n < b.N; n++ {
				i := n % len(rec.ConfigMaps)
				edited := rec.ConfigMaps[i].ConfigMap.DeepCopy()
				edited.Data["egress.yaml"] += "# edit\n"
				rec.ConfigMaps[i].ConfigMap = edited
				var err error
				if kept {
					_, err = e.encode(rec)
				} else {
					_, err = json.Marshal(rec)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkServedSave is a save of the served versions after one edit at
// 10,000 destinations (100 ConfigMaps): encoding, writing and fsyncing, in
// a state folder on the test's temporary folder.
//
//	go test ./internal/snapshot -run '^$' -bench BenchmarkServedSave
func BenchmarkServedSave(b *testing.B) {
	var rec servedRecord
	for start := 0; start < 10000; start += benchinput.PerConfigMap {
		rec.ConfigMaps = append(rec.ConfigMaps, savedConfigMap{ConfigMap: &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: benchinput.Name(start)},
			Data:       map[string]string{"egress.yaml": benchinput.Document(start, 10000)}}})
	}
	d, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var e servedEncoder
	save := func() {
		data, err := e.encode(rec)
		if err == nil {
			err = d.SaveJSON(servedRecordName, data)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	save()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		i := n % len(rec.ConfigMaps)
		edited := rec.ConfigMaps[i].ConfigMap.DeepCopy()
		edited.Data["egress.yaml"] += "# edit\n"
		rec.ConfigMaps[i].ConfigMap = edited
		save()
	}
}
