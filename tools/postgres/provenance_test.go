package postgres

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/tools"
)

// newShopFixture is a private PostgreSQL holding the demo's shop
// (examples/demo/seed.sql) and testdata/provenance.sql, opened as resource
// "shop" with the demo's grants.
func newShopFixture(t testing.TB) *fixture {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE shop")
	for _, file := range []string{filepath.Join("..", "..", "examples", "demo", "seed.sql"), filepath.Join("testdata", "provenance.sql")} {
		sql, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		pg.ExecDB(t, "shop", string(sql))
	}
	spec := tools.ResourceSpec{
		Name:        "shop",
		Kind:        KindName,
		AdminDSNEnv: "SHOP_ADMIN_DSN",
		Grants: map[string]tools.Grant{
			"readonly":  {Roles: []string{"shop_reader"}, TTL: 10 * time.Minute},
			"readwrite": {Roles: []string{"shop_writer"}, TTL: 5 * time.Minute, Access: tools.AccessReadWrite},
		},
	}
	r, err := NewKind().Open(spec, mapEnv{vars: map[string]string{"SHOP_ADMIN_DSN": pg.DSN("shop")}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(r.Close)
	return &fixture{pg: pg, resource: r.(*Resource)}
}

// origins describes where a result column's values come from, as masking
// reads it: the base columns (its own table column, then From), sorted, or
// "unknown: <why>".
func origins(c tools.Column) string {
	if c.Unknown != "" {
		return "unknown: " + c.Unknown
	}
	var names []string
	if c.Table != "" {
		names = append(names, c.Table+"."+c.Source)
	}
	for _, o := range c.From {
		names = append(names, o.Table+"."+o.Column)
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ", ")
}

// Every path the security review found, and the attacker's variations on
// them, traced to the base columns their values come from; and the
// columns that come from no column at all.
func TestResultColumnProvenance(t *testing.T) {
	f := newShopFixture(t)
	ro := f.mint(t, "readonly")
	rw := f.mint(t, "readwrite")
	const (
		email = "public.customers.email"
		card  = "public.customers.card_number"
		name  = "public.customers.name"
		id    = "public.customers.id"
		every = "public.customers.card_number, public.customers.country, public.customers.created_at, public.customers.email, public.customers.id, public.customers.name"
	)
	tests := []struct {
		name string
		cred *Credential
		sql  string   // the last statement's result is checked
		want []string // per result column: origins(), or "unknown: " + a substring of why
	}{
		// Alias lists map positionally onto the table's columns.
		{"alias list", ro, "SELECT n, substr(cn,1,9), substr(cn,10) FROM customers AS c(i,n,e,cn)", []string{name, card, card}},
		{"alias list split_part", ro, "SELECT split_part(e,'@',1), split_part(e,'@',2) FROM customers AS c(i,n,e)", []string{email, email}},
		{"alias list after a dropped column", ro, "SELECT upper(e), n FROM accounts AS a(i, e, n)", []string{"public.accounts.email", "public.accounts.note"}},
		{"generated column", ro, "SELECT shout, lower(shout) FROM accounts", []string{"public.accounts.email, public.accounts.shout", "public.accounts.email, public.accounts.shout"}},

		// Statistics: sampled values are of unknown origin; the rest is not.
		{"pg_stats", ro, "SELECT histogram_bounds, most_common_vals, most_common_elems, null_frac FROM pg_stats WHERE tablename = 'customers' AND attname = 'email'",
			[]string{"unknown: statistics samples", "unknown: statistics samples", "unknown: statistics samples", "pg_catalog.pg_statistic.stanullfrac, pg_catalog.pg_stats.null_frac"}},
		{"pg_statistic", ro, "SELECT stavalues1, stavalues5, stanullfrac FROM pg_statistic", []string{"unknown: pg_catalog.pg_statistic.stavalues1", "unknown: pg_catalog.pg_statistic.stavalues5", "pg_catalog.pg_statistic.stanullfrac"}},
		{"pg_stats_ext", ro, "SELECT most_common_vals, n_distinct FROM pg_stats_ext", []string{"unknown: statistics samples", "pg_catalog.pg_statistic_ext_data.stxdndistinct, pg_catalog.pg_stats_ext.n_distinct"}},
		{"pg_stats_ext_exprs", ro, "SELECT most_common_vals, histogram_bounds FROM pg_stats_ext_exprs", []string{"unknown: statistics samples", "unknown: statistics samples"}},

		// Views resolve to their base columns, through other views too.
		{"view renames", ro, "SELECT mail FROM contacts", []string{"public.contacts.mail, " + email}},
		{"view computed", ro, "SELECT upper(mail) FROM contacts", []string{email}},
		{"view expression", ro, "SELECT label, shout FROM contacts", []string{"public.contacts.label, " + email + ", " + name, "public.contacts.shout, " + name}},
		{"view over view", ro, "SELECT m, shout FROM contact_mail", []string{"public.contact_mail.m, " + email, "public.contact_mail.shout, " + name}},
		{"view whole row", ro, "SELECT row_to_json(v) FROM contacts v", []string{email + ", " + id + ", " + name}},

		// Renaming through CTEs, subqueries, set operations, LATERAL, FROM functions.
		{"cte column list", ro, "WITH x(a) AS (SELECT email FROM customers) SELECT a||'' FROM x", []string{email}},
		{"cte plain", ro, "WITH x(a) AS (SELECT email FROM customers) SELECT a FROM x", []string{email}},
		{"subquery", ro, "SELECT y FROM (SELECT lower(email) AS y FROM customers) s", []string{email}},
		{"union", ro, "SELECT name FROM customers UNION ALL SELECT email FROM customers", []string{email + ", " + name}},
		{"intersect in a subquery", ro, "SELECT * FROM (SELECT card_number FROM customers INTERSECT SELECT name FROM customers) s", []string{card + ", " + name}},
		{"lateral", ro, "SELECT x FROM customers c, LATERAL (SELECT c.email AS x) s", []string{email}},
		{"lateral values", ro, "SELECT v.x FROM customers c, LATERAL (VALUES (c.card_number)) v(x)", []string{card}},
		{"unnest", ro, "SELECT u FROM customers c, unnest(array[c.email]) u", []string{email}},
		{"unnest in a subquery", ro, "SELECT * FROM (SELECT unnest(array[email, name]) FROM customers) s", []string{email + ", " + name}},
		{"recursive cte", ro, "WITH RECURSIVE r(n, e) AS (SELECT 1, ''::text UNION ALL SELECT n + 1, (SELECT email FROM customers WHERE id = n) FROM r WHERE n < 3) SELECT e FROM r", []string{email + ", " + id}},
		{"full join using", ro, "SELECT id FROM customers FULL JOIN accounts USING (id)", []string{"public.accounts.id, " + id}},
		{"values joined", ro, "SELECT v.x, c.email FROM (VALUES (1)) v(x) JOIN customers c ON c.id = v.x", []string{"", email}},

		// Whole rows and constructors.
		{"row_to_json", ro, "SELECT row_to_json(c) FROM customers c", []string{every}},
		{"whole row", ro, "SELECT c FROM customers c", []string{every}},
		{"whole row star", ro, "SELECT to_jsonb(c.*) FROM customers c", []string{every}},
		{"field of a whole row", ro, "SELECT (c).email FROM customers c", []string{email}},
		{"json and array constructors", ro, "SELECT json_build_object('e', email), array[card_number], row(name, email) FROM customers", []string{email, card, email + ", " + name}},
		{"correlated scalar subquery", ro, "SELECT (SELECT email FROM customers c WHERE c.id = o.customer_id) FROM orders o", []string{email + ", " + id + ", public.orders.customer_id"}},

		// Functions, aggregates, windows, casts, conditionals.
		{"window", ro, "SELECT lag(email) OVER (ORDER BY id) FROM customers", []string{email + ", " + id}},
		{"string_agg", ro, "SELECT string_agg(email, ',') FROM customers", []string{email}},
		{"format", ro, "SELECT format('%s', email) FROM customers", []string{email}},
		{"coalesce case cast", ro, "SELECT coalesce(card_number, 'none'), CASE WHEN id > 0 THEN email END, email::varchar(50) FROM customers", []string{card, email + ", " + id, email}},

		// SQL the statement does not show: unknown.
		{"sql in a string", ro, "SELECT query_to_xml('select email from customers', true, false, '')", []string{"unknown: query_to_xml runs SQL given as text"}},
		{"function not built in", rw, "SELECT peek(1)", []string{"unknown: function peek is not built into PostgreSQL"}},

		// Writes: RETURNING carries what was assigned.
		{"update returning", rw, "UPDATE customers SET name = email WHERE id = 0 RETURNING name, country", []string{email + ", " + name, "public.customers.country"}},
		{"insert select returning", rw, "INSERT INTO orders (customer_id, item, amount, notes) SELECT id, 'x', 1, card_number FROM customers WHERE id = 0 RETURNING notes, item", []string{card + ", public.orders.notes", "public.orders.item"}},
		{"writing cte", rw, "WITH u AS (UPDATE customers SET country = card_number WHERE id = 0 RETURNING country) SELECT country FROM u", []string{card + ", public.customers.country"}},
		{"delete returning", rw, "DELETE FROM orders WHERE id = 0 RETURNING notes", []string{"public.orders.notes"}},
		{"trigger fills the returned row", rw, "INSERT INTO tickets VALUES (1, 'x') RETURNING body, id", []string{"unknown: a trigger runs before or instead of each row on public.tickets", "unknown: a trigger runs before"}},

		// What an earlier statement of the call did is not in the catalog yet.
		{"search_path set before", rw, "SET search_path = scratch, public; SELECT upper(email) FROM customers", []string{"unknown: statement 1 of the call changes the search_path"}},
		{"function not built in before", rw, "SELECT peek(1); SELECT upper(name) FROM customers", []string{"unknown: statement 1 of the call calls peek"}},
		{"plain read before", ro, "SELECT count(*) FROM orders; SELECT upper(name) FROM customers", []string{name}},

		// Values that come from no column.
		{"generate_series", ro, "SELECT g FROM generate_series(1,3) g", []string{""}},
		{"explain", ro, "EXPLAIN SELECT * FROM customers", []string{""}},
		{"explain of a statistics view", ro, "EXPLAIN SELECT histogram_bounds FROM pg_stats", []string{""}},
		{"explain of a function not built in", rw, "EXPLAIN VERBOSE SELECT peek(1)", []string{"unknown: EXPLAIN prints what the planner computed, and the statement calls peek"}},
		{"count beside max", ro, "SELECT count(*), max(email) FROM customers", []string{"", email}},
		{"count beside a clean column", ro, "SELECT count(*) AS n, upper(country) FROM customers GROUP BY 2", []string{"", "public.customers.country"}},
		{"constants", ro, "SELECT 1 AS one, now() IS NOT NULL, current_user", []string{"", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limits := defaultLimits()
			limits.MultiStatement = true
			out, err := f.query(t, tt.cred, limits, map[string]any{"sql": tt.sql})
			if err != nil {
				t.Fatalf("%s: %v", tt.sql, err)
			}
			cols := out.Table.Columns
			if len(cols) != len(tt.want) {
				t.Fatalf("%s: %d columns, want %d: %+v", tt.sql, len(cols), len(tt.want), cols)
			}
			for i, want := range tt.want {
				got := origins(cols[i])
				ok := got == want
				if strings.HasPrefix(want, "unknown: ") {
					ok = strings.HasPrefix(got, "unknown: ") && strings.Contains(got, strings.TrimPrefix(want, "unknown: "))
				}
				if !ok {
					t.Errorf("%s\ncolumn %d (%s): %q\nwant %q", tt.sql, i, cols[i].Name, got, want)
				}
			}
		})
	}
}

// A view replaced by a call is traced by its new definition: within the
// call (the admin connection cannot see the change yet, so the columns are
// of unknown origin) and in the calls after it (the cache is dropped).
// DDL made outside Airlock shows up when the cache expires.
func TestProvenanceAfterSchemaChange(t *testing.T) {
	f := newShopFixture(t)
	rw := f.mint(t, "readwrite")
	limits := defaultLimits()
	limits.MultiStatement = true
	origin := func(sql string) string {
		t.Helper()
		out, err := f.query(t, rw, limits, map[string]any{"sql": sql})
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return origins(out.Table.Columns[len(out.Table.Columns)-1])
	}
	const read = "SELECT upper(x) FROM scratch.board"
	if got := origin(read); got != "public.customers.name" {
		t.Fatalf("before: %q", got)
	}
	got := origin("CREATE OR REPLACE VIEW scratch.board AS SELECT id, email AS x FROM public.customers; " + read)
	if !strings.HasPrefix(got, "unknown: statement 1 of the call runs a CREATE statement") {
		t.Errorf("in the call that replaced the view: %q", got)
	}
	if got := origin(read); got != "public.customers.email" {
		t.Errorf("after the call that replaced the view: %q", got)
	}

	// Outside Airlock: cached until the TTL runs out.
	f.pg.ExecDB(t, "shop", "CREATE OR REPLACE VIEW scratch.board AS SELECT id, card_number AS x FROM public.customers")
	if got := origin(read); got != "public.customers.email" {
		t.Errorf("right after outside DDL: %q (the cache should still hold the old definition)", got)
	}
	f.resource.meta.ttl = 0
	if got := origin(read); got != "public.customers.card_number" {
		t.Errorf("after the TTL: %q", got)
	}
}

// With the catalog cached, tracing adds no round trip to the database.
func TestProvenanceWarmCacheAddsNoRoundTrips(t *testing.T) {
	f := newShopFixture(t)
	ro := f.mint(t, "readonly")
	statements := []string{
		"SELECT id, name, email FROM customers WHERE id = 1",
		"SELECT n, substr(cn, 1, 9) FROM customers AS c(i, n, e, cn)",
		"SELECT upper(mail), label FROM contacts",
		"SELECT m FROM contact_mail",
		"WITH x(a) AS (SELECT email FROM customers) SELECT a || '' FROM x",
		"SELECT histogram_bounds FROM pg_stats WHERE tablename = 'customers'",
		"SELECT row_to_json(c) FROM customers c",
		"EXPLAIN SELECT * FROM customers",
	}
	run := func() {
		t.Helper()
		for _, sql := range statements {
			if _, err := f.query(t, ro, defaultLimits(), map[string]any{"sql": sql}); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	}
	run()
	cold := f.resource.meta.trips.Load()
	if cold == 0 {
		t.Fatal("the first calls read nothing from the catalog")
	}
	run()
	if warm := f.resource.meta.trips.Load(); warm != cold {
		t.Errorf("warm calls made %d round trips to the catalog", warm-cold)
	}
}

// A role that set its own search_path (ALTER ROLE ... SET, which a role may
// run on itself) has its names resolved through it.
func TestProvenanceRoleSearchPath(t *testing.T) {
	f := newShopFixture(t)
	rw := f.mint(t, "readwrite")
	ro := f.mint(t, "readonly")
	if _, err := f.query(t, rw, defaultLimits(), map[string]any{"sql": "ALTER ROLE CURRENT_USER SET search_path = scratch, public"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cred *Credential
		want []string
	}{
		{rw, []string{"scratch", "public"}},
		{ro, []string{ro.role, "public"}}, // the server's default, "$user", public
	} {
		cat := &catalog{r: f.resource, ctx: t.Context(), now: time.Now(), role: tt.cred.role}
		if got := cat.searchPath(); !slices.Equal(got, tt.want) {
			t.Errorf("search path of %s = %q, want %q", tt.cred.role, got, tt.want)
		}
	}
}

// The structured result says why each masked column was masked; the text
// says it in one line, in column order, columns with the same reason
// together.
func TestRenderMasked(t *testing.T) {
	out := &tools.Output{Table: &tools.Table{
		Columns: []tools.Column{{Name: "name", Type: "text"}, {Name: "mail", Type: "text"}, {Name: "upper", Type: "text"}, {Name: "x", Type: "text"}, {Name: "m", Type: "text"}},
		Rows:    [][]any{{"Ada", "[COLUMN]", "[COLUMN]", "[COLUMN]", "[COLUMN]"}},
		Tag:     "SELECT 1",
		Masked: map[string]string{
			"mail":  "column rule *.email",
			"upper": "derived from public.customers.email (rule *.email)",
			"x":     "unknown origin: function peek is not built into PostgreSQL; masked because profile pii protects columns",
			"m":     "derived from public.customers.email (rule *.email)",
		},
	}}
	structured, text := (&QueryDB{}).Render(out)
	b, _ := json.Marshal(structured)
	if !strings.Contains(string(b), `"masked":{"m":"derived from public.customers.email (rule *.email)","mail":"column rule *.email",`) {
		t.Errorf("structured = %s", b)
	}
	want := "(1 row)\nmasked: mail (column rule *.email); upper, m (derived from public.customers.email (rule *.email)); " +
		"x (unknown origin: function peek is not built into PostgreSQL; masked because profile pii protects columns)"
	if !strings.HasSuffix(text, want) {
		t.Errorf("text =\n%s\nwant it to end with\n%s", text, want)
	}
	out.Table.Masked = nil
	if _, text := (&QueryDB{}).Render(out); strings.Contains(text, "masked") {
		t.Errorf("nothing masked, text says:\n%s", text)
	}
}
