package intent

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v3"
)

// Decode parses one intent document strictly: unknown fields, wrong types and
// duplicate keys are reported with their field path, all of them, not only
// the first. Decoding goes on past such errors so that Validate can still
// report the document's other problems; the document is rejected anyway.
func Decode(origin Origin, data []byte) (*Document, Diagnostics) {
	r := &reporter{origin: origin}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		r.errorf("", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, r.diags
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		r.errorf("", "empty intent document")
		return nil, r.diags
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		r.errorf("", "must be a mapping with gateways and destinations, got %s", kindName(doc))
		return nil, r.diags
	}
	checkNode(r, doc, reflect.TypeOf(Document{}), "")
	var out Document
	// A *yaml.TypeError leaves the values it could decode in out; checkNode
	// has reported each failure with its path.
	if err := doc.Decode(&out); err != nil && len(r.diags) == 0 {
		r.errorf("", "%v", err)
	}
	return &out, r.diags
}

// ParseDocument decodes and validates one document. Problems in fields that
// failed to decode are reported once, by Decode, not again by Validate.
func ParseDocument(origin Origin, data []byte) (*Document, Diagnostics) {
	doc, diags := Decode(origin, data)
	if doc == nil {
		return nil, diags
	}
	structural := diags
	for _, d := range Validate(origin, doc) {
		if !coveredBy(d.Path, structural) {
			diags = append(diags, d)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return doc, diags
}

func coveredBy(path string, structural Diagnostics) bool {
	for _, s := range structural {
		if s.Path == "" || path == s.Path || strings.HasPrefix(path, s.Path+".") || strings.HasPrefix(path, s.Path+"[") {
			return true
		}
	}
	return false
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// checkNode walks node against the Go type t, reporting unknown fields and
// values that do not decode, each with its path.
func checkNode(r *reporter, node *yaml.Node, t reflect.Type, path string) {
	if node.Kind == yaml.AliasNode {
		r.errorf(path, "YAML aliases are not supported")
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isNull(node) {
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) || isScalarKind(t.Kind()) {
		if node.Kind != yaml.ScalarNode {
			r.errorf(path, "must be a %s, got %s", typeName(t), kindName(node))
			setNull(node)
			return
		}
		if scalarOK(node, t) {
			return
		}
		v := reflect.New(t)
		if err := node.Decode(v.Interface()); err != nil {
			r.errorf(path, "%q is not a valid %s", node.Value, typeName(t))
			setNull(node)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			r.errorf(path, "must be a mapping, got %s", kindName(node))
			setNull(node)
			return
		}
		fields := yamlFields(t)
		if duplicateKeys(r, node, path) {
			return
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			key, val := node.Content[i].Value, node.Content[i+1]
			f, ok := fields[key]
			if !ok {
				r.errorf(join(path, key), "unknown field (known: %s)", strings.Join(sortedKeys(fields), ", "))
				continue
			}
			checkNode(r, val, f.Type, join(path, key))
		}
	case reflect.Slice:
		if node.Kind != yaml.SequenceNode {
			r.errorf(path, "must be a list, got %s", kindName(node))
			setNull(node)
			return
		}
		for i, el := range node.Content {
			checkNode(r, el, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			r.errorf(path, "must be a mapping, got %s", kindName(node))
			setNull(node)
			return
		}
		if duplicateKeys(r, node, path) {
			return
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k := node.Content[i]
			if k.Kind != yaml.ScalarNode {
				r.errorf(path, "keys must be strings")
				continue
			}
			checkNode(r, node.Content[i+1], t.Elem(), join(path, k.Value))
		}
	default:
		r.errorf(path, "unsupported field type %s", t)
	}
}

// duplicateKeys reports keys given twice in a mapping (YAML forbids it and
// the decoder would refuse the whole document without a path), and blanks
// the mapping so decoding goes on.
func duplicateKeys(r *reporter, node *yaml.Node, path string) bool {
	seen := map[string]int{}
	dup := false
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i]
		if line, ok := seen[k.Value]; ok {
			r.errorf(join(path, k.Value), "is defined twice (lines %d and %d)", line, k.Line)
			dup = true
			continue
		}
		seen[k.Value] = k.Line
	}
	if dup {
		setNull(node)
	}
	return dup
}

// setNull blanks a node that failed its check, so that decoding the rest of
// the document goes on and the field is left at its zero value.
func setNull(n *yaml.Node) { *n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"} }

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
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

type fieldInfo struct{ Type reflect.Type }

// scalarOK is the fast path of the scalar check for the common cases; the
// decoder itself judges everything else.
func scalarOK(n *yaml.Node, t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String:
		return n.Tag == "!!str" || n.Tag == "!!int" || n.Tag == "!!float" || n.Tag == "!!bool"
	case reflect.Uint32:
		_, err := strconv.ParseUint(n.Value, 10, 32)
		return n.Tag == "!!int" && err == nil
	case reflect.Bool:
		return n.Tag == "!!bool"
	}
	return false
}

var fieldCache sync.Map // reflect.Type -> map[string]fieldInfo

func yamlFields(t reflect.Type) map[string]fieldInfo {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]fieldInfo)
	}
	out := map[string]fieldInfo{}
	defer fieldCache.Store(t, out)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = fieldInfo{Type: f.Type}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
