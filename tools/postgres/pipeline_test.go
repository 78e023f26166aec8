package postgres

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// countingConn counts the writes the driver makes: a round trip is a write
// and then waiting for the answer, so a call's writes are its round trips.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// countWrites makes the credentials minted from here on count their
// connections' writes in the returned counter. It also stops their pools
// pinging each connection they hand out (the credential config inherits
// the admin pool's ShouldPing, kind.go): that round trip comes before the
// call's own, whatever the call does, and is not what is counted here.
func (f *fixture) countWrites(t *testing.T) *atomic.Int64 {
	t.Helper()
	f.resource.credCfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	var writes atomic.Int64
	var d net.Dialer
	f.resource.credCfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: &writes}, nil
	}
	return &writes
}

// A one-statement call is one round trip under a read-only grant (BEGIN
// READ ONLY, the limits, the statement, ROLLBACK and the read reset) and
// two under a read-write one (COMMIT and the full reset after the result);
// the first call of a text with parameters on a connection adds two (BEGIN
// and the limits, then the Describe, before the pipeline). The same call
// run step by step, as every call ran before, takes three, and four the
// first time.
func TestOneStatementRoundTrips(t *testing.T) {
	f := newFixture(t)
	writes := f.countWrites(t)
	ro := f.mint(t, "readonly")
	rw := f.mint(t, "readwrite")
	for _, cred := range []*Credential{ro, rw} {
		f.backendPID(t, cred) // connect (the login's writes are not counted below)
	}
	count := func(cred *Credential, sql string, params []any, sequential bool) int64 {
		t.Helper()
		p, err := parseSQL(sql)
		if err != nil {
			t.Fatal(err)
		}
		st := p.statements[0]
		e := &execution{resource: f.resource, cred: cred, limits: defaultLimits(), sequential: sequential,
			stmts: []execStatement{{text: st.text, args: params, read: st.notRead == "", node: st.node}}}
		before := writes.Load()
		if _, _, err := e.run(context.Background()); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return writes.Load() - before
	}
	for _, tt := range []struct {
		name       string
		cred       *Credential
		sql        string
		params     []any
		sequential bool
		want       int64
	}{
		{"read-only", ro, "SELECT name FROM customers WHERE id = 1", nil, false, 1},
		{"read-only, parameters, first on the connection", ro, "SELECT name FROM customers WHERE id = $1", []any{int64(1)}, false, 3},
		{"read-only, parameters, again", ro, "SELECT name FROM customers WHERE id = $1", []any{int64(2)}, false, 1},
		{"read-write", rw, "UPDATE customers SET balance = balance WHERE id = 1", nil, false, 2},
		{"read-write, parameters, first on the connection", rw, "UPDATE customers SET balance = balance WHERE id = $1", []any{int64(1)}, false, 4},
		{"read-write, parameters, again", rw, "UPDATE customers SET balance = balance WHERE id = $1", []any{int64(1)}, false, 2},
		// A plain read under a read-write grant runs READ ONLY, as under a
		// read-only grant (the connection already described this text).
		{"a plain read under a read-write grant", rw, "SELECT name FROM customers WHERE id = 1", nil, false, 1},
		// The driver describes each new text on a connection first, even
		// without parameters (QueryExecModeCacheDescribe).
		{"read-only, step by step, first", ro, "SELECT email FROM customers WHERE id = 1", nil, true, 4},
		{"read-only, step by step, again", ro, "SELECT email FROM customers WHERE id = 1", nil, true, 3},
	} {
		if got := count(tt.cred, tt.sql, tt.params, tt.sequential); got != tt.want {
			t.Errorf("%s: %d round trips, want %d", tt.name, got, tt.want)
		}
	}
}

// A statement that fails in the pipeline is rolled back and the session
// reset: the server skips the pipelined ROLLBACK and reset after the
// failure, so the client sends them (one round trip more than a call that
// succeeds, under either grant). A session advisory lock the statement took
// is released, a setting it made is undone, the connection is idle (not in
// a failed transaction) and reused. Under a read-write grant its writes are
// rolled back too.
func TestPipelinedFailureRollsBackAndResets(t *testing.T) {
	f := newFixture(t)
	writes := f.countWrites(t)
	ctx := context.Background()
	for _, grant := range []string{"readonly", "readwrite"} {
		cred := f.mint(t, grant)
		pid := f.backendPID(t, cred)
		sql := "SELECT pg_advisory_lock(4711), set_config('work_mem', '1234kB', false), 1 / (id - id) FROM customers WHERE id = 1"
		if grant == "readwrite" {
			sql = "WITH w AS (INSERT INTO orders (customer_id, total, status) VALUES (1, 1, 'pipelined') RETURNING id) " +
				"SELECT pg_advisory_lock(4711), set_config('work_mem', '1234kB', false), id / 0 FROM w"
		}
		const want = 2 // the pipeline, then the end and the reset (endCall)
		p, err := parseSQL(sql)
		if err != nil {
			t.Fatal(err)
		}
		st := p.statements[0]
		// Straight to execution: the facts would refuse a lock under a
		// read-only grant before it reached the server.
		e := &execution{resource: f.resource, cred: cred, limits: defaultLimits(),
			stmts: []execStatement{{text: st.text, read: grant == "readonly", node: st.node}}}
		before := writes.Load()
		_, _, err = e.run(ctx)
		if pgErrorCode(err) != "22012" {
			t.Fatalf("%s: %v, want SQLSTATE 22012 (division by zero)", grant, err)
		}
		if got := writes.Load() - before; got != want {
			t.Errorf("%s: the failed call took %d round trips, want %d", grant, got, want)
		}
		locks := f.pg.Query(t, "postgres", "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND objid = 4711")
		if locks[0] != "0" {
			t.Errorf("%s: the session advisory lock outlived the failed call", grant)
		}
		if grant == "readwrite" {
			if n := f.pg.Query(t, "postgres", "SELECT count(*)::text FROM orders WHERE status = 'pipelined'"); n[0] != "0" {
				t.Errorf("the write of the failed call was committed")
			}
		}
		out, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT pg_backend_pid(), current_setting('work_mem')"})
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Table.Rows[0][0].(int64); got != pid {
			t.Errorf("%s: the connection was not reused after a failed statement (%d, %d)", grant, pid, got)
		}
		if got := out.Table.Rows[0][1]; got == "1234kB" {
			t.Errorf("%s: the setting of the failed call outlived it", grant)
		}
		pool, _ := cred.connPool()
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s := conn.Conn().PgConn().TxStatus(); s != 'I' {
			t.Errorf("%s: the connection is left in transaction status %q", grant, s)
		}
		conn.Release()
	}
}

// statement_timeout bounds a pipelined statement under either grant, and
// the Describe of a text seen for the first time on a connection (it runs
// after BEGIN and the limits): a table locked by another session makes
// even parsing the statement wait. The connection is reset and reused.
func TestPipelinedStatementTimeout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	limits := defaultLimits()
	limits.Timeout = 300 * time.Millisecond
	for _, grant := range []string{"readonly", "readwrite"} {
		cred := f.mint(t, grant)
		pid := f.backendPID(t, cred)
		for _, args := range []map[string]any{
			{"sql": "SELECT pg_sleep(5)"},
			{"sql": "SELECT pg_sleep($1)", "params": []any{5}},
		} {
			start := time.Now()
			_, err := f.query(t, cred, limits, args)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "57014" {
				t.Fatalf("%s %v: %v, want SQLSTATE 57014 (statement timeout)", grant, args, err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("%s %v: the call took %v under a timeout of %v", grant, args, d, limits.Timeout)
			}
		}
		if got := f.backendPID(t, cred); got != pid {
			t.Errorf("%s: the connection was not reused after a timeout", grant)
		}

		admin, err := pgx.Connect(ctx, f.pg.AdminDSN)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = f.query(t, cred, limits, map[string]any{"sql": "SELECT total FROM orders WHERE id = $1 AND '" + grant + "' <> ''", "params": []any{1}})
		if pgErrorCode(err) != "57014" {
			t.Errorf("%s: Describe of a statement on a locked table: %v, want SQLSTATE 57014", grant, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: the Describe waited %v under a timeout of %v", grant, d, limits.Timeout)
		}
		_ = tx.Rollback(ctx)
		_ = admin.Close(ctx)
	}
}

// A result cut off at the limits in the pipeline is abandoned (the
// connection is closed, not drained) under a read-only grant, and the next
// call gets a fresh connection that works.
func TestPipelinedCutAbandonsTheConnection(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	pid := f.backendPID(t, cred)
	limits := defaultLimits()
	limits.MaxRows = 10
	limits.Timeout = time.Minute
	start := time.Now()
	out, err := f.query(t, cred, limits, map[string]any{"sql": "SELECT g FROM (SELECT generate_series(1, 100000000) AS g) s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Table.Rows) != 10 || !out.Truncated {
		t.Fatalf("rows %d truncated %v", len(out.Table.Rows), out.Truncated)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the cut took %v: the result was drained", d)
	}
	if got := f.backendPID(t, cred); got == pid {
		t.Errorf("the abandoned connection was reused")
	}
}
