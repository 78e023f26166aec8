package postgres

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// What a database error may say to the agent.
//
// A server message can carry any value the statement touched, quoted or
// not: an input function quotes what it could not parse (`invalid input
// syntax for type integer: "123-45-6789"`), a cast to regrole quotes a value
// as a name (`role "grace#example_org" does not exist`), a cast to regclass
// prints it bare (`improper relation name (too many dotted names):
// ada#example_com.a.b.c`), make_date prints numbers, a RAISE prints whatever
// its function computed, and DETAIL, HINT and CONTEXT repeat rows, keys and
// statements. Quotes do not mark what is data, so a message is kept only in
// a form known from PostgreSQL's source:
//
//   - messageForms lists the errmsg formats of the errors agents meet, each
//     with its SQLSTATE and what each of its %s/%d slots can hold. A message
//     that matches none of them is replaced whole by its SQLSTATE's
//     condition name (division_by_zero) and a sentence saying it was
//     withheld.
//   - In a message that matches, the form's own text stays and each slot
//     keeps its value only on the terms of its kind (slotKind) and of when
//     PostgreSQL raised the error (errorPhase); otherwise it reads "…".
//   - When raised: while PostgreSQL analysed the agent's statement (the
//     error points into it: a position, no context, no internal query), no
//     row had been read, and a slot may echo a token of the agent's SQL.
//     While the statement ran, a slot that can hold a value never echoes,
//     not even a token of the agent's SQL: one call may write every guess
//     ('a', 'b', …, 'z') and the echo would say which one a value is; only
//     slots that name a type, a keyword of PostgreSQL's or an object the
//     statement names or acts on (a table it may not read, a constraint a
//     write violates) keep a value there. Inside SQL a function ran, or a
//     function's body (context lines or an internal query), only
//     PostgreSQL's own words and built-in types remain.
//   - A message a slot could place differently (a value that contains the
//     text around it) keeps no slot value at all.
//   - A message raised by a function (RAISE, ASSERT; SQLSTATE class P0) is
//     replaced whole (raisedByFunction).
//
// Detail, Hint, Where (PL/pgSQL context lines), the internal query,
// positions and the schema, table, column, type and constraint fields are
// dropped (withoutValues). Matching whole tokens rather than substrings
// keeps a value from surviving because it happens to occur inside a longer
// word of the SQL (the "g" of regrole); only the scanner's "at or near",
// raised while analysing, may quote any part of the statement's text.

// agentWords is what the agent wrote in a call: each token of its SQL and
// each of its params, by what the token may stand for in a message.
type agentWords map[string]wordClass

type wordClass uint8

const (
	// wordName: an identifier as written or as PostgreSQL folds it, a
	// dotted name, a keyword, a string constant's value, a number, $n or a
	// param's value.
	wordName wordClass = 1 << iota
	// wordRaw: a token's text exactly as written (operators and quoted
	// constants included).
	wordRaw
	// wordText: a statement's whole text, in which the scanner's "at or
	// near" quotes what follows the error's position.
	wordText
)

func (w agentWords) name(s string) bool { return w[s]&wordName != 0 }
func (w agentWords) raw(s string) bool  { return w[s]&wordRaw != 0 }
func (w agentWords) add(s string, c wordClass) {
	w[s] |= c
}

// inText reports whether s is part of the text of a statement.
func (w agentWords) inText(s string) bool {
	for text, c := range w {
		if c&wordText != 0 && strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// wordsOf collects the tokens of the statements' SQL and their params.
// SQL that does not scan contributes nothing (every slot that needs a token
// then reads "…").
func wordsOf(stmts []execStatement) agentWords {
	w := agentWords{}
	for _, st := range stmts {
		w.addSQL(st.text)
		for _, a := range st.args {
			w.addParam(a)
		}
	}
	return w
}

func (w agentWords) addSQL(sql string) {
	w.add(sql, wordText)
	res, err := pg_query.Scan(sql)
	if err != nil {
		return
	}
	var chain []string // the parts of a dotted name being read
	endChain := func() {
		for i := range chain {
			for j := i + 2; j <= len(chain); j++ {
				w.add(strings.Join(chain[i:j], "."), wordName)
			}
		}
		chain = chain[:0]
	}
	dot := false
	for _, t := range res.Tokens {
		if t.Start < 0 || int(t.End) > len(sql) || t.Start > t.End {
			continue
		}
		raw := sql[t.Start:t.End]
		if t.Token == pg_query.Token_SQL_COMMENT || t.Token == pg_query.Token_C_COMMENT {
			continue
		}
		w.add(raw, wordRaw)
		switch {
		case t.Token == pg_query.Token_IDENT || t.KeywordKind != pg_query.KeywordKind_NO_KEYWORD:
			name := raw
			if strings.HasPrefix(raw, `"`) && strings.HasSuffix(raw, `"`) && len(raw) >= 2 {
				name = strings.ReplaceAll(raw[1:len(raw)-1], `""`, `"`)
			} else {
				name = strings.ToLower(raw)
				w.add(raw, wordName)
			}
			w.add(name, wordName)
			if !dot {
				endChain()
			}
			chain = append(chain, name)
			dot = false
			continue
		case t.Token == pg_query.Token_ASCII_46: // "."
			dot = len(chain) > 0
			continue
		case t.Token == pg_query.Token_SCONST:
			if v, ok := stringConstant(raw); ok {
				w.add(v, wordName)
				w.addDotted(v)
			}
		case t.Token == pg_query.Token_ICONST || t.Token == pg_query.Token_FCONST:
			w.add(raw, wordName)
		case t.Token == pg_query.Token_PARAM:
			w.add(raw, wordName)
			w.add(strings.TrimPrefix(raw, "$"), wordName)
		}
		dot = false
		endChain()
	}
	endChain()
}

// addDotted adds the parts of a string constant that reads as a dotted
// name ('nosuch.t'::regclass), and the dotted names they make.
func (w agentWords) addDotted(v string) {
	if !strings.Contains(v, ".") || strings.ContainsAny(v, "\"'") {
		return
	}
	parts := strings.Split(v, ".")
	for i := range parts {
		for j := i + 1; j <= len(parts); j++ {
			w.add(strings.Join(parts[i:j], "."), wordName)
		}
	}
}

// stringConstant returns the value of a string constant token: '…' (quotes
// doubled), E'…' and N'…' (escapes left as written) and $tag$…$tag$.
func stringConstant(raw string) (string, bool) {
	if len(raw) > 0 && strings.ContainsRune("EeNn", rune(raw[0])) && strings.HasPrefix(raw[1:], "'") {
		raw = raw[1:]
	}
	switch {
	case len(raw) >= 2 && raw[0] == '\'' && raw[len(raw)-1] == '\'':
		return strings.ReplaceAll(raw[1:len(raw)-1], "''", "'"), true
	case len(raw) >= 2 && raw[0] == '$':
		end := strings.IndexByte(raw[1:], '$')
		if end < 0 {
			return "", false
		}
		tag := raw[:end+2]
		if len(raw) >= 2*len(tag) && strings.HasSuffix(raw, tag) {
			return raw[len(tag) : len(raw)-len(tag)], true
		}
	}
	return "", false
}

func (w agentWords) addParam(v any) {
	switch v := v.(type) {
	case string:
		w.add(v, wordName)
	case json.Number:
		w.add(v.String(), wordName)
	case float64:
		w.add(strconv.FormatFloat(v, 'f', -1, 64), wordName)
		w.add(strconv.FormatFloat(v, 'g', -1, 64), wordName)
	case int:
		w.add(strconv.Itoa(v), wordName)
	case int64:
		w.add(strconv.FormatInt(v, 10), wordName)
	case bool:
		w.add(strconv.FormatBool(v), wordName)
	}
}

// raisedMessage replaces the message of an error a function raised itself.
const raisedMessage = "a function raised this error with a message of its own, withheld because it can carry any value"

// raisedByFunction reports an error whose message a function's code chose:
// PL/pgSQL's RAISE and ASSERT (whatever SQLSTATE they give it: RAISE can
// claim any), SQLSTATE class P0, and the error reporting of the other
// procedural languages.
func raisedByFunction(pe *pgconn.PgError) bool {
	switch {
	case strings.HasPrefix(pe.Code, "P0"),
		pe.Routine == "exec_stmt_raise", pe.Routine == "exec_stmt_assert",
		strings.HasPrefix(pe.File, "pl_"), strings.HasPrefix(pe.File, "plpy"),
		strings.HasPrefix(pe.File, "plperl"), strings.HasPrefix(pe.File, "pltcl"):
		return true
	}
	return false
}

// errorPhase is when PostgreSQL raised an error, as the error itself shows.
type errorPhase int

const (
	// analysing: the error points into the agent's statement (a position)
	// and came from no function's body or SQL text: parse analysis, which
	// reads the statement's text and the catalogs, never a row.
	analysing errorPhase = iota
	// running: no position, no context: the statement was running, or a
	// utility statement acting, and rows may have been read.
	running
	// nested: context lines or an internal query: SQL a function ran
	// (query_to_xml, EXECUTE) or a function's body, which may have been
	// built from values.
	nested
)

func phaseOf(pe *pgconn.PgError) errorPhase {
	switch {
	case pe.Where != "" || pe.InternalQuery != "" || pe.InternalPosition > 0:
		return nested
	case pe.Position > 0:
		return analysing
	}
	return running
}

// slotKind is what a slot of a message form can hold, which decides when it
// may keep its value (allowed).
type slotKind byte

const (
	// slotValue can hold a value the statement computed: a name looked up
	// at run time (a cast to regclass or regrole, current_setting, a
	// function's text argument), an input that did not parse, a number.
	// It keeps a token of the agent's SQL while analysing only.
	slotValue slotKind = 'v'
	// slotObject names an object that exists, which the statement names
	// or acts on: the table or schema it may not use, the constraint a
	// write violates, the relation DDL creates. It keeps a token of the
	// agent's SQL while analysing or running. (A value cast to regclass can
	// pick the schema or sequence a permission error names, but only among
	// those that exist and the role may not use.)
	slotObject slotKind = 'o'
	// slotType is a type's name (format_type): a built-in type as
	// PostgreSQL spells it in any phase, a token of the agent's SQL while
	// analysing or running.
	slotType slotKind = 't'
	// slotTypmod is a number of a type or of the plan (the 10 of
	// character varying(10)), in any phase: digits only.
	slotTypmod slotKind = 'd'
	// slotKeyword is a keyword phrase of PostgreSQL's own (a command tag,
	// a clause name: INSERT, ORDER BY, JOIN/ON, JOIN conditions), in any
	// phase: letters, spaces and slashes only.
	slotKeyword slotKind = 'k'
	// slotSentence is one of PostgreSQL's own sentences (ownSentences:
	// the scanner's "unterminated quoted string", the regex library's
	// "parentheses () not balanced"), in any phase.
	slotSentence slotKind = 'm'
	// slotToken is a piece of the statement's text (the scanner's "at or
	// near"), analysing only.
	slotToken slotKind = 'q'
	// slotFunction is a function's signature (name(type, type)), analysing
	// only: the name a token of the agent's SQL, each type as slotType.
	slotFunction slotKind = 'f'
	// slotOperator is an operator's signature (type op type), analysing
	// only: the operator a token of the agent's SQL or a built-in
	// operator's name, each type as slotType.
	slotOperator slotKind = 'p'
)

// messageForm is one message format of PostgreSQL's, as its source writes
// it in errmsg (TestMessageFormsArePostgreSQLs finds each in the server's
// binary), with the SQLSTATE it is raised with and one slotKind per %
// directive.
type messageForm struct {
	code, format, slots string

	parts        []string // the literal text around the slots, len(slots)+1
	lazy, greedy *regexp.Regexp
	literal      int // characters of literal text, to prefer the most specific form
}

// messageForms are the errors agents meet: names that do not resolve,
// syntax and type errors, permissions, read-only transactions, integrity
// violations, input that does not parse, arithmetic, timeouts.
var messageForms = []messageForm{
	// Syntax (gram.y, scan.l, namespace.c).
	{code: "42601", format: `%s at or near "%s"`, slots: "mq"},
	{code: "42601", format: `%s at end of input`, slots: "m"},
	{code: "42601", format: `improper relation name (too many dotted names): %s`, slots: "v"},
	{code: "42601", format: `improper qualified name (too many dotted names): %s`, slots: "v"},
	{code: "42602", format: `invalid name syntax`},
	{code: "42601", format: `subquery in FROM must have an alias`},
	{code: "42601", format: `INSERT has more expressions than target columns`},
	{code: "42601", format: `INSERT has more target columns than expressions`},
	{code: "42601", format: `VALUES lists must all be the same length`},
	{code: "42601", format: `each %s query must have the same number of columns`, slots: "k"},
	{code: "0A000", format: `cross-database references are not implemented: %s`, slots: "v"},
	{code: "0A000", format: `cross-database references are not implemented: "%s.%s.%s"`, slots: "vvv"},

	// Names that do not resolve (parse_relation.c, namespace.c, tablecmds.c, acl.c, guc.c).
	{code: "42P01", format: `relation "%s" does not exist`, slots: "v"},
	{code: "42P01", format: `relation "%s.%s" does not exist`, slots: "vv"},
	{code: "42P01", format: `missing FROM-clause entry for table "%s"`, slots: "v"},
	{code: "42P01", format: `invalid reference to FROM-clause entry for table "%s"`, slots: "v"},
	{code: "42P01", format: `table "%s" does not exist`, slots: "o"},
	{code: "42P01", format: `view "%s" does not exist`, slots: "o"},
	{code: "42P01", format: `materialized view "%s" does not exist`, slots: "o"},
	{code: "42P01", format: `sequence "%s" does not exist`, slots: "o"},
	{code: "42P01", format: `foreign table "%s" does not exist`, slots: "o"},
	{code: "42704", format: `index "%s" does not exist`, slots: "o"},
	{code: "42703", format: `column "%s" does not exist`, slots: "v"},
	{code: "42703", format: `column %s.%s does not exist`, slots: "vv"},
	{code: "42703", format: `column "%s" of relation "%s" does not exist`, slots: "vv"},
	{code: "42703", format: `column "%s" not found in data type %s`, slots: "vt"},
	{code: "42703", format: `column "%s" specified in USING clause does not exist in left table`, slots: "v"},
	{code: "42703", format: `column "%s" specified in USING clause does not exist in right table`, slots: "v"},
	{code: "42702", format: `column reference "%s" is ambiguous`, slots: "v"},
	{code: "42702", format: `common column name "%s" appears more than once in left table`, slots: "v"},
	{code: "42702", format: `common column name "%s" appears more than once in right table`, slots: "v"},
	{code: "42P09", format: `table reference "%s" is ambiguous`, slots: "v"},
	{code: "42712", format: `table name "%s" specified more than once`, slots: "v"},
	{code: "42701", format: `column "%s" specified more than once`, slots: "v"},
	{code: "42701", format: `column name "%s" specified more than once`, slots: "v"},
	{code: "42701", format: `column "%s" of relation "%s" already exists`, slots: "oo"},
	{code: "42704", format: `role "%s" does not exist`, slots: "v"},
	{code: "42704", format: `type "%s" does not exist`, slots: "v"},
	{code: "42704", format: `constraint "%s" of relation "%s" does not exist`, slots: "oo"},
	{code: "42704", format: `unrecognized configuration parameter "%s"`, slots: "v"},
	{code: "42704", format: `text search configuration "%s" does not exist`, slots: "v"},
	{code: "3F000", format: `schema "%s" does not exist`, slots: "v"},
	{code: "42P02", format: `there is no parameter $%d`, slots: "v"},
	{code: "42P07", format: `relation "%s" already exists`, slots: "o"},
	{code: "42P06", format: `schema "%s" already exists`, slots: "o"},
	{code: "42710", format: `type "%s" already exists`, slots: "o"},
	{code: "42710", format: `role "%s" already exists`, slots: "o"},
	{code: "42710", format: `constraint "%s" for relation "%s" already exists`, slots: "oo"},

	// Functions and operators (parse_func.c, parse_oper.c).
	{code: "42883", format: `function %s does not exist`, slots: "f"},
	{code: "42883", format: `procedure %s does not exist`, slots: "f"},
	{code: "42883", format: `aggregate %s(*) does not exist`, slots: "v"},
	{code: "42883", format: `operator does not exist: %s`, slots: "p"},
	{code: "42883", format: `could not identify an equality operator for type %s`, slots: "t"},
	{code: "42883", format: `could not identify an ordering operator for type %s`, slots: "t"},
	{code: "42725", format: `function %s is not unique`, slots: "f"},
	{code: "42725", format: `procedure %s is not unique`, slots: "f"},
	{code: "42725", format: `operator is not unique: %s`, slots: "p"},
	{code: "42809", format: `%s is not a procedure`, slots: "f"},
	{code: "42809", format: `%s is a procedure`, slots: "f"},

	// Types (parse_coerce.c, parse_target.c, parse_expr.c).
	{code: "42804", format: `column "%s" is of type %s but expression is of type %s`, slots: "vtt"},
	{code: "42804", format: `column "%s" is of type %s but default expression is of type %s`, slots: "vtt"},
	{code: "42804", format: `argument of %s must be type %s, not type %s`, slots: "ktt"},
	{code: "42804", format: `%s types %s and %s cannot be matched`, slots: "ktt"},
	{code: "42846", format: `cannot cast type %s to %s`, slots: "tt"},
	{code: "42P18", format: `could not determine data type of parameter $%d`, slots: "v"},

	// Grouping, windows, set-returning functions, ORDER BY (parse_agg.c, parse_func.c, parse_clause.c).
	{code: "42803", format: `column "%s.%s" must appear in the GROUP BY clause or be used in an aggregate function`, slots: "vv"},
	{code: "42803", format: `aggregate functions are not allowed in %s`, slots: "k"},
	{code: "42803", format: `grouping operations are not allowed in %s`, slots: "k"},
	{code: "42803", format: `aggregate function calls cannot be nested`},
	{code: "42803", format: `aggregate function calls cannot contain window function calls`},
	{code: "42P20", format: `window functions are not allowed in %s`, slots: "k"},
	{code: "42P20", format: `window function calls cannot be nested`},
	{code: "0A000", format: `set-returning functions are not allowed in %s`, slots: "k"},
	{code: "0A000", format: `set-valued function called in context that cannot accept a set`},
	{code: "42P10", format: `%s position %d is not in select list`, slots: "kv"},
	{code: "42P10", format: `for SELECT DISTINCT, ORDER BY expressions must appear in select list`},
	{code: "42601", format: `subquery must return only one column`},
	{code: "21000", format: `more than one row returned by a subquery used as an expression`},

	// Privileges and ownership (aclchk.c).
	{code: "42501", format: `permission denied for table %s`, slots: "o"},
	{code: "42501", format: `permission denied for view %s`, slots: "o"},
	{code: "42501", format: `permission denied for materialized view %s`, slots: "o"},
	{code: "42501", format: `permission denied for foreign table %s`, slots: "o"},
	{code: "42501", format: `permission denied for column %s`, slots: "o"},
	{code: "42501", format: `permission denied for function %s`, slots: "o"},
	{code: "42501", format: `permission denied for procedure %s`, slots: "o"},
	{code: "42501", format: `permission denied for database %s`, slots: "o"},
	{code: "42501", format: `permission denied for sequence %s`, slots: "o"},
	{code: "42501", format: `permission denied for schema %s`, slots: "o"},
	{code: "42501", format: `must be owner of table %s`, slots: "o"},
	{code: "42501", format: `must be owner of view %s`, slots: "o"},
	{code: "42501", format: `must be owner of materialized view %s`, slots: "o"},
	{code: "42501", format: `must be owner of relation %s`, slots: "o"},
	{code: "42501", format: `must be owner of sequence %s`, slots: "o"},
	{code: "42501", format: `must be owner of function %s`, slots: "o"},
	{code: "42501", format: `must be owner of schema %s`, slots: "o"},
	{code: "42501", format: `must be superuser`},
	{code: "42501", format: `permission denied to create role`},
	{code: "42501", format: `new row violates row-level security policy for table "%s"`, slots: "o"},
	{code: "42501", format: `new row violates row-level security policy "%s" for table "%s"`, slots: "oo"},

	// Transactions, locks, limits (utility.c, xact.c, postgres.c, lmgr).
	{code: "25006", format: `cannot execute %s in a read-only transaction`, slots: "k"},
	{code: "25001", format: `%s cannot run inside a transaction block`, slots: "k"},
	{code: "25P02", format: `current transaction is aborted, commands ignored until end of transaction block`},
	{code: "57014", format: `canceling statement due to statement timeout`},
	{code: "57014", format: `canceling statement due to user request`},
	{code: "55P03", format: `canceling statement due to lock timeout`},
	{code: "55P03", format: `could not obtain lock on relation "%s"`, slots: "o"},
	{code: "55P03", format: `could not obtain lock on row in relation "%s"`, slots: "o"},
	{code: "40P01", format: `deadlock detected`},
	{code: "40001", format: `could not serialize access due to concurrent update`},
	{code: "40001", format: `could not serialize access due to concurrent delete`},
	{code: "40001", format: `could not serialize access due to read/write dependencies among transactions`},
	{code: "54001", format: `stack depth limit exceeded`},
	{code: "53200", format: `out of memory`},
	{code: "2201W", format: `LIMIT must not be negative`},
	{code: "2201X", format: `OFFSET must not be negative`},
	{code: "55000", format: `currval of sequence "%s" is not yet defined in this session`, slots: "v"},
	{code: "55000", format: `lastval is not yet defined in this session`},
	{code: "55000", format: `cannot insert into view "%s"`, slots: "o"},
	{code: "55000", format: `cannot update view "%s"`, slots: "o"},
	{code: "55000", format: `cannot delete from view "%s"`, slots: "o"},
	{code: "2BP01", format: `cannot drop %s because other objects depend on it`, slots: "o"},

	// Integrity (execMain.c, nbtinsert.c, ri_triggers.c, domains.c).
	{code: "23502", format: `null value in column "%s" of relation "%s" violates not-null constraint`, slots: "oo"},
	{code: "23502", format: `domain %s does not allow null values`, slots: "t"},
	{code: "23505", format: `duplicate key value violates unique constraint "%s"`, slots: "o"},
	{code: "23503", format: `insert or update on table "%s" violates foreign key constraint "%s"`, slots: "oo"},
	{code: "23503", format: `update or delete on table "%s" violates foreign key constraint "%s" on table "%s"`, slots: "ooo"},
	{code: "23514", format: `new row for relation "%s" violates check constraint "%s"`, slots: "oo"},
	{code: "23514", format: `new row for relation "%s" violates partition constraint`, slots: "o"},
	{code: "23514", format: `check constraint "%s" of relation "%s" is violated by some row`, slots: "oo"},
	{code: "23514", format: `value for domain %s violates check constraint "%s"`, slots: "to"},
	{code: "23P01", format: `conflicting key value violates exclusion constraint "%s"`, slots: "o"},
	{code: "44000", format: `new row violates check option for view "%s"`, slots: "o"},
	{code: "428C9", format: `cannot insert a non-DEFAULT value into column "%s"`, slots: "o"},
	{code: "428C9", format: `column "%s" can only be updated to DEFAULT`, slots: "o"},

	// Input that does not parse, and values out of range (numutils.c, datetime.c, …).
	{code: "22P02", format: `invalid input syntax for type %s: "%s"`, slots: "tv"},
	{code: "22P02", format: `invalid input syntax for type %s`, slots: "t"},
	{code: "22P02", format: `invalid input value for enum %s: "%s"`, slots: "tv"},
	{code: "22P02", format: `malformed array literal: "%s"`, slots: "v"},
	{code: "22P02", format: `malformed record literal: "%s"`, slots: "v"},
	{code: "22007", format: `invalid input syntax for type %s: "%s"`, slots: "tv"},
	{code: "22007", format: `invalid value "%s" for "%s"`, slots: "vv"},
	{code: "22008", format: `date/time field value out of range: "%s"`, slots: "v"},
	{code: "22008", format: `date field value out of range: %d-%02d-%02d`, slots: "vvv"},
	{code: "22008", format: `time field value out of range: %d:%02d:%02g`, slots: "vvv"},
	{code: "22008", format: `date out of range: "%s"`, slots: "v"},
	{code: "22008", format: `date out of range`},
	{code: "22008", format: `timestamp out of range`},
	{code: "22008", format: `date out of range for timestamp`},
	{code: "22008", format: `interval out of range`},
	{code: "22015", format: `interval field value out of range: "%s"`, slots: "v"},
	{code: "22015", format: `interval out of range`},
	{code: "22023", format: `time zone "%s" not recognized`, slots: "v"},
	{code: "22023", format: `unit "%s" not recognized for type %s`, slots: "vt"},
	{code: "0A000", format: `unit "%s" not supported for type %s`, slots: "vt"},
	{code: "22023", format: `invalid value for parameter "%s": "%s"`, slots: "vv"},
	{code: "22003", format: `integer out of range`},
	{code: "22003", format: `smallint out of range`},
	{code: "22003", format: `bigint out of range`},
	{code: "22003", format: `numeric field overflow`},
	{code: "22003", format: `value out of range: overflow`},
	{code: "22003", format: `value out of range: underflow`},
	{code: "22003", format: `value "%s" is out of range for type %s`, slots: "vt"},
	{code: "22003", format: `"%s" is out of range for type real`, slots: "v"},
	{code: "22003", format: `"%s" is out of range for type double precision`, slots: "v"},
	{code: "22003", format: `money out of range`},
	{code: "22003", format: `"char" out of range`},
	{code: "22003", format: `input is out of range`},
	{code: "22012", format: `division by zero`},
	{code: "22001", format: `value too long for type character varying(%d)`, slots: "d"},
	{code: "22001", format: `value too long for type character(%d)`, slots: "d"},
	{code: "22011", format: `negative substring length not allowed`},
	{code: "2202E", format: `array subscript out of range`},
	{code: "2201B", format: `invalid regular expression: %s`, slots: "m"},
	{code: "22021", format: `invalid byte sequence for encoding "%s": %s`, slots: "vv"},
}

// ownSentences are PostgreSQL's own sentences a slotSentence may hold: the
// scanner's and the grammar's (scan.l) and the regex library's (regerror).
var ownSentences = map[string]bool{
	"syntax error":                            true,
	"unterminated quoted string":              true,
	"unterminated quoted identifier":          true,
	"unterminated dollar-quoted string":       true,
	"unterminated /* comment":                 true,
	"unterminated bit string literal":         true,
	"unterminated hexadecimal string literal": true,
	"zero-length delimited identifier":        true,
	"trailing junk after numeric literal":     true,
	"trailing junk after parameter":           true,

	"parentheses () not balanced":       true,
	"brackets [] not balanced":          true,
	"braces {} not balanced":            true,
	"invalid repetition count(s)":       true,
	"invalid character range":           true,
	"invalid character class":           true,
	"invalid collating element":         true,
	"invalid escape \\ sequence":        true,
	"invalid backreference number":      true,
	"quantifier operand invalid":        true,
	"invalid embedded option":           true,
	"regular expression is too complex": true,
}

// formsByCode indexes messageForms by SQLSTATE.
var formsByCode = map[string][]*messageForm{}

// directive is a printf conversion as errmsg formats use them: %s, %d,
// %02d, %u, %ld, %lld, %zu, %g, %c, %.*s; %% is a literal percent sign.
var directive = regexp.MustCompile(`%(?:%|[-+ #0]*(?:\*|[0-9]+)?(?:\.(?:\*|[0-9]+))?(?:hh|h|ll|l|z|j|t|L)?[diouxXeEfFgGcs])`)

func init() {
	for i := range messageForms {
		f := &messageForms[i]
		if err := f.compile(); err != nil {
			panic(err)
		}
		formsByCode[f.code] = append(formsByCode[f.code], f)
	}
}

// compile splits the format into its literal parts and builds the two
// expressions that match a message to it: slots as short as they can be
// (lazy) and as long (greedy). When both agree, no slot could be placed
// differently.
func (f *messageForm) compile() error {
	var lazy, greedy strings.Builder
	lazy.WriteString(`(?s)^`)
	greedy.WriteString(`(?s)^`)
	var literal strings.Builder
	n := 0
	last := 0
	for _, loc := range directive.FindAllStringIndex(f.format, -1) {
		literal.WriteString(f.format[last:loc[0]])
		last = loc[1]
		d := f.format[loc[0]:loc[1]]
		if d == "%%" {
			literal.WriteByte('%')
			continue
		}
		lit := literal.String()
		f.parts = append(f.parts, lit)
		f.literal += len(lit)
		literal.Reset()
		q := regexp.QuoteMeta(lit)
		lazy.WriteString(q)
		greedy.WriteString(q)
		switch d[len(d)-1] {
		case 'd', 'i', 'u':
			lazy.WriteString(`(-?[0-9]+)`)
			greedy.WriteString(`(-?[0-9]+)`)
		case 'c':
			lazy.WriteString(`(.)`)
			greedy.WriteString(`(.)`)
		default:
			lazy.WriteString(`(.*?)`)
			greedy.WriteString(`(.*)`)
		}
		n++
	}
	literal.WriteString(f.format[last:])
	lit := literal.String()
	f.parts = append(f.parts, lit)
	f.literal += len(lit)
	lazy.WriteString(regexp.QuoteMeta(lit) + `$`)
	greedy.WriteString(regexp.QuoteMeta(lit) + `$`)
	if n != len(f.slots) {
		return fmt.Errorf("postgres: message form %q has %d slots and %d slot kinds", f.format, n, len(f.slots))
	}
	for _, k := range f.slots {
		if !strings.ContainsRune("votdkmqfp", k) {
			return fmt.Errorf("postgres: message form %q: unknown slot kind %q", f.format, k)
		}
	}
	f.lazy, f.greedy = regexp.MustCompile(lazy.String()), regexp.MustCompile(greedy.String())
	return nil
}

// withheldMessage replaces a message that matches no form.
func withheldMessage(code string) string {
	return conditionOf(code) + " (the server's message is withheld: it is not one of the message forms known to carry no data)"
}

// conditionOf names a SQLSTATE as PostgreSQL's errcodes.txt does
// (division_by_zero), or by its class when the code is not listed.
func conditionOf(code string) string {
	if name, ok := conditionNames[code]; ok {
		return name
	}
	if len(code) == 5 {
		if class, ok := sqlstateClasses[code[:2]]; ok {
			return "an error of class " + code[:2] + " (" + class + ")"
		}
	}
	return "an error"
}

// reduceMessage applies the rules above to a server error's message.
func reduceMessage(pe *pgconn.PgError, said agentWords) string {
	msg := pe.Message
	var (
		best  *messageForm
		match []int
	)
	for _, f := range formsByCode[pe.Code] {
		if best != nil && f.literal <= best.literal {
			continue
		}
		if m := f.lazy.FindStringSubmatchIndex(msg); m != nil {
			best, match = f, m
		}
	}
	if best == nil {
		return withheldMessage(pe.Code)
	}
	phase := phaseOf(pe)
	ambiguous := !slices.Equal(match, best.greedy.FindStringSubmatchIndex(msg))
	var b strings.Builder
	for i, kind := range best.slots {
		b.WriteString(best.parts[i])
		v := msg[match[2+2*i]:match[3+2*i]]
		if !ambiguous && allowed(slotKind(kind), phase, v, said) {
			b.WriteString(v)
		} else {
			b.WriteString("…")
		}
	}
	b.WriteString(best.parts[len(best.slots)])
	return b.String()
}

// allowed reports whether a slot of the kind keeps value v in an error
// raised in phase. Slots of PostgreSQL's own vocabulary (a type modifier, a
// keyword phrase, one of its sentences, a built-in type) keep their value
// in any phase: what a function's SQL text could choose among them is no
// more than its choice of SQLSTATE says. Slots that echo the agent's words
// never do inside a function's SQL.
func allowed(kind slotKind, phase errorPhase, v string, said agentWords) bool {
	analysed, ran := phase == analysing, phase != nested
	switch kind {
	case slotValue:
		return analysed && said.name(v)
	case slotObject:
		return ran && said.name(v)
	case slotType:
		return builtinType.MatchString(v) || (ran && typeName(v, said))
	case slotTypmod:
		return digits.MatchString(v)
	case slotKeyword:
		return keywordPhrase.MatchString(v)
	case slotSentence:
		return ownSentences[v]
	case slotToken:
		return analysed && said.inText(v)
	case slotFunction:
		return analysed && functionSignature(v, said)
	case slotOperator:
		return analysed && operatorSignature(v, said)
	}
	return false
}

var (
	digits        = regexp.MustCompile(`^[0-9]{1,10}$`)
	keywordPhrase = regexp.MustCompile(`^[A-Za-z]+(?:[ /][A-Za-z]+)*$`)
	// builtinType is a built-in type as format_type and the input
	// functions spell it, maybe qualified with pg_catalog, maybe an array.
	builtinType = regexp.MustCompile(`^(?:pg_catalog\.)?(?:` +
		`smallint|integer|bigint|real|double precision|boolean|text|name|"char"|bytea|uuid|json|jsonb|jsonpath|xml|` +
		`money|oid|tid|xid|xid8|cid|inet|cidr|macaddr|macaddr8|pg_lsn|pg_snapshot|txid_snapshot|tsvector|tsquery|` +
		`point|line|lseg|box|path|polygon|circle|date|bpchar|record|unknown|void|trigger|cstring|refcursor|aclitem|` +
		`regclass|regproc|regprocedure|regoper|regoperator|regtype|regrole|regnamespace|regconfig|regdictionary|regcollation|` +
		`int2|int4|int8|float4|float8|bool|varchar|timestamptz|timetz|` +
		`(?:int4|int8|num|ts|tstz|date)(?:multi)?range|` +
		`any|anyelement|anyarray|anynonarray|anyenum|anyrange|anymultirange|anycompatible(?:array|nonarray|range|multirange)?|` +
		`numeric(?:\([0-9]+(?:,-?[0-9]+)?\))?|character varying(?:\([0-9]+\))?|character(?:\([0-9]+\))?|` +
		`bit varying(?:\([0-9]+\))?|bit(?:\([0-9]+\))?|interval(?:\([0-9]\))?|` +
		`(?:timestamp|time)(?:\([0-9]\))?(?: with(?:out)? time zone)?` +
		`)(?:\[\])*$`)
	// opChars are the characters of an operator's name.
	opChars = "+\\-*/<>=~!@#%^&|`?"
	// operatorSig is [left type] operator right type, the operator maybe
	// qualified with a schema.
	operatorSig = regexp.MustCompile(`^(?:([^` + opChars + `]+) )?((?:[A-Za-z_][A-Za-z0-9_]*\.)?[` + opChars + `]+) ([^` + opChars + `]+)$`)
)

// typeName reports whether v names a type a slot may show: a built-in type
// as PostgreSQL spells it, or a name the agent wrote.
func typeName(v string, said agentWords) bool {
	return builtinType.MatchString(v) || said.name(v) || said.name(strings.TrimSuffix(v, "[]"))
}

// functionSignature checks name(type, …) as func_signature_string prints
// it: the name (maybe qualified) a token of the agent's SQL, each argument
// [name => ]type with a name the agent wrote and a type typeName accepts.
func functionSignature(v string, said agentWords) bool {
	open := strings.IndexByte(v, '(')
	if open <= 0 || !strings.HasSuffix(v, ")") || !said.name(v[:open]) {
		return false
	}
	args := v[open+1 : len(v)-1]
	if args == "" {
		return true
	}
	for _, a := range strings.Split(args, ", ") {
		if n, t, ok := strings.Cut(a, " => "); ok {
			if !said.name(n) {
				return false
			}
			a = t
		}
		a = strings.TrimPrefix(a, "VARIADIC ")
		if !typeName(a, said) {
			return false
		}
	}
	return true
}

// operatorSignature checks [type] op type as op_signature_string prints it:
// the operator a token of the agent's SQL (or a built-in operator's name),
// the types as typeName accepts them.
func operatorSignature(v string, said agentWords) bool {
	m := operatorSig.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	op := m[2]
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		if !said.name(op[:i]) {
			return false
		}
		op = op[i+1:]
	}
	if !said.raw(op) && !builtinOperators[op] {
		return false
	}
	return (m[1] == "" || typeName(m[1], said)) && typeName(m[3], said)
}
