package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/tools"
)

func TestQueryValuesAndColumns(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	out, err := f.query(t, cred, defaultLimits(), map[string]any{
		"sql": "SELECT id, name, email AS e, balance, active, created_at, ref, blob, doc, score, lower(name) AS lname FROM customers ORDER BY id",
	})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	wantCols := []tools.Column{
		{Name: "id", Type: "int4", Table: "public.customers", Source: "id"},
		{Name: "name", Type: "text", Table: "public.customers", Source: "name"},
		{Name: "e", Type: "text", Table: "public.customers", Source: "email"},
		{Name: "balance", Type: "numeric", Table: "public.customers", Source: "balance"},
		{Name: "active", Type: "bool", Table: "public.customers", Source: "active"},
		{Name: "created_at", Type: "timestamptz", Table: "public.customers", Source: "created_at"},
		{Name: "ref", Type: "uuid", Table: "public.customers", Source: "ref"},
		{Name: "blob", Type: "bytea", Table: "public.customers", Source: "blob"},
		{Name: "doc", Type: "jsonb", Table: "public.customers", Source: "doc"},
		{Name: "score", Type: "float8", Table: "public.customers", Source: "score"},
		{Name: "lname", Type: "text", From: []tools.ColumnOrigin{{Table: "public.customers", Column: "name"}}},
	}
	for i, c := range wantCols {
		if !reflect.DeepEqual(out.Table.Columns[i], c) {
			t.Errorf("column %d = %+v, want %+v", i, out.Table.Columns[i], c)
		}
	}
	row := out.Table.Rows[0]
	want := []any{int64(1), "Ada", "ada@example.com", "10.50", true, "2024-01-02 03:04:05+00",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `\xdeadbeef`, `{"tier": "gold"}`, 1.5, "ada"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("value %d (%s) = %#v, want %#v", i, wantCols[i].Name, row[i], want[i])
		}
	}
	if out.Table.Rows[2][2] != nil {
		t.Errorf("NULL email = %#v, want nil", out.Table.Rows[2][2])
	}
	if out.Table.Tag != "SELECT 3" || out.Truncated {
		t.Errorf("tag %q truncated %v", out.Table.Tag, out.Truncated)
	}
	if _, err := json.Marshal(out); err != nil {
		t.Errorf("output is not JSON-friendly: %v", err)
	}
}

func TestQueryParams(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	out, err := f.query(t, cred, defaultLimits(), map[string]any{
		"sql":    "SELECT name FROM customers WHERE id = $1 OR email = $2 OR active = $3 ORDER BY id",
		"params": []any{2, "ada@example.com", false},
	})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if len(out.Table.Rows) != 2 || out.Table.Rows[0][0] != "Ada" || out.Table.Rows[1][0] != "Grace" {
		t.Fatalf("rows = %v", out.Table.Rows)
	}
	// A string for an integer parameter works too (sent as text).
	if _, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT name FROM customers WHERE id = $1", "params": []any{"1"}}); err != nil {
		t.Fatalf("string param for int: %v", err)
	}
}

func TestMaxRowsArgument(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	out, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT * FROM customers ORDER BY id", "max_rows": 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Table.Rows) != 2 || !out.Truncated || out.Notice == "" {
		t.Fatalf("rows %d truncated %v notice %q", len(out.Table.Rows), out.Truncated, out.Notice)
	}
	// The connection was discarded; the next call gets a fresh one and works.
	out, err = f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT count(*) FROM customers"})
	if err != nil || out.Table.Rows[0][0] != int64(3) {
		t.Fatalf("query after a cut: %v %v", out, err)
	}
}

func TestHostileCalls(t *testing.T) {
	f := newFixture(t)
	ro := f.mint(t, "readonly")
	rw := f.mint(t, "readwrite")
	before := f.checksum(t)

	refused := func(err error) bool { return errors.Is(err, tools.ErrRefused) }
	invalid := func(err error) bool { return errors.Is(err, tools.ErrInvalidArguments) }
	sqlstate := func(code string) func(error) bool {
		return func(err error) bool {
			var pe *pgconn.PgError
			return errors.As(err, &pe) && pe.Code == code
		}
	}
	tests := []struct {
		name    string
		cred    *Credential
		multi   bool
		sql     string
		want    func(error) bool
		message string // substring of the error
	}{
		{"invalid sql", ro, false, "SELECT * FORM customers", invalid, `sql does not parse: syntax error at or near "FORM" at position 10`},
		{"two statements", ro, false, "SELECT 1; DROP TABLE customers", refused, "2 statements"},
		{"commit then drop", rw, true, "COMMIT; DROP TABLE customers", refused, "transaction control"},
		{"commit hidden by comment", rw, true, "/* */ commit; delete from customers", refused, "transaction control"},
		{"begin", rw, false, "BEGIN", refused, "transaction control"},
		{"savepoint", rw, false, "SAVEPOINT a", refused, "transaction control"},
		{"rollback prepared", rw, false, "ROLLBACK PREPARED 'x'", refused, "transaction control"},
		{"set role", rw, false, "SET ROLE postgres", refused, "SET ROLE"},
		{"set session authorization", rw, false, "SET SESSION AUTHORIZATION postgres", refused, "SESSION AUTHORIZATION"},
		{"reset role", rw, false, "RESET ROLE", refused, "SET ROLE"},
		{"reset all", rw, false, "RESET ALL", refused, "RESET ALL"},
		{"discard", rw, false, "DISCARD ALL", refused, "DISCARD"},
		{"deallocate", rw, false, "DEALLOCATE ALL", refused, "DEALLOCATE"},
		{"set transaction read write", ro, false, "SET TRANSACTION READ WRITE", refused, "SET TRANSACTION"},
		{"raise statement timeout", rw, false, "SET statement_timeout = 0", refused, "statement_timeout"},
		{"pg_terminate_backend", ro, false, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity", refused, "pg_terminate_backend terminates other sessions"},
		{"copy to program", ro, false, "COPY customers TO PROGRAM 'id'", refused, "COPY"},
		{"lo_import", ro, false, "SELECT lo_import('/etc/passwd')", refused, "lo_import"},
		{"dblink", ro, false, "SELECT * FROM dblink('host=127.0.0.1', 'DELETE FROM customers') AS t(x text)", refused, "dblink"},
		{"do block", ro, false, "DO $$ BEGIN DELETE FROM customers; END $$", refused, "DO"},
		{"delete under read-only grant", ro, false, "DELETE FROM customers", refused, "read-only"},
		{"cte delete under read-only grant", ro, false, "WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d", refused, "WITH clause modifies data"},
		{"select into", ro, false, "SELECT * INTO stolen FROM customers", refused, "SELECT INTO"},
		{"for update", ro, false, "SELECT * FROM customers FOR UPDATE", refused, "locking clause"},
		{"copy to program under read_write", rw, false, "COPY customers TO PROGRAM 'id'", sqlstate("42501"), "SQLSTATE 42501"},
		{"lo_import under read_write", rw, false, "SELECT lo_import('/etc/passwd')", sqlstate("42501"), "SQLSTATE 42501"},
		{"do block is refused, whatever the grant", rw, false, "DO $$ BEGIN DROP TABLE customers; END $$", refused, "DO runs a PL/pgSQL block"},
		{"volatile write hidden in a function is stopped by READ ONLY", ro, false, "SELECT * FROM customers WHERE id = 1", nil, ""},
		{"semicolon in a string is one statement", ro, false, "SELECT 'a; DROP TABLE customers' AS s", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limits := defaultLimits()
			limits.MultiStatement = tt.multi
			_, err := f.query(t, tt.cred, limits, map[string]any{"sql": tt.sql})
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != nil && !tt.want(err):
				t.Fatalf("error = %v, not the expected kind", err)
			case tt.want != nil && !strings.Contains(err.Error(), tt.message):
				t.Fatalf("error %q does not say %q", err, tt.message)
			}
			if err != nil && strings.Contains(err.Error(), "goroutine") {
				t.Fatalf("error carries a stack trace: %v", err)
			}
			if after := f.checksum(t); after != before {
				t.Fatalf("customers changed: %s → %s", before, after)
			}
		})
	}
}

func TestArgumentTypes(t *testing.T) {
	qdb := &QueryDB{}
	tests := []struct{ raw, want string }{
		{`{"sql": "SELECT 1"}`, `argument "resource" is required`},
		{`{"resource": 5, "sql": "SELECT 1"}`, `argument "resource" must be a string (got a number)`},
		{`{"resource": "", "sql": "SELECT 1"}`, `argument "resource" must be a non-empty string`},
		{`{"resource": "shop"}`, `argument "sql" is required`},
		{`{"resource": "shop", "sql": ["SELECT 1"]}`, `argument "sql" must be a string (got an array)`},
		{`{"resource": "shop", "sql": "   "}`, `argument "sql" must be a non-empty string`},
		{`{"resource": "shop", "sql": "-- nothing"}`, `sql contains no statement`},
		{`{"resource": "shop", "sql": "SELECT $1", "params": "x"}`, `argument "params" must be an array`},
		{`{"resource": "shop", "sql": "SELECT $1", "params": [{"a": 1}]}`, `params[0] must be a string, number, boolean or null (got an object)`},
		{`{"resource": "shop", "sql": "SELECT $1, $2", "params": [1]}`, `sql refers to $2 but params has 1 value(s)`},
		{`{"resource": "shop", "sql": "SELECT 1", "params": [1]}`, `params has 1 value(s) but sql uses no $n placeholders`},
		{`{"resource": "shop", "sql": "SELECT 1", "max_rows": "10"}`, `argument "max_rows" must be an integer between 1 and 100000 (got a string)`},
		{`{"resource": "shop", "sql": "SELECT 1", "max_rows": 1.5}`, `(got 1.5)`},
		{`{"resource": "shop", "sql": "SELECT 1", "max_rows": 0}`, `(got 0)`},
		{`{"resource": "shop", "sql": "SELECT 1", "max_rows": 100001}`, `(got 100001)`},
		{`{"resource": "shop", "sql": "SELECT 1", "database": "x"}`, `unknown argument "database"`},
		{`[1, 2]`, `arguments must be a JSON object`},
	}
	for _, tt := range tests {
		_, err := qdb.Decode(json.RawMessage(tt.raw))
		if !errors.Is(err, tools.ErrInvalidArguments) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%s) = %v, want ErrInvalidArguments saying %q", tt.raw, err, tt.want)
		}
	}
	a, err := qdb.Decode(json.RawMessage(`{"resource": "shop", "sql": "SELECT $1::int + $2", "params": [1, 2.5], "max_rows": 7}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(a.Canonical()); got != `{"resource":"shop","sql":"SELECT $1::int + $2","params":[1,2.5],"max_rows":7}` {
		t.Errorf("Canonical = %s", got)
	}
	if a.ResourceName() != "shop" {
		t.Errorf("ResourceName = %q", a.ResourceName())
	}
}

func TestLargeResultIsCut(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	limits := defaultLimits()
	limits.Timeout = time.Minute
	start := time.Now()
	out, err := f.query(t, cred, limits, map[string]any{"sql": "SELECT g, md5(g::text) FROM (SELECT generate_series(1, 10000000) AS g) s"})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	// generate_series in the select list streams (in FROM it would be
	// materialized first): the time is connect + first rows + cut.
	t.Logf("10M-row SELECT cut at %d rows in %v", len(out.Table.Rows), time.Since(start))
	if len(out.Table.Rows) != limits.MaxRows || !out.Truncated || !strings.Contains(out.Notice, "cut off") {
		t.Fatalf("rows %d truncated %v notice %q", len(out.Table.Rows), out.Truncated, out.Notice)
	}

	// The byte limit cuts too.
	limits.MaxBytes = 10_000
	out, err = f.query(t, cred, limits, map[string]any{"sql": "SELECT repeat('x', 1000) FROM generate_series(1, 10000000)"})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if len(out.Table.Rows) >= 10 || len(out.Table.Rows) == 0 || !out.Truncated {
		t.Fatalf("byte limit: rows %d truncated %v", len(out.Table.Rows), out.Truncated)
	}
}

func TestStatementTimeout(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readwrite")
	limits := defaultLimits()
	limits.Timeout = 200 * time.Millisecond
	_, err := f.query(t, cred, limits, map[string]any{"sql": "SELECT pg_sleep(5)"})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("error = %v, want SQLSTATE 57014 (statement timeout)", err)
	}
	if err.Error() != "ERROR: canceling statement due to statement timeout (SQLSTATE 57014)" {
		t.Fatalf("error text = %q", err)
	}
}

func TestServerStoppedMidCall(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readwrite")
	done := make(chan error, 1)
	go func() {
		_, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT pg_sleep(5)"})
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	f.pg.Stop(t)
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not return after PostgreSQL stopped")
	}
	if !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Fatalf("error = %v, want ErrBackendUnavailable", err)
	}
	t.Logf("stopped mid-call: %v", err)

	// A call while it is down says so too.
	_, err = f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT 1"})
	if !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Fatalf("call while stopped: %v, want ErrBackendUnavailable", err)
	}
	f.pg.Start(t)
}

func TestReadWriteGrantCommits(t *testing.T) {
	f := newFixture(t)
	rw := f.mint(t, "readwrite")
	out, err := f.query(t, rw, defaultLimits(), map[string]any{
		"sql": "INSERT INTO customers (name, email) VALUES ($1, $2) RETURNING id, email", "params": []any{"Edsger", "ed@example.com"},
	})
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	if out.Table.Tag != "INSERT 0 1" || out.Table.Columns[1].Source != "email" || out.Table.Rows[0][1] != "ed@example.com" {
		t.Fatalf("insert output: %+v", out.Table)
	}
	out, err = f.query(t, f.mint(t, "readonly"), defaultLimits(), map[string]any{"sql": "SELECT count(*) FROM customers"})
	if err != nil || out.Table.Rows[0][0] != int64(4) {
		t.Fatalf("insert was not committed: %v %v", out, err)
	}
	// A database error rolls back and reads as ERROR: ... (SQLSTATE ...).
	_, err = f.query(t, rw, defaultLimits(), map[string]any{"sql": "INSERT INTO customers (name, email) VALUES ('x', 'ed@example.com')"})
	if err == nil || !strings.HasPrefix(err.Error(), "ERROR: duplicate key value violates unique constraint") || !strings.HasSuffix(err.Error(), "(SQLSTATE 23505)") {
		t.Fatalf("duplicate insert: %v", err)
	}
}

func TestMultiStatement(t *testing.T) {
	f := newFixture(t)
	rw := f.mint(t, "readwrite")
	limits := defaultLimits()
	limits.MultiStatement = true
	out, err := f.query(t, rw, limits, map[string]any{
		"sql":    "UPDATE orders SET status = 'shipped' WHERE id = $1; SELECT id, status FROM orders WHERE id = $1",
		"params": []any{2},
	})
	if err != nil {
		t.Fatalf("multi-statement: %v", err)
	}
	if out.Table.Tag != "UPDATE 1; SELECT 1" || out.Table.Rows[0][1] != "shipped" {
		t.Fatalf("output: %+v", out.Table)
	}
	// A failing later statement rolls the whole call back.
	_, err = f.query(t, rw, limits, map[string]any{"sql": "UPDATE orders SET status = 'lost'; SELECT 1/0"})
	if err == nil || !strings.Contains(err.Error(), "statement 2: ERROR: division by zero (SQLSTATE 22012)") {
		t.Fatalf("error = %v", err)
	}
	out, err = f.query(t, rw, limits, map[string]any{"sql": "SELECT count(*) FROM orders WHERE status = 'lost'"})
	if err != nil || out.Table.Rows[0][0] != int64(0) {
		t.Fatalf("failed call was not rolled back: %v %v", out, err)
	}
}

func TestListAndDescribeTables(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	target := tools.Target{Resource: f.resource, Credential: cred, Limits: defaultLimits()}
	ctx := context.Background()

	lt := &ListTables{}
	a, err := lt.Decode(json.RawMessage(`{"resource": "shop", "schema": "public"}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := lt.Execute(ctx, target, a)
	if err != nil {
		t.Fatalf("list_tables: %v", err)
	}
	if len(out.Table.Rows) != 2 || out.Table.Rows[0][1] != "customers" || out.Table.Rows[1][1] != "orders" {
		t.Fatalf("list_tables rows: %v", out.Table.Rows)
	}
	if f, err := lt.Facts(a); err != nil || !f.SQL.ReadOnly {
		t.Errorf("list_tables facts are not read-only: %+v", f.SQL)
	}

	dt := &DescribeTable{}
	a, err = dt.Decode(json.RawMessage(`{"resource": "shop", "table": "public.orders"}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err = dt.Execute(ctx, target, a)
	if err != nil {
		t.Fatalf("describe_table: %v", err)
	}
	if len(out.Table.Rows) != 4 || out.Table.Rows[0][0] != "id" || out.Table.Rows[0][1] != "integer" || out.Table.Rows[0][2] != false {
		t.Fatalf("describe_table columns: %v", out.Table.Rows)
	}
	_, text := dt.Render(out)
	for _, want := range []string{"orders_pkey (primary key): PRIMARY KEY (id)", "FOREIGN KEY (customer_id) REFERENCES customers(id)", "orders_status (index)"} {
		if !strings.Contains(text, want) {
			t.Errorf("describe_table text lacks %q:\n%s", want, text)
		}
	}
	if fa, err := dt.Facts(a); err != nil || !fa.SQL.ReadOnly || !strings.Contains(strings.Join(fa.SQL.TablesRead, ","), "public.orders") {
		t.Errorf("describe_table facts: %+v", fa.SQL)
	}

	a, _ = dt.Decode(json.RawMessage(`{"resource": "shop", "table": "nope"}`))
	out, err = dt.Execute(ctx, target, a)
	if err != nil || !strings.Contains(out.Notice, "no table or view named nope") {
		t.Fatalf("describe missing table: %v %+v", err, out)
	}
}

func TestRender(t *testing.T) {
	out := &tools.Output{
		Table: &tools.Table{
			Columns: []tools.Column{{Name: "id", Type: "int4"}, {Name: "note", Type: "text"}},
			Rows:    [][]any{{int64(1), "short"}, {int64(22), strings.Repeat("long ", 20)}, {nil, "two\nlines"}},
			Tag:     "SELECT 3",
		},
		Truncated: true,
		Notice:    "result cut off",
	}
	structured, text := (&QueryDB{}).Render(out)
	b, _ := json.Marshal(structured)
	if !strings.Contains(string(b), `"columns":[{"name":"id","type":"int4"},{"name":"note","type":"text"}]`) ||
		!strings.Contains(string(b), `"row_count":3`) || !strings.Contains(string(b), `"truncated":true`) || !strings.Contains(string(b), `"notice":"result cut off"`) {
		t.Errorf("structured = %s", b)
	}
	want := "id   | note\n" +
		"---- | ----------------------------------------\n" +
		"1    | short\n" +
		"22   | " + strings.Repeat("long ", 20) + "\n" +
		"NULL | two\\nlines\n" +
		"(3 rows, truncated at the call's limits)\nnotice: result cut off\n" +
		"to get the rows the limits cut: ask for more with max_rows (the broker's limits still apply), narrow the query (WHERE, fewer columns), or page with ORDER BY … LIMIT 3 OFFSET 3"
	if text != want {
		t.Errorf("text =\n%s\nwant\n%s", text, want)
	}
}

func TestConcurrentCalls(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			limits := defaultLimits()
			if i%4 == 0 {
				limits.MaxRows = 5 // some calls cut and discard their connection
			}
			out, err := f.query(t, cred, limits, map[string]any{"sql": "SELECT c.email AS mail, o.total FROM customers c JOIN orders o ON o.customer_id = c.id, generate_series(1, 100)"})
			if err == nil && (out.Table.Columns[0].Source != "email" || out.Table.Columns[1].Table != "public.orders") {
				err = errors.New("columns not resolved")
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
