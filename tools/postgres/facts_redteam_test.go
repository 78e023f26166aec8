package postgres

// What the second security review of query_db found on the SQL facts side,
// as permanent tests: a function called in attribute notation ((x).f, t.f),
// DO blocks, settings that change how the server reads later SQL, syntax
// the facts' parser (PostgreSQL 17's grammar) reads differently from
// PostgreSQL 15, and operators in subquery comparisons and ORDER BY USING.
// The connection hygiene that stands behind the facts when they are wrong
// is tested here end to end and, statement by statement, in session_test.go.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-mcp/airlock/tools"
)

// PostgreSQL runs (x).f as f(x): the facts list and classify the call, and
// follow the SQL text of ts_stat & co. as they do for the call form.
func TestAttributeNotationIsACall(t *testing.T) {
	tests := []struct {
		sql       string
		params    []any
		functions []string
		tables    []string
		readOnly  bool
		reason    string // part of why it is not a plain read
	}{
		{sql: "SELECT (4242::bigint).pg_advisory_lock", functions: []string{"pg_advisory_lock"}, reason: "takes or releases advisory locks"},
		{sql: "SELECT (4242::bigint).pg_try_advisory_lock", functions: []string{"pg_try_advisory_lock"}, reason: "takes advisory locks"},
		{sql: "SELECT (pid).pg_terminate_backend FROM pg_stat_activity WHERE usename = current_user", functions: []string{"pg_terminate_backend"},
			tables: []string{"pg_stat_activity"}, reason: "terminates other sessions"},
		{sql: "SELECT (pid).pg_cancel_backend FROM pg_stat_activity", functions: []string{"pg_cancel_backend"}, tables: []string{"pg_stat_activity"}},
		{sql: "SELECT ('/etc/passwd'::text).pg_read_file", functions: []string{"pg_read_file"}, reason: "reads server files"},
		{sql: "SELECT (0.5::float8).setseed", functions: []string{"setseed"}, reason: "random seed"},
		{sql: `SELECT ('x'::text)."PG_TERMINATE_BACKEND"`, functions: []string{"pg_terminate_backend"}, reason: "terminates other sessions"},
		// the SQL text ts_stat runs is followed like ts_stat('...')'s
		{sql: "SELECT ('SELECT to_tsvector(''x'') FROM pg_advisory_lock(1)'::text).ts_stat",
			functions: []string{"ts_stat", "to_tsvector", "pg_advisory_lock"}, reason: "ts_stat runs SQL text that is not a plain read"},
		{sql: "SELECT ('SELECT to_tsvector(''simple'', amount::text) FROM salaries'::text).ts_stat",
			functions: []string{"ts_stat", "to_tsvector"}, tables: []string{"salaries"}, readOnly: true},
		{sql: "SELECT (w).word FROM (SELECT ('SELECT array_to_tsvector(ARRAY[translate(email, ''@.'', ''#_'')]) FROM customers'::text).ts_stat AS w) s",
			functions: []string{"ts_stat", "array_to_tsvector", "translate"}, tables: []string{"customers"}, readOnly: true},
		// a name that is not built in, on something that cannot be a row, is
		// a function that is not built in: peek(1)
		{sql: "SELECT replace((1).peek, '@', ' at ')", functions: []string{"replace", "peek"}, reason: "function peek is not a built-in function"},
		{sql: "SELECT ($1).peek", params: []any{1}, functions: []string{"peek"}, reason: "function peek is not a built-in function"},
		{sql: "SELECT ('1'::int4).peek, ('{1}'::int[]).peek2", functions: []string{"peek", "peek2"}, reason: "function peek is not a built-in function"},
		{sql: "SELECT (ARRAY[1, 2])[1].peek", functions: []string{"peek"}, reason: "function peek is not a built-in function"},
		{sql: "SELECT ((1).peek).email", functions: []string{"peek"}, reason: "function peek is not a built-in function"},
		{sql: "SELECT (length(name)).peek FROM customers", functions: []string{"peek", "length"}, tables: []string{"customers"}, reason: "function peek is not a built-in function"},
		{sql: "SELECT (coalesce(1, 2)).peek, (CASE WHEN true THEN 1 END).peek2", functions: []string{"peek", "peek2"}, reason: "function peek is not a built-in function"},
		// on what may be a row, such a name is a field
		{sql: "SELECT (c).email, (ARRAY[c])[1].name2, (x.r).f FROM customers c, (SELECT ROW(1) AS r) x", tables: []string{"customers"}, readOnly: true},
		{sql: "SELECT (jsonb_each(doc)).key, (coalesce(c, c)).email, (archive(c)).x FROM customers c", functions: []string{"jsonb_each", "archive"},
			tables: []string{"customers"}, reason: "function archive is not a built-in function"},
		// a built-in name is the call even where a field of that name exists
		{sql: "SELECT (c).name FROM customers c", functions: []string{"name"}, tables: []string{"customers"}, readOnly: true},
		{sql: "SELECT (c).email.pg_terminate_backend FROM customers c", functions: []string{"pg_terminate_backend"}, tables: []string{"customers"}, reason: "terminates other sessions"},
		{sql: "SELECT (c.email).dblink_connect FROM customers c", functions: []string{"dblink_connect"}, tables: []string{"customers"}, reason: "connects to another database"},
		// t.f: a column, unless f is a function with a named effect or SQL text
		{sql: "SELECT c.pg_terminate_backend FROM customers c", functions: []string{"pg_terminate_backend"}, tables: []string{"customers"}, reason: "terminates other sessions"},
		{sql: "SELECT public.customers.pg_advisory_lock FROM public.customers", functions: []string{"pg_advisory_lock"}, tables: []string{"public.customers"}},
		{sql: "SELECT c.name, c.system, c.length, c.email FROM customers c", tables: []string{"customers"}, readOnly: true},
	}
	for _, tt := range tests {
		f, err := decodeFacts(t, tt.sql, tt.params...)
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		if !reflect.DeepEqual(f.Functions, nonNil(tt.functions)) || !reflect.DeepEqual(f.TablesRead, nonNil(tt.tables)) || f.ReadOnly != tt.readOnly {
			t.Errorf("%s:\n  functions %q tables_read %q read_only %v\n  want      %q            %q %v", tt.sql, f.Functions, f.TablesRead, f.ReadOnly, nonNil(tt.functions), nonNil(tt.tables), tt.readOnly)
		}
		if tt.reason != "" {
			p, _ := parseSQL(tt.sql)
			if why := p.statements[0].notRead; !strings.Contains(why, tt.reason) {
				t.Errorf("%s: not a plain read because %q, want %q", tt.sql, why, tt.reason)
			}
		}
	}
	// What the call form refuses, the attribute form refuses too.
	for sql, reason := range map[string]string{
		"SELECT (q).ts_stat FROM saved_queries":                            "ts_stat runs SQL given as text, and that text is not a string literal",
		"SELECT c.ts_stat FROM customers c":                                "ts_stat runs SQL given as text, and that text is not a string literal",
		"SELECT ('public'::text).schema_to_xml":                            "schema_to_xml reads every table of a schema",
		"SELECT ('SELECT 1 FROM salaries s(x)'::text).dblink_exec.ts_stat": "ts_stat runs SQL given as text",
	} {
		if _, err := decodeFacts(t, sql); !errors.Is(err, tools.ErrOpaque) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v, want refused before policy with %q", sql, err, reason)
		}
	}
}

// The premise, on a real PostgreSQL 15: (x).f and t.f run f. A
// transaction-level advisory lock taken through attribute notation shows
// in pg_locks; a field of the same name as a function wins over it.
func TestAttributeNotationRunsTheFunction(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var got bool
	var locks int
	if err := tx.QueryRow(ctx, "SELECT (4242::bigint).pg_try_advisory_xact_lock").Scan(&got); err != nil || !got {
		t.Fatalf("(4242::bigint).pg_try_advisory_xact_lock: %v %v", got, err)
	}
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").Scan(&locks); err != nil || locks != 1 {
		t.Fatalf("advisory locks after (4242::bigint).pg_try_advisory_xact_lock: %d %v", locks, err)
	}
	if _, err := tx.Exec(ctx, "CREATE FUNCTION peek(int) RETURNS text LANGUAGE sql AS 'SELECT email FROM customers WHERE id = $1'"); err != nil {
		t.Fatal(err)
	}
	var email, name string
	if err := tx.QueryRow(ctx, "SELECT (1).peek, (c).name FROM customers c WHERE id = 1").Scan(&email, &name); err != nil || email != "ada@example.com" || name != "Ada" {
		t.Fatalf("(1).peek, (c).name: %q %q %v", email, name, err)
	}
	if _, err := tx.Exec(ctx, "CREATE FUNCTION shout(customers) RETURNS text LANGUAGE sql AS 'SELECT upper($1.name)'"); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SELECT c.shout FROM customers c WHERE id = 1").Scan(&name); err != nil || name != "ADA" {
		t.Fatalf("c.shout: %q %v", name, err)
	}
}

// Under a read-only grant the attribute forms of pg_advisory_lock and
// pg_terminate_backend are refused before anything reaches the server.
func TestAttributeNotationRefusedUnderReadOnly(t *testing.T) {
	f := newFixture(t)
	ro := f.mint(t, "readonly")
	pid := f.backendPID(t, ro)
	if _, err := f.query(t, ro, defaultLimits(), map[string]any{"sql": "SELECT (4242::bigint).pg_advisory_lock"}); !errors.Is(err, tools.ErrRefused) {
		t.Errorf("(4242::bigint).pg_advisory_lock under a read-only grant: %v, want refused", err)
	}
	if held := f.pg.Query(t, "postgres", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid); held[0] != "0" {
		t.Errorf("%s advisory lock(s) held by backend %d", held[0], pid)
	}

	ctx := context.Background()
	pool, err := ro.connPool()
	if err != nil {
		t.Fatal(err)
	}
	victim, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Release()
	var victimPID int64
	if err := victim.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&victimPID); err != nil {
		t.Fatal(err)
	}
	sql := fmt.Sprintf("SELECT (%d).pg_terminate_backend", victimPID)
	if _, err := f.query(t, ro, defaultLimits(), map[string]any{"sql": sql}); !errors.Is(err, tools.ErrRefused) {
		t.Errorf("%s under a read-only grant: %v, want refused", sql, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := f.pg.Query(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", victimPID); n[0] != "1" {
		t.Errorf("backend %d was terminated", victimPID)
	}
}

// What stands behind the facts where they cannot see: a function the
// schema defines on a row type, called as t.f, is a column to the facts
// and runs as a plain read. Whatever session state it leaves (a session
// advisory lock, the random seed, a prepared statement, and, committed
// under a read_write grant, a setting) is gone before the next call on the
// same connection.
func TestFunctionOnARowTypeLeavesNothingBehind(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, `
CREATE FUNCTION lock_it(customers) RETURNS int LANGUAGE sql AS 'SELECT 1 FROM pg_advisory_lock(4242)';
CREATE FUNCTION seed_it(customers) RETURNS int LANGUAGE sql AS 'SELECT 1 FROM setseed(0.5)';
CREATE FUNCTION prepare_it(customers) RETURNS int LANGUAGE plpgsql AS $$BEGIN EXECUTE 'PREPARE leftover AS SELECT 1'; RETURN 1; END$$;
CREATE FUNCTION set_it(customers) RETURNS int LANGUAGE sql AS $$SELECT 1 FROM set_config('work_mem', '1234kB', false)$$;`)
	seeded := f.pg.Query(t, "postgres", "SELECT random() FROM (SELECT setseed(0.5)) s")[0]

	for _, grant := range []string{"readonly", "readwrite"} {
		cred := f.mint(t, grant)
		pid := f.backendPID(t, cred)
		sql := "SELECT c.lock_it, c.seed_it, c.prepare_it FROM customers c WHERE c.id = 1"
		if grant == "readwrite" {
			sql = "SELECT c.lock_it, c.seed_it, c.prepare_it, c.set_it FROM customers c WHERE c.id = 1"
		}
		if facts, err := decodeFacts(t, sql); err != nil || !facts.ReadOnly || len(facts.Functions) != 0 {
			t.Fatalf("%s: facts %+v %v: the test needs a call the facts take for a plain read", sql, facts, err)
		}
		if _, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": sql}); err != nil {
			t.Fatalf("%s (%s): %v", sql, grant, err)
		}
		next := func(sql string) any {
			t.Helper()
			out, err := f.query(t, cred, defaultLimits(), map[string]any{"sql": sql})
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			return out.Table.Rows[0][0]
		}
		if got := f.backendPID(t, cred); got != pid {
			t.Fatalf("%s: the next call ran on backend %d, not %d: the test needs the same pooled connection", grant, got, pid)
		}
		if held := f.pg.Query(t, "postgres", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid); held[0] != "0" {
			t.Errorf("%s: %s session advisory lock(s) outlived the call", grant, held[0])
		}
		if n := next("SELECT count(*) FROM pg_prepared_statements"); n != int64(0) {
			t.Errorf("%s: %v prepared statement(s) outlived the call", grant, n)
		}
		if r := next("SELECT random()::text"); r == seeded {
			t.Errorf("%s: random() returned %v, what setseed(0.5) makes it return: the seed outlived the call", grant, r)
		}
		if grant == "readwrite" {
			if v := next("SELECT current_setting('work_mem')"); v == "1234kB" {
				t.Errorf("a setting committed by a call the facts took for a read outlived it: work_mem = %v", v)
			}
		}
	}
}

// DO runs PL/pgSQL the facts do not analyse: refused before policy, at the
// top level, after another statement and in SQL text.
func TestDORefusedBeforePolicy(t *testing.T) {
	for sql, reason := range map[string]string{
		"DO $$ BEGIN PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'; END $$": "DO runs a PL/pgSQL block whose statements the analysis cannot see: send the statements it would run as plain SQL instead",
		"DO LANGUAGE plpgsql 'BEGIN NULL; END'":                    "DO runs a PL/pgSQL block",
		"SELECT 1; DO $$ BEGIN NULL; END $$":                       "statement 2: DO runs a PL/pgSQL block",
		"SELECT dblink_exec('DO $x$ BEGIN NULL; END $x$')":         "DO runs a PL/pgSQL block",
		"SELECT dblink_exec('conn', 'DO $x$ BEGIN NULL; END $x$')": "DO runs a PL/pgSQL block",
	} {
		if _, err := decodeFacts(t, sql); !errors.Is(err, tools.ErrOpaque) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v, want refused before policy with %q", sql, err, reason)
		}
		p, err := parseSQL(sql)
		if err != nil {
			t.Fatal(err)
		}
		if err := refuse(p, false, true); !errors.Is(err, tools.ErrRefused) {
			t.Errorf("%s: Execute would send it: %v", sql, err)
		}
	}
}

// Settings that change how the server reads the SQL after them are refused
// like the protected settings, however they would be changed; a setting
// the lexer only warns about is not.
func TestSettingsThatChangeHowSQLIsReadRefused(t *testing.T) {
	for _, sql := range []string{
		"SET standard_conforming_strings = off",
		"SET LOCAL standard_conforming_strings TO off",
		"SET SESSION standard_conforming_strings = 'off'",
		"RESET standard_conforming_strings",
		"SET backslash_quote = on",
		"SET client_encoding = 'SJIS'",
		"SET NAMES 'SJIS'",
		"SELECT set_config('standard_conforming_strings', 'off', false)",
		"SELECT pg_catalog.set_config('Backslash_Quote', 'on', true)",
		"SELECT query_to_xml('SELECT set_config(''standard_conforming_strings'', ''off'', false)', true, false, '')",
		"ALTER ROLE CURRENT_USER SET standard_conforming_strings = off",
		"ALTER USER CURRENT_USER IN DATABASE postgres SET client_encoding = 'SJIS'",
		"ALTER DATABASE postgres SET backslash_quote = on",
		"ALTER SYSTEM SET standard_conforming_strings = off",
		"ALTER ROLE CURRENT_USER SET role = 'postgres'",
	} {
		p, err := parseSQL(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if err := refuse(p, false, true); !errors.Is(err, tools.ErrRefused) {
			t.Errorf("%s: %v, want refused", sql, err)
		}
	}
	for _, sql := range []string{"SET escape_string_warning = off", "ALTER ROLE CURRENT_USER SET work_mem = '8MB'"} {
		p, _ := parseSQL(sql)
		if err := refuse(p, false, true); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

// The finding on a real server: with standard_conforming_strings off,
// PostgreSQL runs a function the facts read as part of a string literal;
// query_db refuses the call before sending anything.
func TestStandardConformingStringsOffRefused(t *testing.T) {
	const sql = `SET standard_conforming_strings = off; SELECT 'x\'', pg_try_advisory_lock(99) AS hidden --'`
	p, err := parseSQL(sql)
	if err != nil {
		t.Fatal(err)
	}
	if fns := p.statements[1].facts.Functions; len(fns) != 0 {
		t.Fatalf("the facts see %v in the second statement: the premise changed", fns)
	}
	f := newFixture(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// query_db sends each statement on its own (a simple query string is
	// lexed whole before its SET runs)
	if _, err := conn.Exec(ctx, "BEGIN; SET LOCAL standard_conforming_strings = off"); err != nil {
		t.Fatal(err)
	}
	results, err := conn.PgConn().Exec(ctx, `SELECT 'x\'', pg_try_advisory_xact_lock(99) AS hidden --'`).ReadAll()
	if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil || len(results) != 1 || len(results[0].FieldDescriptions) != 2 || results[0].FieldDescriptions[1].Name != "hidden" {
		t.Fatalf("PostgreSQL with standard_conforming_strings off did not run the hidden function: %v", err)
	}

	rw := f.mint(t, "readwrite")
	pid := f.backendPID(t, rw)
	limits := defaultLimits()
	limits.MultiStatement = true
	if _, err := f.query(t, rw, limits, map[string]any{"sql": sql}); !errors.Is(err, tools.ErrRefused) || !strings.Contains(err.Error(), "standard conforming strings") {
		t.Errorf("%s: %v, want refused", sql, err)
	}
	if held := f.pg.Query(t, "postgres", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid); held[0] != "0" {
		t.Errorf("the hidden pg_try_advisory_lock ran: %s lock(s) on backend %d", held[0], pid)
	}
}

// newerSyntax is syntax the facts' parser (pg_query v6: PostgreSQL 17's
// grammar) accepts and PostgreSQL 15 reads otherwise. Each is refused
// before policy, or PostgreSQL 15 refuses it as a syntax error (42601), so
// nothing runs with a meaning the facts did not see.
var newerSyntax = []string{
	// keywords of 16 and 17 that PostgreSQL 15 reads as names
	"SELECT replace(system_user, '@', ' at ') FROM (SELECT email AS system_user FROM customers) s",
	"SELECT system_user",
	"SELECT json_value(doc, '$.tier') FROM customers",
	"SELECT json_query(doc, '$.tier') FROM customers",
	"SELECT json_exists(doc, '$.tier') FROM customers",
	"SELECT json_array(1, 2)",
	"SELECT json_array()",
	"SELECT json_object()",
	"SELECT json_arrayagg(id) FROM customers",
	"SELECT json_scalar(1)",
	"SELECT json_serialize(doc) FROM customers",
	"SELECT json('{}')",
	"SELECT merge_action()",
	// new syntax
	"SELECT json_object('a' VALUE 1)",
	"SELECT json_objectagg(name VALUE id) FROM customers",
	"SELECT json_array(SELECT 1)",
	"SELECT doc IS JSON FROM customers",
	"SELECT * FROM JSON_TABLE('[1]'::jsonb, '$[*]' COLUMNS (a int PATH '$'))",
	"SELECT 0x1F",
	"SELECT 1_000",
	"SELECT 0o17, 0b101",
	"SELECT now() AT LOCAL",
	"SELECT * FROM (SELECT 1)",
	"SELECT xmlserialize(DOCUMENT '<a/>' AS text INDENT)",
	"MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
	"MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN MATCHED THEN DELETE RETURNING merge_action()",
}

func TestNewerSyntaxFailsClosed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	refusedBeforePolicy := 0
	for _, sql := range newerSyntax {
		if _, err := parseSQL(sql); err != nil {
			t.Errorf("%s: the facts' parser refuses it (%v): it does not belong in this list", sql, err)
			continue
		}
		_, ferr := decodeFacts(t, sql)
		if errors.Is(ferr, tools.ErrOpaque) {
			refusedBeforePolicy++
			continue
		}
		if ferr != nil {
			t.Fatalf("%s: %v", sql, ferr)
		}
		_, err := conn.Exec(ctx, "BEGIN; "+sql+"; ROLLBACK")
		_, _ = conn.Exec(ctx, "ROLLBACK")
		if code := pgErrorCode(err); code != "42601" {
			t.Errorf("%s: the facts let it through and PostgreSQL 15 reads it (%v): refuse it before policy", sql, err)
		}
	}
	if refusedBeforePolicy < 14 {
		t.Errorf("only %d of the constructs are refused before policy", refusedBeforePolicy)
	}
	for sql, reason := range map[string]string{
		"SELECT replace(system_user, '@', ' at ') FROM (SELECT email AS system_user FROM customers) s": `system_user is a keyword only from PostgreSQL 16 on, and this server (PostgreSQL 15) reads it as a column name: write "system_user" in double quotes`,
		"SELECT json_value(doc, '$.tier') FROM customers":                                              "JSON_VALUE is syntax of PostgreSQL 16 and later",
		"SELECT merge_action()": "MERGE_ACTION() is syntax of PostgreSQL 16 and later",
		"SELECT query_to_xml('SELECT json_scalar(1)', true, false, '')": "JSON_SCALAR is syntax of PostgreSQL 16 and later",
	} {
		if _, err := decodeFacts(t, sql); !errors.Is(err, tools.ErrOpaque) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v, want refused before policy with %q", sql, err, reason)
		}
	}
	// A quoted "system_user" is a name in both grammars.
	if f, err := decodeFacts(t, `SELECT "system_user" FROM (SELECT email AS system_user FROM customers) s`); err != nil || len(f.Functions) != 0 {
		t.Errorf(`"system_user": %+v %v`, f, err)
	}
}

// newerKeywords are the keywords of the facts' parser that PostgreSQL 15
// does not have, by category. Unreserved ones are names wherever a name
// can be, in both grammars. The column-name ones (json, json_*,
// merge_action) cannot name a function in the parser's grammar, which
// reads json_value(...) as SQL/JSON syntax: refused (newerSyntaxRefusal).
// The reserved one, system_user, is a function there and a name on 15:
// refused (systemUserRefusal).
var newerKeywords = map[string]pg_query.KeywordKind{
	"absent": pg_query.KeywordKind_UNRESERVED_KEYWORD, "conditional": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"empty": pg_query.KeywordKind_UNRESERVED_KEYWORD, "error": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"format": pg_query.KeywordKind_UNRESERVED_KEYWORD, "indent": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"keep": pg_query.KeywordKind_UNRESERVED_KEYWORD, "keys": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"nested": pg_query.KeywordKind_UNRESERVED_KEYWORD, "omit": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"path": pg_query.KeywordKind_UNRESERVED_KEYWORD, "plan": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"quotes": pg_query.KeywordKind_UNRESERVED_KEYWORD, "scalar": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"source": pg_query.KeywordKind_UNRESERVED_KEYWORD, "string": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"target": pg_query.KeywordKind_UNRESERVED_KEYWORD, "unconditional": pg_query.KeywordKind_UNRESERVED_KEYWORD,
	"json": pg_query.KeywordKind_COL_NAME_KEYWORD, "json_array": pg_query.KeywordKind_COL_NAME_KEYWORD,
	"json_arrayagg": pg_query.KeywordKind_COL_NAME_KEYWORD, "json_exists": pg_query.KeywordKind_COL_NAME_KEYWORD,
	"json_object": pg_query.KeywordKind_COL_NAME_KEYWORD, "json_objectagg": pg_query.KeywordKind_COL_NAME_KEYWORD,
	"json_query": pg_query.KeywordKind_COL_NAME_KEYWORD, "json_scalar": pg_query.KeywordKind_COL_NAME_KEYWORD,
	"json_serialize": pg_query.KeywordKind_COL_NAME_KEYWORD, "json_table": pg_query.KeywordKind_COL_NAME_KEYWORD,
	"json_value": pg_query.KeywordKind_COL_NAME_KEYWORD, "merge_action": pg_query.KeywordKind_COL_NAME_KEYWORD,
	"system_user": pg_query.KeywordKind_RESERVED_KEYWORD,
}

// TestParserKeywordsAgainstPostgreSQL15 compares the facts' parser's
// keywords with PostgreSQL 15's (pg_get_keywords): every keyword of 15 has
// the same category in the parser, and none of newerKeywords is one of 15.
// newerKeywords is the rest of the parser's list, from a review of
// PostgreSQL 17's kwlist.h (which pg_query does not expose); keywords do
// not change within a major version, so the test pins the parser's major
// version, and a pg_query of another one fails here until it is reviewed.
func TestParserKeywordsAgainstPostgreSQL15(t *testing.T) {
	tree, err := pg_query.Parse("SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	if major := tree.Version / 10000; major != 17 {
		t.Fatalf("pg_query parses with PostgreSQL %d's grammar: review what it reads differently from PostgreSQL 15 (newerSyntax, newerKeywords) and update this test", major)
	}
	kind := func(word string) pg_query.KeywordKind {
		res, err := pg_query.Scan(word)
		if err != nil || len(res.Tokens) != 1 {
			t.Fatalf("scanning %q: %v %v", word, res, err)
		}
		return res.Tokens[0].KeywordKind
	}
	f := newFixture(t)
	rows := f.pg.Query(t, "postgres", "SELECT string_agg(word || ':' || catcode::text, ',' ORDER BY word) FROM pg_get_keywords()")
	categories := map[string]pg_query.KeywordKind{"U": pg_query.KeywordKind_UNRESERVED_KEYWORD, "C": pg_query.KeywordKind_COL_NAME_KEYWORD,
		"T": pg_query.KeywordKind_TYPE_FUNC_NAME_KEYWORD, "R": pg_query.KeywordKind_RESERVED_KEYWORD}
	pg15 := map[string]bool{}
	for _, wc := range strings.Split(rows[0], ",") {
		word, cat, _ := strings.Cut(wc, ":")
		pg15[word] = true
		if got := kind(word); got != categories[cat] {
			t.Errorf("keyword %s: PostgreSQL 15 has it %s, the facts' parser %s", word, cat, got)
		}
	}
	if len(pg15) < 400 {
		t.Fatalf("pg_get_keywords returned %d keywords", len(pg15))
	}
	for word, want := range newerKeywords {
		if pg15[word] {
			t.Errorf("%s is a keyword of PostgreSQL 15 too", word)
		}
		if got := kind(word); got != want {
			t.Errorf("%s: the facts' parser has it %s, want %s", word, got, want)
		}
	}
}

// A user-defined operator is classified wherever an operator can be named:
// in a subquery comparison (x op ANY (SELECT ...)) and in ORDER BY ...
// USING, not only in an operator expression.
func TestOperatorsInSubqueriesAndOrderByAreClassified(t *testing.T) {
	for sql, readOnly := range map[string]bool{
		"SELECT 1 WHERE 1 === ANY (SELECT 1)":                                          false,
		"SELECT 1 WHERE 1 OPERATOR(public.=) ALL (SELECT 1)":                           false,
		"SELECT 1 WHERE (1, 2) === (SELECT 1, 2)":                                      false,
		"SELECT id FROM customers ORDER BY id USING ===":                               false,
		"SELECT array_agg(id ORDER BY id USING ===) FROM customers":                    false,
		"SELECT row_number() OVER (ORDER BY id USING ===) FROM customers":              false,
		"SELECT 1 WHERE 1 = ANY (SELECT 1) AND 1 IN (SELECT 1) AND 1 < ALL (SELECT 2)": true,
		"SELECT id FROM customers ORDER BY id USING >":                                 true,
	} {
		f := SQLFacts(sql)
		if f.ParseError != "" || f.ReadOnly != readOnly {
			t.Errorf("%s: read_only %v (%s), want %v", sql, f.ReadOnly, f.ParseError, readOnly)
		}
	}
	fx := newFixture(t)
	fx.pg.Exec(t, `CREATE FUNCTION eq3(int, int) RETURNS bool LANGUAGE sql AS 'SELECT $1 = $2';
CREATE OPERATOR === (FUNCTION = eq3, LEFTARG = int, RIGHTARG = int);`)
	ro := fx.mint(t, "readonly")
	for _, sql := range []string{"SELECT 1 WHERE 1 === ANY (SELECT 1)", "SELECT id FROM customers ORDER BY id USING ==="} {
		if _, err := fx.query(t, ro, defaultLimits(), map[string]any{"sql": sql}); !errors.Is(err, tools.ErrRefused) || !strings.Contains(err.Error(), "operator === is not a built-in operator") {
			t.Errorf("%s under a read-only grant: %v, want refused", sql, err)
		}
	}
}
