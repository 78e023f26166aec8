package recorder

import (
	"context"
	"database/sql"
	"errors"
	"testing"
)

// TestAppendWith runs AppendWith against SQLite and a real PostgreSQL:
// what the hook writes is committed with the event, and a failing hook
// rolls both back and leaves the chain as it was. Under CI=true a missing
// PostgreSQL fails the test.
func TestAppendWith(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) { testAppendWith(t, b) })
	}
}

func testAppendWith(t *testing.T, b backend) {
	ctx := context.Background()
	r, db := newRecorder(t, b)
	if _, err := db.Exec(`CREATE TABLE side (k TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	sideRows := func() int {
		t.Helper()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM side`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, r.q(`INSERT INTO side (k) VALUES (?)`), "x")
		return err
	}

	first, err := r.AppendWith(ctx, Event{Type: TypeCallReceived, CallID: "c1"}, insert)
	if err != nil {
		t.Fatalf("AppendWith: %v", err)
	}
	if first.Seq != 1 || sideRows() != 1 {
		t.Fatalf("after AppendWith: seq %d, %d side rows; want 1, 1", first.Seq, sideRows())
	}

	// The hook writes, then fails: neither its write nor the event stays.
	boom := errors.New("boom")
	_, err = r.AppendWith(ctx, Event{Type: TypeCallCompleted, CallID: "c1"}, func(ctx context.Context, tx *sql.Tx) error {
		if err := insert(ctx, tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("AppendWith with a failing hook = %v; want it to wrap the hook's error", err)
	}
	if n := sideRows(); n != 1 {
		t.Errorf("side rows after the failing hook = %d; want 1 (its insert rolled back)", n)
	}
	if seq, hash, err := r.Head(ctx); err != nil || seq != first.Seq || hash != first.Hash {
		t.Errorf("head after the failing hook = %d %s, %v; want the first event's", seq, hash, err)
	}
	if evs, err := r.Events(ctx, Filter{CallID: "c1"}); err != nil || len(evs) != 1 {
		t.Errorf("events of c1 = %d, %v; want only call.received", len(evs), err)
	}

	// A nil hook is Append; the chain goes on from the first event.
	second, err := r.AppendWith(ctx, Event{Type: TypeCallCompleted, CallID: "c1"}, nil)
	if err != nil || second.Seq != 2 || second.PrevHash != first.Hash {
		t.Fatalf("AppendWith(nil hook) = seq %d prev %s, %v; want seq 2 after the first", second.Seq, second.PrevHash, err)
	}
	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK || rep.Count != 2 {
		t.Errorf("Verify = %+v, %v; want 2 good events", rep, err)
	}
}
