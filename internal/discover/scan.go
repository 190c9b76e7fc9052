package discover

import (
	"bytes"
	"encoding/json"
	"unsafe"
)

// A million lines must be read in seconds: encoding/json's reflection on
// every line is most of that. scanLine reads the flat JSON object the
// gateways write with no allocation but the fields kept, skipping nested
// values (a log collector's metadata), and finds our line inside a
// collector's string field ({"log": "{...}"}) one level deep. Anything
// that is not well-formed JSON is not a line of ours.

// set stores a field discover reads; false for any other key.
func (l *logLine) set(key []byte, v string) bool {
	switch string(key) {
	case "listener":
		l.Listener = v
	case "destination":
		l.Destination = v
	case "audit":
		l.Audit = v
	case "group":
		l.Group = v
	case "port":
		l.Port = v
	case "sni":
		l.SNI = v
	case "authority":
		l.Authority = v
	case "method":
		l.Method = v
	case "time":
		l.Time = v
	case "downstream_address":
		l.Downstream = v
	case "peer_identity":
		l.Peer = v
	case "response_code_details":
		l.Details = v
	case "connection_termination_details":
		l.Termination = v
	default:
		return false
	}
	return true
}

// scanLine reads one JSON object into l; wrapped is the raw (still
// quoted) string value of a field that may hold our line, when l is not.
func scanLine(b []byte, l *logLine) (ok bool, wrapped []byte) {
	s := scanner{b: b}
	s.ws()
	if !s.byte('{') {
		return false, nil
	}
	s.ws()
	if s.byte('}') {
		return s.end(), nil
	}
	for {
		s.ws()
		key, esc, ok := s.str()
		if !ok || esc {
			return false, nil
		}
		s.ws()
		if !s.byte(':') {
			return false, nil
		}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == '"' {
			start := s.i
			raw, esc, ok := s.str()
			if !ok {
				return false, nil
			}
			v := view(raw)
			if esc {
				var u string
				if json.Unmarshal(s.b[start:s.i], &u) != nil {
					return false, nil
				}
				v = u
			}
			if !l.set(key, v) && wrapped == nil && len(raw) > 0 && raw[0] == '{' && bytes.Contains(raw, auditMarker) {
				wrapped = s.b[start:s.i]
			}
		} else if l.set(key, "") {
			// The fields read are strings, or null where they do not
			// apply; anything else is not a line of ours.
			start := s.i
			if !s.value(0) || !bytes.Equal(s.b[start:s.i], []byte("null")) {
				return false, nil
			}
		} else if !s.value(0) {
			return false, nil
		}
		s.ws()
		if s.byte(',') {
			continue
		}
		if s.byte('}') {
			return s.end(), wrapped
		}
		return false, nil
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end: nothing but white space follows.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// str reads a string; raw is its content between the quotes, esc whether
// it holds escapes (raw is then not its value).
func (s *scanner) str() (raw []byte, esc bool, ok bool) {
	if !s.byte('"') {
		return nil, false, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, esc, true
		case c == '\\':
			esc = true
			s.i += 2
		case c < 0x20:
			return nil, false, false
		default:
			s.i++
		}
	}
	return nil, false, false
}

// maxDepth bounds nesting: a hostile line cannot recurse deeply.
const maxDepth = 16

// value skips one JSON value.
func (s *scanner) value(depth int) bool {
	if s.i >= len(s.b) || depth > maxDepth {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		s.i++
		s.ws()
		if s.byte(closing) {
			return true
		}
		for {
			s.ws()
			if c == '{' {
				if _, _, ok := s.str(); !ok {
					return false
				}
				s.ws()
				if !s.byte(':') {
					return false
				}
				s.ws()
			}
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.byte(',') {
				continue
			}
			return s.byte(closing)
		}
	default:
		start := s.i
		for s.i < len(s.b) {
			c := s.b[s.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			s.i++
		}
		return literal(s.b[start:s.i])
	}
}

// literal: true, false, null or a number.
func literal(v []byte) bool {
	switch string(v) {
	case "true", "false", "null":
		return true
	}
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

// view is b as a string without a copy: the fields of a line are read
// while the line is, and whatever is kept is cloned (Collector.Add).
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
