package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// MaxRowsLimit is the largest max_rows an agent may ask for; the broker's
// limits still apply (the smaller wins).
const MaxRowsLimit = 100000

// MaxSQLBytes bounds the SQL text of one call (1 MiB, the default
// http.max_request_bytes): parsing and tracing work grows with it.
const MaxSQLBytes = 1 << 20

// Tools returns the PostgreSQL tools: query_db, list_tables, describe_table.
func Tools() []tools.Tool {
	return []tools.Tool{&QueryDB{}, &ListTables{}, &DescribeTable{}}
}

var (
	_ tools.Tool = (*QueryDB)(nil)
	_ tools.Tool = (*ListTables)(nil)
	_ tools.Tool = (*DescribeTable)(nil)
)

// QueryDB runs SQL on a PostgreSQL resource as a minted role.
//
// query_db is not a tools.ReadOnlyCaller: every call is recorded before it
// runs, a read or not. BEGIN READ ONLY refuses writes, not all a function
// may do (pg_terminate_backend, pg_logical_emit_message, advisory locks,
// dblink); the facts refuse those built-ins by name, but the database's own
// code — a view's body, a row-level security policy, a function called
// through attribute notation, a domain's check, an operator class's support
// function, a function that shadows a built-in — is what READ ONLY is left
// to bound, and a catalog read before the call cannot prove the call runs
// none of it (two red-team rounds found seven ways past such a check,
// among them DDL made since the catalog was read:
// readonly_redteam_test.go, readonly_redteam2_test.go).
type QueryDB struct{}

// QueryArgs are query_db's decoded arguments.
type QueryArgs struct {
	Resource string `json:"resource"`
	SQL      string `json:"sql"`
	Params   []any  `json:"params,omitempty"`
	MaxRows  int    `json:"max_rows,omitempty"`

	parsed *parsedSQL
}

// ResourceName is the resource the call targets.
func (a *QueryArgs) ResourceName() string { return a.Resource }

// Canonical is the arguments as stable JSON.
func (a *QueryArgs) Canonical() json.RawMessage { return canonical(a) }

func (*QueryDB) Name() string   { return "query_db" }
func (*QueryDB) Kind() string   { return KindName }
func (*QueryDB) ReadOnly() bool { return false }

func (*QueryDB) Description() string {
	return `Run SQL on a PostgreSQL database through Airlock and get the rows back.
Write one statement per call (PostgreSQL syntax); pass values as params and refer to them as $1, $2, ... instead of quoting them into the SQL.
Policy decides whether the call may run: reads are usually allowed, writes and DDL may need a human's approval or be denied, and the answer says which rule decided.
Each call runs in its own transaction (read-only for read-only grants), so BEGIN/COMMIT/ROLLBACK, SET ROLE and similar statements are refused.
Results are limited in rows, bytes and time; when "truncated" is true, narrow the query (WHERE, LIMIT, fewer columns) rather than paging through everything.
The text shows whole values up to 16 KiB in all and says what it left out (rows shown of how many, values clipped); the structured content has every row returned, every value in full.
Sensitive columns may come back masked. Use list_tables and describe_table first when you do not know the schema.`
}

func (*QueryDB) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the PostgreSQL resource (database) to query, as configured in Airlock."},
    "sql": {"type": "string", "minLength": 1, "description": "One SQL statement in PostgreSQL syntax, e.g. SELECT id, status FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20. Use $1, $2, ... for values."},
    "params": {"type": "array", "items": {"type": ["string", "number", "boolean", "null"]}, "description": "Values for $1, $2, ... in order. Strings for text, dates, timestamps and uuids; numbers; booleans; null."},
    "max_rows": {"type": "integer", "minimum": 1, "maximum": 100000, "description": "Return at most this many rows (the broker's own limit may be lower)."}
  },
  "required": ["resource", "sql"],
  "additionalProperties": false
}`)
}

// Decode validates query_db's arguments and parses the SQL with PostgreSQL's
// parser: SQL that does not parse is rejected with the parser's message and
// position.
func (*QueryDB) Decode(raw json.RawMessage) (tools.Args, error) {
	fields, err := decodeObject(raw, "resource", "sql", "params", "max_rows")
	if err != nil {
		return nil, err
	}
	a := &QueryArgs{}
	if a.Resource, err = requiredString(fields, "resource"); err != nil {
		return nil, err
	}
	if a.SQL, err = requiredString(fields, "sql"); err != nil {
		return nil, err
	}
	if len(a.SQL) > MaxSQLBytes {
		return nil, fmt.Errorf("%w: sql is %d bytes, more than the %d bytes one call may send; send smaller statements", tools.ErrInvalidArguments, len(a.SQL), MaxSQLBytes)
	}
	if a.Params, err = scalarArray(fields, "params"); err != nil {
		return nil, err
	}
	if a.MaxRows, err = positiveInt(fields, "max_rows", MaxRowsLimit); err != nil {
		return nil, err
	}
	p, err := parseSQL(a.SQL)
	if err != nil {
		return nil, fmt.Errorf("%w: sql does not parse: %v", tools.ErrInvalidArguments, err)
	}
	if len(p.statements) == 0 {
		return nil, fmt.Errorf("%w: sql contains no statement (only comments or whitespace)", tools.ErrInvalidArguments)
	}
	used := 0
	for _, st := range p.statements {
		used = max(used, st.params)
	}
	if used > len(a.Params) {
		return nil, fmt.Errorf("%w: sql refers to $%d but params has %d value(s)", tools.ErrInvalidArguments, used, len(a.Params))
	}
	if len(a.Params) > used {
		return nil, fmt.Errorf("%w: params has %d value(s) but sql uses %s", tools.ErrInvalidArguments, len(a.Params), paramsUsed(used))
	}
	a.parsed = p
	return a, nil
}

func paramsUsed(n int) string {
	switch n {
	case 0:
		return "no $n placeholders"
	case 1:
		return "only $1"
	}
	return fmt.Sprintf("only $1..$%d", n)
}

// Facts describes the SQL for policy, from the parse Decode made. SQL the
// analysis cannot see through (SQL text a function runs that is not a
// literal, a table named by an expression, ...) gets no facts: the error
// wraps tools.ErrOpaque and the broker refuses the call before policy.
func (*QueryDB) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*QueryArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("query_db: unexpected arguments %T", args)
	}
	p := a.parsed
	if p == nil {
		var err error
		if p, err = parseSQL(a.SQL); err != nil {
			return policy.Facts{}, fmt.Errorf("%w: sql does not parse: %v", tools.ErrInvalidArguments, err)
		}
	}
	if p.opaque != "" {
		return policy.Facts{}, tools.Opaque("%s", p.opaque)
	}
	f := p.facts
	return policy.Facts{SQL: &f}, nil
}

// Execute runs the SQL as the lease's role. Before anything reaches the
// server it refuses transaction control, SET ROLE / SESSION AUTHORIZATION,
// RESET, DISCARD and changes to the limits; several statements unless
// Limits.MultiStatement; and, under a read-only grant, any statement that is
// not a plain read (see the sideEffects table). Each result column says
// where its values come from (provenance.go); after a read-write call that
// may have changed the catalog, the resource's cached catalog is dropped.
func (*QueryDB) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*QueryArgs)
	if !ok {
		return nil, ErrWrongTarget
	}
	res, cred, err := targetOf(target)
	if err != nil {
		return nil, err
	}
	p := a.parsed
	if p == nil {
		if p, err = parseSQL(a.SQL); err != nil {
			return nil, fmt.Errorf("%w: sql does not parse: %v", tools.ErrInvalidArguments, err)
		}
	}
	if err := refuse(p, cred.readOnly, target.Limits.MultiStatement); err != nil {
		return nil, err
	}
	limits := target.Limits
	if a.MaxRows > 0 && (limits.MaxRows <= 0 || a.MaxRows < limits.MaxRows) {
		limits.MaxRows = a.MaxRows
	}
	stmts := make([]execStatement, len(p.statements))
	earlier := make([]*pg_query.Node, 0, len(p.statements))
	for i, st := range p.statements {
		stmts[i] = execStatement{text: st.text, args: a.Params[:st.params], read: st.notRead == "", node: st.node, earlier: earlier[:i:i]}
		earlier = append(earlier, st.node)
	}
	out, err := runToOutput(ctx, &execution{resource: res, cred: cred, limits: limits, stmts: stmts}, nil)
	if !cred.readOnly {
		res.forgetChangedCatalog(ctx, earlier, cred.role)
	}
	return out, err
}

// refuse checks a parsed call against what Execute never sends.
func refuse(p *parsedSQL, readOnly, multi bool) error {
	if len(p.statements) > 1 && !multi {
		return fmt.Errorf("%w: the sql has %d statements and this call may run only one: send them one per call", tools.ErrRefused, len(p.statements))
	}
	for i, st := range p.statements {
		which := ""
		if len(p.statements) > 1 {
			which = fmt.Sprintf("statement %d: ", i+1)
		}
		if st.refusal != "" {
			return fmt.Errorf("%w: %s%s", tools.ErrRefused, which, st.refusal)
		}
		if readOnly && st.notRead != "" {
			return fmt.Errorf("%w: %sthe grant is read-only and %s", tools.ErrRefused, which, st.notRead)
		}
	}
	return nil
}

func (*QueryDB) Render(out *tools.Output) (any, string) { return render(out) }

// ListTables lists the tables and views the lease's role can see.
type ListTables struct{}

// ListTablesArgs are list_tables' decoded arguments.
type ListTablesArgs struct {
	Resource string `json:"resource"`
	Schema   string `json:"schema,omitempty"`
}

func (a *ListTablesArgs) ResourceName() string       { return a.Resource }
func (a *ListTablesArgs) Canonical() json.RawMessage { return canonical(a) }

func (*ListTables) Name() string   { return "list_tables" }
func (*ListTables) Kind() string   { return KindName }
func (*ListTables) ReadOnly() bool { return true }

// ReadOnlyCall is true: list_tables runs one catalog query in BEGIN READ
// ONLY, every function, operator and cast in it qualified with pg_catalog.
func (*ListTables) ReadOnlyCall(tools.Credential, tools.Args) bool { return true }

func (*ListTables) Description() string {
	return `List the tables and views of a PostgreSQL database that your grant can read, with their schema, type and an estimated row count (from PostgreSQL's statistics: null for views and for tables not analysed yet; use query_db with count(*) for an exact count).
Use it before query_db when you do not know what the database holds; optionally limit it to one schema (e.g. "public").`
}

func (*ListTables) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the PostgreSQL resource (database), as configured in Airlock."},
    "schema": {"type": "string", "minLength": 1, "description": "Only list tables in this schema, e.g. \"public\". Omit to list every schema except the system ones."}
  },
  "required": ["resource"],
  "additionalProperties": false
}`)
}

func (*ListTables) Decode(raw json.RawMessage) (tools.Args, error) {
	fields, err := decodeObject(raw, "resource", "schema")
	if err != nil {
		return nil, err
	}
	a := &ListTablesArgs{}
	if a.Resource, err = requiredString(fields, "resource"); err != nil {
		return nil, err
	}
	if a.Schema, err = optionalString(fields, "schema"); err != nil {
		return nil, err
	}
	return a, nil
}

// listTablesSQL estimates rows with the planner's statistics
// (pg_class.reltuples, as of the last VACUUM, ANALYZE or CREATE INDEX):
// -1 from PostgreSQL 14 on for a table never analysed, and for views,
// which comes back as NULL (the text says why). The cumulative statistics
// (n_live_tup) are not used as a fallback: they lag the transactions that
// change them and are lost on a crash, so they are no truer than "unknown".
//
// Every function, operator and type in it is qualified with pg_catalog, so
// that no function or operator a schema defines under a built-in's name
// (a lower(character varying) is a closer match for information_schema's
// columns than pg_catalog's lower(text)) runs in it: the broker records
// list_tables only with its outcome (ReadOnlyCall). describe_table's
// queries are written the same way.
const listTablesSQL = `SELECT t.table_schema AS schema, t.table_name AS name, pg_catalog.lower(t.table_type::pg_catalog.text) AS type,
       CASE WHEN c.reltuples OPERATOR(pg_catalog.>=) 0::pg_catalog.float4 THEN c.reltuples::pg_catalog.int8 END AS estimated_rows
FROM information_schema.tables t
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) t.table_schema::pg_catalog.name
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relname OPERATOR(pg_catalog.=) t.table_name::pg_catalog.name
WHERE t.table_schema::pg_catalog.text OPERATOR(pg_catalog.<>) ALL (ARRAY['pg_catalog', 'information_schema']::pg_catalog.text[])
  AND ($1::pg_catalog.text IS NULL OR t.table_schema::pg_catalog.text OPERATOR(pg_catalog.=) $1::pg_catalog.text)
ORDER BY 1, 2`

var listTablesFacts = SQLFacts(listTablesSQL)

func (*ListTables) Facts(tools.Args) (policy.Facts, error) {
	f := cloneFacts(listTablesFacts)
	return policy.Facts{SQL: &f}, nil
}

func (*ListTables) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*ListTablesArgs)
	if !ok {
		return nil, ErrWrongTarget
	}
	res, cred, err := targetOf(target)
	if err != nil {
		return nil, err
	}
	var schema any
	if a.Schema != "" {
		schema = a.Schema
	}
	stmts := []execStatement{{text: listTablesSQL, args: []any{schema}, read: true}}
	return runToOutput(ctx, &execution{resource: res, cred: cred, limits: target.Limits, stmts: stmts}, nil)
}

func (*ListTables) Render(out *tools.Output) (any, string) { return renderListTables(out) }

// DescribeTable describes one table: its columns, then its constraints and
// indexes.
type DescribeTable struct{}

// DescribeTableArgs are describe_table's decoded arguments.
type DescribeTableArgs struct {
	Resource string `json:"resource"`
	Table    string `json:"table"`
}

func (a *DescribeTableArgs) ResourceName() string       { return a.Resource }
func (a *DescribeTableArgs) Canonical() json.RawMessage { return canonical(a) }

func (*DescribeTable) Name() string   { return "describe_table" }
func (*DescribeTable) Kind() string   { return KindName }
func (*DescribeTable) ReadOnly() bool { return true }

// ReadOnlyCall is true: describe_table runs catalog queries in BEGIN READ
// ONLY, every function, operator and cast in them qualified with
// pg_catalog.
func (*DescribeTable) ReadOnlyCall(tools.Credential, tools.Args) bool {
	return true
}

func (*DescribeTable) Description() string {
	return `Describe one table or view of a PostgreSQL database: its columns (name, type, nullable, default) and, in "constraints", its primary key, foreign keys, unique and check constraints and indexes.
Name the table as you would in SQL: "orders" (found through the search path) or "sales.orders".`
}

func (*DescribeTable) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the PostgreSQL resource (database), as configured in Airlock."},
    "table": {"type": "string", "minLength": 1, "description": "The table or view, optionally schema-qualified: \"orders\" or \"sales.orders\". Quote mixed-case names as in SQL: \"\\\"Orders\\\"\"."}
  },
  "required": ["resource", "table"],
  "additionalProperties": false
}`)
}

func (*DescribeTable) Decode(raw json.RawMessage) (tools.Args, error) {
	fields, err := decodeObject(raw, "resource", "table")
	if err != nil {
		return nil, err
	}
	a := &DescribeTableArgs{}
	if a.Resource, err = requiredString(fields, "resource"); err != nil {
		return nil, err
	}
	if a.Table, err = requiredString(fields, "table"); err != nil {
		return nil, err
	}
	return a, nil
}

const describeColumnsSQL = `SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS "default"
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid OPERATOR(pg_catalog.=) a.attrelid AND d.adnum OPERATOR(pg_catalog.=) a.attnum
WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid
  AND a.attnum OPERATOR(pg_catalog.>) 0::pg_catalog.int2 AND NOT a.attisdropped
ORDER BY a.attnum`

const describeConstraintsSQL = `SELECT c.conname AS name,
       CASE WHEN c.contype OPERATOR(pg_catalog.=) 'p'::pg_catalog."char" THEN 'primary key'
            WHEN c.contype OPERATOR(pg_catalog.=) 'f'::pg_catalog."char" THEN 'foreign key'
            WHEN c.contype OPERATOR(pg_catalog.=) 'u'::pg_catalog."char" THEN 'unique'
            WHEN c.contype OPERATOR(pg_catalog.=) 'c'::pg_catalog."char" THEN 'check'
            WHEN c.contype OPERATOR(pg_catalog.=) 'x'::pg_catalog."char" THEN 'exclusion'
            ELSE c.contype::pg_catalog.text END AS kind,
       pg_catalog.pg_get_constraintdef(c.oid, true) AS definition
FROM pg_catalog.pg_constraint c
WHERE c.conrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid
UNION ALL
SELECT i.indexrelid::pg_catalog.regclass::pg_catalog.text, 'index', pg_catalog.pg_get_indexdef(i.indexrelid)
FROM pg_catalog.pg_index i
WHERE i.indrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
                  WHERE c.conindid OPERATOR(pg_catalog.=) i.indexrelid AND c.conrelid OPERATOR(pg_catalog.=) i.indrelid)
ORDER BY 2, 1`

var describeTableFacts = SQLFacts(describeColumnsSQL + ";\n" + describeConstraintsSQL)

// Facts are those of the catalog queries, with the described table added to
// the tables read so policy can restrict it like a query.
func (*DescribeTable) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*DescribeTableArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("describe_table: unexpected arguments %T", args)
	}
	f := cloneFacts(describeTableFacts)
	f.TablesRead = appendUnique(f.TablesRead, a.Table)
	f.Tables = appendUnique(f.Tables, a.Table)
	return policy.Facts{SQL: &f}, nil
}

func (*DescribeTable) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*DescribeTableArgs)
	if !ok {
		return nil, ErrWrongTarget
	}
	res, cred, err := targetOf(target)
	if err != nil {
		return nil, err
	}
	stmts := []execStatement{
		{text: describeColumnsSQL, args: []any{a.Table}, read: true},
		{text: describeConstraintsSQL, args: []any{a.Table}, read: true},
	}
	return runToOutput(ctx, &execution{resource: res, cred: cred, limits: target.Limits, stmts: stmts}, func(out *tools.Output, results []execResult) {
		if len(results) == 2 {
			out.Table = &results[0].table
			constraints := make([]map[string]any, 0, len(results[1].table.Rows))
			for _, row := range results[1].table.Rows {
				constraints = append(constraints, map[string]any{"name": row[0], "kind": row[1], "definition": row[2]})
			}
			out.Extra = map[string]any{"constraints": constraints}
		}
		if len(out.Table.Rows) == 0 {
			out.Notice = fmt.Sprintf("no table or view named %s is visible to this grant", a.Table)
		}
	})
}

func (*DescribeTable) Render(out *tools.Output) (any, string) { return renderDescribe(out) }

// targetOf checks that the target is ours.
func targetOf(t tools.Target) (*Resource, *Credential, error) {
	res, ok := t.Resource.(*Resource)
	if !ok {
		return nil, nil, ErrWrongTarget
	}
	cred, ok := t.Credential.(*Credential)
	if !ok || cred == nil {
		return nil, nil, ErrWrongTarget
	}
	return res, cred, nil
}

// runToOutput runs an execution and shapes the Output: the last result that
// has columns becomes the table, the command tags are joined. shape may
// rearrange the results.
func runToOutput(ctx context.Context, e *execution, shape func(*tools.Output, []execResult)) (*tools.Output, error) {
	start := time.Now()
	results, notice, err := e.run(ctx)
	if err != nil {
		return nil, err
	}
	out := &tools.Output{Notice: notice, Duration: time.Since(start)}
	var tags []string
	for i := range results {
		r := &results[i]
		tags = append(tags, r.table.Tag)
		if r.hasRows || out.Table == nil {
			out.Table = &r.table
		}
		out.Truncated = out.Truncated || r.truncated
	}
	if out.Table == nil {
		out.Table = &tools.Table{Columns: []tools.Column{}, Rows: [][]any{}}
	}
	if shape != nil {
		shape(out, results)
	}
	if len(tags) > 1 {
		tagged := *out.Table
		tagged.Tag = strings.Join(tags, "; ")
		out.Table = &tagged
	}
	return out, nil
}

func cloneFacts(f policy.SQL) policy.SQL {
	f.Statements = slices.Clone(f.Statements)
	f.Tables = slices.Clone(f.Tables)
	f.TablesRead = slices.Clone(f.TablesRead)
	f.TablesWritten = slices.Clone(f.TablesWritten)
	f.Functions = slices.Clone(f.Functions)
	return f
}

func canonical(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("postgres: canonical arguments: %v", err)) // only strings, ints and JSON scalars
	}
	return b
}

// decodeObject decodes raw as a JSON object and rejects names not in allowed.
func decodeObject(raw json.RawMessage, allowed ...string) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("%w: arguments must be a JSON object with %s", tools.ErrInvalidArguments, strings.Join(allowed, ", "))
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(allowed, name) {
			return nil, fmt.Errorf("%w: unknown argument %q (valid: %s)", tools.ErrInvalidArguments, name, strings.Join(allowed, ", "))
		}
	}
	return fields, nil
}

// jsonType names a JSON value's type for error messages.
func jsonType(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func requiredString(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", fmt.Errorf("%w: argument %q is required (a non-empty string)", tools.ErrInvalidArguments, name)
	}
	s, err := optionalString(fields, name)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("%w: argument %q must be a non-empty string (got %s)", tools.ErrInvalidArguments, name, describeEmpty(raw))
	}
	return s, nil
}

func describeEmpty(raw json.RawMessage) string {
	if jsonType(raw) == "null" {
		return "null"
	}
	return "an empty string"
}

func optionalString(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", nil
	}
	var s string
	if jsonType(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("%w: argument %q must be a string (got %s)", tools.ErrInvalidArguments, name, jsonType(raw))
	}
	return s, nil
}

func positiveInt(fields map[string]json.RawMessage, name string, limit int) (int, error) {
	raw, ok := fields[name]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if jsonType(raw) != "a number" || err != nil {
		return 0, fmt.Errorf("%w: argument %q must be an integer between 1 and %d (got %s)", tools.ErrInvalidArguments, name, limit, describeNumber(raw))
	}
	if n < 1 || n > int64(limit) {
		return 0, fmt.Errorf("%w: argument %q must be an integer between 1 and %d (got %d)", tools.ErrInvalidArguments, name, limit, n)
	}
	return int(n), nil
}

func describeNumber(raw json.RawMessage) string {
	if t := jsonType(raw); t != "a number" {
		return t
	}
	return string(bytes.TrimSpace(raw))
}

// scalarArray decodes an optional array of JSON scalars into query
// parameters: strings, int64 or float64 numbers, booleans and nil.
func scalarArray(fields map[string]json.RawMessage, name string) ([]any, error) {
	raw, ok := fields[name]
	if !ok || jsonType(raw) == "null" {
		return []any{}, nil
	}
	var items []json.RawMessage
	if jsonType(raw) != "an array" || json.Unmarshal(raw, &items) != nil {
		return nil, fmt.Errorf("%w: argument %q must be an array of strings, numbers, booleans or nulls (got %s)", tools.ErrInvalidArguments, name, jsonType(raw))
	}
	out := make([]any, len(items))
	for i, it := range items {
		dec := json.NewDecoder(bytes.NewReader(it))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: %s[%d] is not valid JSON", tools.ErrInvalidArguments, name, i)
		}
		switch x := v.(type) {
		case nil, string, bool:
			out[i] = x
		case json.Number:
			// An integer that fits is an int64; any other number goes to
			// the server as the text the agent sent, which PostgreSQL
			// parses exactly into the parameter's type (numeric keeps
			// every digit, int8 refuses what is out of range), so what
			// runs is what was shown and approved, never a float64's
			// rounding of it.
			if n, err := x.Int64(); err == nil {
				out[i] = n
			} else {
				out[i] = x // the digits themselves; JSON shows them as a number
			}
		default:
			return nil, fmt.Errorf("%w: %s[%d] must be a string, number, boolean or null (got %s); pass arrays and objects as JSON text in a string", tools.ErrInvalidArguments, name, i, jsonType(it))
		}
	}
	return out, nil
}
