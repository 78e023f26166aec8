package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"go/format"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Functions that report values in their messages, as application code does.
const errorFixtureSQL = `
CREATE FUNCTION check_customer(i int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'customer % has email %', i, (SELECT email FROM customers WHERE id = i)
		USING DETAIL = 'detail ' || (SELECT email FROM customers WHERE id = i), HINT = 'hint';
END $$;
CREATE FUNCTION lookup_customer(i int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION USING MESSAGE = 'role "' || (SELECT email FROM customers WHERE id = i) || '" does not exist', ERRCODE = '42704';
END $$;
CREATE FUNCTION divide_by_email(i int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE e text := (SELECT email FROM customers WHERE id = i);
BEGIN
	RETURN length(e) / 0;
END $$;
CREATE FUNCTION noisy(i int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'notice %', (SELECT email FROM customers WHERE id = i);
	RAISE WARNING 'warning %', (SELECT email FROM customers WHERE id = i);
	RETURN 1;
END $$;
`

// fixtureValues are customers' emails: a database error must never carry one
// the agent did not write.
var fixtureValues = []string{"ada@example.com", "grace@example.com", "grace", "example", "ada#example_com", "grace#example_com"}

func TestDatabaseErrorsQuoteNothingTheAgentDidNotWrite(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, errorFixtureSQL)
	ro := f.mint(t, "readonly")
	rw := f.mint(t, "readwrite")

	tests := []struct {
		name string
		cred *Credential
		sql  string
		code string
		// want is the whole error text.
		want string
	}{
		{"42704: a value cast to regrole", ro,
			`SELECT translate(email,'.@','_#')::regrole FROM customers WHERE id = 2`, "42704",
			`ERROR: role "…" does not exist (SQLSTATE 42704)`},
		{"22P02: a value that carries quotes of its own", ro,
			`SELECT ('x" ' || email || ' "x')::int FROM customers WHERE id = 2`, "22P02",
			`ERROR: invalid input syntax for type integer: "…" (SQLSTATE 22P02)`},
		{"22P02: a value with one quote", ro,
			`SELECT ('x"' || email)::int FROM customers WHERE id = 2`, "22P02",
			`ERROR: invalid input syntax for type integer: "…" (SQLSTATE 22P02)`},
		{"22P02: quotes and a joiner cannot smuggle the value out", ro,
			`SELECT ('x" of relation "' || email)::int, 'x' FROM customers WHERE id = 2`, "22P02",
			`ERROR: invalid input syntax for type integer: "…" (SQLSTATE 22P02)`},
		{"22P02: invalid input, a value read", ro,
			`SELECT email::int FROM customers WHERE id = 2`, "22P02",
			`ERROR: invalid input syntax for type integer: "…" (SQLSTATE 22P02)`},
		{"22P02: invalid input the agent wrote is kept", ro,
			`SELECT 'abc'::int`, "22P02",
			`ERROR: invalid input syntax for type integer: "abc" (SQLSTATE 22P02)`},
		{"22008: numbers printed unquoted, the agent's own too while the statement runs", ro,
			`SELECT make_date(2024, balance::int, 1) FROM customers WHERE id = 2`, "22008",
			`ERROR: date field value out of range: …-…-… (SQLSTATE 22008)`},
		{"23505: the unique violation's detail names the key's value", rw,
			`UPDATE customers SET email = (SELECT email FROM customers WHERE id = 1) WHERE id = 2`, "23505",
			`ERROR: duplicate key value violates unique constraint "…" (SQLSTATE 23505)`},
		{"P0001: RAISE with a value", rw,
			`SELECT check_customer(2)`, "P0001",
			`ERROR: ` + raisedMessage + ` (SQLSTATE P0001)`},
		{"RAISE that claims another SQLSTATE", rw,
			`SELECT lookup_customer(2)`, "42704",
			`ERROR: ` + raisedMessage + ` (SQLSTATE 42704)`},
		{"22012: context lines of a PL/pgSQL function are dropped", rw,
			`SELECT divide_by_email(2)`, "22012",
			`ERROR: division by zero (SQLSTATE 22012)`},
		{"42703: an undefined column keeps the agent's identifier", ro,
			`SELECT emial FROM customers`, "42703",
			`ERROR: column "emial" does not exist (SQLSTATE 42703)`},
		{"42703: as folded by PostgreSQL", ro,
			`SELECT Emial FROM customers`, "42703",
			`ERROR: column "emial" does not exist (SQLSTATE 42703)`},
		{"42703: a quoted identifier", ro,
			`SELECT "Emial" FROM customers`, "42703",
			`ERROR: column "Emial" does not exist (SQLSTATE 42703)`},
		{"42P01: a qualified name", ro,
			`SELECT * FROM public.nope`, "42P01",
			`ERROR: relation "public.nope" does not exist (SQLSTATE 42P01)`},
		{"42703: INSERT names the column and the relation", rw,
			`INSERT INTO customers (nope) VALUES (1)`, "42703",
			`ERROR: column "nope" of relation "customers" does not exist (SQLSTATE 42703)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.query(t, tt.cred, defaultLimits(), map[string]any{"sql": tt.sql})
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != tt.code {
				t.Fatalf("%s: %v, want SQLSTATE %s", tt.sql, err, tt.code)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\nwant    %q", err.Error(), tt.want)
			}
			for _, v := range fixtureValues {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error carries %q: %v", v, err)
				}
			}
			if pe.Detail != "" || pe.Hint != "" || pe.Where != "" || pe.InternalQuery != "" || pe.ConstraintName != "" ||
				pe.TableName != "" || pe.ColumnName != "" || pe.SchemaName != "" || pe.DataTypeName != "" || pe.Routine != "" || pe.File != "" {
				t.Errorf("error keeps fields beyond severity, code and message: %#v", pe)
			}
		})
	}
}

// NOTICE and WARNING messages a call raises never reach the agent: the
// driver drops them (no handler is set on the credential's connections).
// (A read-only grant refuses functions that are not built in; a read_write
// grant runs them.)
func TestNoticesDoNotReachTheAgent(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, errorFixtureSQL)
	ro := f.mint(t, "readwrite")
	out, err := f.query(t, ro, defaultLimits(), map[string]any{"sql": "SELECT noisy(2) AS n"})
	if err != nil || len(out.Table.Rows) != 1 || out.Table.Rows[0][0] != int64(1) {
		t.Fatalf("noisy(2): %v %v", out, err)
	}
	if strings.Contains(out.Notice, "grace") {
		t.Fatalf("notice reached the output: %q", out.Notice)
	}
	pool, err := ro.connPool()
	if err != nil {
		t.Fatal(err)
	}
	if cc := pool.Config().ConnConfig; cc.OnNotice != nil || cc.OnNotification != nil {
		t.Fatal("the credential's connections have a notice or notification handler")
	}
}

func TestAgentWords(t *testing.T) {
	said := agentWords{}
	said.addSQL(`SELECT "Weird ""Name""", x.y.z, 'it''s', E'e', $$dollar$$, 42, 1.5, $1, a <@ b FROM t -- comment "hidden"`)
	said.addParam("param value")
	said.addParam(float64(7))
	for _, w := range []string{`Weird "Name"`, "x.y", "y.z", "x.y.z", "it's", "e", "dollar", "42", "1.5", "$1", "1", "param value", "7", "select", "SELECT", "t"} {
		if !said.name(w) {
			t.Errorf("agent words lack the name %q", w)
		}
	}
	for _, w := range []string{"comment", "hidden", "Weird", "x.y.z.t", "<@", "'it''s'"} {
		if said.name(w) {
			t.Errorf("agent words include the name %q", w)
		}
	}
	for _, w := range []string{"<@", "'it''s'", "SELECT", `"Weird ""Name"""`} {
		if !said.raw(w) {
			t.Errorf("agent words lack the token %q", w)
		}
	}
	for _, w := range []string{"--", "comment", `"hidden"`} {
		if said.raw(w) {
			t.Errorf("agent words include the token %q (a comment)", w)
		}
	}
}

// TestReduceMessage runs the reduction on messages as PostgreSQL formats
// them, in each phase: analysing (a position), running (none), nested
// (context lines).
func TestReduceMessage(t *testing.T) {
	said := agentWords{}
	said.addSQL(`SELECT 'a', 'b', "Mood", x.y, emial, 5, 'zz" is out of range for type integer' FROM t WHERE c <@ d ORDER BY 5`)
	analysing := func(code, msg string) *pgconn.PgError { return &pgconn.PgError{Code: code, Message: msg, Position: 8} }
	running := func(code, msg string) *pgconn.PgError { return &pgconn.PgError{Code: code, Message: msg} }
	nested := func(code, msg string) *pgconn.PgError {
		return &pgconn.PgError{Code: code, Message: msg, Where: "PL/pgSQL function f() line 3 at PERFORM"}
	}
	for _, tt := range []struct {
		name string
		pe   *pgconn.PgError
		want string
	}{
		{"a token while analysing", analysing("42703", `column "emial" does not exist`), `column "emial" does not exist`},
		{"a word not written", analysing("42703", `column "hidden" does not exist`), `column "…" does not exist`},
		{"unquoted names while analysing", analysing("42703", `column x.emial does not exist`), `column x.emial does not exist`},
		{"a token while running", running("42704", `role "a" does not exist`), `role "…" does not exist`},
		{"a token inside a function", nested("42703", `column "emial" does not exist`), `column "…" does not exist`},
		{"unquoted, while running", running("42601", `improper relation name (too many dotted names): ada#example_com.a.b.c`), `improper relation name (too many dotted names): …`},
		{"unquoted, a token while running", running("42601", `improper qualified name (too many dotted names): x.y`), `improper qualified name (too many dotted names): …`},
		{"an object the statement names, running", running("42501", `permission denied for table t`), `permission denied for table t`},
		{"an object not written", running("23505", `duplicate key value violates unique constraint "t_pkey"`), `duplicate key value violates unique constraint "…"`},
		{"an object inside a function", nested("42501", `permission denied for table t`), `permission denied for table …`},
		{"a built-in type keeps, the value goes", running("22P02", `invalid input syntax for type integer: "ada@example.com"`), `invalid input syntax for type integer: "…"`},
		{"a user type the agent wrote", running("22P02", `invalid input value for enum Mood: "happy"`), `invalid input value for enum Mood: "…"`},
		{"a type not written", running("22P02", `invalid input value for enum secret_kind: "x"`), `invalid input value for enum …: "…"`},
		{"numbers while running", running("22008", `date field value out of range: 2024-13-01`), `date field value out of range: …-…-…`},
		{"a number while analysing", analysing("42P10", `ORDER BY position 5 is not in select list`), `ORDER BY position 5 is not in select list`},
		{"a type modifier", running("22001", `value too long for type character varying(10)`), `value too long for type character varying(10)`},
		{"a command tag", running("25006", `cannot execute INSERT in a read-only transaction`), `cannot execute INSERT in a read-only transaction`},
		{"a keyword slot holds no punctuation", running("25006", `cannot execute ada@example.com in a read-only transaction`), `cannot execute … in a read-only transaction`},
		{"a sentence of PostgreSQL's", running("2201B", `invalid regular expression: parentheses () not balanced`), `invalid regular expression: parentheses () not balanced`},
		{"a sentence that is not", running("2201B", `invalid regular expression: ada@example.com`), `invalid regular expression: …`},
		{"a function signature", analysing("42883", `function x.y(integer, text) does not exist`), `function x.y(integer, text) does not exist`},
		{"a signature with a type not written", analysing("42883", `function x.y(secret) does not exist`), `function … does not exist`},
		{"a signature while running", running("42883", `function x.y(integer) does not exist`), `function … does not exist`},
		{"an operator written", analysing("42883", `operator does not exist: integer <@ text`), `operator does not exist: integer <@ text`},
		{"a built-in operator", analysing("42883", `operator does not exist: text ~~ integer`), `operator does not exist: text ~~ integer`},
		{"a prefix operator", analysing("42883", `operator does not exist: - text`), `operator does not exist: - text`},
		{"the scanner's token", analysing("42601", `syntax error at or near "emial"`), `syntax error at or near "emial"`},
		{"the scanner's sentence is its own", analysing("42601", `ada at or near "emial"`), `… at or near "emial"`},
		{"a slot that could be placed elsewhere", running("22P02", `invalid input syntax for type integer: "x: "y"`), `invalid input syntax for type …: "…"`},
		{"a value smuggling a type", running("22003", `value "1" is out of range for type zz" is out of range for type integer`), `value "…" is out of range for type …`},
		{"the SQLSTATE decides the forms", running("22012", `role "a" does not exist`), `division_by_zero (the server's message is withheld: it is not one of the message forms known to carry no data)`},
		{"a message no form knows", running("54000", `requested character too large for encoding: 1114112`), `program_limit_exceeded (the server's message is withheld: it is not one of the message forms known to carry no data)`},
		{"a SQLSTATE not listed", running("22ZZZ", `x`), `an error of class 22 (Data Exception) (the server's message is withheld: it is not one of the message forms known to carry no data)`},
	} {
		if got := reduceMessage(tt.pe, said); got != tt.want {
			t.Errorf("%s: reduceMessage(%q) = %q, want %q", tt.name, tt.pe.Message, got, tt.want)
		}
	}
}

// TestMessageFormsArePostgreSQLs finds every message form, and every
// sentence a slot may hold, in the PostgreSQL server's own binary: the table
// copies PostgreSQL's errmsg formats rather than guessing at them.
func TestMessageFormsArePostgreSQLs(t *testing.T) {
	dir, err := testenv.PostgreSQLBinDir()
	if err != nil {
		testenv.Unavailable(t, "PostgreSQL", "install the Debian package postgresql", err)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "postgres"))
	if err != nil {
		testenv.Unavailable(t, "the PostgreSQL server binary", "install the Debian package postgresql", err)
	}
	for _, f := range messageForms {
		if !binaryString(bin, f.format) {
			t.Errorf("message form %q (SQLSTATE %s) is not a string of %s", f.format, f.code, filepath.Join(dir, "postgres"))
		}
		if _, ok := conditionNames[f.code]; !ok {
			t.Errorf("message form %q: SQLSTATE %s is not in errcodes.txt", f.format, f.code)
		}
	}
	for s := range ownSentences {
		if !binaryString(bin, s) {
			t.Errorf("sentence %q is not a string of the server's binary", s)
		}
	}
}

// binaryString reports whether s is a whole C string of bin: followed by a
// NUL and preceded by a byte that is not printable ASCII (not the tail of a
// longer message).
func binaryString(bin []byte, s string) bool {
	needle := []byte(s + "\x00")
	for off := 0; ; {
		i := bytes.Index(bin[off:], needle)
		if i < 0 {
			return false
		}
		at := off + i
		if at == 0 || bin[at-1] < 0x20 || bin[at-1] > 0x7e {
			return true
		}
		off = at + 1
	}
}

const conditionTableFile = "sqlstates.go"

// TestConditionNames checks sqlstates.go against the errcodes.txt of the
// PostgreSQL installed here; UPDATE_PG_ERRCODES=1 rewrites the file from it.
func TestConditionNames(t *testing.T) {
	dir, err := testenv.PostgreSQLBinDir()
	if err != nil {
		testenv.Unavailable(t, "PostgreSQL", "install the Debian package postgresql", err)
	}
	// pg_config's share directory, else the one beside the binaries:
	// ../share (a source build) or, on Debian, ../../../../share/postgresql/<major>.
	var shares []string
	if out, err := exec.Command("pg_config", "--sharedir").Output(); err == nil {
		shares = append(shares, strings.TrimSpace(string(out)))
	}
	shares = append(shares, filepath.Join(dir, "..", "share"),
		filepath.Join(dir, "..", "..", "..", "..", "share", "postgresql", filepath.Base(filepath.Dir(dir))))
	var src []byte
	for _, share := range shares {
		p := filepath.Join(share, "errcodes.txt")
		if src, err = os.ReadFile(p); err == nil {
			break
		}
	}
	if err != nil {
		testenv.Unavailable(t, "PostgreSQL's errcodes.txt", "install the Debian package postgresql", err)
	}
	got := generateConditionTable(t, src)
	if os.Getenv("UPDATE_PG_ERRCODES") != "" {
		if err := os.WriteFile(conditionTableFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", conditionTableFile)
		return
	}
	want, err := os.ReadFile(conditionTableFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from errcodes.txt; regenerate it: UPDATE_PG_ERRCODES=1 go test -run TestConditionNames ./tools/postgres/", conditionTableFile)
	}
}

func generateConditionTable(t *testing.T, src []byte) []byte {
	t.Helper()
	names := map[string]string{}
	classes := map[string]string{}
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "Section: Class "); ok {
			class, desc, ok := strings.Cut(rest, " - ")
			if ok {
				classes[class] = desc
			}
			continue
		}
		fields := strings.Fields(line)
		if strings.HasPrefix(line, "#") || len(fields) != 4 || len(fields[0]) != 5 {
			continue
		}
		if _, seen := names[fields[0]]; !seen {
			names[fields[0]] = fields[3]
		}
	}
	if len(names) < 200 || len(classes) < 30 {
		t.Fatalf("errcodes.txt: %d codes, %d classes: not the file expected", len(names), len(classes))
	}
	var b strings.Builder
	b.WriteString(`// Code generated by TestConditionNames from PostgreSQL's errcodes.txt; DO NOT EDIT.
// Regenerate: UPDATE_PG_ERRCODES=1 go test -run TestConditionNames ./tools/postgres/

package postgres

// conditionNames are the condition names of SQLSTATEs (PL/pgSQL's names
// for them), which replace a message that matches no known form.
var conditionNames = map[string]string{
`)
	for _, code := range slices.Sorted(maps.Keys(names)) {
		fmt.Fprintf(&b, "\t%q: %q,\n", code, names[code])
	}
	b.WriteString("}\n\n// sqlstateClasses describe the classes of SQLSTATEs (their first two characters).\nvar sqlstateClasses = map[string]string{\n")
	for _, class := range slices.Sorted(maps.Keys(classes)) {
		fmt.Fprintf(&b, "\t%q: %q,\n", class, classes[class])
	}
	b.WriteString("}\n")
	out, err := format.Source([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
