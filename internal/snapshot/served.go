package snapshot

import (
	"bytes"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// servedEncoder writes the record of the served versions (servedRecord)
// as json.Marshal does, keeping the encoding of each ConfigMap: after an
// edit only the edited ConfigMap is encoded again, not the megabytes of
// every other one. An encoding is reused only for the same object holding
// what it held when encoded (a source that changed one in place gets it
// encoded again).
type servedEncoder struct {
	items map[*corev1.ConfigMap]encodedServed
}

type encodedServed struct {
	file string
	seen *corev1.ConfigMap // a copy of the object as encoded
	json []byte
}

func (e *servedEncoder) encode(rec servedRecord) ([]byte, error) {
	source, err := json.Marshal(rec.Source)
	if err != nil {
		return nil, err
	}
	next := make(map[*corev1.ConfigMap]encodedServed, len(rec.ConfigMaps))
	size := len(source) + 32
	for _, it := range e.items {
		size += len(it.json) + 1
	}
	var buf bytes.Buffer
	buf.Grow(size + size/8)
	buf.WriteString(`{"Source":`)
	buf.Write(source)
	buf.WriteString(`,"ConfigMaps":`)
	if rec.ConfigMaps == nil {
		buf.WriteString("null")
	}
	for i, c := range rec.ConfigMaps {
		it, ok := e.items[c.ConfigMap]
		if !ok || it.file != c.File || !equality.Semantic.DeepEqual(it.seen, c.ConfigMap) {
			b, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			it = encodedServed{file: c.File, seen: c.ConfigMap.DeepCopy(), json: b}
		}
		next[c.ConfigMap] = it
		if i == 0 {
			buf.WriteByte('[')
		} else {
			buf.WriteByte(',')
		}
		buf.Write(it.json)
	}
	if len(rec.ConfigMaps) > 0 {
		buf.WriteByte(']')
	} else if rec.ConfigMaps != nil {
		buf.WriteString("[]")
	}
	buf.WriteByte('}')
	e.items = next
	return buf.Bytes(), nil
}
