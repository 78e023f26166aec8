package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/tools"
)

const benchFactsSQL = `WITH recent AS (
	SELECT customer_id, sum(total) AS spent
	FROM orders
	WHERE status = 'paid' AND id > $1
	GROUP BY customer_id
)
SELECT c.id, c.name, lower(c.email) AS email, r.spent, count(o.id) AS open_orders
FROM public.customers c
JOIN recent r ON r.customer_id = c.id
LEFT JOIN sales.order_items o ON o.id = c.id AND o.status = 'open'
WHERE c.active AND c.id IN (SELECT customer_id FROM orders WHERE total > 10)
GROUP BY c.id, c.name, c.email, r.spent
ORDER BY r.spent DESC
LIMIT 20`

// BenchmarkSQLFacts parses a realistic three-table join with a CTE and a
// subquery and derives its policy facts.
func BenchmarkSQLFacts(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		f := SQLFacts(benchFactsSQL)
		if !f.ReadOnly || len(f.TablesRead) != 3 {
			b.Fatalf("facts: %+v", f)
		}
	}
}

const benchSelectSQL = "SELECT id, name, email, balance FROM customers WHERE id = $1"

// BenchmarkExecuteSelect runs one small SELECT through QueryDB.Execute with a
// warm credential: acquire, BEGIN READ ONLY, set_config, query, ROLLBACK,
// column resolution (cached).
func BenchmarkExecuteSelect(b *testing.B) {
	f := newFixture(b)
	cred := f.mint(b, "readonly")
	qdb := &QueryDB{}
	args, err := qdb.Decode(json.RawMessage(fmt.Sprintf(`{"resource": "shop", "sql": %q, "params": [1]}`, benchSelectSQL)))
	if err != nil {
		b.Fatal(err)
	}
	target := tools.Target{Resource: f.resource, Credential: cred, Limits: defaultLimits()}
	ctx := context.Background()
	if _, err := qdb.Execute(ctx, target, args); err != nil { // warm the pool and caches
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		out, err := qdb.Execute(ctx, target, args)
		if err != nil || len(out.Table.Rows) != 1 {
			b.Fatalf("%v %v", out, err)
		}
	}
}

// BenchmarkPgxDirect runs the same SELECT straight through pgx on the same
// database, as the same kind of role over TCP with SCRAM: the baseline for
// BenchmarkExecuteSelect.
func BenchmarkPgxDirect(b *testing.B) {
	f := newFixture(b)
	cred := f.mint(b, "readonly")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s password=%s sslmode=disable",
		f.pg.Port, cred.Handle(), cred.password.Reveal()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	b.ReportAllocs()
	for b.Loop() {
		rows, err := conn.Query(ctx, benchSelectSQL, 1)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			if _, err := rows.Values(); err != nil {
				b.Fatal(err)
			}
			n++
		}
		err = rows.Err()
		if err != nil || n != 1 {
			b.Fatal(n, err)
		}
	}
}
