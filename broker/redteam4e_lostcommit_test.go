package broker

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
	"modernc.org/sqlite"
)

// rt4eCut wraps SQLite's driver: while lose is set, a COMMIT is made and
// then reported failed (a connection cut after the server committed), and
// the next down statements fail as well (the server still unreachable
// when the recorder reads the commit back).
type rt4eCut struct {
	*sqlite.Driver
}

var (
	rt4eLose      atomic.Bool
	rt4eDown      atomic.Int64
	rt4eDownAfter atomic.Int64 // statements that fail after a lost commit
)

func init() { sql.Register("sqlite-rt4e-cut", rt4eCut{Driver: &sqlite.Driver{}}) }

func (d rt4eCut) Open(name string) (driver.Conn, error) {
	c, err := d.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	return rt4eCutConn{Conn: c}, nil
}

type rt4eCutConn struct{ driver.Conn }

func (c rt4eCutConn) Prepare(q string) (driver.Stmt, error) {
	if rt4eDown.Load() > 0 {
		rt4eDown.Add(-1)
		return nil, errors.New("dial tcp 10.0.0.5:5432: connect: connection refused")
	}
	return c.Conn.Prepare(q)
}

func (c rt4eCutConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return rt4eCutTx{Tx: tx}, nil
}

type rt4eCutTx struct{ driver.Tx }

func (t rt4eCutTx) Commit() error {
	if err := t.Tx.Commit(); err != nil {
		return err
	}
	if rt4eLose.CompareAndSwap(true, false) {
		rt4eDown.Store(rt4eDownAfter.Load())
		return errors.New("read tcp 10.0.0.5:5432: connection reset by peer")
	}
	return nil
}

// Red team 4e, attack 4: the answer to the COMMIT that stored a decision
// with its approval.decided is lost, and the recorder's first read-back of
// that commit fails too (the store still unreachable a moment later). The
// recorder reported the append failed, and Decide told the approver
// ErrUnrecorded, "nothing changed; try again", while the decision and its
// event were both stored: the approval approved, the held call free to
// run. The recorder now asks again until the store answers (or says it
// cannot tell: recorder.ErrOutcomeUnknown), and settle reads the approval
// back before it says nothing changed: the approver is told it worked.
func TestRedTeam4eLostCommitFirstReadBackFails(t *testing.T) {
	rt4eDownAfter.Store(1)
	defer rt4eDownAfter.Store(0)
	am, st, rec, id := rt4eCutSetup(t)
	ctx := context.Background()

	rt4eLose.Store(true)
	a, err := am.Decide(ctx, id, rt4eApprover(1), approval.Approve, "ok", approval.ViaAPI)
	if rt4eLose.Swap(false) {
		t.Fatal("the commit was not cut")
	}
	rt4eDown.Store(0)

	stored, gerr := st.Approval(ctx, id)
	if gerr != nil {
		t.Fatal(gerr)
	}
	evs := rt4eEvents(t, rec, id, approval.EventDecided)
	refused := rt4eEvents(t, rec, id, approval.EventRefused)
	t.Logf("Decide = %q (HTTP %d), returned state %q; store: %s with %d decisions; transcript: %d approval.decided, %d approval.refused (reason %v)",
		errString(err), approval.HTTPStatus(err), a.State, stored.State, len(stored.Decisions), len(evs), len(refused), reasons(refused))
	rt4eConsistent(t, st, rec, id)
	if err != nil || a.State != approval.Approved || stored.State != store.ApprovalApproved || len(evs) != 1 || len(refused) != 0 {
		t.Errorf("Decide = %v (state %s); store %s; %d approval.decided, %d approval.refused; want success, approved, one decided, no refusal", err, a.State, stored.State, len(evs), len(refused))
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func reasons(evs []rt4eEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Reason)
	}
	return out
}

// rt4eCutSetup is a store, and a recorder on the same SQLite file through
// the cutting driver, and a manager appending through it.
func rt4eCutSetup(t *testing.T) (*approval.Manager, *store.Store, *recorder.Recorder, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	st := rt4eOpen(t, "sqlite://"+path)
	db, err := sql.Open("sqlite-rt4e-cut", path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	rec, err := recorder.New(db)
	if err != nil {
		t.Fatal(err)
	}
	am, err := approval.New(approval.Config{
		Store: st, PublicURL: "https://airlock.example.com/mcp",
		OnEvent: func(ctx context.Context, ev approval.Event) error { return RecordApprovalEvent(ctx, rec, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	id := rt4eHold(t, am, 1)
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4e.warmup"}); err != nil {
		t.Fatal(err)
	}

	return am, st, rec, id
}

// The answer to the COMMIT is lost but the recorder reads the commit back:
// Decide succeeds, once, with the approval as stored.
func TestRedTeam4eLostCommitReadBack(t *testing.T) {
	am, st, rec, id := rt4eCutSetup(t)
	rt4eLose.Store(true)
	a, err := am.Decide(context.Background(), id, rt4eApprover(1), approval.Approve, "ok", approval.ViaAPI)
	if rt4eLose.Swap(false) {
		t.Fatal("the commit was not cut")
	}
	if err != nil || a.State != approval.Approved {
		t.Fatalf("Decide = %s, %v; want approved", a.State, err)
	}
	rt4eConsistent(t, st, rec, id)
}
