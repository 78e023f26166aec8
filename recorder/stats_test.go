package recorder

import (
	"encoding/json"
	"testing"
)

// Stats counts transactions and the events they held: two events appended
// together are one commit.
func TestStats(t *testing.T) {
	r, _ := newRecorder(t, sqliteBackend)
	before := r.Stats()
	if _, err := r.AppendAll(t.Context(), []Event{{Type: TypeCallReceived, CallID: "c"}, {Type: TypeCallDecided, CallID: "c"}}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, r, Event{Type: TypeCallCompleted, CallID: "c"})
	// A refused append counts nothing.
	if _, err := r.Append(t.Context(), Event{Type: TypeCallFailed, Data: json.RawMessage(`{`)}); err == nil {
		t.Fatal("an invalid event was appended")
	}
	got := r.Stats()
	if c, e := got.Commits-before.Commits, got.Events-before.Events; c != 2 || e != 3 {
		t.Errorf("Stats: %d commits, %d events; want 2 and 3", c, e)
	}
}
