package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Red team 4i: the "suspects" of a group commit (commit.go writeBatch).
// These tests build a batch by hand and have the recorder lead it, so
// which request sits where in the one transaction is not left to timing.

// rt4iReq is a request as enqueue makes it.
func rt4iReq(t *testing.T, r *Recorder, typ string, n int, hook func(j int) TxHook) *request {
	t.Helper()
	q := &request{deadline: time.Now().Add(r.timeout), done: make(chan struct{})}
	for j := range n {
		ev, err := ready(Event{Type: typ, Data: []byte(fmt.Sprintf(`{"j":%d}`, j))}, r.now)
		if err != nil {
			t.Fatal(err)
		}
		q.evs = append(q.evs, ev)
		if hook != nil {
			q.hooks = append(q.hooks, hook(j))
		} else {
			q.hooks = append(q.hooks, nil)
		}
	}
	return q
}

// rt4iLead has r lead batch, as enqueue's leader does (its recover
// included), and waits up to wait for every request to be finished; it
// reports the requests left unfinished.
func rt4iLead(t *testing.T, r *Recorder, batch []*request, wait time.Duration) (hung []int) {
	t.Helper()
	r.mu.Lock()
	r.queue = append(r.queue, batch...)
	r.leading = true
	r.mu.Unlock()
	go r.lead()
	until := time.Now().Add(wait)
	for i, q := range batch {
		select {
		case <-q.done:
		case <-time.After(time.Until(until)):
			hung = append(hung, i)
		}
	}
	return hung
}

// rt4iStored counts the stored events of type typ and checks they are
// contiguous in the chain and in their request's order (data j = 0, 1, ...).
func rt4iStored(t *testing.T, r *Recorder, typ string) int {
	t.Helper()
	rows, err := r.db.Query(r.q(`SELECT seq, data FROM transcript_events WHERE type = ? ORDER BY seq`), typ)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	var first int64
	for rows.Next() {
		var seq int64
		var data sql.NullString
		if err := rows.Scan(&seq, &data); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			first = seq
		}
		if seq != first+int64(n) || data.String != fmt.Sprintf(`{"j":%d}`, n) {
			t.Errorf("%s: event %d stored at seq %d with %s: not in its request's order, or not next to the others", typ, n, seq, data.String)
		}
		n++
	}
	return n
}

// rt4iCheck asserts the recorder's promises for a request whose events are
// of type typ, n to a request: told made iff stored, all or none.
func rt4iCheck(t *testing.T, r *Recorder, q *request, typ string, n int) {
	t.Helper()
	got := rt4iStored(t, r, typ)
	switch {
	case q.err == nil && got != n:
		t.Errorf("%s: told made, %d of its %d events stored", typ, got, n)
	case q.err != nil && !errors.Is(q.err, ErrOutcomeUnknown) && got != 0:
		t.Errorf("%s: told not made (%v), %d of its %d events stored", typ, q.err, got, n)
	}
}

// rt4iKiller ends, from another connection, the backend of the
// transaction it runs in: what a server that ends a transaction under an
// append (idle_in_transaction_session_timeout, a failover) looks like to
// the statement that comes next.
func rt4iKiller(t *testing.T, other *sql.DB) TxHook {
	return func(ctx context.Context, tx *sql.Tx) error {
		var pid int
		if err := tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		_, err := other.Exec(`SELECT pg_terminate_backend($1)`, pid)
		time.Sleep(100 * time.Millisecond) // the backend is gone
		return err
	}
}

// Attack 1: commit.go's fix takes a transaction the server ended under a
// batch for the fault of whichever request's statement came next, and
// retries that one alone. But when the request that stalled (or whose
// hook ended the transaction) is the batch's last, nothing comes next but
// the COMMIT: the commit fails, the read-back finds it not made, and every
// request of the batch is told it failed, the innocent ones included: a
// transaction the server ended is still blamed on the neighbours. On the
// broker, each of those is a call refused for another's stall.
func TestRedTeam4iPGEndedAtCommitBlamesBatch(t *testing.T) {
	b := postgresBackend(t)
	driver, dsn := b.dsn(t)
	db := openDSN(t, driver, dsn)
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	other := openDSN(t, driver, dsn)
	if _, err := r.Append(context.Background(), Event{Type: "rt4i.warmup"}); err != nil {
		t.Fatal(err)
	}
	t.Run("killed", func(t *testing.T) {
		var runs atomic.Int32
		innocent := rt4iReq(t, r, "rt4i.innocent1", 2, nil)
		ender := rt4iReq(t, r, "rt4i.ender1", 1, func(int) TxHook {
			kill := rt4iKiller(t, other)
			return func(ctx context.Context, tx *sql.Tx) error {
				if runs.Add(1) == 1 {
					return kill(ctx, tx)
				}
				return nil
			}
		})
		if hung := rt4iLead(t, r, []*request{innocent, ender}, 30*time.Second); len(hung) > 0 {
			t.Fatalf("requests %v never finished", hung)
		}
		t.Logf("innocent: %v; ender (hook ran %d times): %v", innocent.err, runs.Load(), ender.err)
		rt4iCheck(t, r, innocent, "rt4i.innocent1", 2)
		rt4iCheck(t, r, ender, "rt4i.ender1", 1)
		if innocent.err != nil {
			t.Errorf("the innocent request, before the one whose transaction the server ended, failed: %v", innocent.err)
		}
	})
	t.Run("stalled", func(t *testing.T) {
		var runs atomic.Int32
		innocent := rt4iReq(t, r, "rt4i.innocent2", 1, nil)
		stalled := rt4iReq(t, r, "rt4i.stalled2", 1, func(int) TxHook {
			return func(ctx context.Context, tx *sql.Tx) error {
				if runs.Add(1) == 1 {
					time.Sleep(chainIdleTimeout + 500*time.Millisecond) // the process stalls once
				}
				return nil
			}
		})
		if hung := rt4iLead(t, r, []*request{innocent, stalled}, 30*time.Second); len(hung) > 0 {
			t.Fatalf("requests %v never finished", hung)
		}
		t.Logf("innocent: %v; stalled (hook ran %d times): %v", innocent.err, runs.Load(), stalled.err)
		rt4iCheck(t, r, innocent, "rt4i.innocent2", 1)
		rt4iCheck(t, r, stalled, "rt4i.stalled2", 1)
		if innocent.err != nil {
			t.Errorf("the innocent request, in the batch of the one that stalled past the idle timeout, failed: %v", innocent.err)
		}
	})
	if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
		t.Errorf("verify: %+v %v", rep, err)
	}
}

// Attack 2: every request of a batch is a suspect: each one's hook ends
// the transaction it runs in the first time it runs (a connection that
// keeps dying). Requests of several events with hooks that write a side
// table: whatever each is told, told made must mean its events stored once,
// in order and together, and its hooks' rows once; told not made, none.
func TestRedTeam4iPGEverySuspect(t *testing.T) {
	b := postgresBackend(t)
	driver, dsn := b.dsn(t)
	db := openDSN(t, driver, dsn)
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	other := openDSN(t, driver, dsn)
	if _, err := db.Exec(`CREATE TABLE rt4i_side (typ TEXT, j INT)`); err != nil {
		t.Fatal(err)
	}
	const n = 6
	var batch []*request
	for i := range n {
		typ := fmt.Sprintf("rt4i.all%d", i)
		var runs atomic.Int32
		kill := rt4iKiller(t, other)
		batch = append(batch, rt4iReq(t, r, typ, 3, func(j int) TxHook {
			return func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO rt4i_side VALUES ($1, $2)`, typ, j); err != nil {
					return err
				}
				if j == 1 && runs.Add(1) == 1 {
					return kill(ctx, tx)
				}
				return nil
			}
		}))
	}
	if hung := rt4iLead(t, r, batch, 60*time.Second); len(hung) > 0 {
		t.Fatalf("requests %v never finished", hung)
	}
	for i, q := range batch {
		typ := fmt.Sprintf("rt4i.all%d", i)
		t.Logf("%s: %v", typ, q.err)
		rt4iCheck(t, r, q, typ, 3)
		var side int
		if err := db.QueryRow(`SELECT count(*) FROM rt4i_side WHERE typ = $1`, typ).Scan(&side); err != nil {
			t.Fatal(err)
		}
		if stored := rt4iStored(t, r, typ); side != stored {
			t.Errorf("%s: its hooks' rows %d, its events %d", typ, side, stored)
		}
	}
	if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
		t.Errorf("verify: %+v %v", rep, err)
	}
}

// Attack 3: a hook that panics in its retry alone. The leader's recover
// then finishes every request not yet finished with the panic, so another
// suspect, waiting for its own retry, is told it failed with a neighbour's
// panic and never goes again: commit.go says a suspect "gets its own
// error, never a neighbour's". Fail closed, but an innocent append (a
// call, a decision) is refused for another's fault.
func TestRedTeam4iPanicInSuspectRetry(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			r, err := New(b.openDB(t))
			if err != nil {
				t.Fatal(err)
			}
			var aRuns, bRuns atomic.Int32
			qa := rt4iReq(t, r, "rt4i.panicky", 1, func(int) TxHook {
				return func(ctx context.Context, tx *sql.Tx) error {
					if aRuns.Add(1) == 1 {
						return errors.New("transient")
					}
					panic("rt4i: the hook panics when alone")
				}
			})
			qb := rt4iReq(t, r, "rt4i.transient", 2, func(j int) TxHook {
				return func(ctx context.Context, tx *sql.Tx) error {
					if j == 0 && bRuns.Add(1) == 1 {
						return errors.New("transient")
					}
					return nil
				}
			})
			qc := rt4iReq(t, r, "rt4i.plain", 1, nil)
			if hung := rt4iLead(t, r, []*request{qa, qb, qc}, 20*time.Second); len(hung) > 0 {
				t.Fatalf("requests %v never finished", hung)
			}
			t.Logf("panicky: %v; transient: %v; plain: %v", qa.err, qb.err, qc.err)
			rt4iCheck(t, r, qa, "rt4i.panicky", 1)
			rt4iCheck(t, r, qb, "rt4i.transient", 2)
			rt4iCheck(t, r, qc, "rt4i.plain", 1)
			if qa.err == nil {
				t.Errorf("the panicking request was told made")
			}
			if qb.err != nil && strings.Contains(qb.err.Error(), "panic") {
				t.Errorf("a suspect was given its neighbour's panic and never retried: %v", qb.err)
			}
			if _, err := r.Append(context.Background(), Event{Type: "rt4i.after"}); err != nil {
				t.Errorf("the next append: %v", err)
			}
		})
	}
}

// Attack 4: a hook that ends its goroutine (runtime.Goexit, which is what
// t.FailNow or log.Fatal-less helpers do) instead of returning or
// panicking. recover() is nil then, so the leader's recover finishes no
// one: every other append of the batch waits for ever (a hung caller).
func TestRedTeam4iGoexitInHook(t *testing.T) {
	r, err := New(sqliteBackend.openDB(t))
	if err != nil {
		t.Fatal(err)
	}
	qa := rt4iReq(t, r, "rt4i.goexit", 1, func(int) TxHook {
		return func(ctx context.Context, tx *sql.Tx) error { runtime.Goexit(); return nil }
	})
	qb := rt4iReq(t, r, "rt4i.neighbour", 1, nil)
	hung := rt4iLead(t, r, []*request{qa, qb}, 5*time.Second)
	if len(hung) > 0 {
		t.Errorf("requests %v of the batch were never finished: their callers hang", hung)
	}
}
