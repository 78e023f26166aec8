package broker

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/recorder"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Red team 4h: what the chain's idle timeout does to transactions that are
// not lost.

// Attack 4: a group commit in which one append's hook keeps the
// transaction idle past the chain's idle timeout (the process stalled:
// CPU starvation, a paused VM, a hook waiting on something in-process).
// The server ends the transaction; the next statement, another append's
// insert, fails, and the recorder takes that append for the one that
// failed. commit.go promises that an event is never "lost because another
// failed": the innocent append B (no hook) should be committed. Whatever
// happens, no append may be told made and not be stored, or told not made
// and be stored, and the next append must work.
func TestRedTeam4hPGStalledHookBlamesNeighbour(t *testing.T) {
	ctx := context.Background()
	_, st := rt4hIsoDB(t, "")
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4h.warmup"}); err != nil {
		t.Fatal(err)
	}
	type res struct {
		typ string
		err error
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out []res
	)
	run := func(typ string, hook recorder.TxHook) {
		defer wg.Done()
		_, err := rec.AppendWith(ctx, recorder.Event{Type: typ}, hook)
		mu.Lock()
		out = append(out, res{typ, err})
		mu.Unlock()
	}
	// L leads a batch that takes 300 ms on the server; A and B queue
	// behind it and are written together in the next batch, A first.
	wg.Add(3)
	go run("rt4h.leader", func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_sleep(0.3)`)
		return err
	})
	time.Sleep(50 * time.Millisecond)
	stalls := 0
	go run("rt4h.stalled", func(ctx context.Context, tx *sql.Tx) error {
		stalls++
		if stalls == 1 {
			time.Sleep(5500 * time.Millisecond) // the process stalls once
		}
		return nil
	})
	time.Sleep(50 * time.Millisecond)
	go run("rt4h.innocent", nil)
	wg.Wait()
	for _, r := range out {
		n := rt4hCount(t, st.DB(), r.typ)
		t.Logf("%s: %v; stored %d", r.typ, r.err, n)
		switch {
		case r.err == nil && n != 1:
			t.Errorf("%s: told made, stored %d times", r.typ, n)
		case r.err != nil && !errors.Is(r.err, recorder.ErrOutcomeUnknown) && n != 0:
			t.Errorf("%s: told not made (%v), stored %d times", r.typ, r.err, n)
		case r.typ == "rt4h.innocent" && r.err != nil:
			t.Errorf("the innocent append, in the batch of the stalled one, failed: %v", r.err)
		}
	}
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4h.after"}); err != nil {
		t.Errorf("the next append: %v", err)
	}
	if !verifyOK(t, rec) {
		t.Errorf("the chain does not verify")
	}
}

// Attack 5: does the chain's idle timeout (set_config(..., true)) outlive
// the append's transaction on its pooled connection? A pool of one
// connection appends, then runs the store's own transaction, idle for 6 s
// between its statements: it must not be ended, and the session's setting
// must be the server's default again.
func TestRedTeam4hPGIdleTimeoutStaysLocal(t *testing.T) {
	ctx := context.Background()
	u, _ := rt4hIsoDB(t, "")
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	rec, err := recorder.New(db)
	if err != nil {
		t.Fatal(err)
	}
	var pid1, pid2 int
	if err := db.QueryRow(`SELECT pg_backend_pid()`).Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	// An append, and a read-back (a commit is not lost here, but a hook
	// failing leaves the transaction as an append's does).
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4h.x"}); err != nil {
		t.Fatal(err)
	}
	_, _ = rec.AppendWith(ctx, recorder.Event{Type: "rt4h.y"}, func(ctx context.Context, tx *sql.Tx) error { return errors.New("no") })
	var setting string
	if err := db.QueryRow(`SHOW idle_in_transaction_session_timeout`).Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT pg_backend_pid()`).Scan(&pid2); err != nil {
		t.Fatal(err)
	}
	t.Logf("after appends on backend %d (then %d): idle_in_transaction_session_timeout = %s", pid1, pid2, setting)
	if setting != "0" {
		t.Errorf("the session keeps idle_in_transaction_session_timeout = %s after the append", setting)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE rt4h_t (x int)`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	if _, err := tx.ExecContext(ctx, `INSERT INTO rt4h_t VALUES (1)`); err != nil {
		t.Errorf("a store transaction on the append's connection, idle 6 s: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Errorf("commit: %v", err)
	}
}
