package intent

import (
	"cmp"
	"fmt"
	"slices"
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

	// omitted and omittedErrors are set on a summary that stands for that
	// many problems (errors among them) not listed, so that capping again
	// adds up instead of summarizing a summary.
	omitted, omittedErrors int
}

// Counts is how many errors and warnings d stands for: itself, or, for a
// summary of problems not listed, those problems.
func (d Diagnostic) Counts() (errs, warns int) {
	switch {
	case d.omitted > 0:
		return d.omittedErrors, d.omitted - d.omittedErrors
	case d.Severity == SeverityWarning:
		return 0, 1
	}
	return 1, 0
}

// MaxDiagnosticsPerConfigMap is how many problems of one ConfigMap (or one
// file) are listed; the rest are counted in one summary. A broken input
// can hold a million problems: listing them would flood the logs, the
// Events and /debug/config, and the first ones are what to fix first.
const MaxDiagnosticsPerConfigMap = 50

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
	seen := make(map[string]bool, len(ds))
	out := make(Diagnostics, 0, len(ds))
	for _, d := range ds {
		if k := d.Error(); !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

// Sort orders diagnostics by origin, then path, then message; a summary
// of omitted problems comes after the problems of its ConfigMap.
// The keys are computed once each, not once per comparison.
func (ds Diagnostics) Sort() {
	type keyed struct {
		key string
		d   Diagnostic
	}
	ks := make([]keyed, len(ds))
	for i, d := range ds {
		ks[i] = keyed{d.sortKey(), d}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.d.Path, b.d.Path), strings.Compare(a.d.Message, b.d.Message))
	})
	for i := range ks {
		ds[i] = ks[i].d
	}
}

// sortKey is the origin; a summary's sorts after every key of its
// ConfigMap ("ns/name: key" < "ns/name:\U0010FFFF").
func (d Diagnostic) sortKey() string {
	if d.omitted > 0 {
		return d.Origin.String() + ":\U0010FFFF"
	}
	return d.Origin.String()
}

// Capped keeps the first n diagnostics of each ConfigMap (of each file for
// problems of a whole file) and replaces the rest with one summary per
// ConfigMap, placed after its last kept diagnostic: sorted input stays
// sorted. Summaries already in ds are added up, not counted as problems.
func (ds Diagnostics) Capped(n int) Diagnostics {
	type tally struct {
		kept, more, errs int
		at               int // where the summary goes: the last kept, else the last of the group
		origin           Origin
	}
	groups := map[string]*tally{}
	keep := make([]bool, len(ds))
	for i, d := range ds {
		k := d.Origin.group()
		t := groups[k]
		if t == nil {
			t = &tally{origin: d.Origin.summary()}
			groups[k] = t
		}
		switch {
		case d.omitted > 0:
			t.more += d.omitted
			t.errs += d.omittedErrors
		case t.kept < n:
			t.kept++
			keep[i] = true
		default:
			t.more++
			if d.Severity != SeverityWarning {
				t.errs++
			}
		}
		if keep[i] || t.kept == 0 {
			t.at = i
		}
	}
	out := make(Diagnostics, 0, min(len(ds), len(groups)*(n+1)))
	for i, d := range ds {
		if keep[i] {
			out = append(out, d)
		}
		if t := groups[d.Origin.group()]; i == t.at && t.more > 0 {
			out = append(out, summary(t.origin, t.more, t.errs, n))
		}
	}
	return out
}

// group is what Capped counts per: the ConfigMap, or the file.
func (o Origin) group() string { return o.File + "\x00" + o.Namespace + "/" + o.Name }

// summary is the origin of a summary: the ConfigMap, without a key.
func (o Origin) summary() Origin {
	o.Key = ""
	return o
}

// summary stands for more problems (errs of them errors) not listed.
func summary(o Origin, more, errs, shown int) Diagnostic {
	where := "ConfigMap"
	if o.Name == "" {
		where = "file"
	}
	sev := SeverityWarning
	if errs > 0 {
		sev = SeverityError
	}
	return Diagnostic{Origin: o, Severity: sev, omitted: more, omittedErrors: errs,
		Message: fmt.Sprintf("… and %d more problems in this %s (%d errors, %d warnings), not listed: only the first %d are", more, where, errs, more-errs, shown)}
}

func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.Error()
	}
	return strings.Join(lines, "\n")
}

// reporter collects diagnostics for one origin (a ConfigMap's keys share
// one reporter, switching origin).
type reporter struct {
	origin Origin
	diags  Diagnostics
	// max bounds the diagnostics kept (0: no bound); the others are only
	// counted, so a huge broken document costs the memory of max of them.
	max        int
	more, errs int // problems beyond max; errors found, kept or not
	moreErrs   int
	// undecoded holds the paths Decode left at their zero value, and
	// validating drops its problems under them: they would be follow-ons
	// ("is required") of the problem already reported.
	undecoded  map[string]bool
	validating bool
	// firstLine is the file line of the document's first line, when its
	// lines are the file's (0: unknown); see ParseConfigMapLines.
	firstLine int
}

// lines names lines of the document (1-based) as a reader finds them:
// "bad.yaml:11 (line 2 of data key egress.yaml)" when the file line is
// known, else "line 2 of data key egress.yaml", counted within the key.
func (r *reporter) lines(ls ...int) string {
	list := func(add int) string {
		s := make([]int, len(ls))
		for i, l := range ls {
			s[i] = l + add
		}
		return lineList(s)
	}
	word := "line "
	if len(ls) > 1 {
		word = "lines "
	}
	inKey := word + list(0)
	if r.origin.Key != "" {
		inKey += " of data key " + r.origin.Key
	}
	if r.firstLine <= 0 || r.origin.File == "" {
		return inKey
	}
	if len(ls) == 1 {
		return fmt.Sprintf("%s:%d (%s)", r.origin.File, r.firstLine+ls[0]-1, inKey)
	}
	return fmt.Sprintf("%s%s of %s; %s", word, list(r.firstLine-1), r.origin.File, inKey)
}

func (r *reporter) errorf(path, format string, args ...any) {
	r.add(path, SeverityError, format, args)
}

func (r *reporter) warnf(path, format string, args ...any) {
	r.add(path, SeverityWarning, format, args)
}

// undecodedf reports a value Decode could not take and left at its zero
// value.
func (r *reporter) undecodedf(path, format string, args ...any) {
	if r.undecoded == nil {
		r.undecoded = map[string]bool{}
	}
	r.undecoded[path] = true
	r.errorf(path, format, args...)
}

func (r *reporter) add(path string, sev Severity, format string, args []any) {
	if r.validating && r.covered(path) {
		return
	}
	if sev == SeverityError {
		r.errs++
	}
	if r.max > 0 && len(r.diags) >= r.max {
		r.more++
		if sev == SeverityError {
			r.moreErrs++
		}
		return
	}
	r.diags = append(r.diags, Diagnostic{Origin: r.origin, Path: path, Message: fmt.Sprintf(format, args...), Severity: sev})
}

// covered reports whether path is, or is under, a path left undecoded.
func (r *reporter) covered(path string) bool {
	if len(r.undecoded) == 0 {
		return false
	}
	if r.undecoded[""] || r.undecoded[path] {
		return true
	}
	for i := 0; i < len(path); i++ {
		if (path[i] == '.' || path[i] == '[') && r.undecoded[path[:i]] {
			return true
		}
	}
	return false
}

// result is what was kept, and a summary of the rest.
func (r *reporter) result() Diagnostics {
	if r.more == 0 {
		return r.diags
	}
	return append(r.diags, summary(r.origin.summary(), r.more, r.moreErrs, r.max))
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
