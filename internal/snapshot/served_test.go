package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/egress-xds/egress-xds/internal/benchinput"
	"github.com/egress-xds/egress-xds/internal/state"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Each served ConfigMap's entry is its namespace/name and what json.Marshal
// writes of it, whatever was encoded before: kept ConfigMaps, new ones,
// ones changed in place, files changed, none at all; a kept encoding is
// the same memory (the state Set then knows it unchanged without reading
// it), and a stored Kubernetes object is known by its UID and
// resourceVersion.
func TestServedEncoderWritesWhatMarshalWrites(t *testing.T) {
	cm := func(i int) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("cm-%d", i)},
			Data: map[string]string{"egress.yaml": fmt.Sprintf("destinations: [{name: d%d, host: \"h%d.example\\u2028<&>\"}]\n", i, i)}}
	}
	a, b, c := cm(1), cm(2), cm(3)
	k := cm(4)
	k.Namespace, k.UID, k.ResourceVersion = "", "uid-4", "7"
	k2 := k.DeepCopy() // the same stored object, read again
	k3 := k.DeepCopy()
	k3.ResourceVersion, k3.Data["egress.yaml"] = "8", "destinations: []\n"
	var e servedEncoder
	steps := []struct {
		what string
		cms  []savedConfigMap
		edit func()
		kept []bool // whether each entry is the memory of the step before
	}{
		{"none (nil)", nil, nil, nil},
		{"none (empty)", []savedConfigMap{}, nil, nil},
		{"two", []savedConfigMap{{File: "a.yaml", ConfigMap: a}, {File: "b.yaml", ConfigMap: b}}, nil, []bool{false, false}},
		{"a third", []savedConfigMap{{File: "a.yaml", ConfigMap: a}, {File: "b.yaml", ConfigMap: b}, {ConfigMap: c}}, nil, []bool{true, true, false}},
		{"one changed in place", []savedConfigMap{{File: "a.yaml", ConfigMap: a}, {File: "b.yaml", ConfigMap: b}, {ConfigMap: c}},
			func() { b.Data["egress.yaml"] = "destinations: []\n"; b.Labels = map[string]string{"x": "y"} }, []bool{true, false, true}},
		{"a file renamed", []savedConfigMap{{File: "a2.yaml", ConfigMap: a}, {File: "b.yaml", ConfigMap: b}, {ConfigMap: c}}, nil, []bool{false, true, true}},
		{"a stored object", []savedConfigMap{{ConfigMap: c}, {ConfigMap: k}}, nil, []bool{true, false}},
		{"the stored object again", []savedConfigMap{{ConfigMap: c}, {ConfigMap: k}}, nil, []bool{true, true}},
		{"the stored object read again", []savedConfigMap{{ConfigMap: c}, {ConfigMap: k2}}, nil, []bool{true, false}},
		{"its next resourceVersion", []savedConfigMap{{ConfigMap: c}, {ConfigMap: k3}}, nil, []bool{true, false}},
	}
	var before map[string][]byte
	for _, s := range steps {
		if s.edit != nil {
			s.edit()
		}
		got, err := e.encode(s.cms)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(s.cms) || len(e.items) != len(s.cms) {
			t.Fatalf("%s: %d entries, %d encodings kept for %d ConfigMaps", s.what, len(got), len(e.items), len(s.cms))
		}
		now := map[string][]byte{}
		for i, c := range s.cms {
			want, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if key := c.ConfigMap.Namespace + "/" + c.ConfigMap.Name; got[i].Key != key && !(c.ConfigMap.Namespace == "" && got[i].Key == "default/"+c.ConfigMap.Name) {
				t.Errorf("%s: entry %d key %q", s.what, i, got[i].Key)
			}
			if !bytes.Equal(got[i].Data, want) {
				t.Errorf("%s: entry %d:\n got %s\nwant %s", s.what, i, got[i].Data, want)
			}
			prev, ok := before[got[i].Key]
			if kept := ok && len(prev) > 0 && &prev[0] == &got[i].Data[0]; kept != s.kept[i] {
				t.Errorf("%s: entry %d kept %v, want %v", s.what, i, kept, s.kept[i])
			}
			now[got[i].Key] = got[i].Data
		}
		before = now
	}
}

// The served versions saved in a state folder are restored exactly,
// entries that cannot be read back are reported and skipped, and the
// single-file record of earlier versions is read when there is no Set.
func TestLoadServed(t *testing.T) {
	d, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cms := []savedConfigMap{ // by key: default/b, ns/a
		{ConfigMap: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b", UID: "u", ResourceVersion: "3"}}},
		{File: "a.yaml", ConfigMap: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}, Data: map[string]string{"k": "v"}}},
	}
	if err := d.Save(servedRecordName, servedRecord{Source: "old", ConfigMaps: cms}); err != nil {
		t.Fatal(err)
	}
	set := d.Set(servedSetName)
	rec, found, legacy, problems, err := loadServed(d, set)
	if err != nil || !found || !legacy || len(problems) > 0 || rec.Source != "old" || !reflect.DeepEqual(rec.ConfigMaps, cms) {
		t.Fatalf("single-file record: %+v found %v legacy %v %v %v", rec, found, legacy, problems, err)
	}
	var e servedEncoder
	entries, err := e.encode(cms)
	if err != nil {
		t.Fatal(err)
	}
	// An entry under another ConfigMap's key, and one that is no JSON.
	entries = append(entries, state.Entry{Key: "ns/c", Data: entries[0].Data}, state.Entry{Key: "ns/d", Data: []byte("{")})
	if err := set.Save([]byte(`{"Source":"new"}`), entries); err != nil {
		t.Fatal(err)
	}
	rec, found, legacy, problems, err = loadServed(d, d.Set(servedSetName))
	if err != nil || !found || legacy || rec.Source != "new" || !reflect.DeepEqual(rec.ConfigMaps, cms) {
		t.Fatalf("set: %+v found %v legacy %v %v", rec, found, legacy, err)
	}
	if len(problems) != 2 {
		t.Errorf("problems %v, want the two bad entries", problems)
	}
}

// BenchmarkServedRecord is the encoding of the served versions at 10,000
// destinations (100 ConfigMaps, internal/benchinput) after one edit, as
// state entries: by servedEncoder (kept=true; folder manifests, known by
// their fields, or stored objects, known by resourceVersion: stored=true)
// or every ConfigMap by json.Marshal.
//
//	go test ./internal/snapshot -run '^$' -bench BenchmarkServedRecord
func BenchmarkServedRecord(b *testing.B) {
	for _, v := range []struct{ kept, stored bool }{{true, false}, {true, true}, {false, false}} {
		b.Run(fmt.Sprintf("kept=%t/stored=%t", v.kept, v.stored), func(b *testing.B) {
			cms := benchServed(v.stored)
			var e servedEncoder
			if _, err := e.encode(cms); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for n := 0; n < b.N; n++ {
				benchEdit(cms, n)
				if v.kept {
					if _, err := e.encode(cms); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for _, c := range cms {
					if _, err := json.Marshal(c); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// benchServed is 10,000 destinations in 100 ConfigMaps, as folder
// manifests or as stored Kubernetes objects.
func benchServed(stored bool) []savedConfigMap {
	var cms []savedConfigMap
	for start := 0; start < 10000; start += benchinput.PerConfigMap {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: benchinput.Name(start)},
			Data:       map[string]string{"egress.yaml": benchinput.Document(start, 10000)}}
		if stored {
			cm.UID, cm.ResourceVersion = types.UID(fmt.Sprint("uid-", start)), "1"
		}
		cms = append(cms, savedConfigMap{ConfigMap: cm})
	}
	return cms
}

// benchEdit edits the nth ConfigMap of cms (a new object, as sources do).
func benchEdit(cms []savedConfigMap, n int) {
	i := n % len(cms)
	edited := cms[i].ConfigMap.DeepCopy()
	edited.Data["egress.yaml"] += "# edit\n"
	if edited.ResourceVersion != "" {
		edited.ResourceVersion = fmt.Sprint(n + 2)
	}
	cms[i].ConfigMap = edited
}

// BenchmarkServedSave is a save of the served versions after one edit at
// 10,000 destinations (100 ConfigMaps): encoding, writing and fsyncing
// (the edited ConfigMap's entry and the index), in a state folder on the
// test's temporary folder.
//
//	go test ./internal/snapshot -run '^$' -bench BenchmarkServedSave
func BenchmarkServedSave(b *testing.B) {
	cms := benchServed(false)
	d, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	set := d.Set(servedSetName)
	var e servedEncoder
	save := func() {
		entries, err := e.encode(cms)
		if err == nil {
			err = set.Save([]byte(`{"Source":"bench"}`), entries)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	save()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		benchEdit(cms, n)
		save()
	}
}
