package postgres

// Regression tests for the red team's findings on error messages (second
// review, findings 4 and 5), and the errors an agent meets while working,
// which must stay useful. Against the demo's shop (examples/demo/seed.sql
// and guardExtraSQL) on a real PostgreSQL, through query_db's Execute.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/tools"
)

// shopValues are values of the shop's customers (and what translate() or
// replace() make of them, which the broker's detectors do not recognise):
// no error may carry one.
var shopValues = []string{
	"ada@example.com", "ada#example_com", "ada", "example", "grace@example.org", "grace",
	"4111 1111 1111 1111", "4111x1111x1111x1111", "4111", "Ada Lovelace", "Lovelace",
}

// errorText runs sql under cred and returns the error the agent reads,
// failing the test when there is none or it is not a database error with
// the SQLSTATE wanted.
func errorText(t *testing.T, f *guardFixture, cred *Credential, limits tools.Limits, sql, code string) string {
	t.Helper()
	out, err := queryWith(t, f.resource, cred, limits, sql)
	if err == nil {
		t.Fatalf("%s: no error (rows %v)", sql, outRows(out))
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("%s: %v, want SQLSTATE %s", sql, err, code)
	}
	for _, v := range shopValues {
		if strings.Contains(err.Error(), v) {
			t.Errorf("%s: the error carries %q: %v", sql, v, err)
		}
	}
	return err.Error()
}

func queryWith(t testing.TB, r *Resource, cred *Credential, limits tools.Limits, sql string) (*tools.Output, error) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"resource": "shop", "sql": sql})
	qdb := &QueryDB{}
	args, err := qdb.Decode(raw)
	if err != nil {
		t.Fatalf("Decode(%s): %v", sql, err)
	}
	return qdb.Execute(context.Background(), tools.Target{Resource: r, Credential: cred, Limits: limits, CallID: "call-1"}, args)
}

// Finding 4: PostgreSQL prints some values without quotes: a name list it
// cannot use ("improper relation name (too many dotted names): %s"), from
// a cast to regclass, regproc, regoper, regconfig, regdictionary or
// regcollation, or from to_regclass, has_table_privilege and
// pg_get_serial_sequence. translate() and replace() keep the detectors
// away, so the reduction alone must keep the value out.
func TestErrorsKeepNoUnquotedValue(t *testing.T) {
	f := newGuardFixture(t)
	ro := f.mint(t, "readonly", nil)
	const relation = `ERROR: improper relation name (too many dotted names): … (SQLSTATE 42601)`
	const qualified = `ERROR: improper qualified name (too many dotted names): … (SQLSTATE 42601)`
	for _, tt := range []struct{ sql, code, want string }{
		{"SELECT (translate(email, '@.', '#_') || '.a.b.c')::regclass FROM customers WHERE id = 1", "42601", relation},
		{"SELECT (translate(email, '@.', '#_') || '.a.b.c')::regproc FROM customers WHERE id = 1", "42601", qualified},
		{"SELECT (translate(email, '@.', '#_') || '.a.b.c')::regoper FROM customers WHERE id = 1", "42601", qualified},
		{"SELECT (translate(email, '@.', '#_') || '.a.b.c')::regconfig FROM customers WHERE id = 1", "42601", qualified},
		{"SELECT (translate(email, '@.', '#_') || '.a.b.c')::regdictionary FROM customers WHERE id = 1", "42601", qualified},
		{"SELECT (translate(email, '@.', '#_') || '.a.b.c')::regcollation FROM customers WHERE id = 1", "42601", qualified},
		{"SELECT to_regclass(translate(email, '@.', '#_') || '.a.b.c') FROM customers WHERE id = 1", "42601", relation},
		{"SELECT has_table_privilege(translate(email, '@.', '#_') || '.a.b.c', 'select') FROM customers WHERE id = 1", "42601", relation},
		{"SELECT pg_get_serial_sequence(translate(email, '@.', '#_') || '.a.b.c', 'id') FROM customers WHERE id = 1", "42601", relation},
		{"SELECT (replace(card_number, ' ', 'x') || '.a.b.c')::regclass FROM customers WHERE id = 1", "42601", relation},
		// The same values, quoted or not, through other messages.
		{"SELECT pg_get_serial_sequence('customers', translate(email, '@.', '#_')) FROM customers WHERE id = 1", "42703",
			`ERROR: column "…" of relation "…" does not exist (SQLSTATE 42703)`},
		{"SELECT (substr(email, 1, 3) || '.t')::regclass FROM customers WHERE id = 1", "3F000",
			`ERROR: schema "…" does not exist (SQLSTATE 3F000)`},
		{"SELECT current_setting(translate(email, '@', '_')) FROM customers WHERE id = 1", "42704",
			`ERROR: unrecognized configuration parameter "…" (SQLSTATE 42704)`},
		{"SELECT translate(email, '@.', '__')::regtype FROM customers WHERE id = 1", "42704",
			`ERROR: type "…" does not exist (SQLSTATE 42704)`},
		// regtype parses its input with the grammar, and says where in a
		// context line: the message keeps only the scanner's sentence.
		{"SELECT translate(email, '.', '_')::regtype FROM customers WHERE id = 1", "42601",
			`ERROR: syntax error at or near "…" (SQLSTATE 42601)`},
		{"SELECT make_date(2024, length(email), 1) FROM customers WHERE id = 1", "22008",
			`ERROR: date field value out of range: …-…-… (SQLSTATE 22008)`},
		{"SELECT card_number::bigint FROM customers WHERE id = 1", "22P02",
			`ERROR: invalid input syntax for type bigint: "…" (SQLSTATE 22P02)`},
		{"SELECT ('x: \"' || email)::int FROM customers WHERE id = 1", "22P02",
			`ERROR: invalid input syntax for type …: "…" (SQLSTATE 22P02)`},
		// A message no form knows goes whole.
		{"SELECT to_tsquery(translate(email, '@.', '&&') || '&') FROM customers WHERE id = 1", "42601",
			`ERROR: syntax_error (the server's message is withheld: it is not one of the message forms known to carry no data) (SQLSTATE 42601)`},
	} {
		t.Run(tt.sql, func(t *testing.T) {
			if got := errorText(t, f, ro, defaultLimits(), tt.sql, tt.code); got != tt.want {
				t.Errorf("error = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

// Finding 5: a slot kept a value that equals a token of the agent's SQL,
// and one call may write every guess: with the 26 letters as string
// constants, role "a" does not exist said what a value starts with. While
// the statement runs, a slot that can hold a value echoes nothing, however
// the guesses are written.
func TestErrorsAnswerNoGuess(t *testing.T) {
	f := newGuardFixture(t)
	ro := f.mint(t, "readonly", nil)
	var letters, aliases []string
	for c := 'a'; c <= 'z'; c++ {
		letters = append(letters, "'"+string(c)+"'")
		aliases = append(aliases, "1 AS "+string(c))
	}
	const role = `ERROR: role "…" does not exist (SQLSTATE 42704)`
	for _, tt := range []struct{ name, sql, code, want string }{
		{"the letters as constants",
			"SELECT substr(email, 1, 1)::regrole FROM customers WHERE id = 1 AND ARRAY[" + strings.Join(letters, ",") + "] IS NOT NULL", "42704", role},
		{"the letters as identifiers",
			"SELECT substr(email, 1, 1)::regrole, " + strings.Join(aliases, ", ") + " FROM customers WHERE id = 1", "42704", role},
		{"whole values as constants",
			"SELECT translate(email, '@.', '__')::regrole FROM customers WHERE id = 1 AND translate(email, '@.', '__') IN ('ada_example_com', 'grace_example_org')", "42704", role},
		{"numbers",
			"SELECT make_date(2024, 1, length(email) + 20) FROM customers WHERE id = 1 AND 35 IN (33, 34, 35, 36)", "22008",
			`ERROR: date field value out of range: …-…-… (SQLSTATE 22008)`},
		{"a value that carries the message's own text",
			"SELECT (CASE substr(email, 1, 1) WHEN 'a' THEN 'x: \"a' ELSE 'x: \"b' END)::int FROM customers WHERE id = 1", "22P02",
			`ERROR: invalid input syntax for type …: "…" (SQLSTATE 22P02)`},
		{"SQL text a function runs",
			"SELECT query_to_xml('SELECT a FROM customers', true, false, '')", "42703",
			`ERROR: column "…" does not exist (SQLSTATE 42703)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := errorText(t, f, ro, defaultLimits(), tt.sql, tt.code)
			if got != tt.want {
				t.Errorf("%s\nerror = %q\nwant    %q", tt.sql, got, tt.want)
			}
		})
	}
	// The same cast of a constant the agent wrote is analysed before any
	// row is read: the name stays.
	if got := errorText(t, f, ro, defaultLimits(), "SELECT 'a'::regrole", "42704"); got != `ERROR: role "a" does not exist (SQLSTATE 42704)` {
		t.Errorf("SELECT 'a'::regrole: %q", got)
	}
}

// The errors an agent meets while writing SQL keep what makes them useful:
// the name it mistyped, the type that does not match, the constraint or the
// privilege that stopped it.
func TestHonestErrorsStayUseful(t *testing.T) {
	f := newGuardFixture(t)
	ro := f.mint(t, "readonly", nil)
	rw := f.mint(t, "readwrite", nil)
	short := defaultLimits()
	short.Timeout = 300 * time.Millisecond
	multi := defaultLimits()
	multi.MultiStatement = true
	for _, tt := range []struct {
		cred      *Credential
		limits    tools.Limits
		sql, code string
		// want is the error's message; the agent reads
		// "[statement n: ]ERROR: <want> (SQLSTATE <code>)".
		want string
	}{
		{ro, defaultLimits(), "SELECT emial FROM customers", "42703", `column "emial" does not exist`},
		{ro, defaultLimits(), "SELECT c.emial FROM customers c", "42703", `column c.emial does not exist`},
		{ro, defaultLimits(), "SELECT * FROM nope", "42P01", `relation "nope" does not exist`},
		{ro, defaultLimits(), "SELECT * FROM public.nope", "42P01", `relation "public.nope" does not exist`},
		{ro, defaultLimits(), "SELECT nosuch.id FROM customers", "42P01", `missing FROM-clause entry for table "nosuch"`},
		{ro, defaultLimits(), "SELECT id FROM customers a, orders b", "42702", `column reference "id" is ambiguous`},
		{rw, defaultLimits(), "SELECT nofunc(1)", "42883", `function nofunc(integer) does not exist`},
		{ro, defaultLimits(), "SELECT lower(1, 'x')", "42883", `function lower(integer, unknown) does not exist`},
		{ro, defaultLimits(), "SELECT 1 = 'x'::text", "42883", `operator does not exist: integer = text`},
		{ro, defaultLimits(), "SELECT name FROM customers WHERE id LIKE 1", "42883", `operator does not exist: integer ~~ integer`},
		{ro, defaultLimits(), "SELECT name, count(*) FROM customers", "42803", `column "customers.name" must appear in the GROUP BY clause or be used in an aggregate function`},
		{ro, defaultLimits(), "SELECT id FROM customers ORDER BY 5", "42P10", `ORDER BY position 5 is not in select list`},
		{ro, defaultLimits(), "SELECT 1 UNION SELECT 'x'::text", "42804", `UNION types integer and text cannot be matched`},
		{ro, defaultLimits(), "SELECT 1 FROM customers WHERE 1", "42804", `argument of WHERE must be type boolean, not type integer`},
		{ro, defaultLimits(), "SELECT id FROM customers WHERE count(*) > 1", "42803", `aggregate functions are not allowed in WHERE`},
		{ro, defaultLimits(), "SELECT 'abc'::int", "22P02", `invalid input syntax for type integer: "abc"`},
		{ro, defaultLimits(), "SELECT '2024-13-01'::date", "22008", `date/time field value out of range: "2024-13-01"`},
		{ro, defaultLimits(), "SELECT 'a'::regrole", "42704", `role "a" does not exist`},
		{ro, defaultLimits(), "SELECT 'x.y.z.w'::regclass", "42601", `improper relation name (too many dotted names): x.y.z.w`},
		{ro, defaultLimits(), "SELECT 'nosuch.t'::regclass", "3F000", `schema "nosuch" does not exist`},
		{ro, defaultLimits(), "SELECT 1_000", "42601", `trailing junk after numeric literal at or near "1_000"`},
		{ro, defaultLimits(), "SELECT 1/(id - 1) FROM customers", "22012", `division by zero`},
		{ro, defaultLimits(), "SELECT email::int FROM customers", "22P02", `invalid input syntax for type integer: "…"`},
		{ro, defaultLimits(), "SELECT (id * 99999999999)::int FROM customers", "22003", `integer out of range`},
		{ro, defaultLimits(), "SELECT (SELECT id FROM customers)", "21000", `more than one row returned by a subquery used as an expression`},
		{ro, defaultLimits(), "SELECT * FROM generate_series(1, 3) LIMIT -1", "2201W", `LIMIT must not be negative`},
		{ro, defaultLimits(), "SELECT email ~ 'a(' FROM customers", "2201B", `invalid regular expression: parentheses () not balanced`},
		{ro, short, "SELECT pg_sleep(5)", "57014", `canceling statement due to statement timeout`},
		{rw, defaultLimits(), "INSERT INTO customers (name, email, country) VALUES (NULL, 'x@example.net', 'GB')", "23502", `null value in column "name" of relation "customers" violates not-null constraint`},
		{rw, defaultLimits(), "INSERT INTO customers (name, email, country) VALUES ('Eve', 'ada@example.com', 'GB')", "23505", `duplicate key value violates unique constraint "…"`},
		{rw, defaultLimits(), "INSERT INTO orders (customer_id, item, amount) VALUES (999, 'x', 1)", "23503", `insert or update on table "orders" violates foreign key constraint "…"`},
		{rw, defaultLimits(), "INSERT INTO orders (customer_id, item, amount) VALUES (1, 'x', 123456789012)", "22003", `numeric field overflow`},
		{rw, defaultLimits(), "INSERT INTO customers (nope) VALUES (1)", "42703", `column "nope" of relation "customers" does not exist`},
		{rw, defaultLimits(), "CREATE TABLE public.scratch (x int)", "42501", `permission denied for schema public`},
		{rw, multi, "CREATE TEMP TABLE scratch (x int); CREATE TEMP TABLE scratch (x int)", "42P07", `relation "scratch" already exists`},
		{rw, defaultLimits(), "VACUUM customers", "25001", `VACUUM cannot run inside a transaction block`},
		{rw, defaultLimits(), "DROP TABLE nope", "42P01", `table "nope" does not exist`},
	} {
		t.Run(tt.sql, func(t *testing.T) {
			want := "ERROR: " + tt.want + " (SQLSTATE " + tt.code + ")"
			if tt.limits.MultiStatement {
				want = "statement 2: " + want
			}
			if got := errorText(t, f, tt.cred, tt.limits, tt.sql, tt.code); got != want {
				t.Errorf("error = %q\nwant    %q", got, want)
			}
		})
	}
}
