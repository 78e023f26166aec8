package recorder

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// rt4jLeaderStack logs the stack of a goroutine stuck in tryBatch.
func rt4jLeaderStack(t *testing.T) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "tryBatch") {
			t.Logf("the leader:\n%s", g)
			return
		}
	}
}

// Red team 4j: what a hook that panics, or ends its goroutine, leaves
// behind: the transaction, the connection it ran on (SQLite's one writer
// connection), the goroutine that led the batch, and the appends after it.

// rt4jAfter appends one event and fails the test if it does not return
// within wait (the append's own timeout bounds it: a hang is a leader
// that never finished).
func rt4jAfter(t *testing.T, r *Recorder, typ string, wait time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := r.Append(context.Background(), Event{Type: typ})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the next append after the batch: %v", err)
		}
	case <-time.After(wait):
		t.Errorf("the next append after the batch did not return in %v (its timeout is %v): the recorder is stuck", wait, r.timeout)
	}
}

// rt4jPGIdleInTx counts the backends of the database, other than this
// query's, left inside a transaction.
func rt4jPGIdleInTx(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Attack 1: a hook that panics in the middle of its own statements (rows
// open and half read, a statement prepared on tx) fails its own request,
// and leaves no transaction open on the connection it ran on: the retry
// of the others, and the next append, go through on that same connection
// (SQLite's only writer), and PostgreSQL has no backend left idle in a
// transaction.
func TestRedTeam4jPanicMidStatement(t *testing.T) {
	hooks := map[string]func(ctx context.Context, tx *sql.Tx) error{
		"rows-open": func(ctx context.Context, tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT seq, hash FROM transcript_events ORDER BY seq`)
			if err != nil {
				return err
			}
			rows.Next()
			var seq int64
			var hash string
			_ = rows.Scan(&seq, &hash)
			panic("rt4j: panic with rows open")
		},
		"stmt-prepared": func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.PrepareContext(ctx, `SELECT count(*) FROM transcript_events`); err != nil {
				return err
			}
			panic("rt4j: panic with a statement prepared")
		},
	}
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			db := b.openDB(t)
			r, err := New(db, WithAppendTimeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if _, err := r.Append(context.Background(), Event{Type: "rt4j.seed"}); err != nil {
					t.Fatalf("seed %d: %v", i, err)
				}
			}
			for name, hook := range hooks {
				t.Run(name, func(t *testing.T) {
					qa := rt4iReq(t, r, "rt4j.before."+name, 1, nil)
					qp := rt4iReq(t, r, "rt4j.panics."+name, 1, func(int) TxHook { return hook })
					qc := rt4iReq(t, r, "rt4j.after."+name, 2, nil)
					if hung := rt4iLead(t, r, []*request{qa, qp, qc}, 15*time.Second); len(hung) > 0 {
						t.Fatalf("requests %v never finished", hung)
					}
					t.Logf("before: %v; panics: %v; after: %v", qa.err, qp.err, qc.err)
					rt4iCheck(t, r, qa, "rt4j.before."+name, 1)
					rt4iCheck(t, r, qp, "rt4j.panics."+name, 1)
					rt4iCheck(t, r, qc, "rt4j.after."+name, 2)
					if qp.err == nil {
						t.Errorf("the request whose hook panicked was told made")
					}
					if qa.err != nil || qc.err != nil {
						t.Errorf("a neighbour of the panicking hook failed: %v / %v", qa.err, qc.err)
					}
					rt4jAfter(t, r, "rt4j.next."+name, 15*time.Second)
					if b.name == "postgres" {
						time.Sleep(200 * time.Millisecond)
						if n := rt4jPGIdleInTx(t, db); n > 0 {
							t.Errorf("%d backends left idle in a transaction after the panic", n)
						}
					}
				})
			}
			if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
				t.Errorf("verify: %+v %v", rep, err)
			}
		})
	}
}

// Attack 2: a hook that stops with a row scanned into sql.RawBytes and its
// rows not closed (a panic that skips the rows.Close after the loop, or an
// early return). database/sql keeps the rows' lock for the RawBytes'
// memory until Next or Close, and Tx.Rollback waits for the rows to close:
// the leader's deferred tx.Rollback never returns. A fail-closed recorder
// must still answer every append: the one in the wedged batch a little
// past its timeout (an error; ErrOutcomeUnknown, as the writer holds it),
// and every later one at once, refused and not written, while the writer
// is stuck.
func TestRedTeam4jRawBytesHookWedgesRecorder(t *testing.T) {
	for _, mode := range []string{"panic", "error"} {
		for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
			t.Run(mode+"/"+b.name, func(t *testing.T) {
				r, err := New(b.openDB(t), WithAppendTimeout(2*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				r.late = 500 * time.Millisecond
				if _, err := r.Append(context.Background(), Event{Type: "rt4j.seed"}); err != nil {
					t.Fatal(err)
				}
				hook := func(ctx context.Context, tx *sql.Tx) error {
					rows, err := tx.QueryContext(ctx, `SELECT hash FROM transcript_events`)
					if err != nil {
						return err
					}
					rows.Next()
					var raw sql.RawBytes
					if err := rows.Scan(&raw); err != nil {
						return err
					}
					if mode == "panic" {
						panic("rt4j: panic while a RawBytes row is held")
					}
					return errors.New("rt4j: an early return while a RawBytes row is held")
				}
				done := make(chan error, 1)
				go func() {
					_, err := r.AppendWith(context.Background(), Event{Type: "rt4j.rawbytes"}, hook)
					done <- err
				}()
				select {
				case err := <-done:
					t.Logf("the wedged append: %v", err)
					if !errors.Is(err, ErrOutcomeUnknown) {
						t.Errorf("the append whose hook wedged its transaction: %v; want ErrOutcomeUnknown", err)
					}
				case <-time.After(2*time.Second + r.late + 3*time.Second):
					t.Errorf("the append whose hook wedged its transaction did not return past its timeout and the writer's bound")
					rt4jLeaderStack(t)
				}
				if !r.Stuck() {
					t.Errorf("the recorder does not report its writer stuck")
				}
				started := time.Now()
				_, err = r.Append(context.Background(), Event{Type: "rt4j.later"})
				t.Logf("the next append: %v after %v", err, time.Since(started).Round(time.Millisecond))
				if !errors.Is(err, errWriterStuck) || time.Since(started) > time.Second {
					t.Errorf("the next append behind a stuck writer: %v after %v; want it refused at once (errWriterStuck)", err, time.Since(started))
				}
			})
		}
	}
}

// Attack 3: a hook that calls runtime.Goexit. The goroutine that runs the
// batch's hooks must not be a caller's: every caller, the one whose own
// hook it was included, returns from its append (with an error), and the
// recorder goes on.
func TestRedTeam4jGoexitEndsLeadingCaller(t *testing.T) {
	r, err := New(sqliteBackend.openDB(t))
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() {
		_, err := r.AppendWith(context.Background(), Event{Type: "rt4j.goexit"}, func(ctx context.Context, tx *sql.Tx) error {
			runtime.Goexit()
			return nil
		})
		returned <- err
	}()
	select {
	case err := <-returned:
		t.Logf("the caller returned: %v", err)
		if err == nil {
			t.Errorf("the append whose hook called Goexit was told made")
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the caller's goroutine never returned from its append: a hook ended it")
	}
	rt4iCheck(t, r, &request{err: errors.New("not made")}, "rt4j.goexit", 1)
	rt4jAfter(t, r, "rt4j.next", 10*time.Second)
}

// Attack 4: Goexit in the retry-alone phase, with another suspect still to
// go: every request must be told made iff stored, and the recorder must go
// on.
func TestRedTeam4jGoexitInSuspectRetry(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			r, err := New(b.openDB(t))
			if err != nil {
				t.Fatal(err)
			}
			var aRuns, bRuns int
			qa := rt4iReq(t, r, "rt4j.goexit.alone", 1, func(int) TxHook {
				return func(ctx context.Context, tx *sql.Tx) error {
					aRuns++
					if aRuns == 1 {
						return errors.New("transient")
					}
					runtime.Goexit()
					return nil
				}
			})
			qb := rt4iReq(t, r, "rt4j.suspect2", 2, func(j int) TxHook {
				return func(ctx context.Context, tx *sql.Tx) error {
					if j == 0 {
						bRuns++
						if bRuns == 1 {
							return errors.New("transient")
						}
					}
					return nil
				}
			})
			qc := rt4iReq(t, r, "rt4j.plain", 1, nil)
			if hung := rt4iLead(t, r, []*request{qa, qb, qc}, 20*time.Second); len(hung) > 0 {
				t.Fatalf("requests %v never finished", hung)
			}
			t.Logf("goexit: %v; suspect2: %v; plain: %v", qa.err, qb.err, qc.err)
			rt4iCheck(t, r, qa, "rt4j.goexit.alone", 1)
			rt4iCheck(t, r, qb, "rt4j.suspect2", 2)
			rt4iCheck(t, r, qc, "rt4j.plain", 1)
			if qa.err == nil {
				t.Errorf("the request whose hook called Goexit was told made")
			}
			rt4jAfter(t, r, "rt4j.next", 15*time.Second)
			if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
				t.Errorf("verify: %+v %v", rep, err)
			}
		})
	}
}
