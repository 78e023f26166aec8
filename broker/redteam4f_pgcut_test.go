package broker

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/sqldialect"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Red team 4f: a real network cut on PostgreSQL. pgx dials through
// rt4fCutConn; once armed, the next simple-protocol COMMIT is sent to the
// server whole and then the connection is cut (closed) before the answer
// comes back: the server commits, the client hears "connection reset".
// Unlike rt4eCut (SQLite, where the commit is over before the error is
// returned), the server is still committing when the client reads back.

type rt4fCut struct {
	armed atomic.Bool
	cuts  atomic.Int64
	// partition: for this long after the cut nothing gets through (new
	// connections are refused, open ones fail): pgx's cancel request for
	// the cut COMMIT is lost with it, as it would be in a real partition.
	partition time.Duration
	downUntil atomic.Int64
	// match, when set, limits the cut to a transaction that sent it (an
	// event type, say) since the connection's last COMMIT.
	match []byte
}

func (c *rt4fCut) down() bool { return time.Now().UnixNano() < c.downUntil.Load() }

type rt4fCutConn struct {
	net.Conn
	cut  *rt4fCut
	mu   sync.Mutex
	dead bool
	seen bool // match was sent since the last COMMIT
}

var rt4fCommitMsg = []byte("commit\x00")

func (c *rt4fCutConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return 0, errors.New("write tcp 127.0.0.1:5432: connection reset by peer")
	}
	if c.cut.down() {
		c.dead = true
		c.Conn.Close()
		return 0, errors.New("write tcp 127.0.0.1:5432: connection timed out")
	}
	if c.cut.match != nil && bytes.Contains(b, c.cut.match) {
		c.seen = true
	}
	commit := len(b) > 0 && b[0] == 'Q' && bytes.Contains(b, rt4fCommitMsg)
	seen := c.seen || c.cut.match == nil
	if commit {
		c.seen = false
	}
	if commit && seen && c.cut.armed.CompareAndSwap(true, false) {
		n, err := c.Conn.Write(b)
		c.dead = true
		c.cut.downUntil.Store(time.Now().Add(c.cut.partition).UnixNano())
		c.cut.cuts.Add(1)
		c.Conn.Close() // the COMMIT is on its way; its answer will never arrive
		return n, err
	}
	return c.Conn.Write(b)
}

func (c *rt4fCutConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	dead := c.dead
	c.mu.Unlock()
	if dead {
		return 0, errors.New("read tcp 127.0.0.1:5432: connection reset by peer")
	}
	return c.Conn.Read(b)
}

// rt4fCutDB opens a pgx pool on dsn whose connections cut can cut.
func rt4fCutDB(t *testing.T, dsn string, cut *rt4fCut) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if cut.down() {
			return nil, errors.New("dial tcp 127.0.0.1:5432: connect: no route to host")
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &rt4fCutConn{Conn: c, cut: cut}, nil
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

// rt4fSlowCommit makes every commit that inserted into table take d on the
// server (a deferred constraint trigger: what a slow disk or a synchronous
// standby does to COMMIT).
func rt4fSlowCommit(t *testing.T, db *sql.DB, table string, d time.Duration) {
	t.Helper()
	for _, q := range []string{
		`CREATE OR REPLACE FUNCTION rt4f_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(` + fmt.Sprintf("%.3f", d.Seconds()) + `); RETURN NULL; END $$`,
		`CREATE CONSTRAINT TRIGGER rt4f_slow_` + table + ` AFTER INSERT ON ` + table + ` DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rt4f_slow()`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rt4fPGSetup is a PostgreSQL store, a recorder on a cuttable pool of the
// same database, and a manager appending through it (as airlock serve
// wires it, but for the cuttable pool).
func rt4fPGSetup(t *testing.T) (*approval.Manager, *store.Store, *recorder.Recorder, *rt4fCut) {
	am, st, rec, cut, _ := rt4fPGSetupLog(t)
	return am, st, rec, cut
}

// rt4fLog is a concurrency-safe buffer for the manager's log.
type rt4fLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *rt4fLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *rt4fLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func rt4fPGSetupLog(t *testing.T) (*approval.Manager, *store.Store, *recorder.Recorder, *rt4fCut, *rt4fLog) {
	t.Helper()
	var pgb *rt4eBackend
	for _, b := range rt4eBackends(t) {
		if b.pg != nil {
			pgb = b
		}
	}
	u := pgb.url(t)
	st := rt4eOpen(t, u)
	cut := &rt4fCut{}
	db := rt4fCutDB(t, u, cut)
	rec, err := recorder.New(db)
	if err != nil {
		t.Fatal(err)
	}
	log := &rt4fLog{}
	am, err := approval.New(approval.Config{
		Store: st, PublicURL: "https://airlock.example.com/mcp",
		OnEvent: func(ctx context.Context, ev approval.Event) error { return RecordApprovalEvent(ctx, rec, ev) },
		Logger:  slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(context.Background(), recorder.Event{Type: "rt4f.warmup"}); err != nil {
		t.Fatal(err)
	}
	return am, st, rec, cut, log
}

// Red team 4f, attack 1: the COMMIT that stores a decision with its
// approval.decided reaches PostgreSQL, the connection is cut before its
// answer, and the server takes a moment to finish the commit (300 ms
// here). The recorder reads the commit back at once, on another
// connection, sees no row (the commit is not visible yet) and reports the
// append failed; settle reads the approval back, sees no decision, and
// tells the approver ErrUnrecorded: "nothing changed; try again". A
// moment later the decision and its event are both stored: the approval
// is approved, and the transcript also holds an approval.refused
// (unrecorded) for the decision it records.
func TestRedTeam4fPGLostCommitStillCommitting(t *testing.T) {
	am, st, rec, cut := rt4fPGSetup(t)
	ctx := context.Background()
	id := rt4eHold(t, am, 1)
	rt4fSlowCommit(t, st.DB(), "approval_decisions", 500*time.Millisecond)
	cut.partition = 150 * time.Millisecond

	cut.armed.Store(true)
	started := time.Now()
	a, err := am.Decide(ctx, id, rt4eApprover(1), approval.Approve, "ok", approval.ViaAPI)
	took := time.Since(started)
	if cut.cuts.Load() != 1 {
		t.Fatalf("the commit was not cut (cuts %d)", cut.cuts.Load())
	}
	time.Sleep(time.Second) // the server finishes the commit it was sent

	stored, gerr := st.Approval(ctx, id)
	if gerr != nil {
		t.Fatal(gerr)
	}
	decided := rt4eEvents(t, rec, id, approval.EventDecided)
	refused := rt4eEvents(t, rec, id, approval.EventRefused)
	t.Logf("Decide (%v) = %q (HTTP %d), state %q; a second later the store holds %s with %d decisions; transcript: %d approval.decided, %d approval.refused %v",
		took.Round(time.Millisecond), errString(err), approval.HTTPStatus(err), a.State, stored.State, len(stored.Decisions), len(decided), len(refused), reasons(refused))
	if errors.Is(err, approval.ErrUnrecorded) && len(stored.Decisions) > 0 {
		t.Errorf("claim 2 broken: the approver was told %q, but the store holds the decision (%s) and the transcript its approval.decided", err, stored.State)
	}
	if err == nil && len(stored.Decisions) == 0 {
		t.Errorf("the approver was told success, but the store holds no decision")
	}
	rt4eConsistent(t, st, rec, id)
}

// Control: the same cut without the slow commit (fsync off, the server
// commits within microseconds): the recorder's read-back finds the event.
func TestRedTeam4fPGLostCommitFast(t *testing.T) {
	am, st, rec, cut := rt4fPGSetup(t)
	id := rt4eHold(t, am, 1)
	cut.armed.Store(true)
	a, err := am.Decide(context.Background(), id, rt4eApprover(1), approval.Approve, "ok", approval.ViaAPI)
	if cut.cuts.Load() != 1 {
		t.Fatalf("the commit was not cut")
	}
	time.Sleep(200 * time.Millisecond)
	stored, _ := st.Approval(context.Background(), id)
	t.Logf("Decide = %q, state %q; store %s with %d decisions", errString(err), a.State, stored.State, len(stored.Decisions))
	if errors.Is(err, approval.ErrUnrecorded) && len(stored.Decisions) > 0 {
		t.Errorf("the approver was told %q, but the store holds the decision", err)
	}
	rt4eConsistent(t, st, rec, id)
}

// Red team 4f, attack 1b: as attack 1, but the partition outlasts the
// recorder's 5 s read-back, so the recorder says what it should,
// recorder.ErrOutcomeUnknown ("may be stored"). settle then reads the
// approval (an ordinary read, which does not wait for the commit still in
// progress), sees no decision, and tells the approver ErrUnrecorded,
// "nothing changed", instead of ErrUncertain. (The store's pool here is
// not partitioned; in airlock serve it is the recorder's, and the partition
// is over by the time settle reads: 5.2 s, the commit taking 5.6 s.)
func TestRedTeam4fPGOutcomeUnknownStillCommitting(t *testing.T) {
	am, st, rec, cut, log := rt4fPGSetupLog(t)
	ctx := context.Background()
	id := rt4eHold(t, am, 1)
	rt4fSlowCommit(t, st.DB(), "approval_decisions", 5600*time.Millisecond)
	cut.partition = 5200 * time.Millisecond

	cut.armed.Store(true)
	started := time.Now()
	a, err := am.Decide(ctx, id, rt4eApprover(1), approval.Approve, "ok", approval.ViaAPI)
	took := time.Since(started)
	if cut.cuts.Load() != 1 {
		t.Fatalf("the commit was not cut")
	}
	time.Sleep(time.Second)
	stored, gerr := st.Approval(ctx, id)
	if gerr != nil {
		t.Fatal(gerr)
	}
	refused := rt4eEvents(t, rec, id, approval.EventRefused)
	t.Logf("Decide (%v) = %q (HTTP %d), state %q; then the store holds %s with %d decisions; approval.refused %v",
		took.Round(time.Millisecond), errString(err), approval.HTTPStatus(err), a.State, stored.State, len(stored.Decisions), reasons(refused))
	if errors.Is(err, approval.ErrUnrecorded) && len(stored.Decisions) > 0 {
		t.Logf("manager's log: %s", log)
		if !strings.Contains(log.String(), recorder.ErrOutcomeUnknown.Error()) {
			t.Errorf("the recorder did not say ErrOutcomeUnknown")
		}
		t.Errorf("claim 2 broken: the recorder could not tell (ErrOutcomeUnknown), the approver was told %q, and the store holds the decision", err)
	}
	rt4eConsistent(t, st, rec, id)
}

// The fix for attacks 1, 1b and 3, on the same cut: the recorder reads a
// lost commit back after taking the chain lock (pg_advisory_xact_lock,
// which the lost transaction holds until it ends), so it waits for the
// commit still being made and sees it: the append succeeds, once. A plain
// read at the same moment, as the recorder made before, misses it.
func TestRedTeam4fPGLostCommitStillBeingMadeIsReadBack(t *testing.T) {
	_, st, rec, cut := rt4fPGSetup(t)
	ctx := context.Background()
	rt4fSlowEvent(t, st.DB(), "rt4f.slow", 500*time.Millisecond)
	cut.partition = 150 * time.Millisecond
	cut.armed.Store(true)
	_, err := rec.Append(ctx, recorder.Event{Type: "rt4f.slow"})
	if cut.cuts.Load() != 1 {
		t.Fatal("the commit was not cut")
	}
	var plain, locked int
	if err := st.DB().QueryRow(`SELECT count(*) FROM transcript_events WHERE type = 'rt4f.slow'`).Scan(&plain); err != nil {
		t.Fatal(err)
	}
	tx, err2 := st.DB().BeginTx(ctx, nil)
	if err2 != nil {
		t.Fatal(err2)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`SELECT pg_advisory_xact_lock($1, 0)`, sqldialect.LockChain); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(`SELECT count(*) FROM transcript_events WHERE type = 'rt4f.slow'`).Scan(&locked); err != nil {
		t.Fatal(err)
	}
	t.Logf("Append = %v; read back at once: %d rows; under the chain lock: %d rows", err, plain, locked)
	if err != nil || locked != 1 {
		t.Errorf("want the append to succeed with its event stored once")
	}
}
