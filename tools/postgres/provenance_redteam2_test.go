package postgres

// What the second red team found in query_db provenance after issue 11
// (R2-1 … R2-5), each attack as it was reported and its variations, and
// the counts and columns that must stay readable.

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// R2-1: a subquery in an expression counted the rows of a function in its
// FROM, or of a subquery in its FROM, without taking what decides that
// count as a source: generate_series(1, ascii(...)) turned each character
// of an email into a plain number, the whole email in one read-only call.
func TestRowCountOfASubqueryCarriesAValue(t *testing.T) {
	f := newShopFixture(t)
	ro := f.mint(t, "readonly")
	expectMasked(t, f, ro, []leak{
		// ada@example.com as character codes
		{"SELECT (SELECT string_agg(((SELECT count(*) FROM generate_series(1, ascii(substr(c.email, i, 1)))))::text, ',' ORDER BY i) FROM generate_series(1, 20) i) FROM customers c WHERE id = 1", "97,100,97,64,101,120,97,109,112,108,101,46,99,111,109"},
		// the length of an ARRAY(...) subquery
		{"SELECT array_length(ARRAY(SELECT 1 FROM generate_series(1, ascii(substr(email, 1, 1)))), 1) FROM customers WHERE id = 1", "[[97]]"},
		// a set-returning function over the value, counted
		{"SELECT (SELECT count(*) FROM regexp_matches(c.email, '.', 'g')) FROM customers c WHERE id = 1", "[[15]]"},
		// LIMIT of a subquery in the FROM of a subquery
		{"SELECT (SELECT count(*) FROM (SELECT 1 FROM generate_series(1, 1000) LIMIT (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1)) s)", "[[97]]"},
		// the weaker one: how many distinct first characters
		{"SELECT (SELECT count(*) FROM (SELECT DISTINCT ascii(substr(email, 1, 1)) FROM customers) s)", "[[5]]"},
		// the same by position (GROUP BY 1), and WHERE in the inner FROM subquery
		{"SELECT (SELECT count(*) FROM (SELECT ascii(substr(email, 1, 1)) FROM customers GROUP BY 1) s)", "[[5]]"},
		{"SELECT (SELECT count(*) FROM (SELECT g FROM generate_series(1, 300) g WHERE g <= (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1)) s)", "[[97]]"},
		// a set-returning function in the select list of the inner subquery
		{"SELECT (SELECT count(*) FROM (SELECT generate_series(1, ascii(substr(c.email, 1, 1)))) s) FROM customers c WHERE id = 1", "[[97]]"},
		// a join inside the FROM subquery, a CTE, a LATERAL function
		{"SELECT (SELECT count(*) FROM (SELECT 1 FROM customers d JOIN generate_series(1, ascii(substr(c.email, 1, 1))) g ON true WHERE d.id = 1) s) FROM customers c WHERE id = 1", "[[97]]"},
		{"SELECT (WITH x AS (SELECT 1 FROM generate_series(1, ascii(substr(c.email, 1, 1)))) SELECT count(*) FROM x) FROM customers c WHERE id = 1", "[[97]]"},
		{"SELECT (SELECT count(*) FROM customers d, LATERAL generate_series(1, ascii(substr(d.email, 1, 1))) WHERE d.id = 1)", "[[97]]"},
		// XMLTABLE's rows come from its document
		{"SELECT (SELECT count(*) FROM XMLTABLE('/r/x' PASSING xmlparse(document '<r>' || repeat('<x/>', ascii(substr(c.email, 1, 1))) || '</r>') COLUMNS n FOR ORDINALITY)) FROM customers c WHERE id = 1", "[[97]]"},
	})
}

// R2-2: the same at the top level. An aggregate or window function counts
// the rows its FROM items yield, so what decides that count is its source;
// a table's rows decide nothing (its whole row is not taken).
func TestCountOfRowsAFunctionYields(t *testing.T) {
	f := newShopFixture(t)
	ro := f.mint(t, "readonly")
	expectMasked(t, f, ro, []leak{
		{"SELECT count(*) FROM customers c, generate_series(1, ascii(substr(c.email, 1, 1))) WHERE c.id = 1", "[[97]]"},
		{"SELECT count(*) FROM (SELECT 1 FROM generate_series(1, 1000) LIMIT (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1)) s", "[[97]]"},
		// a window function counts them too
		{"SELECT max(n) FROM (SELECT row_number() OVER () AS n FROM customers c, generate_series(1, ascii(substr(c.email, 1, 1))) WHERE c.id = 1) s", "[[97]]"},
		{"SELECT count(*) OVER () FROM customers c, generate_series(1, ascii(substr(c.email, 1, 1))) WHERE c.id = 1 LIMIT 1", "[[97]]"},
		// the rows a FROM subquery's select-list function yields, its WHERE
		{"SELECT count(*) FROM (SELECT generate_series(1, ascii(substr(email, 1, 1))) FROM customers WHERE id = 1) s", "[[97]]"},
		{"SELECT count(*) FROM (SELECT g FROM generate_series(1, 300) g WHERE g <= (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1)) s", "[[97]]"},
		// an aggregate of an enclosing level's column, in a subquery
		{"SELECT (SELECT count(c.id)) FROM customers c, generate_series(1, ascii(substr(c.email, 1, 1))) WHERE c.id = 1 GROUP BY c.id", "[[97]]"},
		// a set operation other than UNION ALL compares values: how many
		// different first characters
		{"SELECT count(*) FROM (SELECT g FROM generate_series(1, 300) g INTERSECT SELECT ascii(substr(email, 1, 1)) FROM customers) s", "[[5]]"},
		{"SELECT count(*) FROM (SELECT g FROM generate_series(1, 300) g EXCEPT SELECT g FROM customers, generate_series(1, 300) g WHERE id = 1 AND g > ascii(substr(email, 1, 1))) s", "[[97]]"},
		// WITH RECURSIVE counts rounds into its values: n counts to the code
		{"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1)) SELECT max(n) FROM r", "[[97]]"},
		{"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1)) SELECT n FROM r ORDER BY n DESC LIMIT 1", "[[97]]"},
	})

	// Counts that depend on no protected value stay readable.
	expectOrigins(t, f, ro, []provenanceCase{
		{"SELECT count(*) FROM customers", []string{""}},
		{"SELECT (SELECT count(*) FROM customers)", []string{""}},
		{"SELECT count(*), max(c.id) FROM customers c JOIN orders o ON o.customer_id = c.id", []string{"", idCol}},
		{"SELECT country, count(*) FROM customers GROUP BY country", []string{"public.customers.country", ""}},
		{"SELECT count(*) FROM generate_series(1, 10)", []string{""}},
		{"SELECT count(*) FROM customers c, generate_series(1, c.id)", []string{idCol}},
		{"SELECT count(*) FROM (SELECT name FROM customers WHERE id < 4) s", []string{idCol}},
		{"SELECT row_number() OVER (ORDER BY id), name FROM customers", []string{idCol, nameCol}},
		{"SELECT count(*) FROM (SELECT name FROM customers UNION ALL SELECT item FROM orders) s", []string{""}},
		{"SELECT count(*) FROM (SELECT email FROM customers) s", []string{""}},
		{"SELECT count(email) FROM customers", []string{""}},
	})
	// How many rows the top level's own WHERE lets through is the row
	// count of the result, the documented side channel (docs/masking.md):
	// the count over them is not masked either.
	expectOrigins(t, f, ro, []provenanceCase{
		{"SELECT count(*) FROM customers WHERE email LIKE '%.com'", []string{""}},
	})
}

// R2-3: EXPLAIN ANALYZE prints the actual row count of every node of the
// plan (and the rows a filter removed): rows=97 was the first character of
// an email. Its plan is of unknown origin, masked whole under a profile
// that protects columns; EXPLAIN without ANALYZE prints estimates only.
func TestExplainAnalyzeIsMaskedWhole(t *testing.T) {
	f := newShopFixture(t)
	ro := f.mint(t, "readonly")
	expectMasked(t, f, ro, []leak{
		{"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT 1 FROM generate_series(1, (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1))", "rows=97 "},
		{"EXPLAIN ANALYZE SELECT 1 FROM customers c, generate_series(1, ascii(substr(c.email, 2, 1))) WHERE c.id = 1", "rows=100 "},
		{"EXPLAIN (ANALYZE true, FORMAT JSON) SELECT id FROM customers WHERE email LIKE 'a%'", "Rows Removed by Filter"},
		{"explain (costs off, analyze on) SELECT 1 FROM generate_series(1, (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1))", "rows=97 "},
	})
	expectOrigins(t, f, ro, []provenanceCase{
		{"EXPLAIN ANALYZE SELECT 1", []string{"unknown: EXPLAIN ANALYZE prints how many rows"}},
		{"EXPLAIN SELECT * FROM customers", []string{""}},
		{"EXPLAIN (ANALYZE false, COSTS OFF) SELECT 1 FROM generate_series(1, (SELECT ascii(substr(email, 1, 1)) FROM customers WHERE id = 1))", []string{""}},
	})
}

// R2-4: a system column (ctid, xmin, tableoid, ...) of a table carries no
// value of the table's columns: it is not masked, qualified or not. A name
// that PostgreSQL resolves to something else still is what it resolves to.
func TestSystemColumnsCarryNoValue(t *testing.T) {
	f := newShopFixture(t)
	ro := f.mint(t, "readonly")
	p := piiProfile(t)
	for _, sql := range []string{
		"SELECT c.ctid::text, c.xmin::text FROM customers c WHERE id = 1",
		"SELECT ctid::text, xmin::text, tableoid::regclass::text FROM customers WHERE id = 1",
	} {
		out, err := f.query(t, ro, defaultLimits(), map[string]any{"sql": sql})
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		if got := agentView(t, p, out); strings.Contains(got, "[COLUMN]") {
			t.Errorf("%s\nmasks a system column:\n%s", sql, got)
		}
	}
	expectOrigins(t, f, ro, []provenanceCase{
		{"SELECT c.ctid::text, c.xmin::text, c.xmax::text, c.cmin::text, c.cmax::text, c.tableoid::text FROM customers c", []string{"", "", "", "", "", ""}},
		{"SELECT ctid::text, name FROM customers", []string{"", nameCol}},
		// an alias named like a system column is still the table's system column
		{"SELECT ctid::text FROM customers ctid", []string{""}},
		// in a subquery, from the enclosing table
		{"SELECT (SELECT c.xmin::text || s.x FROM (SELECT 'a' AS x) s) FROM customers c", []string{""}},
		{"SELECT (SELECT xmin::text FROM (SELECT 1) s) FROM customers c", []string{""}},
		// a subquery has no system columns: the name is its column, or its whole row
		{"SELECT s.ctid FROM (SELECT email AS ctid FROM customers) s", []string{emailCol}},
		{"SELECT ctid::text FROM (SELECT email FROM customers) ctid", []string{emailCol}},
		{"SELECT ctid || '' FROM (SELECT email AS ctid FROM customers) s", []string{emailCol}},
		{"SELECT v.ctid::text FROM (SELECT email FROM customers) v(ctid)", []string{emailCol}},
	})
}

// R2-5: a step of tracing cost as much as the sets it unioned: with ~550
// origins (whole rows of 46 catalog tables), 46,000 whole-row references
// took seconds. Unions are now charged by their work, and one that adds
// nothing copies nothing: the statement is traced, or cut to unknown,
// quickly.
func TestProvenanceStepsStayCheap(t *testing.T) {
	f := newShopFixture(t)
	tables := []string{"pg_class", "pg_attribute", "pg_proc", "pg_type", "pg_namespace", "pg_constraint", "pg_index",
		"pg_operator", "pg_opclass", "pg_am", "pg_amop", "pg_amproc", "pg_language", "pg_aggregate", "pg_rewrite",
		"pg_trigger", "pg_description", "pg_cast", "pg_enum", "pg_conversion", "pg_depend", "pg_database",
		"pg_tablespace", "pg_collation", "pg_sequence", "pg_ts_config", "pg_ts_dict", "pg_ts_parser", "pg_ts_template",
		"pg_extension", "pg_foreign_data_wrapper", "pg_foreign_server", "pg_policy", "pg_default_acl", "pg_init_privs",
		"pg_seclabel", "pg_shdescription", "pg_partitioned_table", "pg_range", "pg_transform", "pg_publication",
		"pg_attrdef", "pg_inherits", "pg_opfamily", "pg_event_trigger", "pg_statistic_ext"}
	var refs, from []string
	for i, tb := range tables {
		from = append(from, "(SELECT * FROM "+tb+" LIMIT 0) t"+strconv.Itoa(i))
		refs = append(refs, "t"+strconv.Itoa(i)+" IS NULL")
	}
	sql := "SELECT (" + strings.TrimSuffix(strings.Repeat(strings.Join(refs, " OR ")+" OR ", 1000), " OR ") + ") FROM " + strings.Join(from, ", ") + " LIMIT 0"
	p, err := parseSQL(sql)
	if err != nil {
		t.Fatal(err)
	}
	trace := func(p *parsedSQL) (time.Duration, *tracing, []outCol) {
		cat := &catalog{r: f.resource, ctx: context.Background(), now: time.Now(), role: "postgres"}
		rs := &resolver{cat: cat}
		rs.path = cat.searchPath()
		start := time.Now()
		outs := rs.statement(p.statements[0].node)
		return time.Since(start), rs.tracing(), outs
	}
	// A tenth of it is traced to every column of the 46 tables.
	small, err := parseSQL("SELECT (" + strings.TrimSuffix(strings.Repeat(strings.Join(refs, " OR ")+" OR ", 100), " OR ") + ") FROM " + strings.Join(from, ", ") + " LIMIT 0")
	if err != nil {
		t.Fatal(err)
	}
	took, w, outs := trace(small) // and warms the catalog cache
	if w.stopped != "" || len(outs) != 1 || outs[0].prov.unknown != "" || len(outs[0].prov.from) < 400 {
		t.Fatalf("4,600 whole-row references: stopped %q, %d columns, %d origins, unknown %q", w.stopped, len(outs), len(outs[0].prov.from), outs[0].prov.unknown)
	}
	t.Logf("4,600 whole-row references traced in %v (%d steps, %d origins merged, %d origins)", took, w.steps, w.merged, len(outs[0].prov.from))
	best := time.Hour
	for range 3 {
		took, w, outs = trace(p)
		best = min(best, took)
	}
	t.Logf("%d KB of whole-row references traced in %v at best (%d steps, %d origins merged)", len(sql)>>10, best, w.steps, w.merged)
	// The bound is one of work: steps and merged origins together (past it
	// by the work of the last step at most).
	if charged := w.steps + w.merged/mergedPerStep; charged > maxTraceSteps+1000 {
		t.Errorf("tracing went on past its bound: %d steps charged", charged)
	}
	if w.stopped == "" || len(outs) != 1 || !strings.Contains(outs[0].prov.unknown, "too complex to trace") {
		t.Errorf("a statement over the bound is not of unknown origin: stopped %q, %+v", w.stopped, outs)
	}
	// The time is logged, not asserted: the bound is one of work (above),
	// and a shared machine's load moved this from 35 ms to 1.3 s in one
	// `make test` run; speed is for `make bench`.
}

// A wide statement of the ordinary kind (hundreds of expressions over a
// join of wide catalog tables) is traced, not cut: the charge for unions
// and lookups does not turn it into one of unknown origin.
func TestWideStatementsStillTrace(t *testing.T) {
	f := newShopFixture(t)
	ro := f.mint(t, "readonly")
	var refs []string
	for i := range 200 {
		refs = append(refs, "c.name || o.item || "+strconv.Itoa(i))
	}
	sql := "SELECT " + strings.Join(refs, ", ") + ", (SELECT count(*) FROM orders x WHERE x.customer_id = c.id) FROM customers c JOIN orders o ON o.customer_id = c.id, pg_class k, pg_attribute a, pg_proc p WHERE k.oid = a.attrelid AND p.oid = 1 LIMIT 1"
	want := make([]string, 0, 201)
	for range 200 {
		want = append(want, "public.customers.name, public.orders.item")
	}
	want = append(want, "public.customers.id, public.orders.customer_id")
	expectOrigins(t, f, ro, []provenanceCase{{sql, want}})
}

// union keeps its sets sorted and shares a set that the other adds
// nothing to; unionAll is the same set as unions one by one.
func TestProvUnion(t *testing.T) {
	set := func(atts ...int16) prov {
		var p prov
		for _, a := range atts {
			p = p.union(prov{from: []origin{{rel: uint32(a / 100), att: a % 100}}})
		}
		return p
	}
	big := set(105, 101, 303, 202, 102, 201, 301, 302, 104, 103)
	if !slices.IsSortedFunc(big.from, compareOrigins) || len(big.from) != 10 {
		t.Fatalf("union does not keep a sorted set: %v", big.from)
	}
	for _, sub := range []prov{set(101), set(303, 101), set(201, 202, 301, 302, 303, 101, 102, 103, 104, 105)} {
		for _, u := range []prov{big.union(sub), sub.union(big)} {
			if !slices.Equal(u.from, big.from) || (&u.from[0] != &big.from[0] && &u.from[0] != &sub.from[0]) {
				t.Errorf("union with a subset %v copied the set: %v", sub.from, u.from)
			}
		}
	}
	u := big.union(set(106, 304))
	if len(u.from) != 12 || !slices.IsSortedFunc(u.from, compareOrigins) {
		t.Errorf("union adding two origins: %v", u.from)
	}
	if len(big.from) != 10 {
		t.Errorf("union changed its operand: %v", big.from)
	}
	all := unionAll([]prov{set(303, 101), {unknown: "why"}, set(101, 202), {}})
	if want := set(101, 202, 303); !slices.Equal(all.from, want.from) || all.unknown != "why" {
		t.Errorf("unionAll: %+v, want %v and unknown", all, want.from)
	}
	if u := set(101).union(prov{unknown: "a"}).union(prov{unknown: "b"}); u.unknown != "a" {
		t.Errorf("union keeps the first reason: %q", u.unknown)
	}
}
