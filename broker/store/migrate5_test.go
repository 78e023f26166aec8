package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A store made by an airlock before migration 5, with a call in flight
// (the airlock died during it), keeps that call through the upgrade, so
// the next replica still finds it and marks it interrupted; and the table
// is then one B-tree keyed by call_id, without the index on replica.
func TestMigration5KeepsCallsInFlight(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	db, err := sql.Open("sqlite", path+"?_txlock=immediate&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append([]string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`}, sqliteMigrations[:4]...) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	started := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if _, err := db.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (4);
		INSERT INTO calls_in_flight (call_id, replica, session_id, subject, issuer, tool, resource, started_at)
		VALUES ('call-1', 'gone-replica', 'sess', 'alice', 'https://idp', 'query_db', 'orders', ?)`, started.UnixNano()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openURL(t, "sqlite://"+path)
	if v, err := s.SchemaVersion(ctx); err != nil || v != 5 {
		t.Fatalf("SchemaVersion = %d, %v; want 5", v, err)
	}
	var ddl string
	if err := s.DB().QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'calls_in_flight'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ddl, "WITHOUT ROWID") {
		t.Errorf("calls_in_flight is %s, want a WITHOUT ROWID table", ddl)
	}
	var indexes int
	if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls_in_flight'`).Scan(&indexes); err != nil || indexes != 0 {
		t.Errorf("calls_in_flight has %d indexes (%v), want none beside its key", indexes, err)
	}

	calls, err := s.TakeAbandonedCalls(ctx, time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].CallID != "call-1" || calls[0].Resource != "orders" || !calls[0].StartedAt.Equal(started) {
		t.Fatalf("abandoned calls after the upgrade = %+v, want call-1 as it was recorded", calls)
	}

	// The prepared statements run on the new table, in the recorder's
	// transactions, and a repeated begin is not an error.
	c := CallInFlight{CallID: "call-2", Replica: "r", SessionID: "s", Subject: "bob", Issuer: "i", Tool: "query_db", Resource: "orders", StartedAt: started}
	for range 2 {
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.BeginCallTx(ctx, tx, c); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EndCallTx(ctx, tx, "call-2"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM calls_in_flight`).Scan(&n); err != nil || n != 0 {
		t.Errorf("calls_in_flight holds %d rows (%v), want none", n, err)
	}
}
