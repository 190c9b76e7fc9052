package istio

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// The decoder reads Istio objects into the small typed structs of this
// package, strictly: an unknown field, a wrong type or a duplicate key is
// a problem with its path, never silently ignored. Field names are the
// json names of the structs (Istio's camelCase); protobuf's snake_case
// spelling of the same name is accepted too, as Istio accepts it.

// problem is one thing the decoder could not read.
type problem struct {
	path    string
	msg     string
	unknown bool // an unknown field, as opposed to a value that does not fit
}

type decoder struct{ problems []problem }

func (d *decoder) add(path string, unknown bool, format string, args ...any) {
	d.problems = append(d.problems, problem{path: path, msg: fmt.Sprintf(format, args...), unknown: unknown})
}

// Raw keeps a node as it is: for parts of objects that are reported as a
// whole (installation settings, Envoy filter configuration read later).
type Raw struct{ Node *yaml.Node }

// Set reports whether the field was given.
func (r Raw) Set() bool { return r.Node != nil }

// Duration is a protobuf Duration as Istio reads it ("10s", "1m", "250ms").
type Duration struct{ time.Duration }

var (
	rawType      = reflect.TypeOf(Raw{})
	durationType = reflect.TypeOf(Duration{})
)

// decode reads node into v (a pointer), reporting problems under path.
func (d *decoder) decode(node *yaml.Node, v any, path string) {
	d.value(node, reflect.ValueOf(v).Elem(), path)
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		d.add(path, false, "YAML aliases are not read")
		return
	}
	t := v.Type()
	if t == rawType {
		v.Set(reflect.ValueOf(Raw{Node: n}))
		return
	}
	if isNull(n) {
		return
	}
	if t.Kind() == reflect.Pointer {
		e := reflect.New(t.Elem())
		d.value(n, e.Elem(), path)
		v.Set(e)
		return
	}
	if t == durationType {
		dur, ok := parseDuration(n)
		if !ok {
			d.add(path, false, "%s is not a duration (e.g. \"10s\", \"1m\")", intent.DescribeNode(n))
			return
		}
		v.Set(reflect.ValueOf(Duration{dur}))
		return
	}
	switch t.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.add(path, false, "must be a string, got %s", intent.DescribeNode(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.add(path, false, "must be true or false, got %s", intent.DescribeNode(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	case reflect.Int32, reflect.Int64:
		x, err := strconv.ParseInt(intText(n), 0, t.Bits())
		if err != nil {
			d.add(path, false, "%s is not an integer", intent.DescribeNode(n))
			return
		}
		v.SetInt(x)
	case reflect.Uint32, reflect.Uint64:
		x, err := strconv.ParseUint(intText(n), 0, t.Bits())
		if err != nil {
			d.add(path, false, "%s is not a non-negative integer", intent.DescribeNode(n))
			return
		}
		v.SetUint(x)
	case reflect.Float64:
		x, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.add(path, false, "%s is not a number", intent.DescribeNode(n))
			return
		}
		v.SetFloat(x)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(path, false, "must be a list, got %s", intent.DescribeNode(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, el := range n.Content {
			d.value(el, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.add(path, false, "must be a mapping, got %s", intent.DescribeNode(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		d.pairs(n, path, func(key string, val *yaml.Node) {
			e := reflect.New(t.Elem()).Elem()
			d.value(val, e, join(path, key))
			m.SetMapIndex(reflect.ValueOf(key), e)
		})
		v.Set(m)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.add(path, false, "must be a mapping, got %s", intent.DescribeNode(n))
			return
		}
		fs := fieldsOf(t)
		var rest reflect.Value
		if fs.rest >= 0 {
			rest = reflect.MakeMap(t.Field(fs.rest).Type)
			v.Field(fs.rest).Set(rest)
		}
		d.pairs(n, path, func(key string, val *yaml.Node) {
			i, ok := fs.byName[key]
			if !ok {
				i, ok = fs.byName[camel(key)]
			}
			switch {
			case ok:
				d.value(val, v.Field(i), join(path, key))
			case rest.IsValid():
				rest.SetMapIndex(reflect.ValueOf(key), reflect.ValueOf(Raw{Node: val}))
			default:
				d.add(join(path, key), true, "unknown field (known: %s)", strings.Join(fs.names, ", "))
			}
		})
	default:
		d.add(path, false, "unsupported type %s", t)
	}
}

// pairs calls f for each key of a mapping, reporting keys that are not
// strings and keys given twice (the first is read).
func (d *decoder) pairs(n *yaml.Node, path string, f func(key string, val *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			d.add(path, false, "keys must be strings")
			continue
		}
		if seen[k.Value] {
			d.add(join(path, k.Value), false, "is given twice (line %d); the first is read", k.Line)
			continue
		}
		seen[k.Value] = true
		f(k.Value, n.Content[i+1])
	}
}

type structFields struct {
	byName map[string]int
	names  []string
	rest   int // index of the field collecting other keys (json:",inline"), or -1
}

var fieldCache sync.Map // reflect.Type -> structFields

func fieldsOf(t reflect.Type) structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(structFields)
	}
	fs := structFields{byName: map[string]int{}, rest: -1}
	for i := 0; i < t.NumField(); i++ {
		name, opt, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		switch {
		case opt == "inline":
			fs.rest = i
		case name != "" && name != "-":
			fs.byName[name] = i
			fs.names = append(fs.names, name)
		}
	}
	sort.Strings(fs.names)
	fieldCache.Store(t, fs)
	return fs
}

// camel turns protobuf's snake_case field name into its json name.
func camel(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	up := false
	for _, r := range s {
		switch {
		case r == '_':
			up = true
		case up:
			b.WriteRune(unicode.ToUpper(r))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func intText(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		return "not an integer"
	}
	return n.Value
}

func parseDuration(n *yaml.Node) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return 0, false
	}
	dur, err := time.ParseDuration(n.Value)
	return dur, err == nil && dur >= 0
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// leaves lists the paths of a node's leaves: scalars, empty mappings and
// lists, each list item and mapping key. The report's last pass names
// every one no step accounted for.
func leaves(n *yaml.Node, path string, out *[]string) {
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 0 {
			*out = append(*out, path)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			leaves(n.Content[i+1], join(path, n.Content[i].Value), out)
		}
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			*out = append(*out, path)
		}
		for i, el := range n.Content {
			leaves(el, path+"["+strconv.Itoa(i)+"]", out)
		}
	default:
		*out = append(*out, path)
	}
}
