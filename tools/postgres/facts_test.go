package postgres

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

func TestSQLFacts(t *testing.T) {
	type want struct {
		kinds    []string
		read     []string
		written  []string
		funcs    []string
		readOnly bool
		hasWhere *bool
	}
	yes, no := true, false
	tests := []struct {
		name string
		sql  string
		want want
	}{
		{"plain select", "SELECT id, email FROM customers WHERE id = $1",
			want{kinds: []string{"select"}, read: []string{"customers"}, readOnly: true}},
		{"qualified and join", "SELECT c.name, o.total FROM public.customers c JOIN sales.orders o ON o.customer_id = c.id",
			want{kinds: []string{"select"}, read: []string{"public.customers", "sales.orders"}, readOnly: true}},
		{"subquery in where", "SELECT * FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE total > 10)",
			want{kinds: []string{"select"}, read: []string{"customers", "orders"}, readOnly: true}},
		{"cte read only", "WITH big AS (SELECT * FROM orders WHERE total > 10) SELECT * FROM big JOIN customers ON true",
			want{kinds: []string{"select"}, read: []string{"orders", "customers"}, readOnly: true}},
		{"cte with delete", "WITH gone AS (DELETE FROM orders WHERE status = 'open' RETURNING *) SELECT count(*) FROM gone",
			want{kinds: []string{"select"}, written: []string{"orders"}, funcs: []string{"count"}}},
		{"select into", "SELECT * INTO backup FROM customers",
			want{kinds: []string{"select"}, read: []string{"customers"}, written: []string{"backup"}}},
		{"for update", "SELECT * FROM customers WHERE id = 1 FOR UPDATE",
			want{kinds: []string{"select"}, read: []string{"customers"}}},
		{"function in select list", "SELECT lower(name), pg_catalog.upper(email) FROM customers",
			want{kinds: []string{"select"}, read: []string{"customers"}, funcs: []string{"lower", "pg_catalog.upper"}, readOnly: true}},
		{"side-effect function", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
			want{kinds: []string{"select"}, read: []string{"pg_stat_activity"}, funcs: []string{"pg_terminate_backend"}}},
		{"side-effect function qualified", "SELECT PG_CATALOG.PG_TERMINATE_BACKEND(1)",
			want{kinds: []string{"select"}, funcs: []string{"pg_catalog.pg_terminate_backend"}}},
		{"function nested in args", "SELECT coalesce(nextval('s'), 0)",
			want{kinds: []string{"select"}, funcs: []string{"nextval"}}}, // coalesce is an expression, not a call
		{"lo_import", "SELECT lo_import('/etc/passwd')",
			want{kinds: []string{"select"}, funcs: []string{"lo_import"}}},
		{"dblink", "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
			want{kinds: []string{"select"}, funcs: []string{"dblink"}}},
		{"insert select", "INSERT INTO orders (customer_id, total) SELECT id, 0 FROM customers",
			want{kinds: []string{"insert"}, read: []string{"customers"}, written: []string{"orders"}}},
		{"update with where", "UPDATE customers SET name = 'x' WHERE id = 1",
			want{kinds: []string{"update"}, written: []string{"customers"}, hasWhere: &yes}},
		{"update from", "UPDATE orders o SET status = 'x' FROM customers c WHERE c.id = o.customer_id",
			want{kinds: []string{"update"}, read: []string{"customers"}, written: []string{"orders"}, hasWhere: &yes}},
		{"delete everything", "DELETE FROM customers",
			want{kinds: []string{"delete"}, written: []string{"customers"}, hasWhere: &no}},
		{"merge", "MERGE INTO customers c USING orders o ON c.id = o.customer_id WHEN MATCHED THEN DELETE",
			want{kinds: []string{"merge"}, read: []string{"orders"}, written: []string{"customers"}}},
		{"truncate", "TRUNCATE customers, orders",
			want{kinds: []string{"truncate"}, written: []string{"customers", "orders"}}},
		{"drop", "DROP TABLE public.customers, orders",
			want{kinds: []string{"drop"}, written: []string{"public.customers", "orders"}}},
		{"alter", "ALTER TABLE customers ADD COLUMN x int",
			want{kinds: []string{"alter"}, written: []string{"customers"}}},
		{"create table as", "CREATE TABLE copy AS SELECT * FROM customers",
			want{kinds: []string{"create"}, read: []string{"customers"}, written: []string{"copy"}}},
		{"create index", "CREATE INDEX ON customers (email)",
			want{kinds: []string{"create"}, written: []string{"customers"}}},
		{"grant", "GRANT SELECT ON customers TO public",
			want{kinds: []string{"grant"}, written: []string{"customers"}}},
		{"revoke", "REVOKE SELECT ON customers FROM public",
			want{kinds: []string{"revoke"}, written: []string{"customers"}}},
		{"copy to program", "COPY customers TO PROGRAM 'id'",
			want{kinds: []string{"copy"}, read: []string{"customers"}}},
		{"copy from", "COPY customers FROM '/tmp/x.csv'",
			want{kinds: []string{"copy"}, written: []string{"customers"}}},
		{"do block", "DO $$ BEGIN DELETE FROM customers; END $$",
			want{kinds: []string{"do"}}},
		{"call", "CALL archive_orders(30)",
			want{kinds: []string{"call"}, funcs: []string{"archive_orders"}}},
		{"comments", "/* leading */ SELECT 1 -- trailing\n",
			want{kinds: []string{"select"}, readOnly: true}},
		{"commit hidden after comment", "/* */ commit; delete from customers",
			want{kinds: []string{"transaction", "delete"}, written: []string{"customers"}, hasWhere: &no}},
		{"set role", "SET ROLE postgres", want{kinds: []string{"set"}}},
		{"reset all", "RESET ALL", want{kinds: []string{"set"}}},
		{"set session authorization", "SET SESSION AUTHORIZATION postgres", want{kinds: []string{"set"}}},
		{"show", "SHOW search_path", want{kinds: []string{"show"}, readOnly: true}},
		{"explain select", "EXPLAIN SELECT * FROM customers",
			want{kinds: []string{"explain"}, read: []string{"customers"}, readOnly: true}},
		{"explain delete without analyze", "EXPLAIN DELETE FROM customers",
			want{kinds: []string{"explain"}, written: []string{"customers"}, readOnly: true}},
		{"explain analyze delete", "EXPLAIN ANALYZE DELETE FROM customers",
			want{kinds: []string{"explain"}, written: []string{"customers"}}},
		{"explain (analyze false) delete", "EXPLAIN (ANALYZE false) DELETE FROM customers",
			want{kinds: []string{"explain"}, written: []string{"customers"}, readOnly: true}},
		{"transaction statements", "BEGIN; SAVEPOINT a; RELEASE a; PREPARE TRANSACTION 'x'; COMMIT PREPARED 'x'; ROLLBACK",
			want{kinds: []string{"transaction", "transaction", "transaction", "transaction", "transaction", "transaction"}}},
		{"lock", "LOCK TABLE customers", want{kinds: []string{"lock"}, read: []string{"customers"}}},
		{"vacuum and analyze", "VACUUM customers; ANALYZE orders", want{kinds: []string{"vacuum", "analyze"}, read: []string{"customers", "orders"}}},
		{"listen notify", "LISTEN x; NOTIFY x", want{kinds: []string{"listen", "notify"}}},
		{"prepare execute", "PREPARE p AS SELECT 1; EXECUTE p", want{kinds: []string{"prepare", "execute"}}},
		{"two statements", "SELECT 1; DROP TABLE customers",
			want{kinds: []string{"select", "drop"}, written: []string{"customers"}}},
		{"values", "VALUES (1), (2)", want{kinds: []string{"select"}, readOnly: true}},
		{"quoted identifiers keep case", `SELECT * FROM "Sales"."Orders"`,
			want{kinds: []string{"select"}, read: []string{"Sales.Orders"}, readOnly: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := SQLFacts(tt.sql)
			if f.ParseError != "" {
				t.Fatalf("parse error: %s", f.ParseError)
			}
			var kinds []string
			for _, s := range f.Statements {
				kinds = append(kinds, s.Kind)
			}
			check := func(what string, got, want []string) {
				t.Helper()
				if want == nil {
					want = []string{}
				}
				if got == nil {
					got = []string{}
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %q, want %q", what, got, want)
				}
			}
			check("kinds", kinds, tt.want.kinds)
			check("tables_read", f.TablesRead, tt.want.read)
			check("tables_written", f.TablesWritten, tt.want.written)
			if tt.want.funcs != nil {
				check("functions", f.Functions, tt.want.funcs)
			}
			if f.ReadOnly != tt.want.readOnly {
				t.Errorf("read_only = %v, want %v", f.ReadOnly, tt.want.readOnly)
			}
			if f.StatementCount != len(tt.want.kinds) {
				t.Errorf("statement_count = %d, want %d", f.StatementCount, len(tt.want.kinds))
			}
			if tt.want.hasWhere != nil {
				last := f.Statements[len(f.Statements)-1]
				if last.HasWhere != *tt.want.hasWhere {
					t.Errorf("has_where = %v, want %v", last.HasWhere, *tt.want.hasWhere)
				}
			}
		})
	}
}

func TestSQLFactsParseError(t *testing.T) {
	f := SQLFacts("SELECT * FORM customers")
	want := `syntax error at or near "FORM" at position 10`
	if f.ParseError != want {
		t.Fatalf("ParseError = %q, want %q", f.ParseError, want)
	}
	if len(f.Statements) != 0 || f.ReadOnly {
		t.Fatalf("facts of unparsable SQL should be empty: %+v", f)
	}
}

func TestSideEffectTable(t *testing.T) {
	for _, fn := range []string{"pg_terminate_backend", "pg_catalog.pg_cancel_backend", "dblink_exec", "pg_advisory_xact_lock", "lo_export", "set_config", "pg_ls_waldir"} {
		if sideEffectOf(fn) == "" {
			t.Errorf("%s should have a side effect", fn)
		}
	}
	for _, fn := range []string{"lower", "count", "now", "pg_size_pretty", "jsonb_build_object", "pg_sleep", "pg_sleep_for"} {
		if why := sideEffectOf(fn); why != "" {
			t.Errorf("%s should be side-effect free, got %q", fn, why)
		}
	}
}

// decodeFacts runs query_db's Decode and Facts on sql, as the broker does.
func decodeFacts(t *testing.T, sql string, params ...any) (*policy.SQL, error) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"resource": "shop", "sql": sql, "params": params})
	if len(params) == 0 {
		raw, _ = json.Marshal(map[string]any{"resource": "shop", "sql": sql})
	}
	qdb := &QueryDB{}
	args, err := qdb.Decode(raw)
	if err != nil {
		t.Fatalf("Decode %s: %v", sql, err)
	}
	f, err := qdb.Facts(args)
	return f.SQL, err
}

// SQL run from text is analysed: its tables and functions are the calling
// statement's, and so are its effects.
func TestSQLTextIsFollowed(t *testing.T) {
	tests := []struct {
		sql       string
		read      []string
		functions []string
		readOnly  bool
	}{
		{"SELECT query_to_xml('SELECT pg_advisory_lock(4242)', true, false, '')", nil, []string{"query_to_xml", "pg_advisory_lock"}, false},
		{"SELECT query_to_xml('SELECT id, email FROM customers', true, false, '')", []string{"customers"}, []string{"query_to_xml"}, true},
		{"SELECT pg_catalog.query_to_xml(E'SELECT * FROM orders WHERE status = \\'paid\\'', true, false, '')", []string{"orders"}, []string{"pg_catalog.query_to_xml"}, true},
		{"SELECT query_to_xml($$SELECT * FROM orders$$::text, true, false, '')", []string{"orders"}, []string{"query_to_xml"}, true},
		{"SELECT query_to_xml(CAST('SELECT 1 FROM orders' AS text) COLLATE \"C\", true, false, '')", []string{"orders"}, []string{"query_to_xml"}, true},
		{"SELECT query_to_xml(query => 'SELECT * FROM orders', nulls => true, tableforest => false, targetns => '')", []string{"orders"}, []string{"query_to_xml"}, true},
		{"SELECT query_to_xmlschema('SELECT 1 FROM customers', true, false, ''), query_to_xml_and_xmlschema('SELECT 1 FROM orders', true, false, '')", []string{"customers", "orders"}, []string{"query_to_xmlschema", "query_to_xml_and_xmlschema"}, true},
		{"SELECT * FROM ts_stat('SELECT to_tsvector(''x'') FROM pg_advisory_lock(4444)')", nil, []string{"ts_stat", "to_tsvector", "pg_advisory_lock"}, false},
		{"SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM customers', 'ab')", []string{"customers"}, []string{"ts_stat", "to_tsvector"}, true},
		{"SELECT ts_rewrite('a & b'::tsquery, 'SELECT t, s FROM aliases')", []string{"aliases"}, []string{"ts_rewrite"}, true},
		{"SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)", nil, []string{"ts_rewrite"}, true},
		{"SELECT table_to_xml('salaries', true, false, '')", []string{"salaries"}, []string{"table_to_xml"}, true},
		{"SELECT table_to_xml('hr.salaries'::regclass, true, false, '')", []string{"hr.salaries"}, []string{"table_to_xml"}, true},
		{`SELECT table_to_xmlschema('"Sales"."Orders"', true, false, ''), table_to_xml_and_xmlschema(' People ', true, false, '')`, []string{"Sales.Orders", "people"}, []string{"table_to_xmlschema", "table_to_xml_and_xmlschema"}, true},
		{"WITH salaries AS (SELECT 1) SELECT table_to_xml('salaries', true, false, '') FROM salaries", []string{"salaries"}, []string{"table_to_xml"}, true},
		{"SELECT query_to_xml('SELECT query_to_xml(''SELECT * FROM salaries'', true, false, '''')', true, false, '')", []string{"salaries"}, []string{"query_to_xml"}, true},
		{"SELECT query_to_xml('SELECT 1 FOR UPDATE', true, false, '')", nil, []string{"query_to_xml"}, false},
		{"SELECT query_to_xml('SELECT nextval(''s'')', true, false, '')", nil, []string{"query_to_xml", "nextval"}, false},
		{"SELECT query_to_xml(NULL, true, false, '')", nil, []string{"query_to_xml"}, true},
		{"SELECT cursor_to_xml('c', 10, true, false, '')", nil, []string{"cursor_to_xml"}, true},
		{"SELECT * FROM dblink('dbname=postgres', 'SELECT pg_terminate_backend(1)') AS t(x bool)", nil, []string{"dblink", "pg_terminate_backend"}, false},
		{"SELECT dblink_exec('DELETE FROM salaries')", nil, []string{"dblink_exec"}, false},
		{"SELECT * FROM public.crosstab('SELECT a, b, c FROM ct', 'SELECT DISTINCT b FROM ct2') AS t(a text, b int)", []string{"ct", "ct2"}, []string{"public.crosstab"}, false},
	}
	for _, tt := range tests {
		f, err := decodeFacts(t, tt.sql)
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		if !reflect.DeepEqual(f.TablesRead, nonNil(tt.read)) || !reflect.DeepEqual(f.Functions, tt.functions) || f.ReadOnly != tt.readOnly {
			t.Errorf("%s:\n  tables_read %q functions %q read_only %v\n  want        %q           %q %v", tt.sql, f.TablesRead, f.Functions, f.ReadOnly, nonNil(tt.read), tt.functions, tt.readOnly)
		}
	}
	f, _ := decodeFacts(t, "SELECT dblink_exec('conn', 'DELETE FROM salaries WHERE id = 1')")
	if !reflect.DeepEqual(f.TablesWritten, []string{"salaries"}) {
		t.Errorf("dblink_exec's DELETE: tables_written %q", f.TablesWritten)
	}
}

// What the analysis cannot follow is refused before policy, with a reason
// naming the function and what to write instead.
func TestSQLTextRefusedBeforePolicy(t *testing.T) {
	deep := "SELECT 1"
	for range maxTextDepth + 1 {
		deep = "SELECT query_to_xml('" + strings.ReplaceAll(deep, "'", "''") + "', true, false, '')"
	}
	tests := []struct {
		sql    string
		params []any
		reason string
	}{
		{"SELECT query_to_xml(q, true, false, '') FROM saved_queries", nil, "query_to_xml runs SQL given as text, and that text is not a string literal"},
		{"SELECT query_to_xml($1, true, false, '')", []any{"SELECT 1"}, "pass the query as a string literal, or write it as plain SQL"},
		{"SELECT query_to_xml('SELECT * FROM ' || 'salaries', true, false, '')", nil, "not a string literal"},
		{"SELECT query_to_xml((SELECT 'SELECT 1'), true, false, '')", nil, "not a string literal"},
		{"SELECT query_to_xml(lower('SELECT 1'), true, false, '')", nil, "not a string literal"},
		{"SELECT query_to_xml('SELECT 1'::varchar(3), true, false, '')", nil, "not a string literal"},
		{"SELECT * FROM ts_stat(format('SELECT %s', 'x'))", nil, "ts_stat runs SQL given as text"},
		{"SELECT ts_rewrite('a'::tsquery, sql) FROM rewrites", nil, "ts_rewrite runs SQL given as text"},
		{"SELECT query_to_xml('SELECT pg_sleep(', true, false, '')", nil, "the SQL text query_to_xml runs does not parse"},
		{"SELECT query_to_xml(quer => 'SELECT 1', nulls => true, tableforest => false, targetns => '')", nil, "named arguments"},
		{"SELECT query_to_xml(VARIADIC ARRAY['SELECT 1'])", nil, "VARIADIC"},
		{deep, nil, "nested more than"},
		{"SELECT table_to_xml(relname::regclass, true, false, '') FROM pg_class", nil, "table_to_xml reads the table its argument names, and that argument is not a string literal"},
		{"SELECT table_to_xml(16384, true, false, '')", nil, "an OID"},
		{"SELECT table_to_xml('16384', true, false, '')", nil, "not a table name"},
		{"SELECT table_to_xml('salaries s', true, false, '')", nil, "not a single table name"},
		{"SELECT table_to_xml('salaries; DROP TABLE x', true, false, '')", nil, "not a table name"},
		{"SELECT schema_to_xml('public', true, false, '')", nil, "schema_to_xml reads every table of a schema"},
		{"SELECT database_to_xml(true, false, '')", nil, "database_to_xml reads every table of the database"},
		{"SELECT * FROM connectby('tree', 'id', 'parent', '1', 0) AS t(id int, parent int, level int)", nil, "connectby builds SQL from its arguments"},
		{"SELECT * FROM dblink('conn', sql_column) AS t(x int)", nil, "dblink runs SQL given as text"},
		{"SELECT dblink_exec('conn', $1)", []any{"DELETE FROM x"}, "dblink_exec runs SQL given as text"},
		{"SELECT 1; SELECT query_to_xml(q, true, false, '') FROM saved", nil, "statement 2: query_to_xml"},
		{"EXPLAIN SELECT query_to_xml(q, true, false, '') FROM saved", nil, "query_to_xml runs SQL given as text"},
		{"SELECT query_to_xml('SELECT query_to_xml(q, true, false, '''') FROM saved', true, false, '')", nil, "query_to_xml runs SQL given as text"},
	}
	for _, tt := range tests {
		_, err := decodeFacts(t, tt.sql, tt.params...)
		if !errors.Is(err, tools.ErrOpaque) || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("%s: %v, want a refusal mentioning %q", tt.sql, err, tt.reason)
		}
	}
}

// set_config may not change what SET may not: the limits, the transaction
// and the identity Airlock set up.
func TestSetConfigOfProtectedSettingsRefused(t *testing.T) {
	for _, sql := range []string{
		"SELECT set_config('statement_timeout', '0', true)",
		"SELECT pg_catalog.set_config('ROLE', 'postgres', false)",
		"SELECT set_config('default_transaction_read_only', 'off', false)",
		"SELECT set_config(name, '0', true) FROM pg_settings",
		"SELECT query_to_xml('SELECT set_config(''statement_timeout'', ''0'', true)', true, false, '')",
	} {
		p, err := parseSQL(sql)
		if err != nil {
			t.Fatal(err)
		}
		if err := refuse(p, false, false); !errors.Is(err, tools.ErrRefused) {
			t.Errorf("%s: %v, want refused", sql, err)
		}
	}
	p, _ := parseSQL("SELECT set_config('search_path', 'public', true)")
	if err := refuse(p, false, false); err != nil {
		t.Errorf("set_config of search_path: %v", err)
	}
}

// Functions are classified from the catalog: volatile built-ins are not
// reads unless known harmless, functions that are not built in have unknown
// effects, and names resolve as PostgreSQL resolves them.
func TestFunctionClassification(t *testing.T) {
	tests := []struct {
		sql      string
		readOnly bool
		reason   string // part of the statement's notRead
	}{
		{"SELECT pg_sleep(1)", true, ""},
		{"SELECT pg_catalog.pg_sleep_for('1 second')", true, ""},
		{"SELECT random(), gen_random_uuid(), clock_timestamp(), timeofday()", true, ""},
		{"SELECT pg_size_pretty(pg_total_relation_size('orders')), pg_relation_size('orders'), pg_database_size(current_database())", true, ""},
		{"SELECT currval('orders_id_seq'), lastval(), pg_is_in_recovery()", true, ""},
		{"SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity", true, ""},
		{"SELECT uuid('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), int4('1'), date('2024-01-01')", true, ""},
		{"SELECT substring('abc' from 1), extract(year from now()), trim(' a '), 'a' SIMILAR TO 'b', now() AT TIME ZONE 'utc'", true, ""},
		{"SELECT x OPERATOR(pg_catalog.+) 1 FROM (VALUES (1)) v(x)", true, ""},
		{"SELECT information_schema._pg_expandarray(ARRAY[1])", true, ""},
		{"SELECT lo_get(1234)", false, "function lo_get is volatile"},
		{"SELECT brin_summarize_new_values('orders_status')", false, "is volatile"},
		{"SELECT setseed(0.5)", false, "changes the session's random seed"},
		{"SELECT txid_current()", false, "assigns a transaction id"},
		{"SELECT archive_orders(30)", false, "function archive_orders is not a built-in function"},
		{"SELECT public.lower('X')", false, "function public.lower is not a built-in function"},
		{`SELECT "Lower"('X')`, false, "function Lower is not a built-in function"},
		{`SELECT "PG_SLEEP"(1)`, false, "PG_SLEEP is not a built-in"},
		{"SELECT public.pg_sleep(1)", false, "public.pg_sleep is not a built-in"},
		{"SELECT 1 ||| 2", false, "operator ||| is not a built-in operator"},
		{"SELECT 1 OPERATOR(public.+) 2", false, "operator public.+ is not a built-in operator"},
		{"SELECT * FROM orders WHERE total > ANY (SELECT 1)", true, ""},
		{"SELECT lower(name) FROM customers WHERE EXISTS (SELECT my_audit(id))", false, "my_audit"},
	}
	for _, tt := range tests {
		p, err := parseSQL(tt.sql)
		if err != nil {
			t.Fatalf("%s: %v", tt.sql, err)
		}
		if p.facts.ReadOnly != tt.readOnly || !strings.Contains(p.statements[0].notRead, tt.reason) {
			t.Errorf("%s: read_only %v (%q), want %v (%q)", tt.sql, p.facts.ReadOnly, p.statements[0].notRead, tt.readOnly, tt.reason)
		}
	}
	for name, why := range harmlessVolatile {
		f, ok := builtinFunctions[name]
		if !ok || f.volatility != 'v' {
			t.Errorf("harmless %s (%s) is not a volatile built-in function: %+v", name, why, f)
		}
	}
}

// EXPLAIN options resolve as PostgreSQL resolves them (TestExplainOptions
// MatchPostgres checks against a server); without ANALYZE only the
// planner runs, which may still run a function it believes immutable.
func TestExplainFacts(t *testing.T) {
	for sql, readOnly := range map[string]bool{
		"EXPLAIN (ANALYZE false, ANALYZE true) DELETE FROM orders":                           false,
		"EXPLAIN (ANALYZE true, ANALYZE false) DELETE FROM orders":                           true,
		"EXPLAIN (ANALYZE off, VERBOSE, ANALYZE) SELECT nextval('s')":                        false,
		"EXPLAIN (ANALYZE 1) SELECT pg_advisory_lock(1)":                                     false,
		"EXPLAIN (ANALYZE 0) SELECT pg_advisory_lock(1)":                                     true,
		"EXPLAIN (ANALYZE yes) DELETE FROM orders":                                           false,
		"EXPLAIN (ANALYZE yes) SELECT 1":                                                     true,
		"EXPLAIN ANALYZE SELECT * FROM orders":                                               true,
		"EXPLAIN SELECT pg_terminate_backend(1)":                                             true,
		"EXPLAIN SELECT archive_orders(1)":                                                   false,
		"EXPLAIN SELECT txid_current()":                                                      false,
		"EXPLAIN ANALYZE SELECT query_to_xml('SELECT pg_advisory_lock(1)', true, false, '')": false,
	} {
		if f := SQLFacts(sql); f.ReadOnly != readOnly || f.ParseError != "" {
			t.Errorf("%s: read_only %v (%s), want %v", sql, f.ReadOnly, f.ParseError, readOnly)
		}
	}
}

// The facts' CTE scoping, without a server (TestCTEScopeMatchesPostgres
// checks the same cases against one).
func TestCTEScope(t *testing.T) {
	for _, tt := range cteScopeCases {
		f := SQLFacts(tt.sql)
		if !reflect.DeepEqual(f.TablesRead, nonNil(tt.read)) || !reflect.DeepEqual(f.TablesWritten, nonNil(tt.written)) {
			t.Errorf("%s:\n  tables_read %q, tables_written %q\n  want        %q, %q", tt.sql, f.TablesRead, f.TablesWritten, nonNil(tt.read), nonNil(tt.written))
		}
	}
}
