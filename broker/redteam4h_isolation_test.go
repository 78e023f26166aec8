package broker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4h: the read-back of a lost commit, and the append itself,
// assume READ COMMITTED: the statement that reads after the chain lock
// sees what was committed while it waited for it. airlock never asks for
// an isolation level; it takes the database's default. A database (or
// role, or DSN) with default_transaction_isolation = 'repeatable read' or
// 'serializable', a common DBA choice, gives every transaction one
// snapshot, taken at its first statement: the one that waits for the chain
// lock. Whatever the lost transaction committed while the read-back waited
// for the lock is then invisible to the read-back, which says "not made".

// rt4hIsoDB is a fresh PostgreSQL database whose sessions default to iso.
func rt4hIsoDB(t *testing.T, iso string) (u string, st *store.Store) {
	t.Helper()
	var pgb *rt4eBackend
	for _, b := range rt4eBackends(t) {
		if b.pg != nil {
			pgb = b
		}
	}
	u = pgb.url(t)
	if iso != "" {
		pgb.pg.Exec(t, fmt.Sprintf("ALTER DATABASE %s SET default_transaction_isolation = '%s'", pgb.db, iso))
	}
	return u, rt4eOpen(t, u)
}

// Attack 1: the COMMIT reaches the server, its answer is lost, and the
// server takes a second to finish it (a slow disk, a synchronous standby).
// The read-back waits for the chain lock the committing transaction
// holds, as designed, but under REPEATABLE READ it then reads with the
// snapshot it took before the wait: no row. The append is reported failed
// ("not made", not ErrOutcomeUnknown) while its event is in the chain.
func TestRedTeam4hPGReadBackRepeatableRead(t *testing.T) {
	for _, iso := range []string{"", "repeatable read", "serializable"} {
		name := iso
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			u, st := rt4hIsoDB(t, iso)
			cut := &rt4fCut{partition: 50 * time.Millisecond}
			rec, err := recorder.New(rt4fCutDB(t, u, cut))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rec.Append(ctx, recorder.Event{Type: "rt4h.warmup"}); err != nil {
				t.Fatal(err)
			}
			rt4fSlowEvent(t, st.DB(), "rt4h.slow", time.Second)
			cut.armed.Store(true)
			s := time.Now()
			_, aerr := rec.Append(ctx, recorder.Event{Type: "rt4h.slow"})
			took := time.Since(s)
			if cut.cuts.Load() != 1 {
				t.Fatalf("the commit was not cut")
			}
			time.Sleep(1500 * time.Millisecond) // the server has long finished
			var n int
			if err := st.DB().QueryRow(`SELECT count(*) FROM transcript_events WHERE type = 'rt4h.slow'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			t.Logf("isolation %q: Append = %v after %v; stored %d", name, aerr, took.Round(time.Millisecond), n)
			if aerr != nil && !errors.Is(aerr, recorder.ErrOutcomeUnknown) && n != 0 {
				t.Errorf("isolation %q: the append was reported not made (%v), but its event is stored", name, aerr)
			}
			if aerr == nil && n != 1 {
				t.Errorf("reported made, stored %d times", n)
			}
		})
	}
}

// Attack 1, at the broker: a call's first commit (call.received with
// call.decided) is lost so, and the broker, told "not made", appends them
// again with the call's call.refused: under REPEATABLE READ the transcript
// holds call.received and call.decided twice for one call, and the agent
// is told the store is unavailable, not that the transcript may hold it.
func TestRedTeam4hPGLostCallCommitRepeatableRead(t *testing.T) {
	ctx := context.Background()
	u, st := rt4hIsoDB(t, "repeatable read")
	cut := &rt4fCut{partition: 50 * time.Millisecond}
	rec, err := recorder.New(rt4fCutDB(t, u, cut))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4h.warmup"}); err != nil {
		t.Fatal(err)
	}
	b, _, tool := rt4fBroker(t, st, rec)
	rt4fSlowEvent(t, st.DB(), "call.decided", 500*time.Millisecond)
	cut.armed.Store(true)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(`{"resource":"db1","query":"select 1"}`), Identity: eng})
	if cut.cuts.Load() != 1 {
		t.Fatalf("the commit was not cut")
	}
	time.Sleep(time.Second)
	n := rt4fCallEvents(t, rec, r.CallID)
	t.Logf("call: %q; ran %d; its events: %v", r.Text, tool.executed, n)
	if n[recorder.TypeCallReceived] > 1 || n["call.decided"] > 1 {
		t.Errorf("call %s: the transcript holds %d call.received and %d call.decided for one call", r.CallID, n[recorder.TypeCallReceived], n["call.decided"])
	}
	if !verifyOK(t, rec) {
		t.Errorf("the chain does not verify")
	}
}

// Attack 2: two replicas append at once on a database that defaults to
// REPEATABLE READ. The one that waited for the chain lock reads the head
// with the snapshot it took before the wait, so it extends a head that is
// no longer the head: its insert collides on seq (fail closed, no fork),
// and the call it records is refused. Every append should succeed.
func TestRedTeam4hPGTwoReplicasRepeatableRead(t *testing.T) {
	ctx := context.Background()
	u, st := rt4hIsoDB(t, "repeatable read")
	st2 := rt4eOpen(t, u)
	var recs []*recorder.Recorder
	for _, s := range []*store.Store{st, st2} {
		rec, err := recorder.New(s.DB())
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fails int
		first error
		total int
	)
	for i, rec := range recs {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 25 {
					_, err := rec.Append(ctx, recorder.Event{Type: "rt4h.rr", Data: json.RawMessage(fmt.Sprintf(`{"r":%d,"g":%d,"k":%d}`, i, g, k))})
					mu.Lock()
					total++
					if err != nil {
						fails++
						if first == nil {
							first = err
						}
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("%d of %d appends failed; first: %v", fails, total, first)
	if fails > 0 {
		t.Errorf("two replicas on a REPEATABLE READ database: %d of %d appends failed (%v)", fails, total, first)
	}
	if !verifyOK(t, recs[0]) {
		t.Errorf("the chain does not verify")
	}
}

// verifyOK runs recorder Verify (transcripts verify) and logs its report.
func verifyOK(t *testing.T, rec *recorder.Recorder) bool {
	t.Helper()
	rep, err := rec.Verify(context.Background())
	t.Logf("verify: %+v, %v", rep, err)
	return err == nil && rep.OK
}

// The fix proposed for attacks 1 and 2, shown on the same database: a
// transaction begun READ COMMITTED explicitly (sql.TxOptions, which pgx
// sends as BEGIN ISOLATION LEVEL READ COMMITTED) reads, after waiting for
// the chain lock, what the holder committed meanwhile.
func TestRedTeam4hPGFixReadCommittedTx(t *testing.T) {
	ctx := context.Background()
	_, st := rt4hIsoDB(t, "repeatable read")
	db := st.DB()
	if _, err := db.Exec(`CREATE TABLE rt4h_fix (x int)`); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []*sql.TxOptions{nil, {Isolation: sql.LevelReadCommitted}} {
		holder, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Exec(`SELECT pg_advisory_xact_lock(4242, 0)`); err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Exec(`INSERT INTO rt4h_fix VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		go func() { time.Sleep(300 * time.Millisecond); _ = holder.Commit() }()
		tx, err := db.BeginTx(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`SELECT pg_advisory_xact_lock(4242, 0)`); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM rt4h_fix`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback()
		t.Logf("tx options %+v: after the lock it sees %d rows", opts, n)
		if opts != nil && n == 0 {
			t.Errorf("READ COMMITTED tx did not see the commit made while it waited")
		}
	}
}
