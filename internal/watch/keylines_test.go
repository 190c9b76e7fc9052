package watch

import (
	"reflect"
	"testing"
)

// The file line where each literal data value starts is known, for
// ConfigMaps anywhere in a stream and in Lists; values whose lines are not
// the file's (quoted, folded, JSON) are not listed.
func TestKeyLines(t *testing.T) {
	in := `# comment line 1
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: ns}
data:
  one.yaml: |
    destinations: []
  two.yaml: |-

    gateways: []
  quoted.yaml: "destinations: []"
  folded.yaml: >
    destinations: []
--- # line 14: the document starts here
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b}
  data:
    three.yaml: |
      destinations: []
- apiVersion: v1
  kind: Secret
  metadata: {name: s}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c}
  data:
    four.yaml: |
      destinations: []
...
apiVersion: v1
kind: ConfigMap
metadata: {name: d}
data: {plain.yaml: "x: 1"}
`
	p := parseFile("f.yaml", []byte(in))
	if p.err != nil {
		t.Fatal(p.err)
	}
	want := map[string]KeyLines{
		"ns/a":      {"one.yaml": 7, "two.yaml": 9},
		"default/b": {"three.yaml": 23},
		"default/c": {"four.yaml": 32},
	}
	if !reflect.DeepEqual(p.keyLines, want) {
		t.Fatalf("got  %v\nwant %v", p.keyLines, want)
	}
	if p := parseFile("f.json", []byte(`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, "data": {"a.yaml": "x: 1\n"}}`)); p.err != nil || p.keyLines != nil {
		t.Fatalf("JSON: %v %v", p.err, p.keyLines)
	}
}

// An edit that only moves a ConfigMap's lines (a comment added above it)
// is a change: the lines its problems are reported at moved.
func TestMovedLinesAreAChange(t *testing.T) {
	a := parseFile("f.yaml", []byte(intentCM))
	b := parseFile("f.yaml", []byte("# a comment\n"+intentCM))
	sa := FileState{ConfigMaps: a.configMaps, KeyLines: a.keyLines}
	sb := FileState{ConfigMaps: b.configMaps, KeyLines: b.keyLines}
	if !reflect.DeepEqual(sa.ConfigMaps, sb.ConfigMaps) || sameResult(sa, sb) {
		t.Fatalf("same objects %v, same result %v", reflect.DeepEqual(sa.ConfigMaps, sb.ConfigMaps), sameResult(sa, sb))
	}
}
