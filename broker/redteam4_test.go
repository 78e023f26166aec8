package broker

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4b: on a PostgreSQL store (what replicas share), an agent that
// named a resource with a NUL in it ("db1\u0000") made the call's
// call.refused unstorable: the recorder checked only that the event's
// fields were valid UTF-8, PostgreSQL's TEXT refuses 0x00, the whole
// commit failed and the call left nothing in the transcript, while the
// agent was told "Unknown resource". (SQLite took the NUL.) The recorder
// now refuses a NUL on every store, and the broker records the refusal
// with the name quoted.
func TestRedTeam4NULInResourceNameIsRecorded(t *testing.T) {
	ctx := context.Background()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE rt4b")
	q := url.Values{"host": {pg.SocketDir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}
	st, err := store.Open(ctx, "postgres://postgres@/rt4b?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, rec, _ := rt4cBroker(t, st, false)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(`{"resource":"db1\u0000","query":"select"}`), Identity: eng})
	t.Logf("agent was told: %s", r.Text)
	evs, err := rec.Events(ctx, recorder.Filter{CallID: r.CallID})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	if !r.IsError || len(types) == 0 || types[len(types)-1] != "call.refused" {
		t.Errorf("refused=%v %q; events %v, want the call recorded with call.refused last", r.IsError, r.Text, types)
	}
	if !strings.Contains(r.Text, "Unknown resource") {
		t.Errorf("told %q", r.Text)
	}
	if last := evs[max(len(evs)-1, 0):]; len(last) == 1 && last[0].Resource != `"db1\x00"` {
		t.Errorf("%s recorded resource %q, want the agent's name quoted", last[0].Type, last[0].Resource)
	}
}

// recordable mends what the recorder refuses and leaves the rest alone.
func TestRecordableMendsWhatTheRecorderRefuses(t *testing.T) {
	fine := recorder.Event{Type: "call.received", CallID: "c", Subject: "ada", Data: json.RawMessage(`{"arguments":{"q":1}}`)}
	pending := []recorder.Event{
		fine,
		{Type: "call.decided", CallID: "c", Subject: "ada", Data: json.RawMessage(`{"facts":{"k":1,"k":2}}`)},
		{Type: "call.refused", CallID: "c", Subject: "ad\x00a", Resource: "db\xff", Data: json.RawMessage(`{"reason":"x"}`)},
	}
	if !recordable(pending) {
		t.Fatal("recordable mended nothing")
	}
	for _, ev := range pending {
		if err := recorder.Check(ev); err != nil {
			t.Errorf("%s still refused: %v", ev.Type, err)
		}
	}
	if !reflect.DeepEqual(pending[0], fine) {
		t.Errorf("a recordable event was changed: %+v", pending[0])
	}
	if got := string(pending[1].Data); !strings.Contains(got, `"unrecordable"`) || !strings.Contains(got, `"bytes":23`) {
		t.Errorf("unrecordable data became %s", got)
	}
	if pending[2].Subject != `"ad\x00a"` || pending[2].Resource != `"db\xff"` || string(pending[2].Data) != `{"reason":"x"}` {
		t.Errorf("fields mended to %q %q %s; want them quoted and the data kept", pending[2].Subject, pending[2].Resource, pending[2].Data)
	}
	if recordable(pending) {
		t.Error("recordable mended events that were recordable")
	}
}
