package webhook

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/egress-xds/egress-xds/internal/intent"
)

// Bounds of what goes back to the API server and the log. The message of
// a denial is printed by kubectl; warnings travel as HTTP headers, which
// the API server truncates past 256 characters each and 4 KiB in all.
const (
	maxMessageLines = 20
	maxMessageBytes = 4 << 10
	maxLineBytes    = 512
	maxWarnings     = 10
	maxWarningBytes = 256
	maxLogBytes     = 512
)

// line is one diagnostic as "key: field.path: why" (the ConfigMap is
// named once, at the top of the message).
func line(d intent.Diagnostic) string {
	var parts []string
	if d.Origin.Key != "" {
		parts = append(parts, d.Origin.Key)
	}
	if d.Path != "" {
		parts = append(parts, d.Path)
	}
	parts = append(parts, d.Message)
	return sanitize(strings.Join(parts, ": "))
}

// denial is the message of a refusal: every error, one a line, within
// the bounds, saying how many were left out.
func denial(configMap string, errs intent.Diagnostics) string {
	var b strings.Builder
	fmt.Fprintf(&b, "egress intent ConfigMap %s is invalid (%d error(s)):", sanitize(configMap), problems(errs))
	for i, d := range errs {
		l := bounded(line(d), maxLineBytes)
		if i == maxMessageLines || b.Len()+1+len(l) > maxMessageBytes {
			fmt.Fprintf(&b, "\n... and %d more: xds-server validate lists more", problems(errs[i:]))
			break
		}
		b.WriteString("\n")
		b.WriteString(l)
	}
	return b.String()
}

// problems counts what ds stand for: a summary of problems not listed
// (intent.MaxDiagnosticsPerConfigMap) counts them.
func problems(ds intent.Diagnostics) int {
	n := 0
	for _, d := range ds {
		e, w := d.Counts()
		n += e + w
	}
	return n
}

// warnings are the warning diagnostics as kubectl prints them, within the
// bounds.
func warnings(ds intent.Diagnostics) []string {
	var out []string
	for i, d := range ds {
		if i == maxWarnings {
			out = append(out, fmt.Sprintf("... and %d more warning(s): xds-server validate lists more", problems(ds[i:])))
			break
		}
		out = append(out, bounded(line(d), maxWarningBytes))
	}
	return out
}

// bounded cuts s to at most n bytes, on a rune boundary, marking the cut.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// sanitize replaces control characters (a YAML key may hold a newline)
// so that each diagnostic stays one line and a valid header value.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
}
