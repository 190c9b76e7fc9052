package istio

import (
	"fmt"
	"sort"
	"strings"
)

// Status says what became of an input field.
type Status string

const (
	// StatusCarried: carried over, to the destinations named.
	StatusCarried Status = "carried"
	// StatusDefault: what egress-xds does without being told.
	StatusDefault Status = "default"
	// StatusNotCarried: not carried, and what it did does not govern
	// who reaches what (tuning, telemetry, installation).
	StatusNotCarried Status = "not carried"
	// StatusAccess: not carried, and it governed who reaches what; what
	// is written admits less than the input (destinations held back or
	// allow lists shortened), never more. Exit status 1.
	StatusAccess Status = "ACCESS NOT CARRIED"
	// StatusError: input that could not be read. Exit status 1.
	StatusError Status = "error"
	// StatusNote: something to know about the output.
	StatusNote Status = "note"
)

// Entry is one line of the report: an input field (or object, or file)
// and what became of it.
type Entry struct {
	File   string
	Object string // "document 2 (line 14): ServiceEntry default/github", or empty for the whole file
	Path   string // field path in the object, e.g. spec.ports[0].protocol
	Status Status
	Text   string

	obj *object
	to  []*slot // the destinations it went to, named when rendered
	seq int
}

// String renders the entry as one line.
func (e Entry) String() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Object != "" {
		b.WriteString(e.Object)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(string(e.Status))
	if e.Text != "" {
		b.WriteString(": ")
		b.WriteString(e.Text)
	}
	if t := targets(e.to); t != "" {
		b.WriteString(" → ")
		b.WriteString(t)
	}
	return b.String()
}

// targets names where slots went: "ns/cm destination:port", or that
// they were held back.
func targets(slots []*slot) string {
	seen := map[string]bool{}
	var out []string
	for _, s := range slots {
		var t string
		switch {
		case s.dest != nil:
			t = fmt.Sprintf("%s %s:%d", s.dest.configMap, s.dest.name, s.key.port)
		default:
			t = fmt.Sprintf("%s:%d held back", s.key.host, s.key.port)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// reporter collects entries; the same field carried to several
// destinations is one entry listing them.
type reporter struct {
	entries []*Entry
	index   map[string]*Entry
}

func (r *reporter) add(o *object, path string, st Status, text string, to ...*slot) *Entry {
	if r.index == nil {
		r.index = map[string]*Entry{}
	}
	key := ""
	if o != nil {
		key = fmt.Sprintf("%d\x00%s\x00%s\x00%s", o.seq, path, st, text)
		if e, ok := r.index[key]; ok {
			e.to = appendSlots(e.to, to)
			return e
		}
	}
	e := &Entry{Path: path, Status: st, Text: text, obj: o, to: appendSlots(nil, to), seq: len(r.entries)}
	if o != nil {
		e.File, e.Object = o.file, o.loc+": "+o.id()
		o.covered = append(o.covered, path)
		r.index[key] = e
	}
	r.entries = append(r.entries, e)
	return e
}

func (r *reporter) addf(o *object, path string, st Status, format string, args ...any) *Entry {
	return r.add(o, path, st, fmt.Sprintf(format, args...))
}

func appendSlots(have, more []*slot) []*slot {
	for _, s := range more {
		dup := false
		for _, h := range have {
			dup = dup || h == s
		}
		if !dup {
			have = append(have, s)
		}
	}
	return have
}

// sorted returns the entries in input order: file-level entries first
// in the order found, then per object, in the order its fields were
// accounted for, then those about the output.
func (r *reporter) sorted(fileEntries []Entry) []Entry {
	out := append([]Entry(nil), fileEntries...)
	es := append([]*Entry(nil), r.entries...)
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if (a.obj == nil) != (b.obj == nil) {
			return b.obj == nil // about the output: last
		}
		if a.obj != nil && a.obj.seq != b.obj.seq {
			return a.obj.seq < b.obj.seq
		}
		return a.seq < b.seq
	})
	for _, e := range es {
		out = append(out, *e)
	}
	return out
}

// under reports whether path is p or inside it (p.x, p[i]).
func under(path, p string) bool {
	return strings.HasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '.' || path[len(p)] == '[')
}

// coveredSet answers isCovered in the time of a path's depth, for
// objects with many entries.
type coveredSet map[string]bool

func newCoveredSet(covered []string) coveredSet {
	m := make(coveredSet, len(covered))
	for _, c := range covered {
		m[c] = true
	}
	return m
}

func (m coveredSet) covers(leaf string) bool {
	if m[""] {
		return true
	}
	for p := leaf; p != ""; {
		if m[p] {
			return true
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return false
		}
		p = p[:i]
	}
	return false
}

// has reports whether some entry of the object is at or under the path.
func (r *reporter) has(o *object, path string) bool {
	for _, c := range o.covered {
		if under(c, path) {
			return true
		}
	}
	return false
}
