package istio

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// Input is one file's content, read by ReadInputs.
type Input struct {
	Name string // the path, or "-" for standard input
	Data []byte
}

// ReadInputs reads files, folders (their *.yaml, *.yml and *.json files,
// recursively, hidden ones skipped, links to folders not followed, as the
// folder source reads them) and "-" (stdin), each within the folder
// source's bounds. A file that cannot be read is an entry of the report,
// not a reason to stop.
func ReadInputs(paths []string, stdin io.Reader) ([]Input, []Entry) {
	var ins []Input
	var errs []Entry
	fail := func(name string, err error) {
		errs = append(errs, Entry{File: name, Status: StatusError, Text: err.Error()})
	}
	for _, p := range paths {
		if p == "-" {
			data, err := watch.ReadManifestFrom(stdin)
			if err != nil {
				fail("-", err)
				continue
			}
			ins = append(ins, Input{Name: "-", Data: data})
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			fail(p, err)
			continue
		}
		if !st.IsDir() {
			data, err := watch.ReadManifest(p)
			if err != nil {
				fail(p, err)
				continue
			}
			ins = append(ins, Input{Name: p, Data: data})
			continue
		}
		files, err := manifestFiles(p)
		if err != nil {
			fail(p, err)
		}
		for _, f := range files {
			data, err := watch.ReadManifest(f)
			if err != nil {
				fail(f, err)
				continue
			}
			ins = append(ins, Input{Name: f, Data: data})
		}
	}
	return ins, errs
}

// manifestFiles lists a folder's manifest files, sorted, so the same
// folder always gives the same output.
func manifestFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path != dir && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if st, err := os.Stat(path); err == nil && st.IsDir() {
				return nil // links to folders are not followed
			}
		}
		out = append(out, path)
		return nil
	})
	sort.Strings(out)
	return out, err
}

// object is one Istio (or other) object of the input, with where it was.
type object struct {
	file       string
	loc        string // "document 2 (line 14)", ", item 3" for List items
	apiVersion string
	kind       string
	meta       Meta
	node       *yaml.Node // the object's mapping
	seq        int        // input order

	spec    any      // the decoded spec, by kind
	broken  bool     // the spec did not decode: nothing of it is carried
	covered []string // paths the report accounts for
}

func (o *object) id() string {
	ns := o.meta.Namespace
	return o.kind + " " + ns + "/" + o.meta.Name
}

// field returns the node of a top-level field.
func (o *object) field(name string) *yaml.Node {
	for i := 0; i+1 < len(o.node.Content); i += 2 {
		if o.node.Content[i].Value == name {
			return o.node.Content[i+1]
		}
	}
	return nil
}

// parseObjects splits each input into YAML documents and objects (List
// items included), at most MaxDocumentsPerFile per file.
func parseObjects(ins []Input) ([]*object, []Entry) {
	var objs []*object
	var entries []Entry
	for _, in := range ins {
		docs, over := splitDocuments(in.Data, watch.MaxDocumentsPerFile)
		if over {
			entries = append(entries, Entry{File: in.Name, Status: StatusError,
				Text: fmt.Sprintf("the file holds more than %d documents (or objects): not read; split it", watch.MaxDocumentsPerFile)})
			continue
		}
		n := 0
		var fileObjs []*object
		over = false
		for _, d := range docs {
			n++
			loc := fmt.Sprintf("document %d (line %d)", n, d.line)
			var root yaml.Node
			if err := yaml.Unmarshal(d.data, &root); err != nil {
				entries = append(entries, Entry{File: in.Name, Object: loc, Status: StatusError,
					Text: "invalid YAML: " + fileLines(strings.TrimPrefix(err.Error(), "yaml: "), d.start) + "; kubectl refuses it too, so nothing of it was applied, and nothing is carried"})
				continue
			}
			if len(root.Content) == 0 || isNull(root.Content[0]) {
				n--
				continue
			}
			var found []*object
			entries = append(entries, readObject(in.Name, loc, root.Content[0], true, &found)...)
			if fileObjs = append(fileObjs, found...); len(fileObjs) > watch.MaxDocumentsPerFile {
				entries = append(entries, Entry{File: in.Name, Status: StatusError,
					Text: fmt.Sprintf("the file holds more than %d objects: not read; split it", watch.MaxDocumentsPerFile)})
				over = true
				break
			}
		}
		if !over {
			objs = append(objs, fileObjs...) // a file is read whole or not at all
		}
	}
	for i, o := range objs {
		o.seq = i
	}
	return objs, entries
}

// readObject reads one object, or a List's items, into out.
func readObject(file, loc string, n *yaml.Node, allowList bool, out *[]*object) []Entry {
	fail := func(format string, args ...any) []Entry {
		return []Entry{{File: file, Object: loc, Status: StatusError, Text: fmt.Sprintf(format, args...)}}
	}
	if n.Kind != yaml.MappingNode {
		return fail("must be a mapping (a Kubernetes object), got %s", intent.DescribeNode(n))
	}
	o := &object{file: file, loc: loc, node: n}
	var head struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   Meta           `json:"metadata"`
		Items      []Raw          `json:"items"`
		Rest       map[string]Raw `json:",inline"`
	}
	var d decoder
	d.decode(n, &head, "")
	o.apiVersion, o.kind, o.meta = head.APIVersion, head.Kind, head.Metadata
	if o.kind == "" || o.apiVersion == "" {
		return fail("missing apiVersion or kind: not a Kubernetes object")
	}
	if o.meta.Namespace == "" {
		o.meta.Namespace = watch.DefaultNamespace
	}
	var entries []Entry
	for _, p := range d.problems {
		if p.path == "metadata" || strings.HasPrefix(p.path, "metadata.") || p.path == "apiVersion" || p.path == "kind" {
			entries = append(entries, Entry{File: file, Object: loc, Path: p.path, Status: StatusError, Text: p.msg})
		}
	}
	if len(entries) > 0 {
		return entries
	}
	if allowList && (o.kind == "List" || strings.HasSuffix(o.kind, "List")) && o.field("items") != nil {
		itemKind := strings.TrimSuffix(o.kind, "List")
		for i, it := range head.Items {
			item := it.Node
			if item.Kind == yaml.MappingNode && itemKind != "" && !hasKey(item, "kind") {
				item = withTypeMeta(item, o.apiVersion, itemKind)
			}
			entries = append(entries, readObject(file, fmt.Sprintf("%s, items[%d]", loc, i), item, false, out)...)
		}
		return entries
	}
	*out = append(*out, o)
	return entries
}

func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// withTypeMeta gives an item of a typed List (ServiceEntryList) the kind
// the API server leaves out.
func withTypeMeta(n *yaml.Node, apiVersion, kind string) *yaml.Node {
	c := *n
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	c.Content = append([]*yaml.Node{str("kind"), str(kind)}, n.Content...)
	if !hasKey(n, "apiVersion") {
		c.Content = append([]*yaml.Node{str("apiVersion"), str(apiVersion)}, c.Content...)
	}
	return &c
}

type document struct {
	data  []byte
	line  int // of its first content
	start int // of its first line, comments included
}

// splitDocuments splits a YAML stream at its "---" and "..." lines, as the
// folder source does, so one broken document does not hide the others.
// Documents of nothing but comments are left out.
func splitDocuments(data []byte, limit int) ([]document, bool) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []document
	var buf bytes.Buffer
	first, lineNo, start := 0, 0, 1
	flush := func() {
		if first != 0 {
			docs = append(docs, document{data: bytes.Clone(buf.Bytes()), line: first, start: start})
		}
		buf.Reset()
		first = 0
	}
	add := func(text []byte) {
		if t := bytes.TrimSpace(text); first == 0 && len(t) > 0 && t[0] != '#' {
			first = lineNo
		}
		buf.Write(text)
		buf.WriteByte('\n')
	}
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
			start = lineNo // the marker's line is the document's first
			// Keep line numbers of the document right: its first line
			// is the marker's.
			add(text[3:])
		case string(bytes.TrimRight(text, " \t")) == "...":
			flush()
			start = lineNo + 1
		default:
			add(text)
		}
	}
	flush()
	return docs, len(docs) > limit
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// fileLines turns the document-relative line of a YAML error into the
// file's. yaml.v3's parser counts from 0, its scanner from 1 (as
// internal/intent corrects them too).
func fileLines(msg string, start int) string {
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	n, _ := strconv.Atoi(m[1])
	if strings.HasPrefix(m[2], "did not find expected") || strings.HasPrefix(m[2], "found duplicate %") ||
		strings.HasPrefix(m[2], "found incompatible") || strings.HasPrefix(m[2], "found undefined tag") {
		n++
	}
	return "line " + strconv.Itoa(n+start-1) + ": " + m[2]
}
