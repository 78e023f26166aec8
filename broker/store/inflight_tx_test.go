package store

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestCallsInFlightTx runs BeginCallTx and EndCallTx against SQLite and a
// real PostgreSQL: they write in the caller's transaction on DB(), so the
// row comes and goes with its commit and not with a rollback. Under
// CI=true a missing PostgreSQL fails the test.
func TestCallsInFlightTx(t *testing.T) {
	for _, b := range []backend{sqliteBackend(), postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) { testCallsInFlightTx(t, b) })
	}
}

func testCallsInFlightTx(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	inFlight := func(id string) bool {
		t.Helper()
		var n int
		if err := s.ReadDB().QueryRowContext(ctx, s.q(`SELECT count(*) FROM calls_in_flight WHERE call_id = ?`), id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	inTx := func(commit bool, fn func(tx *sql.Tx) error) {
		t.Helper()
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c := CallInFlight{CallID: "c1", Replica: "r1", SessionID: "s1", Subject: "alice", Issuer: "iss",
		Tool: "query_db", Resource: "orders", StartedAt: t0}
	begin := func(tx *sql.Tx) error { return s.BeginCallTx(ctx, tx, c) }
	end := func(tx *sql.Tx) error { return s.EndCallTx(ctx, tx, c.CallID) }

	inTx(false, begin)
	if inFlight("c1") {
		t.Fatal("BeginCallTx rolled back left a row")
	}
	inTx(true, begin)
	if !inFlight("c1") {
		t.Fatal("BeginCallTx committed left no row")
	}
	inTx(false, end)
	if !inFlight("c1") {
		t.Fatal("EndCallTx rolled back removed the row")
	}
	inTx(true, end)
	if inFlight("c1") {
		t.Fatal("EndCallTx committed left the row")
	}

	// The row written in a transaction is the one the reaper takes.
	inTx(true, begin)
	cs, err := s.TakeAbandonedCalls(ctx, t0.Add(time.Hour), "")
	if err != nil || len(cs) != 1 || cs[0] != c {
		t.Errorf("TakeAbandonedCalls = %+v, %v; want %+v", cs, err, c)
	}
}
