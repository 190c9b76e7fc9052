package intent

import (
	"fmt"
	"sort"
	"strings"
)

// Severity of a Diagnostic.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Origin names where an intent came from, for messages and conflict order.
type Origin struct {
	File      string // manifest file in folder mode, empty in Kubernetes mode
	Namespace string
	Name      string // ConfigMap name
	Key       string // data key
}

// ConfigMap is "namespace/name", the identity used in messages and events.
func (o Origin) ConfigMap() string { return o.Namespace + "/" + o.Name }

func (o Origin) String() string {
	var b strings.Builder
	if o.File != "" {
		b.WriteString(o.File)
		if o.Name == "" {
			return b.String()
		}
		b.WriteString(": ")
	}
	b.WriteString(o.ConfigMap())
	if o.Key != "" {
		b.WriteString(": ")
		b.WriteString(o.Key)
	}
	return b.String()
}

// Diagnostic is one problem found in an intent, with its field path.
type Diagnostic struct {
	Origin   Origin
	Path     string // e.g. destinations[2].ports[0].number; empty for the whole document
	Message  string
	Severity Severity
}

func (d Diagnostic) Error() string {
	var b strings.Builder
	b.WriteString(d.Origin.String())
	b.WriteString(": ")
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is a list of problems; it is an error when it holds an error.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error (not a warning).
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity != SeverityWarning {
			return true
		}
	}
	return false
}

// Dedupe drops repeated diagnostics (a Secret problem is found once per
// gateway group), keeping the first of each.
func (ds Diagnostics) Dedupe() Diagnostics {
	seen := map[string]bool{}
	var out Diagnostics
	for _, d := range ds {
		if k := d.Error(); !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

// Sort orders diagnostics by origin, then path, then message.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.Origin.String() != b.Origin.String() {
			return a.Origin.String() < b.Origin.String()
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Message < b.Message
	})
}

func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.Error()
	}
	return strings.Join(lines, "\n")
}

// reporter collects diagnostics for one origin.
type reporter struct {
	origin Origin
	diags  Diagnostics
}

func (r *reporter) errorf(path, format string, args ...any) {
	r.diags = append(r.diags, Diagnostic{Origin: r.origin, Path: path, Message: fmt.Sprintf(format, args...), Severity: SeverityError})
}

func (r *reporter) warnf(path, format string, args ...any) {
	r.diags = append(r.diags, Diagnostic{Origin: r.origin, Path: path, Message: fmt.Sprintf(format, args...), Severity: SeverityWarning})
}

// HasErrorsWithoutOrigin reports errors that belong to no ConfigMap: the
// translation itself failed.
func (ds Diagnostics) HasErrorsWithoutOrigin() bool {
	for _, d := range ds {
		if d.Severity != SeverityWarning && d.Origin.Name == "" && d.Origin.File == "" {
			return true
		}
	}
	return false
}
