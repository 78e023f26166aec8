package recorder

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"modernc.org/sqlite"
)

// lostCommit wraps SQLite's driver: while lose is set, a COMMIT is made and
// then reported failed, as when the connection to a server is cut after
// the server committed.
type lostCommit struct {
	*sqlite.Driver
	lose *atomic.Bool
}

func (d lostCommit) Open(name string) (driver.Conn, error) {
	c, err := d.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	return lostCommitConn{Conn: c, lose: d.lose}, nil
}

type lostCommitConn struct {
	driver.Conn
	lose *atomic.Bool
}

func (c lostCommitConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return lostCommitTx{Tx: tx, lose: c.lose}, nil
}

type lostCommitTx struct {
	driver.Tx
	lose *atomic.Bool
}

func (t lostCommitTx) Commit() error {
	if err := t.Tx.Commit(); err != nil {
		return err
	}
	if t.lose.Load() {
		return errors.New("connection reset by peer")
	}
	return nil
}

var lose atomic.Bool

func init() { sql.Register("sqlite-lost-commit", lostCommit{Driver: &sqlite.Driver{}, lose: &lose}) }

// A commit the store made but whose answer was lost is read back: the
// append succeeds, once, and the chain holds each event once.
func TestLostCommitAnswerIsReadBack(t *testing.T) {
	db, err := sql.Open("sqlite-lost-commit", filepath.Join(t.TempDir(), "t.db")+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lose.Store(true)
	defer lose.Store(false)
	got, err := r.AppendAll(ctx, []Event{{Type: "call.received", CallID: "c1"}, {Type: "call.completed", CallID: "c1"}})
	if err != nil {
		t.Fatalf("AppendAll = %v: a commit the store made was reported failed", err)
	}
	if len(got) != 2 || got[1].Seq != 2 {
		t.Fatalf("appended %+v, want seq 1 and 2", got)
	}
	lose.Store(false)
	evs, err := r.Events(ctx, Filter{CallID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Errorf("%d events of the call in the store, want 2", len(evs))
	}
	if _, err := r.Verify(ctx); err != nil {
		t.Errorf("Verify: %v", err)
	}
}
