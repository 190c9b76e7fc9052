package watch

import (
	yamlv3 "go.yaml.in/yaml/v3"
)

// KeyLines maps a ConfigMap's data keys to the file line where each value
// starts, for the values written as literal blocks ("egress.yaml: |"):
// their lines are the file's lines, so a problem the intent parser finds
// on line n of the value is on file line KeyLines[key]+n-1, the line an
// editor shows. Values in other styles (quoted, folded, JSON) join or
// escape lines and are not listed.
type KeyLines map[string]int

// yamlNode is the node tree of one YAML document, parsed on first use:
// only ConfigMaps need it, for their data keys' lines.
type yamlNode struct {
	data  []byte
	start int // file line of data's first line
	root  *yamlv3.Node
	done  bool
	// item selects an element of the root's items (a List), -1: the root.
	item   int
	parent *yamlNode
}

// node is the document's top mapping (or the List item's), nil when there
// is none or the document does not parse as YAML 1.2.
func (y *yamlNode) node() *yamlv3.Node {
	if y == nil {
		return nil
	}
	if y.parent != nil {
		items := mapValue(y.parent.node(), "items")
		if items == nil || items.Kind != yamlv3.SequenceNode || y.item >= len(items.Content) {
			return nil
		}
		return items.Content[y.item]
	}
	if !y.done {
		y.done = true
		var doc yamlv3.Node
		if yamlv3.Unmarshal(y.data, &doc) == nil && len(doc.Content) > 0 {
			y.root = doc.Content[0]
		}
	}
	return y.root
}

// itemNode is the node of the List's i-th item.
func (y *yamlNode) itemNode(i int) *yamlNode {
	if y == nil {
		return nil
	}
	return &yamlNode{parent: y, item: i, start: y.start}
}

// keyLines lists the file lines of the data values of the ConfigMap at y.
func (y *yamlNode) keyLines() KeyLines {
	data := mapValue(y.node(), "data")
	if data == nil || data.Kind != yamlv3.MappingNode {
		return nil
	}
	var out KeyLines
	for i := 0; i+1 < len(data.Content); i += 2 {
		k, v := data.Content[i], data.Content[i+1]
		if v.Kind != yamlv3.ScalarNode || v.Style&yamlv3.LiteralStyle == 0 {
			continue
		}
		if out == nil {
			out = KeyLines{}
		}
		// v.Line is the line of the "|" indicator; the value starts on
		// the next one.
		out[k.Value] = y.start - 1 + v.Line + 1
	}
	return out
}

// mapValue is the value of key in a mapping node, or nil.
func mapValue(n *yamlv3.Node, key string) *yamlv3.Node {
	if n == nil || n.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
