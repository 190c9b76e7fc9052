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
	var out Document
	// One pass over the node tree checks and decodes: a value that fails
	// its check is reported with its path and left at its zero value, so
	// the rest of the document is still decoded and validated.
	decodeNode(r, doc, reflect.ValueOf(&out).Elem(), "")
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

// decodeNode checks node against the Go value v (of an intent type) and
// decodes it into v, reporting unknown fields, duplicate keys and values
// that do not fit, each with its path.
func decodeNode(r *reporter, node *yaml.Node, v reflect.Value, path string) {
	if node.Kind == yaml.AliasNode {
		r.errorf(path, "YAML aliases are not supported")
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
			r.errorf(path, "must be a %s, got %s", typeName(t), kindName(node))
			return
		}
		if !decodeScalar(node, v) {
			r.errorf(path, "%q is not a valid %s", node.Value, typeName(t))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			r.errorf(path, "must be a mapping, got %s", kindName(node))
			return
		}
		if duplicateKeys(r, node, path) {
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(node.Content); i += 2 {
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
			r.errorf(path, "must be a list, got %s", kindName(node))
			return
		}
		s := reflect.MakeSlice(t, len(node.Content), len(node.Content))
		for i, el := range node.Content {
			decodeNode(r, el, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			r.errorf(path, "must be a mapping, got %s", kindName(node))
			return
		}
		if duplicateKeys(r, node, path) {
			return
		}
		m := reflect.MakeMapWithSize(t, len(node.Content)/2)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k := node.Content[i]
			if k.Kind != yaml.ScalarNode {
				r.errorf(path, "keys must be strings")
				continue
			}
			e := reflect.New(t.Elem()).Elem()
			decodeNode(r, node.Content[i+1], e, join(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), e)
		}
		v.Set(m)
	default:
		r.errorf(path, "unsupported field type %s", t)
	}
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

// duplicateKeys reports keys given twice in a mapping (YAML forbids it);
// the mapping is then left undecoded.
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
	return dup
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
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
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
