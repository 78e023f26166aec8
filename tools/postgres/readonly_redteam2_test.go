package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/tools"
)

// Red team, round 2: 7b2d5b3 recorded a query_db read only with its
// outcome when the facts called it a read and a check of the catalog
// (cached for a minute) found no code of the database's own in it. Each
// case here is a plain read in which a function of the database's own runs
// anyway — public.rogue*, which raise, so that Execute's error proves it
// ran; any of them could as well pg_terminate_backend the lease's other
// sessions (TestRedTeamReadOnlyCallTerminatesOtherSessions). That check
// was removed: query_db is recorded before it runs, every call
// (QueryDB's comment). list_tables and describe_table, whose SQL is
// airlock's own, still are recorded only with their outcome.

const redTeam2SQL = `
CREATE FUNCTION public.rogue() RETURNS int LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'rogue ran'; END$$;
CREATE FUNCTION public.rogue_row(c customers) RETURNS int LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'rogue ran'; END$$;
CREATE FUNCTION public.rogue_arr(v int[]) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RAISE EXCEPTION 'rogue ran'; END$$;
CREATE FUNCTION public.rogue_cmp(point, point) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RAISE EXCEPTION 'rogue ran'; END$$;
CREATE FUNCTION public.rogue_chareq("char", "char") RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RAISE EXCEPTION 'rogue ran'; END$$;
`

// A read in which the database's own code runs: the premise holds (the
// facts call each a plain read, and Execute's error is the function's
// raise), and query_db is recorded before it runs (no ReadOnlyCaller).
// On 7b2d5b3 its ReadOnlyCall said true for every case.
func TestRedTeam2DatabaseCodeInAPlainRead(t *testing.T) {
	if _, ok := any(&QueryDB{}).(tools.ReadOnlyCaller); ok {
		t.Fatal("query_db is a tools.ReadOnlyCaller: the broker would record these reads only after they ran")
	}
	tests := []struct{ name, setup, sql string }{
		// Attribute notation: t.f and (t).f call f(t) when f takes the row
		// type; the facts read the name as a column.
		{"t.f of a function taking the row type", "", "SELECT c.rogue_row FROM customers c"},
		{"(t).f", "", "SELECT (c).rogue_row FROM customers c"},
		{"table.f", "", "SELECT customers.rogue_row FROM customers"},
		// A quoted name with a dot reads public."a.b", a view.
		{"a quoted name with a dot", `
CREATE SCHEMA a; CREATE TABLE a.b (x int); GRANT USAGE ON SCHEMA a TO app_readonly; GRANT SELECT ON a.b TO app_readonly;
CREATE VIEW public."a.b" AS SELECT public.rogue() AS x; GRANT SELECT ON public."a.b" TO app_readonly`, `SELECT * FROM "a.b"`},
		// A domain's CHECK runs on a cast.
		{"a domain over an array type", "CREATE DOMAIN darr AS int[] CHECK (public.rogue_arr(VALUE))", "SELECT '{1}'::darr"},
		// A default operator class's support function runs in ORDER BY.
		{"a default operator class's support function", `
CREATE OPERATOR CLASS public.point_order DEFAULT FOR TYPE point USING btree AS
  OPERATOR 1 <<, OPERATOR 2 <^, OPERATOR 3 ~=, OPERATOR 4 >^, OPERATOR 5 >>, FUNCTION 1 public.rogue_cmp(point, point)`,
			"SELECT p FROM (VALUES (pg_catalog.point(1, 2)), (pg_catalog.point(3, 4))) v(p) ORDER BY p"},
		// A function of a built-in's name, a closer match than the built-in.
		{"a shadowing function", "CREATE FUNCTION public.upper(v varchar) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'rogue ran'; END$$",
			"SELECT upper(name::varchar) FROM customers"},
		// A view where a table was.
		{"a view replacing a table", "ALTER TABLE orders RENAME TO orders_old; CREATE VIEW orders AS SELECT public.rogue() AS id; GRANT SELECT ON orders TO app_readonly",
			"SELECT id FROM orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.pg.Exec(t, redTeam2SQL)
			if tt.setup != "" {
				f.pg.Exec(t, tt.setup)
			}
			ctx := context.Background()
			cred := f.mint(t, "readonly")
			raw, _ := json.Marshal(map[string]any{"resource": "shop", "sql": tt.sql})
			a, err := (&QueryDB{}).Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			if facts, err := (&QueryDB{}).Facts(a); err != nil || !facts.SQL.ReadOnly {
				t.Fatalf("facts: %+v, %v; want a plain read (the premise of this test)", facts.SQL, err)
			}
			_, err = (&QueryDB{}).Execute(ctx, tools.Target{Resource: f.resource, Credential: cred, Limits: defaultLimits(), CallID: "call-1"}, a)
			if err == nil || !strings.Contains(err.Error(), raisedMessage) {
				t.Fatalf("Execute: %v; want the rogue function's raise (the premise: the database's own code runs)", err)
			}
		})
	}
}

// describe_table's constraint query had one unqualified operator: CASE
// c.contype WHEN 'p' ... compares with "=", which the server looks up on
// the role's search_path. A database whose search_path puts a schema
// before pg_catalog (ALTER DATABASE ... SET search_path = public,
// pg_catalog) and an = for "char" in it ran that operator's function in
// every describe_table, which is recorded only with its outcome. Failed on
// 7b2d5b3; the CASE now names OPERATOR(pg_catalog.=).
func TestRedTeam2DescribeTableCaseOperator(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, redTeam2SQL)
	f.pg.Exec(t, `CREATE OPERATOR public.= (LEFTARG = "char", RIGHTARG = "char", FUNCTION = public.rogue_chareq);
DO $$BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path = public, pg_catalog', pg_catalog.current_database()); END$$`)
	f.resource.meta.forget()
	cred := f.mint(t, "readonly")
	raw, _ := json.Marshal(map[string]any{"resource": "shop", "table": "orders"})
	a, err := (&DescribeTable{}).Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !(&DescribeTable{}).ReadOnlyCall(cred, a) {
		t.Fatal("ReadOnlyCall = false: the premise (describe_table is recorded only with its outcome) no longer holds")
	}
	_, err = (&DescribeTable{}).Execute(context.Background(), tools.Target{Resource: f.resource, Credential: cred, Limits: defaultLimits(), CallID: "call-1"}, a)
	if err != nil {
		t.Errorf("describe_table ran the database's own operator function (%v), and ReadOnlyCall says true", err)
	}
}
