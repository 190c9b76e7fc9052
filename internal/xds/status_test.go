package xds

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStateOf(t *testing.T) {
	for _, c := range []struct {
		ts      TypeStatus
		current string
		want    SyncState
	}{
		{TypeStatus{Sent: "v2", Acked: "v2"}, "v2", Synced},
		{TypeStatus{Acked: "v2"}, "v2", Synced},                                               // held on reconnection
		{TypeStatus{Sent: "v2", Acked: "v1", NACKedVer: "v2", LastNACK: "bad"}, "v2", NACKed}, // current version rejected
		{TypeStatus{Sent: "v3", Acked: "v1", NACKedVer: "v2", LastNACK: "bad"}, "v3", Stale},  // an older rejection
		{TypeStatus{Sent: "v2", Acked: "v1"}, "v2", Stale},                                    // not answered yet
		{TypeStatus{}, "v1", Stale},                                                           // nothing sent
		{TypeStatus{}, "", Stale},                                                             // no snapshot
	} {
		if got := StateOf(c.ts, c.current); got != c.want {
			t.Errorf("%+v against %q: %s, want %s", c.ts, c.current, got, c.want)
		}
	}
}

// A NACK's error text is kept and logged bounded, cut on a character.
func TestNACKDetailBounded(t *testing.T) {
	long := strings.Repeat("é", MaxNACKDetail)
	got := boundedDetail(long)
	if len(got) > MaxNACKDetail+64 || !utf8.ValidString(got) || !strings.Contains(got, "more bytes not kept") {
		t.Fatalf("%d bytes, valid %v: %q", len(got), utf8.ValidString(got), got[len(got)-40:])
	}
	if boundedDetail("short") != "short" {
		t.Fatal("a short text changed")
	}
}
