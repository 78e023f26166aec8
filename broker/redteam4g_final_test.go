package broker

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// rt4gArmed is fakeTool that arms rt4eCut as it runs: the next commit, the
// call's call.completed, is made and its answer lost.
type rt4gArmed struct{ *fakeTool }

func (t rt4gArmed) Execute(ctx context.Context, target tools.Target, a tools.Args) (*tools.Output, error) {
	rt4eLose.Store(true)
	return t.fakeTool.Execute(ctx, target, a)
}

// Attack 2 (SQLite, rt4eCut): a read runs; the commit of its
// call.completed is made, its answer lost, and the store does not answer
// the read-back (ErrOutcomeUnknown). The broker drops call.completed (in
// doubt), withholds the result and records call.refused with
// events_in_doubt 1: the transcript then holds two final events for the
// one call, call.completed (with its result) and call.refused, which says
// that the one before it was in doubt (docs/transcripts.md). The agent is
// told the transcript may hold the result, and does not get it.
func TestRedTeam4gOutcomeUnknownTwoFinalEvents(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	st := rt4eOpen(t, "sqlite://"+path)
	db, err := sql.Open("sqlite-rt4e-cut", path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	rec, err := recorder.New(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4g.warmup"}); err != nil {
		t.Fatal(err)
	}
	b, _, tool := rt4fBroker(t, st, rec)
	b.tools["fake_query"] = rt4gArmed{tool}
	rt4eDownAfter.Store(1000)
	defer func() { rt4eDownAfter.Store(0); rt4eDown.Store(0); rt4eLose.Store(false) }()
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(`{"resource":"db1","query":"select 1"}`), Identity: eng})
	if rt4eLose.Swap(false) {
		t.Fatal("the commit was not cut")
	}
	rt4eDown.Store(0)
	evs, err := rec.Events(ctx, recorder.Filter{CallID: r.CallID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	finals := 0
	for _, ev := range evs {
		types = append(types, ev.Type+" "+string(ev.Data))
		if ev.Type == recorder.TypeCallCompleted || ev.Type == "call.refused" || ev.Type == recorder.TypeCallFailed {
			finals++
		}
	}
	t.Logf("agent: error %v %q; ran %d; the call's events:", r.IsError, r.Text, tool.executed)
	for _, s := range types {
		t.Logf("  %.200s", s)
	}
	last := evs[len(evs)-1]
	var refused struct {
		InDoubt int `json:"events_in_doubt"`
	}
	_ = json.Unmarshal(last.Data, &refused)
	if finals > 1 && (last.Type != "call.refused" || refused.InDoubt < 1) {
		t.Errorf("the transcript holds %d final events for call %s, the last not a call.refused saying what was in doubt", finals, r.CallID)
	}
	if !r.IsError || !strings.Contains(r.Text, "the transcript may hold it") || strings.Contains(r.Text, "[[1]]") {
		t.Errorf("agent told %q (error %v); want the result withheld, saying the transcript may hold it", r.Text, r.IsError)
	}
}
