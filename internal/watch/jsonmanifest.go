package watch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// parseFile parses a manifest file by its type: a .json file as JSON, one
// object or several in a row (as kubectl reads them), so its errors say
// "invalid JSON" with a line and column; any other file as YAML.
func parseFile(name string, data []byte) parsed {
	if strings.EqualFold(path.Ext(name), ".json") {
		return parseJSON(data)
	}
	return parseManifests(data)
}

// parseJSON parses a stream of JSON values. Objects are read as strictly
// as YAML documents are: a key given twice in one object is an error, as
// sigs.k8s.io/yaml's strict mode makes it for YAML.
func parseJSON(data []byte) parsed {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	d := &decoder{seen: map[string]string{}}
	dec := json.NewDecoder(bytes.NewReader(data))
	for n := 1; ; {
		start := skipSpace(data, int(dec.InputOffset()))
		if start == len(data) {
			break
		}
		loc := fmt.Sprintf("document %d (line %d)", n, lineOf(data, start))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			// The stream cannot be followed past a syntax error.
			d.errorf("%s: invalid JSON: %s", loc, jsonErr(data, err))
			break
		}
		if string(raw) == "null" {
			continue // an empty document, as in YAML
		}
		if n++; n > MaxDocumentsPerFile {
			d.errs, d.moreErrs = nil, 0
			d.errorf("%s", tooManyDocuments)
			break
		}
		if dups := duplicateJSONKeys(raw); len(dups) > 0 {
			for _, k := range dups {
				d.errorf("%s: %s: key %q is given twice in one object", loc, position(data, start+k.off), k.key)
			}
			continue
		}
		d.object(loc, raw, true, nil)
	}
	return d.done()
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// jsonErr says where in the file a JSON syntax error is.
func jsonErr(data []byte, err error) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// Offset is just past the offending byte.
		return position(data, max(int(se.Offset)-1, 0)) + ": " + se.Error()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return position(data, len(data)) + ": the file ends inside a value"
	}
	return err.Error()
}

// position is "line L, column C" (1-based, columns in bytes) of offset off.
func position(data []byte, off int) string {
	off = min(off, len(data))
	nl := bytes.LastIndexByte(data[:off], '\n')
	return fmt.Sprintf("line %d, column %d", lineOf(data, off), off-nl)
}

func lineOf(data []byte, off int) int {
	return bytes.Count(data[:min(off, len(data))], []byte("\n")) + 1
}

type jsonKey struct {
	key string
	off int // offset of the key in the value
}

// duplicateJSONKeys lists the keys given again in an object of raw, a
// valid JSON value (checked by encoding/json, which also bounds its
// nesting), in one pass over its bytes.
func duplicateJSONKeys(raw []byte) []jsonKey {
	type frame struct {
		object, wantKey bool
		keys            []string        // the first few: a list is cheaper than a map
		many            map[string]bool // all of them, once there are more
	}
	var dups []jsonKey
	var stack []frame
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '{':
			stack = append(stack, frame{object: true, wantKey: true})
		case '[':
			stack = append(stack, frame{})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if top := &stack[len(stack)-1]; top.object {
				top.wantKey = true
			}
		case '"':
			end := stringEnd(raw, i)
			if len(stack) > 0 && stack[len(stack)-1].wantKey {
				top := &stack[len(stack)-1]
				k := jsonString(raw[i:end])
				switch {
				case top.many[k] || top.many == nil && slices.Contains(top.keys, k):
					dups = append(dups, jsonKey{key: k, off: i})
				case top.many != nil:
					top.many[k] = true
				case len(top.keys) < 16:
					top.keys = append(top.keys, k)
				default:
					top.many = map[string]bool{k: true}
					for _, k := range top.keys {
						top.many[k] = true
					}
				}
				top.wantKey = false
			}
			i = end - 1
		}
	}
	return dups
}

// jsonString decodes a valid JSON string literal, quotes included.
func jsonString(lit []byte) string {
	if bytes.IndexByte(lit, '\\') < 0 {
		return string(lit[1 : len(lit)-1])
	}
	var s string
	_ = json.Unmarshal(lit, &s)
	return s
}

// stringEnd is the offset just past the JSON string starting at raw[i].
func stringEnd(raw []byte, i int) int {
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(raw)
}
