package postgres

// What a red team found in the impact preview, and the number params:
// each test failed while its finding reproduced.

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostile is what an agent with CREATE on a schema (and a grant on the
// objects it made) can leave behind. stamp is marked IMMUTABLE (PostgreSQL
// takes the owner's word), so the planner folds a call of it with constant
// arguments: it runs while EXPLAIN plans. It calls pwn, VOLATILE, whose SPI
// is not read-only: RESET ROLE there drops the preview's SET LOCAL ROLE
// back to the admin login, and READ ONLY does not stop COPY ... TO
// (PostgreSQL checks it only for COPY FROM), so pwn writes a file on the
// database server as whoever it then is. (TO PROGRAM would run a command
// the same way; not run here.)
func hostile(tag string) string {
	return `
CREATE FUNCTION public.pwn() RETURNS text VOLATILE LANGUAGE plpgsql AS $$
BEGIN
	RESET ROLE;
	EXECUTE format('COPY (SELECT current_user) TO %L', current_setting('data_directory') || '/airlock_redteam_` + tag + `.txt');
	RETURN current_user;
END $$;
CREATE FUNCTION public.stamp() RETURNS text IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN RETURN public.pwn(); END $$;
ALTER FUNCTION public.pwn() OWNER TO app_readwrite;
ALTER FUNCTION public.stamp() OWNER TO app_readwrite;
`
}

// redteamTag names one test's marker file (the test cluster may be shared).
func redteamTag(t *testing.T) string {
	return strings.ToLower(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())) + "_" + strconv.FormatInt(time.Now().UnixNano(), 10)
}

// pwned is what the marker file says (who wrote it), "" when there is none.
func (f *fixture) pwned(t *testing.T, tag string) string {
	t.Helper()
	got := f.pg.Query(t, "postgres", "SELECT coalesce(pg_catalog.pg_read_file(current_setting('data_directory') || '/airlock_redteam_"+tag+".txt', 0, 100, true), '')")
	return strings.TrimSpace(strings.Join(got, ""))
}

// Finding (critical): a function hidden in a view (also an RLS policy, a
// rule) is not in the SQL text, so previewable finds no plan-time effect;
// the planner folds it while EXPLAIN plans the held write, before any
// approver decided, and it escapes SET LOCAL ROLE to the admin login (a
// superuser here) and writes a file on the database server. What it
// returns is also put into the plan shown to approvers, and Impact.Role
// still says app_readwrite.
func TestPreviewRunsFunctionFromView(t *testing.T) {
	f := newFixture(t)
	tag := redteamTag(t)
	f.pg.Exec(t, hostile(tag)+`CREATE VIEW paid_orders AS SELECT * FROM orders WHERE status <> public.stamp();
GRANT SELECT, UPDATE ON paid_orders TO app_readwrite;`)
	imp, err := f.preview(t, "readwrite", 0, "UPDATE paid_orders SET total = 0 WHERE id = 1")
	t.Logf("impact %+v err %v", imp, err)
	if who := f.pwned(t, tag); who != "" {
		t.Fatalf("the preview of a held UPDATE ran a user function from a view at plan time, which wrote a file on the database server as %q", who)
	}
}

// Same, through a row-security policy of the written table. (Once the
// first EXPLAIN has reset the role, the second one, the text plan shown to
// approvers, is planned as the superuser: it has no row-security filter.)
func TestPreviewRunsFunctionFromPolicy(t *testing.T) {
	f := newFixture(t)
	tag := redteamTag(t)
	f.pg.Exec(t, hostile(tag)+`ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON orders USING (status <> public.stamp());`)
	imp, err := f.preview(t, "readwrite", 0, "DELETE FROM orders WHERE id = 1")
	t.Logf("impact %+v err %v", imp, err)
	if who := f.pwned(t, tag); who != "" {
		t.Fatalf("the preview of a held DELETE ran a user function from an RLS policy at plan time, which wrote a file on the database server as %q", who)
	}
}

// Finding (low): a JSON number param that is not an int64 is converted to
// a float64 at Decode (scalarArray), so the value written is not the one
// the agent sent: 12345678901234567890 runs as 12345678901234567000,
// 0.1000000000000000000001 as 0.1. Approvers see the canonical (already
// rounded) value, so what they approve is what runs; but the agent's call
// changed silently, contrary to decodeExact's promise, and the transcript's
// raw arguments (decodeExact) and the approval's (canonical) disagree.
func TestNumberParamRunsRounded(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	for _, n := range []string{"12345678901234567890", "0.1000000000000000000001", "9007199254740993.5", "-9223372036854775809"} {
		out, err := f.query(t, cred, defaultLimits(), map[string]any{
			"sql":    "SELECT $1::numeric::text AS ran, ($1::numeric = '" + n + "'::numeric) AS same",
			"params": []any{json.Number(n)},
		})
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		row := out.Table.Rows[0]
		if row[1] != true {
			t.Errorf("param %s (as the agent sent it) ran as %v", n, row[0])
		}
	}
}

// Finding: planTimeEffect and functionEffect trust a built-in name
// (builtinFunctionOf) without the argument types: an overload that no
// built-in has, created in a schema on the search_path, is what PostgreSQL
// calls for the unqualified name. length(integer) is not a built-in, so
// the preview folds the user's length at plan time; its result (42) shows
// in the plan.
func TestPreviewRunsShadowingOverload(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, `
CREATE FUNCTION public.length(integer) RETURNS integer IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
	RETURN 42;
END $$;
ALTER FUNCTION public.length(integer) OWNER TO app_readwrite;`)
	imp, err := f.preview(t, "readwrite", 0, "DELETE FROM orders WHERE id = length(5)")
	t.Logf("impact %+v err %v", imp, err)
	if err == nil && strings.Contains(imp.Plan, "42") {
		t.Fatalf("the preview ran public.length(integer) at plan time:\n%s", imp.Plan)
	}
}

// Finding: nothing bounds the plan text. The planner folds an immutable
// built-in with constant arguments (repeat), and EXPLAIN prints the folded
// constant: a 400-byte held call makes a 3 MB plan, which the broker
// masks, records as call.previewed and sends in the webhook payload, on
// every retry of the call and before anyone decided.
func TestPreviewPlanIsUnbounded(t *testing.T) {
	f := newFixture(t)
	imp, err := f.preview(t, "readwrite", 0, "UPDATE orders SET total = 0 WHERE status = repeat('x', 3000000)")
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	if len(imp.Plan) > maxPlanBytes+100 {
		t.Fatalf("the plan shown to approvers is %d bytes", len(imp.Plan))
	}
}

// The facts take length(5) for the built-in length, a plain read, though
// PostgreSQL runs the user's public.length(integer), which writes. Under a
// read-write grant such a call still runs in a READ ONLY transaction (the
// facts call it a plain read), so PostgreSQL itself refuses the write.
func TestPlainReadsRunReadOnlyUnderAReadWriteGrant(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, `CREATE TABLE public.audit_log (x int);
GRANT INSERT, SELECT ON public.audit_log TO app_readwrite;
CREATE FUNCTION public.length(integer) RETURNS int LANGUAGE sql AS 'INSERT INTO public.audit_log VALUES (1) RETURNING 1';`)
	cred := f.mint(t, "readwrite")
	_, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": "SELECT length(5)"})
	if err == nil || !strings.Contains(err.Error(), "25006") {
		t.Fatalf("SELECT length(5) under a read-write grant: err = %v, want the server's read-only refusal (25006)", err)
	}
	if n := f.pg.Query(t, "postgres", "SELECT count(*) FROM public.audit_log"); len(n) != 1 || n[0] != "0" {
		t.Fatalf("the user's length wrote: %v rows", n)
	}
	// A write the facts see still commits under the same grant.
	if _, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": "INSERT INTO public.audit_log VALUES (2)"}); err != nil {
		t.Fatalf("INSERT under a read-write grant: %v", err)
	}
	if n := f.pg.Query(t, "postgres", "SELECT count(*) FROM public.audit_log"); len(n) != 1 || n[0] != "1" {
		t.Fatalf("after the INSERT: %v rows, want 1", n)
	}
}
