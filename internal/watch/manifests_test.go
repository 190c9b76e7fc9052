package watch

import (
	"encoding/base64"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const intentCM = `apiVersion: v1
kind: ConfigMap
metadata:
  name: egress
  labels:
    egress-xds.io/intent: "true"
data:
  intent.yaml: |
    gateways: []
`

func TestParseManifestsMultiDoc(t *testing.T) {
	in := "--- # leading separator\n" + intentCM + `
---
# only a comment
---
apiVersion: v1
kind: Secret
metadata:
  name: api-tls
  namespace: egress
type: kubernetes.io/tls
data:
  tls.crt: Y2VydA==
  tls.key: b2xk
stringData:
  tls.key: key
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec: {}
---
apiVersion: v1
kind: Secret
metadata: {name: plain}
stringData: {token: abc}
...
`
	p := parseManifests([]byte(in))
	if p.err != nil {
		t.Fatal(p.err)
	}
	if len(p.configMaps) != 1 || len(p.secrets) != 2 {
		t.Fatalf("got %d ConfigMaps, %d Secrets", len(p.configMaps), len(p.secrets))
	}
	cm := p.configMaps[0]
	if cm.Namespace != "default" || cm.Name != "egress" || cm.Labels["egress-xds.io/intent"] != "true" {
		t.Errorf("ConfigMap meta: %+v", cm.ObjectMeta)
	}
	if cm.Data["intent.yaml"] != "gateways: []\n" {
		t.Errorf("ConfigMap data: %q", cm.Data)
	}
	tls := p.secrets[0]
	if tls.Namespace != "egress" || tls.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret: %+v", tls.ObjectMeta)
	}
	if string(tls.Data["tls.crt"]) != "cert" || string(tls.Data["tls.key"]) != "key" || tls.StringData != nil {
		t.Errorf("stringData must override data: %q / %q", tls.Data, tls.StringData)
	}
	plain := p.secrets[1]
	if plain.Type != corev1.SecretTypeOpaque || plain.Namespace != "default" || string(plain.Data["token"]) != "abc" {
		t.Errorf("plain Secret: %+v", plain)
	}
	if len(p.notes) != 1 || !strings.Contains(p.notes[0], "document 3 (line 27), Deployment default/web") {
		t.Errorf("notes: %q", p.notes)
	}
}

func TestParseManifestsLists(t *testing.T) {
	in := `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a, namespace: x}
  data: {k: v}
- apiVersion: v1
  kind: Secret
  metadata: {name: s}
---
{"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"},
 "items": [{"metadata": {"name": "b"}, "data": {"intent.yaml": "x: 1"}}]}
`
	cms, secs, err := ParseManifests([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(cms) != 2 || cms[0].Name != "a" || cms[0].Namespace != "x" || cms[1].Name != "b" || cms[1].Kind != "ConfigMap" {
		t.Fatalf("ConfigMaps: %+v", cms)
	}
	if len(secs) != 1 || secs[0].Name != "s" {
		t.Fatalf("Secrets: %+v", secs)
	}
}

func TestParseManifestsJSON(t *testing.T) {
	cms, _, err := ParseManifests([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"},"data":{"a":"b"}}`))
	if err != nil || len(cms) != 1 || cms[0].Data["a"] != "b" {
		t.Fatalf("%v %+v", err, cms)
	}
}

func TestParseManifestsEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# nothing\n", "---\n---\n"} {
		cms, secs, err := ParseManifests([]byte(in))
		if err != nil || len(cms)+len(secs) != 0 {
			t.Errorf("%q: %v %v %v", in, cms, secs, err)
		}
	}
}

func TestParseManifestsErrors(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []string // all substrings of the error
	}{
		{"unknown field", intentCM + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: ns}\ndata: {}\nbogus: 1\n",
			[]string{"document 2 (line 11), ConfigMap ns/b", `unknown field "bogus"`}},
		{"unknown metadata field", "apiVersion: v1\nkind: Secret\nmetadata: {name: b, labelz: {}}\n",
			[]string{"document 1 (line 1), Secret default/b", `unknown field "labelz"`}},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {a: x, a: y}\n",
			[]string{"document 1 (line 1)", "invalid YAML", `"a"`}},
		{"number in data", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {port: 8080}\n",
			[]string{"ConfigMap default/b", "cannot unmarshal number"}},
		{"bad yaml", "apiVersion: v1\nkind: [\n", []string{"document 1 (line 1): invalid YAML"}},
		{"not a mapping", "- a\n- b\n", []string{"document 1 (line 1): must be a mapping", "a list"}},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", []string{"missing kind"}},
		{"missing apiVersion", "kind: ConfigMap\nmetadata: {name: x}\n", []string{"missing apiVersion"}},
		{"missing name", "apiVersion: v1\nkind: ConfigMap\ndata: {}\n", []string{"metadata.name is required"}},
		{"bad name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n", []string{`metadata.name "Bad_Name"`}},
		{"bad key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {'a/b': x}\n", []string{`data key "a/b"`}},
		{"bad base64", "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ndata: {k: '!!'}\n", []string{"Secret default/a", "illegal base64"}},
		{"tls without key", "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ntype: kubernetes.io/tls\nstringData: {tls.crt: c}\n", []string{`needs data key "tls.key"`}},
		{"duplicate object", intentCM + "---\n" + intentCM, []string{"document 2 (line 11), ConfigMap default/egress: defined again, first in document 1 (line 1)"}},
		{"bad list item", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, extra: 1}\n",
			[]string{"document 1 (line 1), item 1, ConfigMap default/a", `unknown field "extra"`}},
		{"over 1 MiB with binaryData", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a.yaml: x}\nbinaryData: {blob: " +
			base64.StdEncoding.EncodeToString(make([]byte, 1<<20)) + "}\n",
			[]string{"ConfigMap default/a", "data and binaryData are 1048587 bytes", "over the 1048576 bytes (1 MiB)"}},
		{"nested list", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n", []string{"cannot be nested"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cms, secs, err := ParseManifests([]byte(c.in))
			if err == nil {
				t.Fatalf("no error; got %v %v", cms, secs)
			}
			if cms != nil || secs != nil {
				t.Errorf("objects returned with an error: %v %v", cms, secs)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseManifestsReportsEveryBadDocument(t *testing.T) {
	in := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nx: 1\n---\n" + intentCM + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\ny: 2\n"
	_, _, err := ParseManifests([]byte(in))
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"document 1 (line 1), ConfigMap default/a", "document 3 (line 16), Secret default/b"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestSplitDocumentsLines(t *testing.T) {
	docs, _ := splitDocuments([]byte("a: 1\r\n---\r\nb: 2\n--- {c: 3}\n"), MaxDocumentsPerFile)
	if len(docs) != 3 {
		t.Fatalf("%d documents", len(docs))
	}
	for i, want := range []int{1, 3, 4} {
		if docs[i].line != want {
			t.Errorf("document %d at line %d, want %d", i, docs[i].line, want)
		}
	}
	if strings.TrimSpace(string(docs[2].data)) != "{c: 3}" {
		t.Errorf("inline document: %q", docs[2].data)
	}
}
