package xds

import "testing"

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
