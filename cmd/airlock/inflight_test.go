package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/recorder"
)

// callEvents are the events of one allowed call, in order.
var callEvents = []string{recorder.TypeCallReceived, recorder.TypeCallDecided, recorder.TypeCallExecuted, recorder.TypeCallCompleted}

func openInflight(t *testing.T, u string) (*inflightRecorder, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	return &inflightRecorder{rec: rec, store: st, replica: "r1"}, st
}

// TestInflightRecorder runs against a SQLite store and a real PostgreSQL
// one: a call is in calls_in_flight from call.received to its final event,
// and when the row cannot be written or removed the event is not recorded
// either. Under CI=true a missing PostgreSQL fails the test.
func TestInflightRecorder(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		testInflightRecorder(t, "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		testInflightRecorder(t, pgStoreURL(t, testenv.PostgreSQL(t), "inflight"))
	})
}

func testInflightRecorder(t *testing.T, u string) {
	ctx := context.Background()
	ir, st := openInflight(t, u)
	inFlight := func(id string) bool {
		t.Helper()
		var n int
		if err := st.ReadDB().QueryRowContext(ctx, st.Dialect().Rebind(`SELECT count(*) FROM calls_in_flight WHERE call_id = ?`), id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	events := func(id string) []string {
		t.Helper()
		evs, err := ir.rec.Events(ctx, recorder.Filter{CallID: id})
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, ev := range evs {
			types = append(types, ev.Type)
		}
		return types
	}
	exec := func(q string) {
		t.Helper()
		if _, err := st.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	appendEv := func(id, typ string) error {
		_, err := ir.AppendWith(ctx, recorder.Event{Type: typ, CallID: id, SessionID: "s1", Subject: "alice", Tool: "query_db", Resource: "orders"}, nil)
		return err
	}

	for i, typ := range callEvents {
		if err := appendEv("c1", typ); err != nil {
			t.Fatalf("Append(%s): %v", typ, err)
		}
		if want := i < len(callEvents)-1; inFlight("c1") != want {
			t.Fatalf("after %s: in flight = %v; want %v", typ, !want, want)
		}
	}
	cs, err := st.TakeAbandonedCalls(ctx, time.Now(), "r1")
	if err != nil || len(cs) != 0 {
		t.Errorf("calls left in flight = %+v, %v; want none", cs, err)
	}

	// The row cannot be written: call.received is not recorded.
	exec(`ALTER TABLE calls_in_flight RENAME TO calls_in_flight_away`)
	if err := appendEv("c2", recorder.TypeCallReceived); err == nil {
		t.Error("Append(call.received) with no calls_in_flight table succeeded")
	}
	exec(`ALTER TABLE calls_in_flight_away RENAME TO calls_in_flight`)
	if got := events("c2"); len(got) != 0 || inFlight("c2") {
		t.Errorf("after the failed call.received: events %v, in flight %v; want none", got, inFlight("c2"))
	}

	// The row cannot be removed: the final event is not recorded, and the
	// call stays in flight for the reaper.
	if err := appendEv("c3", recorder.TypeCallReceived); err != nil {
		t.Fatal(err)
	}
	exec(`ALTER TABLE calls_in_flight RENAME TO calls_in_flight_away`)
	if err := appendEv("c3", recorder.TypeCallFailed); err == nil {
		t.Error("Append(call.failed) with no calls_in_flight table succeeded")
	}
	exec(`ALTER TABLE calls_in_flight_away RENAME TO calls_in_flight`)
	if got := events("c3"); len(got) != 1 || got[0] != recorder.TypeCallReceived || !inFlight("c3") {
		t.Errorf("after the failed call.failed: events %v, in flight %v; want call.received only, still in flight", got, inFlight("c3"))
	}
	// Appended together (the broker's call.received with a refusal before
	// policy): in and out of flight in one transaction.
	both := []recorder.Event{{Type: recorder.TypeCallReceived, CallID: "c4", Tool: "query_db"}, {Type: "call.refused", CallID: "c4", Tool: "query_db"}}
	if _, err := ir.AppendAllWith(ctx, both, nil); err != nil {
		t.Fatal(err)
	}
	if got := events("c4"); len(got) != 2 || inFlight("c4") {
		t.Errorf("after call.received and call.refused together: events %v, in flight %v; want both, not in flight", got, inFlight("c4"))
	}
	rep, err := ir.rec.Verify(ctx)
	if err != nil || !rep.OK || rep.Count != int64(len(callEvents)+3) {
		t.Errorf("Verify = %+v, %v; want %d good events", rep, err, len(callEvents)+3)
	}
}

// TestInflightStoreTransactions counts PostgreSQL's write transactions
// (transaction ids assigned, autovacuum off, nothing else on the server)
// over calls through the broker's recorder, appended as the broker appends
// them (call.received with call.decided, then one by one): one per
// append, none more for calls_in_flight, so 3 for a call of 4 events.
// Under CI=true a missing PostgreSQL fails the test.
func TestInflightStoreTransactions(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, `ALTER SYSTEM SET autovacuum = off`)
	pg.Exec(t, `SELECT pg_reload_conf()`)
	ir, _ := openInflight(t, pgStoreURL(t, pg, "xacts"))
	ctx := context.Background()
	xid := func() int64 {
		t.Helper()
		// pg_current_xact_id assigns its own transaction an id.
		n, err := strconv.ParseInt(pg.Query(t, "postgres", `SELECT pg_current_xact_id()::text`)[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const calls = 20
	before := xid()
	for i := range calls {
		id := "c" + strconv.Itoa(i)
		ev := func(typ string) recorder.Event {
			return recorder.Event{Type: typ, CallID: id, Tool: "query_db", Resource: "orders"}
		}
		if _, err := ir.AppendAllWith(ctx, []recorder.Event{ev(callEvents[0]), ev(callEvents[1])}, nil); err != nil {
			t.Fatal(err)
		}
		for _, typ := range callEvents[2:] {
			if _, err := ir.AppendWith(ctx, ev(typ), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	writes := xid() - before - 1
	t.Logf("%d calls of %d events: %d write transactions (%.1f per call)", calls, len(callEvents), writes, float64(writes)/calls)
	if want := int64(calls * (len(callEvents) - 1)); writes != want {
		t.Errorf("write transactions = %d; want %d, one per append", writes, want)
	}
}

// TestInflightGroupCommit makes calls from eight goroutines at once through
// the broker's recorder on a real PostgreSQL: their events share
// transactions (group commit), so there are fewer write transactions than
// events, and still one verifiable chain with every event and no call left
// in flight. Under CI=true a missing PostgreSQL fails the test.
func TestInflightGroupCommit(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, `ALTER SYSTEM SET autovacuum = off`)
	pg.Exec(t, `SELECT pg_reload_conf()`)
	ir, st := openInflight(t, pgStoreURL(t, pg, "groupcommit"))
	ctx := context.Background()
	xid := func() int64 {
		t.Helper()
		n, err := strconv.ParseInt(pg.Query(t, "postgres", `SELECT pg_current_xact_id()::text`)[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const workers, calls = 8, 10
	before := xid()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				id := fmt.Sprintf("w%d-c%d", w, i)
				for _, typ := range callEvents {
					if _, err := ir.AppendWith(ctx, recorder.Event{Type: typ, CallID: id, Tool: "query_db", Resource: "orders"}, nil); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	writes := xid() - before - 1
	events := int64(workers * calls * len(callEvents))
	t.Logf("%d concurrent calls of %d events: %d write transactions (%.2f events per transaction)", workers*calls, len(callEvents), writes, float64(events)/float64(writes))
	if writes >= events {
		t.Errorf("write transactions = %d for %d events; want fewer (concurrent appends committed together)", writes, events)
	}
	rep, err := ir.rec.Verify(ctx)
	if err != nil || !rep.OK || rep.Count != events {
		t.Errorf("Verify = %+v, %v; want %d good events", rep, err, events)
	}
	if cs, err := st.TakeAbandonedCalls(ctx, time.Now().Add(time.Hour), "r1"); err != nil || len(cs) != 0 {
		t.Errorf("calls left in flight = %d, %v; want none", len(cs), err)
	}
}

// BenchmarkInflightCall records one call's events (received, decided,
// executed, completed) through the broker's recorder on a SQLite file
// store, as `airlock serve` does by default.
func BenchmarkInflightCall(b *testing.B) {
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(b.TempDir(), "airlock.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rec, err := recorder.New(st.DB())
	if err != nil {
		b.Fatal(err)
	}
	ir := &inflightRecorder{rec: rec, store: st, replica: "r1"}
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		id := "c" + strconv.Itoa(i)
		for _, typ := range callEvents {
			if _, err := ir.AppendWith(ctx, recorder.Event{Type: typ, CallID: id, Tool: "query_db", Resource: "orders"}, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}
