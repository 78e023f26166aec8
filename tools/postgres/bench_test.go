package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/policy"
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

// BenchmarkSQLFacts derives the policy facts of a realistic three-table
// join with a CTE and a subquery: repeated, the same text each time (the
// parse comes from the cache, the facts are a fresh copy); distinct, a
// different text each time (LIMIT n: parsed, walked and added to the
// cache, evicting the oldest); uncached, straight through the parser and
// the walk, as every call did before the cache.
func BenchmarkSQLFacts(b *testing.B) {
	check := func(b *testing.B, f policy.SQL) {
		if !f.ReadOnly || len(f.TablesRead) != 3 {
			b.Fatalf("facts: %+v", f)
		}
	}
	b.Run("repeated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			check(b, SQLFacts(benchFactsSQL))
		}
	})
	b.Run("distinct", func(b *testing.B) {
		base := strings.TrimSuffix(benchFactsSQL, "20")
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			n++
			check(b, SQLFacts(base+strconv.Itoa(n)))
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := parseSQLAt(benchFactsSQL, 0)
			if err != nil {
				b.Fatal(err)
			}
			check(b, p.facts)
		}
	})
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

// BenchmarkExecuteSelectPipelined compares, in one loop so that a busy
// machine slows them alike, the same SELECT run the ways a call can run,
// and reports the median wall time of each (µs):
//   - pipelined: QueryDB.Execute, what a call does (one round trip for the
//     transaction, after the pool's ping of the connection);
//   - sequential: the same statement step by step, as every call ran
//     before (BEGIN and the limits, the statement, the end and reset: three
//     round trips, after the ping);
//   - pipelined-noping: pipelined on a pool that does not ping each
//     connection it hands out (pgxpool's default, ping after 1 s idle);
//   - pgx: the query alone on an open connection (BenchmarkPgxDirect).
func BenchmarkExecuteSelectPipelined(b *testing.B) {
	f := newFixture(b)
	cred := f.mint(b, "readonly")
	ping := f.resource.credCfg.ShouldPing
	f.resource.credCfg.ShouldPing = nil
	noPing := f.mint(b, "readonly")
	f.resource.credCfg.ShouldPing = ping
	qdb := &QueryDB{}
	raw, err := qdb.Decode(json.RawMessage(fmt.Sprintf(`{"resource": "shop", "sql": %q, "params": [1]}`, benchSelectSQL)))
	if err != nil {
		b.Fatal(err)
	}
	args := raw.(*QueryArgs)
	st := args.parsed.statements[0]
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s password=%s sslmode=disable",
		f.pg.Port, cred.Handle(), cred.password.Reveal()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	ways := []struct {
		name string
		run  func() error
	}{
		{"pipelined", func() error {
			_, err := qdb.Execute(ctx, tools.Target{Resource: f.resource, Credential: cred, Limits: defaultLimits()}, args)
			return err
		}},
		{"sequential", func() error {
			e := &execution{resource: f.resource, cred: cred, limits: defaultLimits(), sequential: true,
				stmts: []execStatement{{text: st.text, args: args.Params, read: true, node: st.node}}}
			_, _, err := e.run(ctx)
			return err
		}},
		{"pipelined-noping", func() error {
			_, err := qdb.Execute(ctx, tools.Target{Resource: f.resource, Credential: noPing, Limits: defaultLimits()}, args)
			return err
		}},
		{"pgx", func() error {
			rows, err := conn.Query(ctx, benchSelectSQL, 1)
			if err != nil {
				return err
			}
			for rows.Next() {
				if _, err := rows.Values(); err != nil {
					return err
				}
			}
			return rows.Err()
		}},
	}
	for _, w := range ways { // warm pools and caches
		if err := w.run(); err != nil {
			b.Fatalf("%s: %v", w.name, err)
		}
	}
	times := make([][]time.Duration, len(ways))
	for b.Loop() {
		for i, w := range ways {
			start := time.Now()
			if err := w.run(); err != nil {
				b.Fatalf("%s: %v", w.name, err)
			}
			times[i] = append(times[i], time.Since(start))
		}
	}
	for i, w := range ways {
		slices.Sort(times[i])
		b.ReportMetric(float64(times[i][len(times[i])/2].Nanoseconds())/1000, w.name+"-µs")
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

// BenchmarkMint mints a lease's role, the usual way (membership in the
// grant's role) and with enforce: privileges (the catalog read, the grant
// check and a GRANT per object), on the demo's schema and on one of 200 more
// tables of 12 columns, each with an email column. Revocation is timed apart
// (revoke-ms/op): an enforced role's privileges are dropped with it.
func BenchmarkMint(b *testing.B) {
	f := newGuardFixture(b)
	b.Run("member/demo", func(b *testing.B) { benchMint(b, f.resource, nil) })
	b.Run("enforced/demo", func(b *testing.B) { benchMint(b, f.resource, f.guard) })
	f.pg.ExecDB(b, "shop", `DO $$
BEGIN
	FOR i IN 1..200 LOOP
		EXECUTE format('CREATE TABLE wide_%s (id int PRIMARY KEY, email text, c1 text, c2 text, c3 text, c4 text, c5 text, c6 text, c7 text, c8 text, c9 int, c10 int)', i);
	END LOOP;
END $$;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO shop_reader;`)
	b.Run("member/200-more-tables", func(b *testing.B) { benchMint(b, f.resource, nil) })
	b.Run("enforced/200-more-tables", func(b *testing.B) { benchMint(b, f.resource, f.guard) })
}

func benchMint(b *testing.B, r *Resource, guard tools.ColumnGuard) {
	ctx := context.Background()
	var revoking time.Duration
	n := 0
	for b.Loop() {
		c, err := mintWith(r, "readonly", guard)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		start := time.Now()
		if err := r.Revoke(ctx, tools.LeaseRef{Handle: c.Handle()}); err != nil {
			b.Fatal(err)
		}
		revoking += time.Since(start)
		n++
		b.StartTimer()
	}
	b.ReportMetric(float64(revoking.Microseconds())/1000/float64(n), "revoke-ms/op")
}

// BenchmarkEndOfCall measures what the session reset adds to the end of a
// call on a warm lease connection. Each iteration runs BEGIN READ ONLY and
// ends it with ROLLBACK alone (what a read-only call did before the read
// reset) and each way endCall can (after a read-only transaction: ROLLBACK
// and the read reset; after a read-write one: the end and the full reset,
// both in the same round trip), alternating so that a busy machine slows
// them alike. It reports the median wall time of each, and what each adds
// to ROLLBACK alone in wall time and in the backend's CPU time (server-µs,
// from /proc/<pid>/schedstat when the server runs on this machine, as
// testenv's does), which a busy machine inflates less.
func BenchmarkEndOfCall(b *testing.B) {
	f := newFixture(b)
	cred := f.mint(b, "readonly")
	pool, err := cred.connPool()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	pc := conn.Conn()
	var pid int64
	if err := pc.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		b.Fatal(err)
	}
	// cpu is the backend's time on a CPU so far, or -1 when unknown.
	cpu := func() time.Duration {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
		if err != nil {
			return -1
		}
		ns, err := strconv.ParseInt(strings.Fields(string(raw))[0], 10, 64)
		if err != nil {
			return -1
		}
		return time.Duration(ns)
	}
	ends := []struct {
		name string
		end  func() error
	}{
		{"rollback", func() error { _, err := pc.Exec(ctx, "ROLLBACK"); return err }},
		{"read-only", func() error { return endCall(ctx, pc, "ROLLBACK", true) }},
		{"full-reset", func() error { return endCall(ctx, pc, "ROLLBACK", false) }},
	}
	times := make([][]time.Duration, len(ends))
	cpus := make([][]time.Duration, len(ends))
	for b.Loop() {
		for i, e := range ends {
			c0 := cpu()
			start := time.Now()
			if _, err := pc.Exec(ctx, "BEGIN READ ONLY"); err != nil {
				b.Fatal(err)
			}
			if err := e.end(); err != nil {
				b.Fatal(err)
			}
			times[i] = append(times[i], time.Since(start))
			if c1 := cpu(); c0 >= 0 && c1 >= 0 {
				cpus[i] = append(cpus[i], c1-c0)
			}
		}
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	micros := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	medians := make([]time.Duration, len(ends))
	for i := range ends {
		medians[i] = median(times[i])
		b.ReportMetric(micros(medians[i]), ends[i].name+"-µs")
	}
	for i := 1; i < len(ends); i++ {
		b.ReportMetric(micros(medians[i]-medians[0]), ends[i].name+"-added-µs")
		if len(cpus[i]) > 0 && len(cpus[0]) > 0 {
			b.ReportMetric(micros(median(cpus[i])-median(cpus[0])), ends[i].name+"-added-server-µs")
		}
	}
}
