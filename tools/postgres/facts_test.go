package postgres

import (
	"reflect"
	"testing"
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
			want{kinds: []string{"select"}, read: []string{"customers", "orders"}, readOnly: true}},
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
	for _, fn := range []string{"pg_terminate_backend", "pg_catalog.pg_cancel_backend", "dblink_exec", "pg_advisory_xact_lock", "pg_sleep_for", "lo_export", "set_config", "pg_ls_waldir"} {
		if sideEffectOf(fn) == "" {
			t.Errorf("%s should have a side effect", fn)
		}
	}
	for _, fn := range []string{"lower", "count", "now", "pg_size_pretty", "jsonb_build_object"} {
		if why := sideEffectOf(fn); why != "" {
			t.Errorf("%s should be side-effect free, got %q", fn, why)
		}
	}
}
