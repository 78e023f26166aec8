package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/tools"
)

// These tests hold the SQL facts to what a real PostgreSQL does with the
// same SQL: which tables it reads (a role without SELECT on a table is
// refused with 42501 exactly when the statement reads it), which EXPLAIN
// options run the statement, and what SQL text run by functions does.

const probeSchema = `
CREATE TABLE salaries (id int, amount int);
CREATE TABLE orders (id int, total int);
CREATE TABLE people (id int);
INSERT INTO salaries VALUES (1, 100);
INSERT INTO orders VALUES (1, 10);
INSERT INTO people VALUES (1);
CREATE ROLE probe_salaries; CREATE ROLE probe_orders; CREATE ROLE probe_people;
GRANT SELECT, INSERT, UPDATE, DELETE ON salaries, orders, people TO probe_salaries, probe_orders, probe_people;
REVOKE SELECT ON salaries FROM probe_salaries;
REVOKE SELECT ON orders FROM probe_orders;
REVOKE SELECT ON people FROM probe_people;
`

var probeTables = []string{"salaries", "orders", "people"}

// probe is an admin connection to a database with the probe schema.
type probe struct {
	pg   *testenv.Postgres
	conn *pgx.Conn
}

func newProbe(t *testing.T) *probe {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, probeSchema)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &probe{pg: pg, conn: conn}
}

// reads reports whether PostgreSQL reads table when running sql: as a role
// that may read every probe table but that one, in a transaction rolled
// back. Any error but 42501 fails the test.
func (p *probe) reads(t *testing.T, sql, table string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tx, err := p.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE probe_"+table); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return false
	case errors.As(err, &pe) && pe.Code == "42501":
		return true
	}
	t.Fatalf("%s: %v", sql, err)
	return false
}

// cteScopeCases are statements whose CTE names shadow tables only where
// SQL scoping says so, with the tables they read and write.
var cteScopeCases = []struct {
	sql           string
	read, written []string
}{
	// The review's case: a CTE inside EXISTS does not hide the outer table.
	{"SELECT * FROM salaries WHERE EXISTS (WITH salaries AS (SELECT 1) SELECT 1 FROM salaries)", []string{"salaries"}, nil},
	{"WITH salaries AS (SELECT 1 AS id) SELECT * FROM salaries", nil, nil},
	// A CTE's own body sees the table of the same name (no RECURSIVE).
	{"WITH salaries AS (SELECT * FROM salaries) SELECT * FROM salaries", []string{"salaries"}, nil},
	{"WITH RECURSIVE salaries AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM salaries WHERE id < 3) SELECT * FROM salaries", nil, nil},
	// Without RECURSIVE a CTE sees the ones before it, not those after.
	{"WITH a AS (SELECT * FROM orders), orders AS (SELECT 1 AS id) SELECT * FROM a, orders", []string{"orders"}, nil},
	{"WITH orders AS (SELECT 1 AS id), a AS (SELECT * FROM orders) SELECT * FROM a", nil, nil},
	{"WITH RECURSIVE a AS (SELECT * FROM orders), orders AS (SELECT 1 AS id) SELECT * FROM a", nil, nil},
	// A CTE defined in a subquery is not visible outside it.
	{"SELECT * FROM (WITH salaries AS (SELECT 1 AS id) SELECT * FROM salaries) s, salaries", []string{"salaries"}, nil},
	{"SELECT (WITH people AS (SELECT 1 AS id) SELECT count(*) FROM people), (SELECT count(*) FROM people)", []string{"people"}, nil},
	{"WITH a AS (WITH salaries AS (SELECT 1 AS id) SELECT * FROM salaries) SELECT * FROM a, salaries", []string{"salaries"}, nil},
	// An outer CTE is visible in nested subqueries, LATERAL included.
	{"WITH salaries AS (SELECT 1 AS id) SELECT * FROM (SELECT * FROM salaries) s", nil, nil},
	{"WITH salaries AS (SELECT 1 AS id) SELECT * FROM people WHERE id IN (SELECT id FROM salaries)", []string{"people"}, nil},
	{"WITH orders AS (SELECT 1 AS id) SELECT * FROM people, LATERAL (SELECT * FROM orders WHERE orders.id = people.id) o", []string{"people"}, nil},
	{"WITH people AS (SELECT * FROM people WHERE id > 0) SELECT * FROM people p JOIN (WITH people AS (SELECT 2 AS id) SELECT * FROM people) q USING (id)", []string{"people"}, nil},
	// Set operations share the WITH of the statement they belong to.
	{"WITH x AS (SELECT id FROM orders) SELECT id FROM x UNION SELECT id FROM salaries", []string{"orders", "salaries"}, nil},
	{"WITH salaries AS (SELECT 1 AS id) SELECT id FROM salaries UNION ALL SELECT id FROM salaries", nil, nil},
	// Only unqualified names, spelled the same, resolve to a CTE.
	{"WITH salaries AS (SELECT 1 AS id) SELECT * FROM public.salaries", []string{"public.salaries"}, nil},
	{`WITH "Salaries" AS (SELECT 1 AS id) SELECT * FROM salaries`, []string{"salaries"}, nil},
	{"WITH s AS (SELECT 1) SELECT * FROM salaries s", []string{"salaries"}, nil},
	{"WITH salaries AS MATERIALIZED (SELECT 1 AS id) SELECT * FROM salaries", nil, nil},
	// FOR UPDATE OF names a FROM item, not a table.
	{"SELECT * FROM people p FOR UPDATE OF p", []string{"people"}, nil},
	// Data-modifying statements: their targets are tables, whatever the CTEs.
	{"WITH salaries AS (SELECT 1 AS id) DELETE FROM orders USING salaries WHERE orders.id = salaries.id", nil, []string{"orders"}},
	{"WITH x AS (SELECT 1 AS id) UPDATE orders SET total = 0 FROM salaries WHERE orders.id = salaries.id AND EXISTS (SELECT 1 FROM x)", []string{"salaries"}, []string{"orders"}},
	{"WITH orders AS (SELECT 1 AS id) INSERT INTO orders (id) SELECT id FROM orders", nil, []string{"orders"}},
	{"INSERT INTO orders (id) WITH salaries AS (SELECT 1 AS id) SELECT id FROM salaries", nil, []string{"orders"}},
	{"INSERT INTO orders (id) SELECT id FROM salaries WHERE EXISTS (WITH salaries AS (SELECT 1) SELECT 1 FROM salaries)", []string{"salaries"}, []string{"orders"}},
	{"WITH src AS (SELECT id FROM salaries) MERGE INTO orders o USING src ON o.id = src.id WHEN MATCHED THEN DELETE", []string{"salaries"}, []string{"orders"}},
	{"WITH d AS (DELETE FROM orders WHERE id < 0 RETURNING id) SELECT * FROM d, salaries", []string{"salaries"}, []string{"orders"}},
}

func TestCTEScopeMatchesPostgres(t *testing.T) {
	p := newProbe(t)
	for _, tt := range cteScopeCases {
		f := SQLFacts(tt.sql)
		if f.ParseError != "" {
			t.Errorf("%s: %s", tt.sql, f.ParseError)
			continue
		}
		if !slices.Equal(f.TablesRead, nonNil(tt.read)) || !slices.Equal(f.TablesWritten, nonNil(tt.written)) {
			t.Errorf("%s:\n  tables_read %q, tables_written %q\n  want        %q, %q", tt.sql, f.TablesRead, f.TablesWritten, nonNil(tt.read), nonNil(tt.written))
		}
		for _, table := range probeTables {
			if slices.Contains(tt.written, table) {
				continue // a write target needs SELECT for its own WHERE
			}
			listed := slices.ContainsFunc(f.TablesRead, func(r string) bool { return r == table || r == "public."+table })
			if reads := p.reads(t, tt.sql, table); reads != listed {
				t.Errorf("%s: PostgreSQL reads %s: %v; tables_read %q", tt.sql, table, reads, f.TablesRead)
			}
		}
	}
}

// TestExplainOptionsMatchPostgres runs EXPLAIN (options) INSERT against a
// real PostgreSQL and checks that the facts call the statement a plain read
// exactly when PostgreSQL did not run it. An option value PostgreSQL refuses
// runs nothing; the facts count it as ANALYZE (over-blocking a call that
// fails anyway).
func TestExplainOptionsMatchPostgres(t *testing.T) {
	p := newProbe(t)
	ctx := context.Background()
	for _, opts := range []string{
		"EXPLAIN", "EXPLAIN VERBOSE", "EXPLAIN ANALYZE", "EXPLAIN ANALYSE", "EXPLAIN ANALYZE VERBOSE",
		"EXPLAIN (ANALYZE)", "EXPLAIN (ANALYSE)", "EXPLAIN (analyze)", "EXPLAIN (ANALYZE true)", "EXPLAIN (ANALYZE TRUE)",
		"EXPLAIN (ANALYZE on)", "EXPLAIN (ANALYZE 1)", "EXPLAIN (ANALYZE 'true')", `EXPLAIN (ANALYZE "ON")`,
		"EXPLAIN (ANALYZE false)", "EXPLAIN (ANALYZE off)", "EXPLAIN (ANALYZE 0)", "EXPLAIN (ANALYZE 'off')", `EXPLAIN (ANALYZE "False")`,
		"EXPLAIN (ANALYZE false, ANALYZE true)", "EXPLAIN (ANALYZE true, ANALYZE false)", "EXPLAIN (ANALYZE off, ANALYZE)",
		"EXPLAIN (ANALYZE, ANALYZE off)", "EXPLAIN (ANALYZE 0, VERBOSE, ANALYZE 1)", "EXPLAIN (ANALYZE 1, COSTS off, ANALYZE 0)",
		"EXPLAIN (VERBOSE, COSTS false)",
		// refused by PostgreSQL: nothing runs
		"EXPLAIN (ANALYZE yes)", "EXPLAIN (ANALYZE no)", "EXPLAIN (ANALYZE 2)", "EXPLAIN (ANALYZE t)", "EXPLAIN (ANALYZE 1.0)",
		"EXPLAIN (ANALYZE off, ANALYZE maybe)", `EXPLAIN ("ANALYZE" true)`,
	} {
		sql := opts + " INSERT INTO people VALUES (42)"
		ran, failed := false, false
		tx, err := p.conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			failed = true
		} else if err := tx.QueryRow(ctx, "SELECT count(*) > 0 FROM people WHERE id = 42").Scan(&ran); err != nil {
			t.Fatal(err)
		}
		tx.Rollback(ctx)
		f := SQLFacts(sql)
		switch {
		case ran && f.ReadOnly:
			t.Errorf("%s: PostgreSQL ran the INSERT, but the facts say read_only", sql)
		case !ran && !failed && !f.ReadOnly:
			t.Errorf("%s: PostgreSQL did not run the INSERT, but the facts say it is not read_only", sql)
		case failed && f.ReadOnly && strings.Contains(strings.ToLower(opts), "analyze"):
			// An unknown option name ("ANALYZE" quoted) is refused too and
			// runs nothing; only refused values of ANALYZE must count as it.
			if !strings.Contains(opts, `"ANALYZE"`) {
				t.Errorf("%s: PostgreSQL refused the value of ANALYZE; the facts should count it as ANALYZE", sql)
			}
		}
	}
}

// TestSQLTextMatchesPostgres runs SQL that functions run from text and
// checks the facts see what PostgreSQL does: the functions it calls (here
// session advisory locks, visible in pg_locks after a rollback) and the
// tables it reads.
func TestSQLTextMatchesPostgres(t *testing.T) {
	p := newProbe(t)
	ctx := context.Background()
	locks := []struct {
		sql string
		key int
	}{
		{"SELECT query_to_xml('SELECT pg_advisory_lock(4242)', true, false, '')", 4242},
		{"SELECT query_to_xml(E'SELECT pg_advisory_lock(4343)', true, false, '')", 4343},
		{"SELECT * FROM ts_stat('SELECT to_tsvector(''x'') FROM pg_advisory_lock(4444)')", 4444},
		{"SELECT ts_rewrite('a & b'::tsquery, $$SELECT 'a'::tsquery, 'c'::tsquery FROM pg_advisory_lock(4545)$$)", 4545},
		{"SELECT query_to_xml(query => 'SELECT query_to_xml(''SELECT pg_advisory_lock(4646)'', true, false, '''')', nulls => true, tableforest => false, targetns => '')", 4646},
	}
	for _, tt := range locks {
		f := SQLFacts(tt.sql)
		if !slices.Contains(f.Functions, "pg_advisory_lock") || f.ReadOnly {
			t.Errorf("%s: functions %q, read_only %v: the lock taken in the text is not in the facts", tt.sql, f.Functions, f.ReadOnly)
		}
		conn, err := pgx.Connect(ctx, p.pg.AdminDSN)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "BEGIN READ ONLY"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, tt.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", tt.sql, err)
		}
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		var held bool
		if err := p.conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1)", tt.key).Scan(&held); err != nil {
			t.Fatal(err)
		}
		if !held {
			t.Errorf("%s: PostgreSQL did not take the lock (the test proves nothing)", tt.sql)
		}
		conn.Close(ctx)
	}

	reads := []struct {
		sql   string
		table string
	}{
		{"SELECT query_to_xml('SELECT * FROM salaries', true, false, '')", "salaries"},
		{"SELECT query_to_xml_and_xmlschema($q$SELECT total FROM orders$q$::text, true, false, '')", "orders"},
		{"SELECT table_to_xml('salaries', true, false, '')", "salaries"},
		{"SELECT table_to_xml('public.people'::regclass, true, false, '')", "people"},
		{"SELECT table_to_xml(tbl => 'orders', nulls => true, tableforest => false, targetns => '')", "orders"},
		{"SELECT * FROM ts_stat('SELECT to_tsvector(amount::text) FROM salaries')", "salaries"},
		{"WITH salaries AS (SELECT 1) SELECT query_to_xml('SELECT * FROM salaries', true, false, '') FROM salaries", "salaries"},
	}
	for _, tt := range reads {
		f := SQLFacts(tt.sql)
		listed := slices.ContainsFunc(f.TablesRead, func(r string) bool { return r == tt.table || r == "public."+tt.table })
		if !listed {
			t.Errorf("%s: tables_read %q lacks %s", tt.sql, f.TablesRead, tt.table)
		}
		if !p.reads(t, tt.sql, tt.table) {
			t.Errorf("%s: PostgreSQL does not read %s (the test proves nothing)", tt.sql, tt.table)
		}
	}
}

// TestSQLTextCannotKillSessions: the review's attack. Under a read-only
// grant, query_to_xml ran pg_terminate_backend from its text and killed
// another session of the role; the facts now list the function (so a rule
// denying it matches) and the call is not a plain read (so a read-only
// grant refuses it).
func TestSQLTextCannotKillSessions(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	ctx := context.Background()
	victim, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s password=%s sslmode=disable",
		f.pg.Port, cred.Handle(), cred.password.Reveal()))
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close(ctx)
	sql := "SELECT query_to_xml('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()', true, false, '')"

	qdb := &QueryDB{}
	raw, _ := json.Marshal(map[string]any{"resource": "shop", "sql": sql})
	args, err := qdb.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	facts, err := qdb.Facts(args)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(facts.SQL.Functions, "pg_terminate_backend") || facts.SQL.ReadOnly {
		t.Errorf("functions %q read_only %v", facts.SQL.Functions, facts.SQL.ReadOnly)
	}
	_, err = f.query(t, cred, defaultLimits(), map[string]any{"sql": sql})
	if !errors.Is(err, tools.ErrRefused) || !strings.Contains(err.Error(), "pg_terminate_backend terminates other sessions") {
		t.Errorf("Execute under a read-only grant: %v, want a refusal naming pg_terminate_backend", err)
	}
	if err := victim.Ping(ctx); err != nil {
		t.Fatalf("the other session was killed: %v", err)
	}
}
