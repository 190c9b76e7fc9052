package intent

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// Decode parses one intent document strictly: unknown fields, wrong types and
// duplicate keys are reported with their field path, all of them, not only
// the first (up to MaxDiagnosticsPerConfigMap, then a count). Decoding goes
// on past such errors so that Validate can still report the document's
// other problems; the document is rejected anyway.
func Decode(origin Origin, data []byte) (*Document, Diagnostics) {
	r := &reporter{origin: origin, max: MaxDiagnosticsPerConfigMap}
	doc := decode(r, data)
	return doc, r.result()
}

func decode(r *reporter, data []byte) *Document {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		r.undecodedf("", "%s", r.syntaxError(err, data))
		return nil
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		r.undecodedf("", "empty intent document")
		return nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		r.undecodedf("", "must be a mapping with gateways and destinations, got %s", kindName(doc))
		return nil
	}
	var out Document
	// One pass over the node tree checks and decodes: a value that fails
	// its check is reported with its path and left at its zero value, so
	// the rest of the document is still decoded and validated.
	decodeNode(r, doc, reflect.ValueOf(&out).Elem(), "")
	return &out
}

// ParseDocument decodes and validates one document. Problems in fields that
// failed to decode are reported once, by Decode, not again by Validate.
func ParseDocument(origin Origin, data []byte) (*Document, Diagnostics) {
	r := &reporter{origin: origin, max: MaxDiagnosticsPerConfigMap}
	doc := parseDocument(r, data)
	return doc, r.result()
}

// parseDocument decodes and validates one document into r; the document is
// nil when it has errors.
func parseDocument(r *reporter, data []byte) *Document {
	errs := r.errs
	r.undecoded = nil
	doc := decode(r, data)
	if doc == nil {
		return nil
	}
	r.validating = true
	validate(r, doc)
	r.validating = false
	if r.errs > errs {
		return nil
	}
	return doc
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// decodeNode checks node against the Go value v (of an intent type) and
// decodes it into v, reporting unknown fields, duplicate keys and values
// that do not fit, each with its path.
func decodeNode(r *reporter, node *yaml.Node, v reflect.Value, path string) {
	if node.Kind == yaml.AliasNode {
		r.undecodedf(path, "YAML aliases are not supported")
		return
	}
	if isNull(node) {
		return
	}
	if v.Kind() == reflect.Pointer {
		// A scalar that does not decode leaves the pointer nil; a mapping
		// or list is kept with what of it decoded.
		e, before := reflect.New(v.Type().Elem()), len(r.diags)
		if decodeNode(r, node, e.Elem(), path); node.Kind != yaml.ScalarNode || len(r.diags) == before {
			v.Set(e)
		}
		return
	}
	t := v.Type()
	if reflect.PointerTo(t).Implements(textUnmarshaler) || isScalarKind(t.Kind()) {
		if node.Kind != yaml.ScalarNode {
			r.undecodedf(path, "must be a %s, got %s", typeName(t), kindName(node))
			return
		}
		if !decodeScalar(node, v) {
			r.undecodedf(path, "%s is not a valid %s", clip(node.Value), typeName(t))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			r.undecodedf(path, "must be a mapping, got %s", kindName(node))
			return
		}
		later := duplicateKeys(r, node, path)
		fields := yamlFields(t)
		for i := 0; i+1 < len(node.Content); i += 2 {
			if later[i] {
				continue
			}
			key, val := node.Content[i].Value, node.Content[i+1]
			index, ok := fields[key]
			if !ok {
				r.errorf(join(path, key), "unknown field (known: %s)", strings.Join(sortedKeys(fields), ", "))
				continue
			}
			decodeNode(r, val, v.Field(index), join(path, key))
		}
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			r.undecodedf(path, "must be a list, got %s", kindName(node))
			return
		}
		s := reflect.MakeSlice(t, len(node.Content), len(node.Content))
		for i, el := range node.Content {
			decodeNode(r, el, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			r.undecodedf(path, "must be a mapping, got %s", kindName(node))
			return
		}
		later := duplicateKeys(r, node, path)
		m := reflect.MakeMapWithSize(t, len(node.Content)/2)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k := node.Content[i]
			if later[i] {
				continue
			}
			if k.Kind != yaml.ScalarNode {
				r.undecodedf(path, "keys must be strings")
				continue
			}
			e := reflect.New(t.Elem()).Elem()
			decodeNode(r, node.Content[i+1], e, join(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), e)
		}
		v.Set(m)
	default:
		r.undecodedf(path, "unsupported field type %s", t)
	}
}

// syntaxLine matches yaml.v3's syntax errors that name a line.
var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError is a YAML syntax error with its line as the reader finds it
// (see reporter.lines): yaml.v3 counts lines within the document only.
func (r *reporter) syntaxError(err error, data []byte) string {
	msg := err.Error()
	m := syntaxLine.FindStringSubmatch(msg)
	if m == nil {
		return "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
	}
	line, _ := strconv.Atoi(m[1])
	problem := msg[len(m[0]):]
	if parserProblems[problem] {
		line++
	}
	// The end of the input is named as the line after the last one: an
	// editor shows the last.
	last := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		last++
	}
	line = max(min(line, last), 1)
	return fmt.Sprintf("invalid YAML at %s: %s", r.lines(line), problem)
}

// parserProblems are the errors of yaml.v3's parser (as opposed to its
// scanner): it names their line counted from 0, the scanner's from 1.
// The line is where the construct being parsed starts (a flow list left
// open, a mapping).
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
	"found duplicate %TAG directive":         true,
}

// decodeScalar sets v from a scalar node. The common cases are decoded
// here; everything else (hexadecimal integers, YAML 1.1 spellings) is left
// to yaml.v3, so values mean what they mean to any YAML tool.
func decodeScalar(n *yaml.Node, v reflect.Value) bool {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok && n.Tag == "!!str" {
		return u.UnmarshalText([]byte(n.Value)) == nil
	}
	switch v.Kind() {
	case reflect.String:
		if n.Tag == "!!str" || n.Tag == "!!int" || n.Tag == "!!float" || n.Tag == "!!bool" {
			v.SetString(n.Value)
			return true
		}
	case reflect.Uint32:
		if x, err := strconv.ParseUint(n.Value, 10, 32); err == nil && n.Tag == "!!int" {
			v.SetUint(x)
			return true
		}
	case reflect.Bool:
		if n.Tag == "!!bool" && (n.Value == "true" || n.Value == "false") {
			v.SetBool(n.Value == "true")
			return true
		}
	}
	return n.Decode(v.Addr().Interface()) == nil
}

// duplicateKeys reports each key given more than once in a mapping (YAML
// forbids it) once, and returns the indexes of the later occurrences: the
// first one is decoded and checked, so its own problems are still found
// and the key is not reported missing as well.
func duplicateKeys(r *reporter, node *yaml.Node, path string) map[int]bool {
	var later map[int]bool
	var lines map[string][]int
	first := make(map[string]int, len(node.Content)/2)
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i]
		j, ok := first[k.Value]
		if !ok {
			first[k.Value] = i
			continue
		}
		if later == nil {
			later, lines = map[int]bool{}, map[string][]int{}
		}
		later[i] = true
		if lines[k.Value] == nil {
			lines[k.Value] = []int{node.Content[j].Line}
		}
		lines[k.Value] = append(lines[k.Value], k.Line)
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i]
		if ls := lines[k.Value]; ls != nil && first[k.Value] == i {
			r.errorf(join(path, k.Value), "is defined %s (%s); checking the first", times(len(ls)), r.lines(ls...))
		}
	}
	return later
}

func times(n int) string {
	if n == 2 {
		return "twice"
	}
	return strconv.Itoa(n) + " times"
}

// lineList is "1", "1 and 2", or "1, 2 and 5"; a long list is cut short.
func lineList(ls []int) string {
	if len(ls) == 1 {
		return strconv.Itoa(ls[0])
	}
	const most = 5
	s := make([]string, 0, most+1)
	for i, l := range ls {
		if i == most {
			s = append(s, fmt.Sprintf("%d more", len(ls)-most))
			break
		}
		s = append(s, strconv.Itoa(l))
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func isScalarKind(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Float64:
		return true
	}
	return false
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(Duration{}):
		return `duration (e.g. "10s", "250ms")`
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return "non-negative integer"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "integer"
	}
	return "string"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return clip(n.Value)
	}
	return "nothing"
}

// clip quotes a value for a message, cut short when long: the message
// says what is wrong, it need not repeat a megabyte of input.
func clip(s string) string {
	const most = 64
	if len(s) <= most {
		return strconv.Quote(s)
	}
	cut := most
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
}

var fieldCache sync.Map // reflect.Type -> map[string]int

// yamlFields maps a struct type's YAML field names to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]int)
	}
	out := map[string]int{}
	defer fieldCache.Store(t, out)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = i
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Quote is clip for other readers of manifests (the Istio importer): a
// value quoted for a message, cut short when long.
func Quote(s string) string { return clip(s) }

// DescribeNode names a YAML node's value for a message, as field errors do.
func DescribeNode(n *yaml.Node) string { return kindName(n) }
