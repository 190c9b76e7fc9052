// Package discover turns the access log of gateways in audit mode into
// proposed intents: every destination the audit let through, with the
// sources seen, and widenings of the allow lists that would have refused a
// source. It reads the JSON lines the gateways write (internal/translate
// accesslog.go), also when a log collector wrapped each in one JSON field
// or prefixed it (CRI), one line at a time: its memory grows with the
// distinct destinations and sources seen, not with the lines.
package discover

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// logLine holds the access log fields discover reads.
type logLine struct {
	Listener    string `json:"listener"`
	Destination string `json:"destination"`
	Audit       string `json:"audit"`
	Group       string `json:"group"`
	Port        string `json:"port"`
	SNI         string `json:"sni"`
	Authority   string `json:"authority"`
	Method      string `json:"method"`
	Time        string `json:"time"`
	Downstream  string `json:"downstream_address"`
	Peer        string `json:"peer_identity"`
	Details     string `json:"response_code_details"`
	Termination string `json:"connection_termination_details"`
}

// maxLine bounds a log line; longer ones are not ours (ours are below
// 4 KiB) and are skipped unread.
const maxLine = 64 << 10

// auditMarker is in every audit line, also when escaped inside another
// JSON document: lines without it are skipped without decoding.
var auditMarker = []byte(`audit`)

// parseLine decodes one log line; ok is false for lines that are not an
// audit line of ours.
func parseLine(b []byte) (logLine, bool) {
	var l logLine
	if len(b) > maxLine || !bytes.Contains(b, auditMarker) {
		return l, false
	}
	i := bytes.IndexByte(b, '{')
	if i < 0 {
		return l, false
	}
	ok, wrapped := scanLine(b[i:], &l)
	if !ok {
		return logLine{}, false
	}
	if l.Listener != "" {
		return l, l.Audit != ""
	}
	// Wrapped by a collector: {"log": "<our line>\n", "stream": ...},
	// {"message": "..."}: one string field holds the line.
	var inner string
	if wrapped == nil || json.Unmarshal(wrapped, &inner) != nil {
		return logLine{}, false
	}
	l = logLine{}
	if ok, _ := scanLine([]byte(inner), &l); !ok || l.Listener == "" {
		return logLine{}, false
	}
	return l, l.Audit != ""
}

// parseTime reads Envoy's START_TIME (RFC 3339 with milliseconds).
func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err == nil
}

// parseAddress reads DOWNSTREAM_REMOTE_ADDRESS, ip:port or [ip]:port.
func parseAddress(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// splitAuthority cuts host[:port]; port is 0 when absent.
func splitAuthority(s string) (string, uint32, bool) {
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
	}
	if strings.ContainsAny(host, "[]:") {
		return "", 0, false
	}
	if port == "" {
		return host, 0, !strings.HasSuffix(s, ":")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, false
	}
	return host, uint32(p), true
}

// hostName normalizes a requested name and reports whether an intent
// could declare it: a DNS name of at least two labels whose last one
// starts with a letter (no IP address), lower case, without a trailing
// dot; what the gateways forward in audit (translate, audit.go).
func hostName(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if len(s) == 0 || len(s) > 253 {
		return "", false
	}
	n, last := 0, ""
	for rest := s; ; {
		l, more, found := strings.Cut(rest, ".")
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false
			}
		}
		n, last = n+1, l
		if !found {
			break
		}
		rest = more
	}
	if n < 2 || !(last[0] >= 'a' && last[0] <= 'z') || last == "localhost" {
		return "", false
	}
	return s, true
}

// validGroup: a gateway group name as intents accept it.
func validGroup(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(s)-1 || (c != '-' && c != '_' && c != '.')) {
			return false
		}
	}
	return true
}

// Read adds every line of r. Lines longer than maxLine are skipped whole.
func (c *Collector) Read(r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			c.Stats.Lines++
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if len(line) > 0 {
			c.Add(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
