package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/tools"
)

// benchTraced are statements whose result columns are traced beyond the row
// description: computed columns, a view's column, an alias list, a CTE.
var benchTraced = []struct{ name, sql string }{
	{"computed", "SELECT id, upper(name) AS shout, lower(email) AS mail, coalesce(balance, 0) + 1 AS b FROM customers WHERE id = $1"},
	{"view", "SELECT upper(mail) FROM bench_contacts WHERE id = $1"},
	{"alias_list", "SELECT n, substr(e, 1, 3) FROM customers AS c(i, n, e) WHERE i = $1"},
	{"cte", "WITH x(a, b) AS (SELECT id, email FROM customers) SELECT a, b || '' FROM x WHERE a = $1"},
}

const benchViewSQL = `CREATE VIEW bench_contacts AS SELECT id, email AS mail FROM customers;
GRANT SELECT ON bench_contacts TO app_readonly;`

// BenchmarkExecuteSelectTraced is BenchmarkExecuteSelect for statements
// whose columns are traced through the parse tree and the cached catalog:
// warm credential, warm cache.
func BenchmarkExecuteSelectTraced(b *testing.B) {
	f := newFixture(b)
	f.pg.Exec(b, benchViewSQL)
	cred := f.mint(b, "readonly")
	qdb := &QueryDB{}
	target := tools.Target{Resource: f.resource, Credential: cred, Limits: defaultLimits()}
	ctx := context.Background()
	for _, bt := range benchTraced {
		b.Run(bt.name, func(b *testing.B) {
			args, err := qdb.Decode(json.RawMessage(fmt.Sprintf(`{"resource": "shop", "sql": %q, "params": [1]}`, bt.sql)))
			if err != nil {
				b.Fatal(err)
			}
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
		})
	}
}

// BenchmarkResolveColumns is column resolution alone, on a warm cache: what
// provenance adds to a call, without the database round trips.
func BenchmarkResolveColumns(b *testing.B) {
	f := newFixture(b)
	f.pg.Exec(b, benchViewSQL)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminDSN)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	cases := append([]struct{ name, sql string }{{"plain", benchSelectSQL}}, benchTraced...)
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			p, err := parseSQL(bc.sql)
			if err != nil {
				b.Fatal(err)
			}
			rows, err := conn.Query(ctx, bc.sql, 1)
			if err != nil {
				b.Fatal(err)
			}
			fds := rows.FieldDescriptions()
			rows.Close()
			st := execStatement{text: bc.sql, node: p.statements[0].node}
			cols := make([]tools.Column, len(fds))
			resolve := func() {
				for i, fd := range fds {
					cols[i] = tools.Column{Name: fd.Name, Type: "text"}
				}
				if err := f.resource.resolveColumns(ctx, cols, fds, st, "bench"); err != nil {
					b.Fatal(err)
				}
			}
			resolve() // warm the cache
			trips := f.resource.meta.trips.Load()
			b.ReportAllocs()
			for b.Loop() {
				resolve()
			}
			if f.resource.meta.trips.Load() != trips {
				b.Fatal("a warm resolution read the catalog")
			}
		})
	}
}

// BenchmarkResolveNestedRecursive is the resolver alone on 30 nested WITH
// RECURSIVE, warm cache: each level used to double the work.
func BenchmarkResolveNestedRecursive(b *testing.B) {
	f := newFixture(b)
	p, err := parseSQL(nestedRecursive(30))
	if err != nil {
		b.Fatal(err)
	}
	node := p.statements[0].node
	ctx := context.Background()
	resolve := func() {
		rs := &resolver{cat: &catalog{r: f.resource, ctx: ctx, now: time.Now()}}
		if outs := rs.statement(node); len(outs) != 1 || outs[0].prov.unknown != "" {
			b.Fatalf("%+v", outs)
		}
	}
	resolve() // warm the cache
	b.ReportAllocs()
	for b.Loop() {
		resolve()
	}
}
