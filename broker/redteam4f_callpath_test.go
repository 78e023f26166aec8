package broker

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// rt4fBroker is rt4cBroker with the recorder given (one on a cuttable
// connection pool).
func rt4fBroker(t *testing.T, st *store.Store, rec *recorder.Recorder) (*Broker, *approval.Manager, *fakeTool) {
	t.Helper()
	ctx := context.Background()
	pol, err := policy.Parse([]byte(testPolicy), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := &fakeResource{spec: tools.ResourceSpec{Name: "db1", Kind: "fake", Grants: map[string]tools.Grant{"ro": {TTL: time.Minute}}}}
	var b *Broker
	leases, err := lease.New(lease.Config{
		Store:   st,
		Resolve: func(name string) (tools.Resource, bool) { r, ok := b.State().Resources[name]; return r, ok },
		OnEvent: func(ctx context.Context, ev lease.Event) error { return b.RecordLease(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	am, err := approval.New(approval.Config{
		Store: st, PublicURL: "https://airlock.example.com/mcp", Wait: 50 * time.Millisecond, Expire: 15 * time.Minute,
		PollInterval: 10 * time.Millisecond,
		OnEvent:      func(ctx context.Context, ev approval.Event) error { return b.RecordApproval(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	am.Start(ctx)
	t.Cleanup(func() { _ = am.Close(context.Background()) })
	tool := &fakeTool{output: func() *tools.Output {
		return &tools.Output{Table: &tools.Table{Columns: []tools.Column{{Name: "n"}}, Rows: [][]any{{1}}}}
	}}
	b, err = New(Config{Tools: []tools.Tool{tool}, Recorder: rec, Leases: leases, Approvals: am}, &State{
		Policy: pol, Resources: map[string]tools.Resource{"db1": res}, Masking: engine,
		Limits: tools.Limits{MaxRows: 10, MaxBytes: 1 << 20, Timeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, am, tool
}

// rt4fCallEvents counts the events of call id by type.
func rt4fCallEvents(t *testing.T, rec *recorder.Recorder, callID string) map[string]int {
	t.Helper()
	evs, err := rec.Events(context.Background(), recorder.Filter{CallID: callID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, ev := range evs {
		n[ev.Type]++
	}
	return n
}

// rt4fSlowEvent makes a commit that appended an event of type typ take d
// on the server.
func rt4fSlowEvent(t *testing.T, db *sql.DB, typ string, d time.Duration) {
	t.Helper()
	rt4fSlowCommit(t, db, "transcript_events", d)
	if _, err := db.Exec(`CREATE OR REPLACE FUNCTION rt4f_slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.type = '` + typ + `' THEN PERFORM pg_sleep(` + fmt.Sprintf("%.3f", d.Seconds()) + `); END IF; RETURN NULL; END $$`); err != nil {
		t.Fatal(err)
	}
}

// Red team 4f, attack 2: a held call's first commit (call.received and
// call.decided, before the approval is asked for) is cut as in attack 1
// (PostgreSQL, answer lost, the server still committing). The recorder's
// read-back says "not made", the broker refuses the call and appends the
// events again with its call.refused: the transcript holds call.received
// and call.decided twice for the one call.
func TestRedTeam4fPGLostCallCommitDuplicates(t *testing.T) {
	ctx := context.Background()
	_, st, rec, cut := rt4fPGSetup(t)
	b, _, _ := rt4fBroker(t, st, rec)
	rt4fSlowEvent(t, st.DB(), "call.decided", 500*time.Millisecond)
	cut.partition = 150 * time.Millisecond

	cut.armed.Store(true)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(`{"resource":"db1","query":"write x"}`), Identity: eng, NoWait: true})
	if cut.cuts.Load() != 1 {
		t.Fatalf("the commit was not cut")
	}
	time.Sleep(time.Second)
	n := rt4fCallEvents(t, rec, r.CallID)
	t.Logf("call: %s; its events: %v", r.Text, n)
	if n[recorder.TypeCallReceived] > 1 || n["call.decided"] > 1 {
		t.Errorf("call %s: the transcript holds %d call.received and %d call.decided for one call", r.CallID, n[recorder.TypeCallReceived], n["call.decided"])
	}
}

// Red team 4f, attack 3: the commit of a call's approval.consumed (with
// the approval's consumption, its hook) is cut as in attack 1. The store
// ended with the approval consumed by the call and its approval.consumed
// recorded, yet the call was refused with "the use of its approval could
// not be recorded": fail closed, but untrue, and the approvers' decision
// spent. The recorder now reads the commit back under the chain lock, so
// it sees the commit the server was still making: the call runs, once.
func TestRedTeam4fPGLostConsumeCommit(t *testing.T) {
	ctx := context.Background()
	_, st, rec, cut := rt4fPGSetup(t)
	b, am, tool := rt4fBroker(t, st, rec)
	args := json.RawMessage(`{"resource":"db1","query":"write x"}`)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	id, _ := r.Structured.(map[string]any)["approval_id"].(string)
	if id == "" {
		t.Fatalf("not held: %s", r.Text)
	}
	if _, err := am.Decide(ctx, id, policy.Identity{Subject: "dora", Groups: []string{"dba"}}, approval.Approve, "ok", approval.ViaWeb); err != nil {
		t.Fatal(err)
	}
	rt4fSlowEvent(t, st.DB(), "approval.consumed", 500*time.Millisecond)
	cut.partition = 150 * time.Millisecond
	cut.match = []byte("approval.consumed")
	cut.armed.Store(true)
	r = b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	if cut.cuts.Load() != 1 {
		t.Fatalf("the commit was not cut")
	}
	time.Sleep(time.Second)
	a, err := st.Approval(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	n := rt4fCallEvents(t, rec, r.CallID)
	r2 := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	t.Logf("call %s: %q; approval %s consumed by %q; the call's events %v; ran %d times; its retry: %q", r.CallID, r.Text, a.State, a.ConsumedBy, n, tool.executed, r2.Text)
	if r.IsError || tool.executed != 1 || a.State != store.ApprovalConsumed || a.ConsumedBy != r.CallID ||
		n["approval.consumed"] != 1 || n[recorder.TypeCallCompleted] != 1 {
		t.Errorf("want the call run once with its approval consumed by it and recorded once; got %q, ran %d times, approval %s by %q, events %v", r.Text, tool.executed, a.State, a.ConsumedBy, n)
	}
	if strings.Contains(r.Text, "could not be recorded") {
		t.Errorf("the agent was told %q", r.Text)
	}
}

// Red team 4f, attack 4 (SQLite, rt4eCut): a held call's first commit is
// made, its answer lost, and the store does not answer the read-back for
// its 5 s (recorder.ErrOutcomeUnknown: "its events may be stored"). The
// broker appended the same events again with the call's call.refused, so
// they were recorded twice. It now drops them, and call.refused says how
// many it could not tell of (events_in_doubt).
func TestRedTeam4fOutcomeUnknownCallDuplicates(t *testing.T) {
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
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4f.warmup"}); err != nil {
		t.Fatal(err)
	}
	b, _, _ := rt4fBroker(t, st, rec)
	rt4eDownAfter.Store(1000)
	defer func() { rt4eDownAfter.Store(0); rt4eDown.Store(0) }()
	rt4eLose.Store(true)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(`{"resource":"db1","query":"write x"}`), Identity: eng, NoWait: true})
	if rt4eLose.Swap(false) {
		t.Fatal("the commit was not cut")
	}
	rt4eDown.Store(0)
	n := rt4fCallEvents(t, rec, r.CallID)
	t.Logf("call: %s; its events: %v", r.Text, n)
	if n[recorder.TypeCallReceived] > 1 || n["call.decided"] > 1 {
		t.Errorf("call %s: the transcript holds %d call.received and %d call.decided for one call", r.CallID, n[recorder.TypeCallReceived], n["call.decided"])
	}
	evs, err := rec.Events(ctx, recorder.Filter{CallID: r.CallID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var refused struct {
		InDoubt int `json:"events_in_doubt"`
	}
	for _, ev := range evs {
		if ev.Type == "call.refused" {
			_ = json.Unmarshal(ev.Data, &refused)
		}
	}
	if !r.IsError || refused.InDoubt != 2 {
		t.Errorf("call.refused says %d events in doubt (refused: %v), want the 2 whose commit the store did not answer for", refused.InDoubt, r.IsError)
	}
}
