package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
	"github.com/airlock-mcp/airlock/tools/postgres"
)

// Red team of commit 8e09c0b: when the broker commits a call's events.

// timedRead is fakeTool as a read the target keeps from writing
// (tools.ReadOnlyCaller), whose query says how it runs: "sleep <duration>"
// returns after that long (or when cancelled), "panic" panics, "block"
// waits for its context.
type timedRead struct {
	*fakeTool
	started chan struct{} // one send per "block" call, once it runs
}

func (t *timedRead) ReadOnlyCall(tools.Credential, tools.Args) bool { return true }

func (t *timedRead) Execute(ctx context.Context, target tools.Target, a tools.Args) (*tools.Output, error) {
	q := a.(fakeArgs).Query
	switch {
	case q == "panic":
		panic("a bug in a read tool")
	case q == "block":
		t.started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	case strings.HasPrefix(q, "sleep "):
		d, err := time.ParseDuration(strings.TrimPrefix(q, "sleep "))
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return t.fakeTool.Execute(ctx, target, a)
}

func newTimedHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, func(f *fakeTool) tools.Tool {
		return &timedRead{fakeTool: f, started: make(chan struct{}, 1)}
	})
	// Warm the lease: the calls below reuse it, so their events stay
	// pending until the read ends or has run RecordRunningAfter.
	if r := h.call(t, eng, `{"resource":"db1","query":"select 1"}`); r.IsError {
		t.Fatal(r.Text)
	}
	return h
}

// withRecorder is the harness's broker with another recorder (the lease
// manager, hence lease.minted, still records through the harness's).
func (h *harness) withRecorder(t *testing.T, rec Recorder) *Broker {
	t.Helper()
	b, err := New(Config{Tools: h.broker.cfg.Tools, Recorder: rec, Leases: h.broker.cfg.Leases}, h.broker.State())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readCall(query string) Call {
	raw, _ := json.Marshal(map[string]string{"resource": "db1", "query": query})
	return Call{Tool: "fake_query", Arguments: raw, Identity: eng}
}

// finals counts a call's final events.
func finals(types []string) int {
	n := 0
	for _, typ := range types {
		switch typ {
		case recorder.TypeCallCompleted, recorder.TypeCallFailed, "call.refused", recorder.TypeCallInterrupted:
			n++
		}
	}
	return n
}

func count(types []string, typ string) int {
	n := 0
	for _, t := range types {
		if t == typ {
			n++
		}
	}
	return n
}

// Reads that end right around RecordRunningAfter, when the timer's commit
// and the broker's own meet: every one is recorded once, in order, with one
// final event, and (under -race) without a data race on the call's pending
// events. Passes.
func TestRedTeamCommitReadsEndingAtTheTimer(t *testing.T) {
	h := newTimedHarness(t)
	want := []string{"call.received", "call.decided", "lease.reused", "call.completed"}
	for i := 0; i < 4; i++ {
		for _, d := range []time.Duration{RecordRunningAfter - 2*time.Millisecond, RecordRunningAfter - 200*time.Microsecond, RecordRunningAfter, RecordRunningAfter + 200*time.Microsecond, RecordRunningAfter + 2*time.Millisecond} {
			res := h.call(t, eng, fmt.Sprintf(`{"resource":"db1","query":"sleep %s"}`, d))
			if res.IsError {
				t.Fatalf("read of %s: %s", d, res.Text)
			}
			if got := h.eventTypes(t, res.CallID); !slices.Equal(got, want) {
				t.Errorf("read of %s: events %v, want %v", d, got, want)
			}
		}
	}
}

// The same reads with the store taking nothing: whether the timer's commit
// or the outcome's fails first, no result leaves, and the read (which ran)
// leaves nothing in a store that took nothing. Passes.
func TestRedTeamCommitReadsEndingAtTheTimerStoreDown(t *testing.T) {
	h := newTimedHarness(t)
	h.flaky.failOn["call.received"] = true
	for i := 0; i < 3; i++ {
		for _, d := range []time.Duration{RecordRunningAfter - time.Millisecond, RecordRunningAfter, RecordRunningAfter + time.Millisecond, 2 * RecordRunningAfter} {
			res := h.call(t, eng, fmt.Sprintf(`{"resource":"db1","query":"sleep %s"}`, d))
			if !res.IsError || strings.Contains(res.Text, "Ada") || !strings.Contains(res.Text, "store is unavailable") {
				t.Fatalf("read of %s with the store down: IsError %v: %s", d, res.IsError, res.Text)
			}
			if got := h.eventTypes(t, res.CallID); len(got) != 0 {
				t.Errorf("read of %s: %v in a store that took nothing", d, got)
			}
		}
	}
}

// A client that goes away mid-read, before and after the timer's commit:
// the call still ends with one final event, and its events are each
// recorded once. Passes.
func TestRedTeamCommitClientCancelsMidRead(t *testing.T) {
	h := newTimedHarness(t)
	rt := h.broker.tools["fake_query"].(*timedRead)
	for _, after := range []time.Duration{RecordRunningAfter / 4, 2 * RecordRunningAfter} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan Result, 1)
		go func() { done <- h.broker.Handle(ctx, readCall("block")) }()
		<-rt.started
		time.Sleep(after)
		cancel()
		res := <-done
		if !res.IsError {
			t.Fatalf("cancelled after %s: not an error: %s", after, res.Text)
		}
		got := h.eventTypes(t, res.CallID)
		if finals(got) != 1 || count(got, "call.received") != 1 || got[len(got)-1] != recorder.TypeCallFailed {
			t.Errorf("cancelled after %s: events %v, want each once and one final call.failed", after, got)
		}
	}
}

// A commit the store made but whose answer was lost (the connection cut
// after COMMIT reached the server) once made the broker append the call's
// events twice. The recorder now reads such a commit back before it
// reports a failure (recorder TestLostCommitAnswerIsReadBack), so an error
// from the Recorder means nothing was committed; and a call recorded with
// its outcome still ends its calls_in_flight row (cmd/airlock inflight.go).

// A read tool that panics (mcp-go's server.WithRecovery, which mcpserver
// installs, turns it into a protocol error and the server goes on). The
// broker never ends the call, and the timer commitWhileRunning started is
// never stopped: RecordRunningAfter after the call is gone it commits
// call.received, call.decided and lease.reused, leaving a call in flight
// that never ends (in production a calls_in_flight row until the process
// restarts, then call.interrupted for a call that returned long before).
// Fails today.
func TestRedTeamCommitPanicInReadLeavesACallWithoutAnEnd(t *testing.T) {
	h := newTimedHarness(t)
	func() {
		defer func() { _ = recover() }() // what server.WithRecovery does
		h.broker.Handle(context.Background(), readCall("panic"))
	}()
	returned := h.flaky.commits.Load()
	time.Sleep(3 * RecordRunningAfter)
	if late := h.flaky.commits.Load() - returned; late != 0 {
		t.Errorf("%d store transactions for the call after Handle had returned (the timer of commitWhileRunning was never stopped)", late)
	}
	evs, err := h.rec.Events(context.Background(), recorder.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	byCall := map[string][]string{}
	for _, ev := range evs {
		if ev.CallID != "" {
			byCall[ev.CallID] = append(byCall[ev.CallID], ev.Type)
		}
	}
	for id, types := range byCall {
		if finals(types) != 1 {
			t.Errorf("call %s: events %v, want exactly one final event (the panic should end it with call.failed)", id, types)
		}
	}
}

// downRecorder is a store that takes nothing while down is set.
type downRecorder struct {
	Recorder
	down atomic.Bool
}

func (r *downRecorder) AppendWith(ctx context.Context, ev recorder.Event, hook recorder.TxHook) (recorder.Event, error) {
	if r.down.Load() {
		return recorder.Event{}, errors.New("the store is down")
	}
	return r.Recorder.AppendWith(ctx, ev, hook)
}

func (r *downRecorder) AppendAllWith(ctx context.Context, evs []recorder.Event, hooks []recorder.TxHook) ([]recorder.Event, error) {
	if r.down.Load() {
		return nil, errors.New("the store is down")
	}
	return r.Recorder.AppendAllWith(ctx, evs, hooks)
}

// rogueReadsSQL is a database whose read grant includes a login role an
// application uses (reporting, say a BI tool's), and schema code that
// signals every session the caller may signal: a view, and a lower() for
// character varying, which list_tables' own lower(t.table_type) resolves to.
const rogueReadsSQL = `
CREATE ROLE rt_reporting LOGIN PASSWORD 'rt-reporting-pw';
CREATE TABLE rt_orders (id int PRIMARY KEY, status text);
INSERT INTO rt_orders VALUES (1, 'paid');
GRANT SELECT ON rt_orders TO rt_reporting;
CREATE FUNCTION public.lower(v character varying) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
	 WHERE pid <> pg_catalog.pg_backend_pid() AND usesysid IS NOT NULL AND pg_catalog.pg_has_role(usesysid, 'USAGE');
	RETURN pg_catalog.lower(v::text);
END $$;
CREATE VIEW public.rt_order_status AS SELECT id, public.lower(status::varchar) AS status FROM rt_orders;
GRANT SELECT ON public.rt_order_status TO rt_reporting;
`

const rogueReadsPolicy = `
rules:
  - name: eng-reads
    when: tool in ["query_db", "list_tables"] && "eng" in identity.groups && sql.read_only
    effect: allow
    grant: reporting
`

// The whole pipeline against a real PostgreSQL, with the store down: a call
// the facts call a plain read and ReadOnlyCall calls read-only runs (the
// broker records it only with its outcome), and from inside BEGIN READ
// ONLY it terminates the application's sessions; the agent is told its
// result was withheld, and the transcript holds nothing of the call.
// "A write never runs unrecorded (also with the store down)" does not hold
// for what READ ONLY does not stop. Fails today.
func TestRedTeamReadOnlyCallActsUnrecordedWithTheStoreDown(t *testing.T) {
	ctx := context.Background()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, rogueReadsSQL)
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	down := &downRecorder{Recorder: rec}
	res, err := postgres.NewKind().Open(tools.ResourceSpec{
		Name: "shop", Kind: "postgres", AdminDSNEnv: "DSN",
		Grants: map[string]tools.Grant{"reporting": {Roles: []string{"rt_reporting"}, TTL: 10 * time.Minute}},
	}, envMap{"DSN": pg.AdminDSN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	pol, err := policy.Parse([]byte(rogueReadsPolicy), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var b *Broker
	leases, err := lease.New(lease.Config{
		Store:   st,
		Resolve: func(name string) (tools.Resource, bool) { r, ok := b.State().Resources[name]; return r, ok },
		OnEvent: func(ctx context.Context, ev lease.Event) error { return b.RecordLease(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leases.Close(context.Background()) })
	b, err = New(Config{Tools: postgres.Tools(), Recorder: down, Leases: leases}, &State{
		Policy: pol, Resources: map[string]tools.Resource{"shop": res}, Masking: engine,
		Limits: tools.Limits{MaxRows: 100, MaxBytes: 1 << 20, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	call := func(tool string, args map[string]any) Result {
		args["resource"] = "shop"
		raw, _ := json.Marshal(args)
		return b.Handle(ctx, Call{Tool: tool, Arguments: raw, Identity: eng})
	}
	// Warm the lease while the store is up (minting needs a commit).
	if r := call("query_db", map[string]any{"sql": "SELECT id FROM rt_orders"}); r.IsError {
		t.Fatal(r.Text)
	}

	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"query_db", map[string]any{"sql": "SELECT id, status FROM rt_order_status"}},
		{"list_tables", map[string]any{}},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			victim, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=rt_reporting password=rt-reporting-pw dbname=postgres sslmode=disable", pg.Host, pg.Port))
			if err != nil {
				t.Fatal(err)
			}
			defer victim.Close(ctx)
			down.down.Store(true)
			res := call(tc.tool, tc.args)
			down.down.Store(false)
			if !res.IsError {
				t.Fatalf("with the store down the result left: %s", res.Text)
			}
			evs, err := rec.Events(ctx, recorder.Filter{CallID: res.CallID})
			if err != nil {
				t.Fatal(err)
			}
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := victim.Ping(pingCtx); err != nil {
				t.Errorf("%s with the store down (%q): the application's session was terminated (%v), and the transcript holds %d events of the call",
					tc.tool, res.Text, err, len(evs))
			}
		})
	}
}

type envMap map[string]string

func (e envMap) Getenv(k string) (string, bool)  { v, ok := e[k]; return v, ok }
func (e envMap) ReadFile(string) ([]byte, error) { return nil, errors.New("no files") }
