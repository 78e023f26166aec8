package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

const fuzzSchema = `
CREATE TABLE customers (id serial PRIMARY KEY, name text, email text, balance numeric DEFAULT 0, active boolean DEFAULT true, doc jsonb);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int, total numeric, status text);
CREATE TABLE salaries (id int, amount int);
CREATE TABLE people (id int);
CREATE TABLE ct (a text, b int, c int);
CREATE SEQUENCE s;
CREATE VIEW paid AS SELECT * FROM orders WHERE status = 'paid';
CREATE FUNCTION archive_orders(int) RETURNS int LANGUAGE sql AS 'DELETE FROM orders WHERE id < $1 RETURNING 1';
CREATE FUNCTION lookup(int) RETURNS text LANGUAGE sql STABLE AS 'SELECT name FROM customers WHERE id = $1';
INSERT INTO customers (name, email, doc) VALUES ('Ada', 'ada@example.com', '{"a": 1}'), ('Grace', NULL, NULL);
INSERT INTO orders (customer_id, total, status) VALUES (1, 10, 'paid'), (2, 5, 'open');
INSERT INTO salaries VALUES (1, 100);
INSERT INTO people VALUES (1);
INSERT INTO ct VALUES ('x', 1, 2);
CREATE ROLE fuzzer LOGIN;
GRANT pg_read_all_data, pg_write_all_data TO fuzzer;
GRANT CREATE ON SCHEMA public TO fuzzer;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO fuzzer;
`

// fuzzSeeds are realistic and hostile SQL: the shapes the facts must get
// right (CTE scoping, EXPLAIN options, SQL run from text, functions by
// class, writes hidden in reads), for FuzzSQLFacts to start from.
func fuzzSeeds() []string {
	seeds := []string{
		"SELECT id, email FROM customers WHERE id = 1",
		"SELECT c.name, o.total FROM public.customers c JOIN orders o ON o.customer_id = c.id",
		"SELECT * FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE total > 10)",
		"WITH big AS (SELECT * FROM orders WHERE total > 1) SELECT * FROM big JOIN customers ON true",
		"WITH gone AS (DELETE FROM orders WHERE status = 'open' RETURNING *) SELECT count(*) FROM gone",
		"WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT * FROM n",
		"SELECT * INTO backup FROM customers",
		"SELECT * FROM customers WHERE id = 1 FOR UPDATE",
		"SELECT * FROM customers c FOR SHARE OF c",
		"INSERT INTO orders (customer_id, total) SELECT id, 0 FROM customers",
		"UPDATE customers SET name = 'x' WHERE id = 1",
		"DELETE FROM customers",
		"MERGE INTO customers c USING orders o ON c.id = o.customer_id WHEN MATCHED THEN UPDATE SET balance = 0",
		"TRUNCATE people",
		"CREATE TABLE copy AS SELECT * FROM customers",
		"CREATE INDEX ON customers (email)",
		"ALTER TABLE people ADD COLUMN x int",
		"DROP TABLE people",
		"COPY customers TO STDOUT",
		"DO $$ BEGIN DELETE FROM people; END $$",
		"CALL nothing()",
		"SET work_mem = '1MB'",
		"SHOW search_path",
		"VALUES (1), (2)",
		"TABLE orders",
		"LISTEN x", "NOTIFY x", "PREPARE p AS SELECT 1", "LOCK TABLE people", "VACUUM people", "ANALYZE people",
		"SELECT 1; DROP TABLE people",
		"SELECT pg_sleep(0.01)",
		"SELECT random(), clock_timestamp(), gen_random_uuid(), pg_total_relation_size('orders')",
		"SELECT nextval('s')", "SELECT setval('s', 10)", "SELECT currval('s')", "SELECT lastval()",
		"SELECT txid_current()", "SELECT pg_current_xact_id()",
		"SELECT pg_advisory_xact_lock(1)", "SELECT pg_advisory_lock(1)",
		"SELECT set_config('work_mem', '2MB', true)",
		"SELECT lo_create(0)", "SELECT lo_from_bytea(0, 'x')",
		"SELECT archive_orders(1)", "SELECT lookup(1)", "SELECT public.lower('X')", `SELECT "Lower"('X')`,
		"SELECT * FROM paid",
		"SELECT brin_summarize_new_values('orders_pkey')", "SELECT gin_clean_pending_list('orders_pkey')",
		"SELECT pg_notify('x', 'y')", "SELECT pg_import_system_collations('pg_catalog')",
		"SELECT 1 ||| 2",
		"SELECT uuid('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), int4('1')",
		"SELECT substring('abc' from 1), extract(year from now()), trim(' a ')",
		"SELECT query_to_xml('SELECT * FROM customers', true, false, '')",
		"SELECT query_to_xml('SELECT nextval(''s'')', true, false, '')",
		"SELECT query_to_xml('INSERT INTO people VALUES (1) RETURNING *', true, false, '')",
		"SELECT query_to_xml('WITH d AS (DELETE FROM people RETURNING *) SELECT * FROM d', true, false, '')",
		"SELECT query_to_xml('SELECT 1 FROM people FOR UPDATE', true, false, '')",
		"SELECT query_to_xml(q, true, false, '') FROM (VALUES ('SELECT 1')) v(q)",
		"SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM customers')",
		"SELECT ts_rewrite('a & b'::tsquery, 'SELECT ''a''::tsquery, ''c''::tsquery')",
		"SELECT table_to_xml('salaries', true, false, '')",
		"SELECT table_to_xml('public.salaries'::regclass, true, false, '')",
		"SELECT schema_to_xml('public', true, false, '')",
		"SELECT cursor_to_xml('c', 1, true, false, '')",
		"EXPLAIN DELETE FROM people",
		"EXPLAIN ANALYZE DELETE FROM people",
		"EXPLAIN (ANALYZE false, ANALYZE true) DELETE FROM people",
		"EXPLAIN (ANALYZE true, ANALYZE false) DELETE FROM people",
		"EXPLAIN (ANALYZE 0, VERBOSE, ANALYZE 1) INSERT INTO people VALUES (1)",
		"EXPLAIN (ANALYZE off) UPDATE people SET id = 2",
		"EXPLAIN (ANALYZE on) SELECT nextval('s')",
		"EXPLAIN SELECT archive_orders(1)",
		"EXPLAIN SELECT * FROM customers WHERE id = lookup(1)::int",
		"EXPLAIN CREATE TABLE x AS SELECT 1",
		"SELECT * FROM people WHERE EXISTS (WITH people AS (SELECT 1) SELECT 1 FROM people)",
		"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT a", "DISCARD ALL", "RESET ALL", "SET ROLE postgres",
		"/* leading */ SELECT 1 -- trailing\n",
	}
	for _, c := range cteScopeCases {
		seeds = append(seeds, c.sql)
	}
	seeds = append(seeds, sessionStateSQL...)
	return seeds
}

// FuzzSQLFacts: the facts never panic, and whatever they call a plain read
// runs in BEGIN READ ONLY on a real PostgreSQL without being refused as a
// write (SQLSTATE 25006, read_only_sql_transaction). Each fuzz process
// starts its own PostgreSQL with a small schema; statements run as a role
// that may read and write every table (so a write gets as far as the
// read-only check), with a short statement_timeout, and are rolled back.
func FuzzSQLFacts(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	pg := testenv.PostgreSQL(f)
	pg.Exec(f, fuzzSchema)
	ctx := context.Background()
	var conn *pgx.Conn
	connect := func(t testing.TB) *pgx.Conn {
		if conn == nil || conn.IsClosed() {
			var err error
			conn, err = pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=fuzzer dbname=postgres sslmode=disable", pg.SocketDir, pg.Port))
			if err != nil {
				t.Fatalf("connecting as fuzzer: %v", err)
			}
		}
		return conn
	}
	f.Cleanup(func() {
		if conn != nil {
			conn.Close(ctx)
		}
	})
	f.Fuzz(func(t *testing.T, sql string) {
		p, err := parseSQL(sql)
		_ = SQLFacts(sql)
		if err != nil || p.opaque != "" || !p.facts.ReadOnly {
			return
		}
		for _, st := range p.statements {
			if st.refusal != "" || st.params > 0 {
				return // Execute refuses it, or it cannot run without parameters
			}
		}
		c := connect(t)
		runCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = c.PgConn().Exec(runCtx, "BEGIN READ ONLY; SET LOCAL statement_timeout = '250ms'; SET LOCAL lock_timeout = '100ms'").ReadAll()
		if err != nil {
			t.Fatalf("BEGIN: %v", err)
		}
		_, runErr := c.PgConn().Exec(runCtx, sql).ReadAll()
		if _, err := c.PgConn().Exec(runCtx, "ROLLBACK").ReadAll(); err != nil {
			c.Close(ctx) // a fresh connection for the next input
		}
		var pe *pgconn.PgError
		if errors.As(runErr, &pe) && pe.Code == "25006" {
			t.Fatalf("the facts call %q a plain read, but PostgreSQL refused it in a read-only transaction: %v", sql, pe)
		}
	})
}
