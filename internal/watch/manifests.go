// Package watch reads Kubernetes manifests (ConfigMaps and Secrets) from a
// local folder and keeps watching it, so the same manifests an operator
// applies to a cluster can drive egress-xds on a laptop.
package watch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// DefaultNamespace is given to objects whose manifest names no namespace, as
// kubectl does with its default context.
const DefaultNamespace = "default"

// ParseManifests reads a multi-document YAML (or JSON) stream of Kubernetes
// objects and returns its v1 ConfigMaps and Secrets in document order.
//
// Documents are separated by "---" lines; a v1 List (also ConfigMapList and
// SecretList) contributes its items. ConfigMaps and Secrets are decoded
// strictly: unknown or duplicate fields are errors. Namespaces default to
// "default", a Secret's stringData is merged into data (stringData wins, as in
// Kubernetes) and its type defaults to Opaque. Objects of other kinds are
// ignored. Every problem found is reported, each naming its document (its
// 1-based index among non-empty documents, the line it starts on, and its
// kind, namespace and name when known); when there is any, no objects are
// returned, so a file is taken whole or not at all.
func ParseManifests(data []byte) ([]corev1.ConfigMap, []corev1.Secret, error) {
	p := parseManifests(data)
	if p.err != nil {
		return nil, nil, p.err
	}
	return p.configMaps, p.secrets, nil
}

// parsed is the full result of parsing one file.
type parsed struct {
	configMaps []corev1.ConfigMap
	secrets    []corev1.Secret
	// notes tell about documents that were skipped on purpose (other kinds).
	notes []string
	err   error
	// keyLines are the file lines of the ConfigMaps' data values, by
	// namespace/name (see KeyLines).
	keyLines map[string]KeyLines
}

type document struct {
	data  []byte
	line  int // the 1-based line of the document's first content
	start int // the file line of data's first line
}

// MaxDocumentsPerFile bounds the documents (not counting empty ones) of a
// manifest file. Each costs some 10µs and 5 KB to parse however small it
// is: a file of a million tiny documents would take seconds and gigabytes,
// where real files hold a few, or hundreds.
const MaxDocumentsPerFile = 10000

// splitDocuments splits a YAML stream at its "---" and "..." marker lines.
// Content after "--- " on the marker line belongs to the new document. It
// stops once more than limit documents have content, and says so.
func splitDocuments(data []byte, limit int) (docs []document, over bool) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	var buf bytes.Buffer
	first, start := 0, 0
	flush := func() {
		// Documents of nothing but comments are left out: there is
		// nothing in them to parse or to count.
		if first != 0 {
			docs = append(docs, document{data: bytes.Clone(buf.Bytes()), line: first, start: start})
		}
		buf.Reset()
		first, start = 0, 0
	}
	add := func(lineNo int, text []byte) {
		if start == 0 {
			start = lineNo
		}
		if t := bytes.TrimSpace(text); first == 0 && len(t) > 0 && t[0] != '#' {
			first = lineNo
		}
		buf.Write(text)
		buf.WriteByte('\n')
	}
	lineNo := 0
	for len(data) > 0 && len(docs) <= limit {
		lineNo++
		var text []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			text, data = data[:i], data[i+1:]
		} else {
			text, data = data, nil
		}
		text = bytes.TrimSuffix(text, []byte("\r"))
		switch {
		case bytes.HasPrefix(text, []byte("---")) && (len(text) == 3 || text[3] == ' ' || text[3] == '\t'):
			flush()
			add(lineNo, text[3:])
		case string(bytes.TrimRight(text, " \t")) == "...":
			flush()
		default:
			add(lineNo, text)
		}
	}
	flush()
	return docs, len(docs) > limit
}

// objectHeader holds what is read of a document before it is decoded
// strictly, to route it and to name it in messages.
type objectHeader struct {
	apiVersion, kind, namespace, name string
}

func (h objectHeader) String() string {
	s := h.kind
	if s == "" {
		s = "object"
	}
	if h.name != "" {
		ns := h.namespace
		if ns == "" {
			ns = DefaultNamespace
		}
		s += " " + ns + "/" + h.name
	}
	return s
}

// readHeader reads apiVersion, kind and metadata name/namespace from a JSON
// object, tolerating wrong types (the strict decode reports those).
func readHeader(js []byte) (objectHeader, error) {
	var h objectHeader
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return h, fmt.Errorf("must be a mapping (a Kubernetes object), got %s", jsonKind(js))
	}
	str := func(raw json.RawMessage) string {
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	}
	h.apiVersion = str(top["apiVersion"])
	h.kind = str(top["kind"])
	var meta map[string]json.RawMessage
	if raw, ok := top["metadata"]; ok && json.Unmarshal(raw, &meta) == nil {
		h.name = str(meta["name"])
		h.namespace = str(meta["namespace"])
	}
	return h, nil
}

func jsonKind(js []byte) string {
	t := bytes.TrimSpace(js)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	default:
		return "a scalar"
	}
}

func parseManifests(data []byte) parsed {
	d := &decoder{seen: map[string]string{}}
	docs, over := splitDocuments(data, MaxDocumentsPerFile)
	if over {
		d.errorf("%s", tooManyDocuments)
		return d.done()
	}
	n := 0
	for _, doc := range docs {
		js, err := yaml.YAMLToJSONStrict(doc.data)
		if err != nil {
			n++
			d.errorf("document %d (line %d): invalid YAML: %s", n, doc.line, cleanErr(err))
			continue
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue // empty document (only comments or nothing)
		}
		n++
		d.object(fmt.Sprintf("document %d (line %d)", n, doc.line), js, true, &yamlNode{data: doc.data, start: doc.start})
	}
	return d.done()
}

var tooManyDocuments = fmt.Sprintf("the file holds more than %d documents: not read; split it into several files", MaxDocumentsPerFile)

// maxFileProblems is how many problems (and notes) of one file are listed;
// the rest are counted in one line, so a file of a million broken
// documents gives a short report, not a flood of logs.
const maxFileProblems = 50

type decoder struct {
	out  parsed
	errs []error
	// seen maps "Kind ns/name" to the location that defined it.
	seen map[string]string
	// moreErrs and moreNotes count what was not listed.
	moreErrs, moreNotes int
}

func (d *decoder) errorf(format string, args ...any) {
	if len(d.errs) >= maxFileProblems {
		d.moreErrs++
		return
	}
	d.errs = append(d.errs, fmt.Errorf(format, args...))
}

func (d *decoder) notef(format string, args ...any) {
	if len(d.out.notes) >= maxFileProblems {
		d.moreNotes++
		return
	}
	d.out.notes = append(d.out.notes, fmt.Sprintf(format, args...))
}

// done sets the result's error, with the counts of what was not listed.
func (d *decoder) done() parsed {
	if d.moreErrs > 0 {
		d.errs = append(d.errs, fmt.Errorf("… and %d more problems in this file, not listed: only the first %d are", d.moreErrs, maxFileProblems))
	}
	if d.moreNotes > 0 {
		d.out.notes = append(d.out.notes, fmt.Sprintf("… and %d more documents ignored", d.moreNotes))
	}
	d.out.err = errors.Join(d.errs...)
	return d.out
}

// object decodes one object, given in JSON. loc says where it is, e.g.
// "document 2 (line 7)"; y is its YAML, nil for a JSON file.
func (d *decoder) object(loc string, js []byte, allowList bool, y *yamlNode) {
	h, err := readHeader(js)
	if err != nil {
		d.errorf("%s: %v", loc, err)
		return
	}
	where := loc + ", " + h.String()
	if h.kind == "" && h.apiVersion == "" {
		d.errorf("%s: missing apiVersion and kind", where)
		return
	}
	if h.kind == "" {
		d.errorf("%s: missing kind", where)
		return
	}
	if h.apiVersion == "" {
		d.errorf("%s: missing apiVersion", where)
		return
	}
	if h.apiVersion != "v1" {
		d.notef("%s: ignored: only v1 ConfigMap and Secret objects are read, this is %s %s", where, h.apiVersion, h.kind)
		return
	}
	switch h.kind {
	case "ConfigMap":
		if cm, ok := decodeObject(d, loc, where, "ConfigMap", js, normalizeConfigMap); ok {
			d.out.configMaps = append(d.out.configMaps, *cm)
			if lines := y.keyLines(); lines != nil {
				if d.out.keyLines == nil {
					d.out.keyLines = map[string]KeyLines{}
				}
				d.out.keyLines[cm.Namespace+"/"+cm.Name] = lines
			}
		}
	case "Secret":
		if s, ok := decodeObject(d, loc, where, "Secret", js, normalizeSecret); ok {
			d.out.secrets = append(d.out.secrets, *s)
		}
	case "List", "ConfigMapList", "SecretList":
		if !allowList {
			d.errorf("%s: a %s cannot be nested in a List", where, h.kind)
			return
		}
		var list struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   json.RawMessage   `json:"metadata,omitempty"`
			Items      []json.RawMessage `json:"items"`
		}
		if err := decodeStrict(js, &list); err != nil {
			d.errorf("%s: %s", where, cleanErr(err))
			return
		}
		itemKind := strings.TrimSuffix(h.kind, "List")
		for i, item := range list.Items {
			if itemKind != "" {
				// Typed lists from the API server leave kind out of items.
				item = defaultTypeMeta(item, itemKind)
			}
			d.object(fmt.Sprintf("%s, item %d", loc, i+1), item, false, y.itemNode(i))
		}
	default:
		d.notef("%s: ignored: only v1 ConfigMap and Secret objects are read, this is %s %s", where, h.apiVersion, h.kind)
	}
}

// decodeStrict decodes the JSON form of a document, failing on unknown
// fields. Together with sigs.k8s.io/yaml.YAMLToJSONStrict (duplicate keys)
// this is yaml.UnmarshalStrict without its coercion of YAML numbers and
// booleans into string fields: the API server rejects `port: 8080` in a
// ConfigMap's data, so a local folder must too, or a manifest that works on a
// laptop would fail on a cluster.
func decodeStrict(js []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected content after the object")
	}
	return nil
}

// defaultTypeMeta sets apiVersion v1 and the kind on a JSON object that has
// neither; anything else is returned as is.
func defaultTypeMeta(item json.RawMessage, kind string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(item, &m) != nil {
		return item
	}
	if _, ok := m["kind"]; ok {
		return item
	}
	if _, ok := m["apiVersion"]; ok {
		return item
	}
	m["kind"], _ = json.Marshal(kind)
	m["apiVersion"] = json.RawMessage(`"v1"`)
	out, err := json.Marshal(m)
	if err != nil {
		return item
	}
	return out
}

// duplicate reports an object defined twice in one file: which of the two
// is meant would be a guess.
// decodeObject decodes one object strictly, normalizes it as the API server
// would, and refuses a second object of the same kind and name; each
// problem is reported and yields false.
func decodeObject[T any, P interface {
	*T
	metav1.Object
}](d *decoder, loc, where, kind string, js []byte, normalize func(P) []string) (P, bool) {
	obj := P(new(T))
	if err := decodeStrict(js, obj); err != nil {
		d.errorf("%s: %s", where, cleanErr(err))
		return nil, false
	}
	if errs := normalize(obj); len(errs) > 0 {
		d.errorf("%s: %s", where, strings.Join(errs, "; "))
		return nil, false
	}
	if d.duplicate(loc, where, kind, obj.GetNamespace(), obj.GetName()) {
		return nil, false
	}
	return obj, true
}

func (d *decoder) duplicate(loc, where, kind, ns, name string) bool {
	key := kind + " " + ns + "/" + name
	if first, ok := d.seen[key]; ok {
		d.errorf("%s: defined again, first in %s", where, first)
		return true
	}
	d.seen[key] = loc
	return false
}

// cleanErr drops sigs.k8s.io/yaml's wrapping prefixes, which say nothing to
// someone editing a manifest.
func cleanErr(err error) string {
	s := err.Error()
	for _, p := range []string{
		"error converting YAML to JSON: ",
		"error unmarshaling JSON: ",
		"while decoding JSON: ",
		"json: ",
		"yaml: ",
	} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

func validateMeta(name, namespace string) []string {
	var errs []string
	if name == "" {
		errs = append(errs, "metadata.name is required")
	} else {
		for _, m := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, fmt.Sprintf("metadata.name %q: %s", name, m))
		}
	}
	for _, m := range validation.IsDNS1123Label(namespace) {
		errs = append(errs, fmt.Sprintf("metadata.namespace %q: %s", namespace, m))
	}
	return errs
}

func validateKeys(field string, keys []string) []string {
	sort.Strings(keys)
	var errs []string
	for _, k := range keys {
		for _, m := range validation.IsConfigMapKey(k) {
			errs = append(errs, fmt.Sprintf("%s key %q: %s", field, k, m))
		}
	}
	return errs
}

func normalizeConfigMap(cm *corev1.ConfigMap) []string {
	if cm.Namespace == "" {
		cm.Namespace = DefaultNamespace
	}
	errs := validateMeta(cm.Name, cm.Namespace)
	keys := make([]string, 0, len(cm.Data)+len(cm.BinaryData))
	for k := range cm.Data {
		keys = append(keys, k)
	}
	errs = append(errs, validateKeys("data", keys)...)
	keys = keys[:0]
	for k := range cm.BinaryData {
		keys = append(keys, k)
		if _, ok := cm.Data[k]; ok {
			errs = append(errs, fmt.Sprintf("key %q is in both data and binaryData", k))
		}
	}
	errs = append(errs, validateKeys("binaryData", keys)...)
	if size := configMapSize(cm); size > maxConfigMapBytes {
		errs = append(errs, fmt.Sprintf("data and binaryData are %d bytes (keys and values), over the %d bytes (1 MiB) Kubernetes allows a ConfigMap: split it into several ConfigMaps", size, maxConfigMapBytes))
	}
	return errs
}

// maxConfigMapBytes is the API server's bound on a ConfigMap's data and
// binaryData together, keys included (1 MiB): a folder holds a ConfigMap
// to what a cluster would store. Parsing bounds data alone
// (intent.MaxConfigMapBytes), since binaryData holds no intents.
const maxConfigMapBytes = 1 << 20

func configMapSize(cm *corev1.ConfigMap) int {
	n := 0
	for k, v := range cm.Data {
		n += len(k) + len(v)
	}
	for k, v := range cm.BinaryData {
		n += len(k) + len(v)
	}
	return n
}

func normalizeSecret(s *corev1.Secret) []string {
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = make(map[string][]byte, len(s.StringData))
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
	}
	s.StringData = nil
	errs := validateMeta(s.Name, s.Namespace)
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	errs = append(errs, validateKeys("data", keys)...)
	if s.Type == corev1.SecretTypeTLS {
		for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
			if _, ok := s.Data[k]; !ok {
				errs = append(errs, fmt.Sprintf("a %s Secret needs data key %q", corev1.SecretTypeTLS, k))
			}
		}
	}
	return errs
}
