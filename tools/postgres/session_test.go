package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/tools"
)

// backendPID is the PostgreSQL backend that serves the lease's next call.
func (f *fixture) backendPID(t *testing.T, cred *Credential) int64 {
	t.Helper()
	out, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT pg_backend_pid()"})
	if err != nil {
		t.Fatal(err)
	}
	return out.Table.Rows[0][0].(int64)
}

// TestSessionStateDoesNotOutliveTheCall: each call leaves its pooled
// connection as it found it. State ROLLBACK does not undo (session advisory
// locks, PREPARE) and state a committing read_write grant keeps (settings,
// LISTEN, cursors WITH HOLD, temporary tables, currval) is gone before the
// next call on the same connection.
func TestSessionStateDoesNotOutliveTheCall(t *testing.T) {
	f := newFixture(t)
	rw := f.mint(t, "readwrite")
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, f.pg.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	pid := f.backendPID(t, rw)

	call := func(sql string) *tools.Output {
		t.Helper()
		out, err := f.query(t, rw, defaultLimits(), map[string]any{"sql": sql})
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if got := f.backendPID(t, rw); got != pid {
			t.Fatalf("the next call ran on backend %d, not %d: the test needs the same pooled connection", got, pid)
		}
		return out
	}
	advisoryLocks := func() int {
		t.Helper()
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	call("SELECT pg_advisory_lock(4242), pg_advisory_lock_shared(4243)")
	if n := advisoryLocks(); n != 0 {
		t.Errorf("%d session advisory lock(s) outlived the call", n)
	}

	// A lock taken by a statement before one that fails goes too.
	limits := defaultLimits()
	limits.MultiStatement = true
	if _, err := f.query(t, rw, limits, map[string]any{"sql": "SELECT pg_advisory_lock(4244); SELECT 1/0"}); err == nil {
		t.Fatal("1/0 did not fail")
	}
	if got := f.backendPID(t, rw); got != pid {
		t.Fatalf("an error in the call discarded the connection (backend %d, not %d)", got, pid)
	}
	if n := advisoryLocks(); n != 0 {
		t.Errorf("%d session advisory lock(s) outlived a failed call", n)
	}

	call("SELECT set_config('work_mem', '1234kB', false)")
	if v := call("SELECT current_setting('work_mem')").Table.Rows[0][0]; v == "1234kB" {
		t.Errorf("a session setting outlived the call: work_mem = %v", v)
	}
	call("SET search_path = pg_catalog")
	if v := call("SELECT current_setting('search_path')").Table.Rows[0][0]; v == "pg_catalog" {
		t.Errorf("SET search_path outlived the call")
	}

	call("LISTEN airlock_leftover")
	if rows := call("SELECT pg_listening_channels()").Table.Rows; len(rows) != 0 {
		t.Errorf("LISTEN outlived the call: %v", rows)
	}

	call("DECLARE held CURSOR WITH HOLD FOR SELECT 1")
	if rows := call("SELECT name FROM pg_cursors WHERE name = 'held'").Table.Rows; len(rows) != 0 {
		t.Errorf("a cursor WITH HOLD outlived the call: %v", rows)
	}

	call("CREATE TEMP TABLE scratch AS SELECT 1 AS x")
	if v := call("SELECT to_regclass('pg_temp.scratch')::text").Table.Rows[0][0]; v != nil {
		t.Errorf("a temporary table outlived the call: %v", v)
	}

	call("SELECT nextval('customers_id_seq')")
	_, err = f.query(t, rw, defaultLimits(), map[string]any{"sql": "SELECT currval('customers_id_seq')"})
	if pgErrorCode(err) != "55000" {
		t.Errorf("currval after the call that ran nextval: %v, want SQLSTATE 55000 (not yet defined in this session)", err)
	}

	call("PREPARE leftover AS SELECT 1")
	_, err = f.query(t, rw, defaultLimits(), map[string]any{"sql": "EXECUTE leftover"})
	if pgErrorCode(err) != "26000" {
		t.Errorf("EXECUTE of a statement prepared in an earlier call: %v, want SQLSTATE 26000", err)
	}
	if got := f.backendPID(t, rw); got != pid {
		t.Fatalf("backend changed to %d", got)
	}
}

// TestSessionResetKeepsTheDriverConsistent: the reset deallocates SQL-level
// prepared statements; the driver names none of its own (the credential
// pool runs in QueryExecModeCacheDescribe), so its cached descriptions stay
// valid and the same statements keep working, with parameters, call after
// call on one connection.
func TestSessionResetKeepsTheDriverConsistent(t *testing.T) {
	f := newFixture(t)
	if mode := f.resource.credCfg.ConnConfig.DefaultQueryExecMode; mode != pgx.QueryExecModeCacheDescribe {
		t.Fatalf("credential pools run in %v: DEALLOCATE ALL in the session reset would drop the driver's named statements", mode)
	}
	rw := f.mint(t, "readwrite")
	pid := f.backendPID(t, rw)
	for i := range 3 {
		out, err := f.query(t, rw, defaultLimits(), map[string]any{"sql": "SELECT name FROM customers WHERE id = $1", "params": []any{1}})
		if err != nil || len(out.Table.Rows) != 1 || out.Table.Rows[0][0] != "Ada" {
			t.Fatalf("call %d: %v %v", i, out, err)
		}
		if _, err := f.query(t, rw, defaultLimits(), map[string]any{"sql": "PREPARE p" + string(rune('a'+i)) + " AS SELECT 1"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.backendPID(t, rw); got != pid {
		t.Fatalf("the calls did not share a connection (%d, %d)", pid, got)
	}
}

// A COMMIT the server turns into a rollback (a deferred constraint fails)
// is an error, and the connection, whose reset did not run, is dropped.
func TestFailedCommitDiscardsTheConnection(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, `CREATE TABLE deferred (id int PRIMARY KEY, parent int REFERENCES deferred (id) DEFERRABLE INITIALLY DEFERRED);
		GRANT SELECT, INSERT ON deferred TO app_readwrite;`)
	rw := f.mint(t, "readwrite")
	pid := f.backendPID(t, rw)
	_, err := f.query(t, rw, defaultLimits(), map[string]any{"sql": "INSERT INTO deferred VALUES (1, 99)"})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23503" {
		t.Fatalf("commit with a deferred violation: %v, want SQLSTATE 23503", err)
	}
	if got := f.backendPID(t, rw); got == pid {
		t.Errorf("the connection whose commit failed was reused")
	}
}

// sessionStateSQL creates session state that outlives a transaction (or a
// committed one): none of it may pass for a plain read, so that a read-only
// grant refuses it and policy sees a call that is not a read. (The session
// reset after the call does not depend on it: see
// TestReadOnlyTransactionLeavesNoSessionState.)
var sessionStateSQL = []string{
	"SELECT pg_advisory_lock(1)",
	"SELECT pg_try_advisory_lock_shared(1)",
	"SELECT pg_catalog.pg_advisory_lock(1, 2)",
	"SELECT set_config('work_mem', '1MB', false)",
	"SELECT setseed(0.5)",
	"SELECT nextval('customers_id_seq')",
	"SET work_mem = '1MB'",
	"LISTEN channel",
	"PREPARE p AS SELECT 1",
	"DECLARE c CURSOR WITH HOLD FOR SELECT 1",
	"CREATE TEMP TABLE t (x int)",
	"SELECT 1 AS x INTO TEMP t",
	"SELECT dblink_connect('c', 'dbname=postgres')",
	"SELECT my_function_that_does_anything()",
	"SELECT query_to_xml('SELECT pg_advisory_lock(1)', true, false, '')",
	"SELECT * FROM ts_stat('SELECT to_tsvector(''x'') FROM pg_advisory_lock(1)')",
	"EXPLAIN ANALYZE SELECT pg_advisory_lock(1)",
	"EXPLAIN (ANALYZE false, ANALYZE true) SELECT pg_advisory_lock(1)",
	"LOAD 'auto_explain'",
}

func TestSessionStateIsNeverAPlainRead(t *testing.T) {
	for _, sql := range sessionStateSQL {
		p, err := parseSQL(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if p.facts.ReadOnly || p.statements[0].notRead == "" {
			t.Errorf("%s passes for a plain read: the session reset would be skipped", sql)
		}
	}
	f := newFixture(t)
	ro := f.mint(t, "readonly")
	for _, sql := range sessionStateSQL[:6] {
		if _, err := f.query(t, ro, defaultLimits(), map[string]any{"sql": sql}); !errors.Is(err, tools.ErrRefused) {
			t.Errorf("%s under a read-only grant: %v, want refused", sql, err)
		}
	}
}

// TestReadOnlyTransactionLeavesNoSessionState runs, on a lease's pooled
// connection and without the facts, each thing a statement can do to a
// session inside BEGIN READ ONLY, ends the transaction as a read-only call
// does (endCall), and looks for what is left. The READ ONLY transaction
// refuses some (temporary tables, nextval); ROLLBACK undoes the
// transactional ones (settings, SET ROLE, cursors WITH HOLD, LISTEN); the
// read reset in the same round trip undoes the rest (session advisory
// locks, prepared statements, the random seed). The lease is a read_write
// one, so that what is refused is refused by the transaction, not for
// want of a privilege.
func TestReadOnlyTransactionLeavesNoSessionState(t *testing.T) {
	f := newFixture(t)
	rw := f.mint(t, "readwrite")
	seeded := f.pg.Query(t, "postgres", "SELECT random()::text FROM (SELECT setseed(0.5)) s")[0]
	ctx := context.Background()
	pool, err := rw.connPool()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	pc := conn.Conn()
	var pid int64
	if err := pc.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		state   string
		make    string
		refused bool   // the read-only transaction refuses make (SQLSTATE 25006)
		check   string // a text value after the call ...
		left    string // ... which is this when the state outlived it
	}{
		{"session advisory locks", "SELECT pg_advisory_lock(4242), pg_advisory_lock_shared(4243), pg_try_advisory_lock(4244)", false,
			"SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", "3"},
		{"a prepared statement", "PREPARE leftover AS SELECT 1", false, "SELECT count(*)::text FROM pg_prepared_statements", "1"},
		{"the random seed (setseed)", "SELECT setseed(0.5)", false, "SELECT random()::text", seeded},
		{"the random seed (SET seed)", "SET seed = 0.5", false, "SELECT random()::text", seeded},
		{"a session setting", "SELECT set_config('work_mem', '1234kB', false)", false, "SELECT current_setting('work_mem')", "1234kB"},
		{"SET", "SET search_path = pg_catalog", false, "SELECT current_setting('search_path')", "pg_catalog"},
		{"SET ROLE", "SET ROLE app_readwrite", false, "SELECT current_user::text", "app_readwrite"},
		{"a cursor WITH HOLD", "DECLARE held CURSOR WITH HOLD FOR SELECT 1", false,
			"SELECT coalesce(string_agg(name, ','), '') FROM pg_cursors WHERE name <> ''", "held"}, // "": this query's own portal
		{"LISTEN", "LISTEN airlock_leftover", false, "SELECT count(*)::text FROM pg_listening_channels()", "1"},
		{"a temporary table", "CREATE TEMP TABLE scratch (x int)", true, "SELECT coalesce(to_regclass('pg_temp.scratch')::text, '')", "scratch"},
		{"a sequence value for currval", "SELECT nextval('customers_id_seq')", true,
			"SELECT coalesce((SELECT last_value::text FROM pg_sequences WHERE sequencename = 'customers_id_seq'), '')", "4"},
	} {
		if _, err := pc.Exec(ctx, "BEGIN READ ONLY"); err != nil {
			t.Fatal(err)
		}
		_, err := pc.Exec(ctx, tt.make)
		switch code := pgErrorCode(err); {
		case tt.refused && code != "25006":
			t.Errorf("%s: %s in a read-only transaction: %v, want SQLSTATE 25006", tt.state, tt.make, err)
		case !tt.refused && err != nil:
			t.Fatalf("%s: %s: %v", tt.state, tt.make, err)
		}
		if err := endCall(ctx, pc, "ROLLBACK", true); err != nil {
			t.Fatalf("%s: endCall: %v", tt.state, err)
		}
		var got string
		if err := pc.QueryRow(ctx, tt.check).Scan(&got); err != nil {
			t.Fatalf("%s: %s: %v", tt.state, tt.check, err)
		}
		if got == tt.left {
			t.Errorf("%s outlived a read-only call (%s = %s)", tt.state, tt.check, got)
		}
		var now int64
		if err := pc.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&now); err != nil || now != pid {
			t.Fatalf("the connection changed backend (%d, %d): %v", pid, now, err)
		}
	}
}
