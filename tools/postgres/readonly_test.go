package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// runsOnlyBuiltins, against a real PostgreSQL: a read is recorded only with
// its outcome (ReadOnlyCall true) exactly when nothing but PostgreSQL's own
// code can run in it; each construct that could run the database's own
// code sends the call the other way, and says why.
func TestRunsOnlyBuiltins(t *testing.T) {
	tests := []struct {
		name  string
		setup string // run as the admin before the call; the catalog cache is dropped after it
		sql   string
		why   string // "" when only built-ins run; else a substring of the reason
	}{
		{"plain table", "", "SELECT id, name FROM customers WHERE id = 1 ORDER BY name", ""},
		{"qualified table, built-in functions", "", "SELECT pg_catalog.lower(name), count(*) FROM public.customers GROUP BY 1", ""},
		{"CTE and subquery", "", "WITH c AS (SELECT id FROM customers) SELECT * FROM orders WHERE customer_id IN (SELECT id FROM c)", ""},
		{"materialized view", "CREATE MATERIALIZED VIEW mv AS SELECT id FROM customers; GRANT SELECT ON mv TO app_readonly", "SELECT * FROM mv", ""},
		{"a view", "CREATE VIEW v AS SELECT id FROM customers; GRANT SELECT ON v TO app_readonly", "SELECT * FROM v", "not a table"},
		{"a catalog view", "", "SELECT count(*) FROM pg_catalog.pg_stat_activity", "not a table"},
		{"row-level security", "ALTER TABLE orders ENABLE ROW LEVEL SECURITY", "SELECT * FROM orders", "row-level security"},
		{"a function of a built-in's name", "CREATE FUNCTION public.upper(v varchar) RETURNS text LANGUAGE sql AS 'SELECT pg_catalog.upper(v::text)'", "SELECT upper(name) FROM customers", "upper is not built in"},
		{"the same, qualified", "CREATE FUNCTION public.upper(v varchar) RETURNS text LANGUAGE sql AS 'SELECT pg_catalog.upper(v::text)'", "SELECT public.upper(name) FROM customers", "upper is not built in"},
		{"an operator", "CREATE FUNCTION eqv(varchar, varchar) RETURNS bool LANGUAGE sql AS 'SELECT $1::text = $2::text'; CREATE OPERATOR === (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = eqv)", "SELECT id FROM customers WHERE id = 1", "operator === is not built in"},
		{"a domain", "CREATE DOMAIN positive AS int CHECK (VALUE > 0)", "SELECT 1::positive", "type positive is not built in"},
		{"an unknown table", "", "SELECT * FROM nosuch", "not in the catalog"},
		{"a foreign table anywhere", "CREATE EXTENSION postgres_fdw; CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw; CREATE FOREIGN TABLE ft (id int) SERVER s", "SELECT id FROM customers", "foreign table public.ft"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != "" {
				f.pg.Exec(t, tt.setup)
			}
			f.resource.meta.forget()
			cred := f.mint(t, "readonly")
			raw, _ := json.Marshal(map[string]any{"resource": "shop", "sql": tt.sql})
			a, err := (&QueryDB{}).Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			why := f.resource.runsOnlyBuiltins(context.Background(), cred.role, a.(*QueryArgs).parsed)
			switch {
			case tt.why == "" && why != "":
				t.Errorf("%s: %q, want only built-ins", tt.sql, why)
			case tt.why != "" && !strings.Contains(why, tt.why):
				t.Errorf("%s: %q, want a reason containing %q", tt.sql, why, tt.why)
			}
			if got := (&QueryDB{}).ReadOnlyCall(context.Background(), cred, a); got != (tt.why == "") {
				t.Errorf("%s: ReadOnlyCall = %v, want %v", tt.sql, got, tt.why == "")
			}
		})
	}
}
