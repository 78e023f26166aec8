package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/tools"
)

// preview decodes a query_db call, computes its facts and previews it under
// the named grant, as the broker does for a held call.
func (f *fixture) preview(t *testing.T, grant string, timeout time.Duration, sql string, params ...any) (*tools.Impact, error) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"resource": "shop", "sql": sql, "params": params})
	if len(params) == 0 {
		raw, _ = json.Marshal(map[string]any{"resource": "shop", "sql": sql})
	}
	q := &QueryDB{}
	args, err := q.Decode(raw)
	if err != nil {
		t.Fatalf("Decode(%s): %v", sql, err)
	}
	facts, err := q.Facts(args)
	if err != nil {
		t.Fatalf("Facts(%s): %v", sql, err)
	}
	g := f.resource.spec.Grants[grant]
	return q.Preview(context.Background(), tools.PreviewTarget{Resource: f.resource, GrantName: grant, Grant: g, Timeout: timeout}, args, facts)
}

// state is what a preview must leave exactly as it was: the rows, the
// balances and the sequences.
func (f *fixture) state(t *testing.T) string {
	t.Helper()
	return strings.Join(slices.Concat(
		f.pg.Query(t, "postgres", "SELECT count(*) FROM customers"),
		f.pg.Query(t, "postgres", "SELECT count(*) FROM orders"),
		f.pg.Query(t, "postgres", "SELECT string_agg(id || ':' || balance || ':' || name, ',' ORDER BY id) FROM customers"),
		f.pg.Query(t, "postgres", "SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM orders"),
		f.pg.Query(t, "postgres", "SELECT last_value::text || is_called::text FROM orders_id_seq"),
	), " | ")
}

// The preview explains a write and never runs it: the rows and sequences
// are the same before and after, for every kind of write.
func TestPreviewExplainsWithoutWriting(t *testing.T) {
	f := newFixture(t)
	before := f.state(t)
	for _, tc := range []struct {
		sql       string
		params    []any
		statement string
		tables    []string
		minRows   int64
		plan      string
	}{
		{"UPDATE customers SET balance = 0", nil, "update", []string{"public.customers"}, 3, "Update on customers"},
		{"UPDATE customers SET balance = balance + $1 WHERE id = $2", []any{5, 1}, "update", []string{"public.customers"}, 1, "Index Scan using customers_pkey"},
		{"DELETE FROM orders WHERE status = 'paid'", nil, "delete", []string{"public.orders"}, 1, "Delete on orders"},
		{"DELETE FROM orders o USING customers c WHERE o.customer_id = c.id AND c.name = $1", []any{"Ada"}, "delete", []string{"public.orders", "public.customers"}, 1, "Delete on orders"},
		{"INSERT INTO orders (customer_id, total, status) VALUES (1, 7, 'new'), (2, 8, 'new') RETURNING id", nil, "insert", []string{"public.orders"}, 2, "Insert on orders"},
		{"MERGE INTO customers c USING orders o ON o.customer_id = c.id WHEN MATCHED THEN UPDATE SET balance = 0", nil, "merge", []string{"public.customers", "public.orders"}, 1, "Merge on customers"},
	} {
		imp, err := f.preview(t, "readwrite", 0, tc.sql, tc.params...)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		t.Logf("%s: %d rows, %s", tc.statement, imp.EstimatedRows, imp.Duration)
		if imp.Kind != "explain" || imp.Role != "app_readwrite" || imp.Statement != tc.statement {
			t.Errorf("%s: %+v", tc.sql, imp)
		}
		if imp.EstimatedRows < tc.minRows {
			t.Errorf("%s: estimated %d rows, want at least %d\n%s", tc.sql, imp.EstimatedRows, tc.minRows, imp.Plan)
		}
		if !slices.Equal(imp.Tables, tc.tables) {
			t.Errorf("%s: tables %v, want %v", tc.sql, imp.Tables, tc.tables)
		}
		if !strings.Contains(imp.Plan, tc.plan) || strings.Contains(imp.Plan, "actual") {
			t.Errorf("%s: plan lacks %q (or was analysed):\n%s", tc.sql, tc.plan, imp.Plan)
		}
	}
	if after := f.state(t); after != before {
		t.Fatalf("a preview changed the database:\nbefore %s\nafter  %s", before, after)
	}
}

// The preview is made under the grant's role: a role that may not write
// the table is refused by PostgreSQL, though the admin could.
func TestPreviewRunsUnderTheGrantsRole(t *testing.T) {
	f := newFixture(t)
	_, err := f.preview(t, "readonly", 0, "UPDATE customers SET balance = 0 WHERE id = 1")
	if err == nil || !strings.Contains(err.Error(), "permission denied for table customers") {
		t.Fatalf("under app_readonly: %v", err)
	}
	// The admin connection is left as it was: its own role, its own
	// timeout, no read-only transaction left open.
	pool, err := f.resource.adminPool()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		var user, timeout, readOnly string
		if err := pool.QueryRow(context.Background(), "SELECT current_user, current_setting('statement_timeout'), current_setting('transaction_read_only')").Scan(&user, &timeout, &readOnly); err != nil {
			t.Fatal(err)
		}
		if user != "postgres" || timeout != "0" || readOnly != "off" {
			t.Errorf("admin session after a preview: user %s, statement_timeout %s, read only %s", user, timeout, readOnly)
		}
	}
}

// What is not one plain write is not explained: it says why, and runs
// nothing.
func TestPreviewRefuses(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ sql, want string }{
		{"SELECT * FROM customers", "this is SELECT"},
		{"EXPLAIN ANALYZE UPDATE customers SET balance = 0", "this is EXPLAIN"},
		{"UPDATE customers SET balance = 0; DELETE FROM orders", "this call has 2"},
		{"TRUNCATE orders", "this is TRUNCATE"},
		{"CREATE TABLE x (id int)", "this is CREATE"},
	} {
		_, err := f.preview(t, "readwrite", 0, tc.sql)
		if !errors.Is(err, tools.ErrNoPreview) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrNoPreview with %q", tc.sql, err, tc.want)
		}
	}
	f.resource.spec.Grants["two"] = tools.Grant{Roles: []string{"app_readonly", "app_readwrite"}, Access: tools.AccessReadWrite}
	if _, err := f.preview(t, "two", 0, "DELETE FROM orders"); !errors.Is(err, tools.ErrNoPreview) || !strings.Contains(err.Error(), "2 roles") {
		t.Errorf("a grant with two roles: %v", err)
	}
	if got := f.pg.Query(t, "postgres", "SELECT count(*) FROM orders"); got[0] != "3" {
		t.Errorf("orders: %v", got)
	}
}

// A preview is bounded: behind a lock it gives up at its time limit.
func TestPreviewIsBounded(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	_, err = f.preview(t, "readwrite", 300*time.Millisecond, "UPDATE customers SET balance = 0 WHERE id = 1")
	took := time.Since(started)
	if err == nil || !strings.Contains(err.Error(), "time limit") {
		t.Fatalf("behind a lock: %v", err)
	}
	if took > 3*time.Second {
		t.Errorf("the preview took %s with a 300ms limit", took)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.preview(t, "readwrite", 0, "UPDATE customers SET balance = 0 WHERE id = 1"); err != nil {
		t.Errorf("after the lock: %v", err)
	}
}
