package postgres

import (
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// SQL run from text, and tables named by text.
//
// Some functions run SQL given to them as a string (query_to_xml('SELECT
// ...')) or read a table named by a string (table_to_xml('salaries', ...)).
// What they run is part of the call: a string literal is parsed with
// PostgreSQL's parser and its tables, functions and effects are merged into
// the statement that calls the function; a table named by a literal is added
// to the tables it reads. Anything else — a column, a parameter, a
// concatenation, a subquery — cannot be known before the call runs, and the
// call is refused before policy (tools.ErrOpaque).
//
// The functions were found in the catalog of PostgreSQL 15 and of its
// contrib extensions (TestSQLTextFunctionsCatalog repeats the search): every
// built-in function taking a text, name, regclass or refcursor argument that
// is volatile or whose name or C symbol mentions query, sql, xml, cursor or
// exec, triaged by reading what it does; and the contrib functions that run
// SQL text (dblink, tablefunc, xml2).

// maxTextDepth is how deeply SQL text may run SQL text
// (query_to_xml('SELECT query_to_xml(”...”)')); deeper nesting is refused.
const maxTextDepth = 4

// argRole is what a function does with one of its arguments.
type argRole int

const (
	roleNone     argRole = iota
	roleSQL              // runs it as SQL
	roleRelation         // reads the relation it names (a regclass)
)

// textFunction is a function that runs SQL text or reads a relation named
// by text.
type textFunction struct {
	name string
	// builtin is true for pg_catalog functions, matched unqualified or
	// qualified with pg_catalog; extension functions are matched by their
	// last name part in any schema.
	builtin bool
	// params names the parameters, for calls in named notation.
	params []string
	// roles gives each argument's role for a call with these arguments;
	// ok false means the roles cannot be told from the call (refused).
	roles func(args []*pg_query.Node) (roles []argRole, ok bool)
	// refuse, when set, refuses every call: the function builds SQL from its
	// arguments or reads tables the analysis cannot list.
	refuse string
}

// first returns roles giving the first argument role r.
func first(r argRole) func([]*pg_query.Node) ([]argRole, bool) {
	return func(args []*pg_query.Node) ([]argRole, bool) {
		roles := make([]argRole, len(args))
		if len(roles) > 0 {
			roles[0] = r
		}
		return roles, true
	}
}

// at returns the roles of n arguments with the SQL text at index i.
func at(n, i int) []argRole {
	roles := make([]argRole, n)
	if i < n {
		roles[i] = roleSQL
	}
	return roles
}

var xmlParams = []string{"nulls", "tableforest", "targetns"}

var textFunctions = map[string]*textFunction{}

func init() {
	for _, tf := range []*textFunction{
		{name: "query_to_xml", builtin: true, params: append([]string{"query"}, xmlParams...), roles: first(roleSQL)},
		{name: "query_to_xmlschema", builtin: true, params: append([]string{"query"}, xmlParams...), roles: first(roleSQL)},
		{name: "query_to_xml_and_xmlschema", builtin: true, params: append([]string{"query"}, xmlParams...), roles: first(roleSQL)},
		{name: "table_to_xml", builtin: true, params: append([]string{"tbl"}, xmlParams...), roles: first(roleRelation)},
		{name: "table_to_xmlschema", builtin: true, params: append([]string{"tbl"}, xmlParams...), roles: first(roleRelation)},
		{name: "table_to_xml_and_xmlschema", builtin: true, params: append([]string{"tbl"}, xmlParams...), roles: first(roleRelation)},
		{name: "ts_stat", builtin: true, params: []string{"query", "weights"}, roles: first(roleSQL)},
		// ts_rewrite(query tsquery, select text) runs its second argument;
		// ts_rewrite(tsquery, tsquery, tsquery) runs nothing.
		{name: "ts_rewrite", builtin: true, roles: func(args []*pg_query.Node) ([]argRole, bool) {
			if len(args) == 2 {
				return at(2, 1), true
			}
			return make([]argRole, len(args)), true
		}},
		// The data-reading schema and database variants read every table of a
		// schema (or of every schema) the role may read: the tables cannot be
		// listed before the call runs. Their *_xmlschema variants describe
		// the tables' columns only, like a catalog query.
		{name: "schema_to_xml", builtin: true, refuse: "reads every table of a schema, which cannot be listed before the call runs: query the tables you need by name"},
		{name: "schema_to_xml_and_xmlschema", builtin: true, refuse: "reads every table of a schema, which cannot be listed before the call runs: query the tables you need by name"},
		{name: "database_to_xml", builtin: true, refuse: "reads every table of the database, which cannot be listed before the call runs: query the tables you need by name"},
		{name: "database_to_xml_and_xmlschema", builtin: true, refuse: "reads every table of the database, which cannot be listed before the call runs: query the tables you need by name"},

		// dblink runs its SQL text on another connection (which may be this
		// database): dblink(sql), dblink(sql, fail_on_error),
		// dblink(connection, sql), dblink(connection, sql, fail_on_error);
		// dblink_exec alike; dblink_open([connection,] cursor, sql
		// [, fail_on_error]); dblink_send_query(connection, sql).
		{name: "dblink", roles: dblinkRoles},
		{name: "dblink_exec", roles: dblinkRoles},
		{name: "dblink_open", roles: func(args []*pg_query.Node) ([]argRole, bool) {
			switch len(args) {
			case 2:
				return at(2, 1), true
			case 3:
				if isBooleanLiteral(args[2]) {
					return at(3, 1), true
				}
				if isStringLiteral(args[2]) {
					return at(3, 2), true
				}
				return nil, false
			case 4:
				return at(4, 2), true
			}
			return make([]argRole, len(args)), true
		}},
		{name: "dblink_send_query", roles: func(args []*pg_query.Node) ([]argRole, bool) { return at(len(args), 1), true }},
		// tablefunc: crosstab(source_sql [, category_sql | num_values]) and
		// crosstabN(source_sql) run their text; connectby builds a query from
		// a table name, column names and a WHERE value.
		{name: "crosstab", roles: func(args []*pg_query.Node) ([]argRole, bool) {
			roles := at(len(args), 0)
			if len(args) == 2 {
				switch {
				case isStringLiteral(args[1]):
					roles[1] = roleSQL
				case isIntegerLiteral(args[1]):
				default:
					return nil, false
				}
			}
			return roles, true
		}},
		{name: "crosstab2", roles: first(roleSQL)},
		{name: "crosstab3", roles: first(roleSQL)},
		{name: "crosstab4", roles: first(roleSQL)},
		{name: "connectby", refuse: "builds SQL from its arguments, which the analysis cannot follow: write the recursive query as plain SQL (WITH RECURSIVE)"},
		// xml2: xpath_table builds a query from a table name and a WHERE
		// clause given as text.
		{name: "xpath_table", refuse: "builds SQL from its arguments, which the analysis cannot follow: use XMLTABLE in plain SQL"},
	} {
		textFunctions[tf.name] = tf
	}
}

// dblinkRoles finds dblink's and dblink_exec's SQL argument: the only one,
// the first before a boolean, or the second.
func dblinkRoles(args []*pg_query.Node) ([]argRole, bool) {
	switch len(args) {
	case 1:
		return at(1, 0), true
	case 2:
		if isBooleanLiteral(args[1]) {
			return at(2, 0), true
		}
		if isStringLiteral(args[1]) {
			return at(2, 1), true
		}
		return nil, false
	case 3:
		return at(3, 1), true
	}
	return make([]argRole, len(args)), true
}

// textFunctionOf returns the entry for a function as listed in sql.functions
// (lower-case, maybe qualified), or nil. Built-in ones match unqualified or
// in pg_catalog; extension ones in any schema. The match ignores case, so a
// quoted "Query_To_Xml" — a user's function, not the built-in — is followed
// too: it is refused or analysed rather than trusted.
func textFunctionOf(lower string) *textFunction {
	schema, name := splitName(lower)
	tf := textFunctions[name]
	if tf == nil || (tf.builtin && schema != "" && schema != "pg_catalog") {
		return nil
	}
	return tf
}

// runsSQLText reports whether a function (by its last name part, in any
// schema) runs SQL given as text or reads a relation named by text, so its
// result may hold any column of what it reads (query_to_xml('select ssn
// from …')), or fetches from a cursor.
func runsSQLText(function string) bool {
	name := functionBaseName(function)
	if textFunctions[name] != nil {
		return true
	}
	switch name {
	case "cursor_to_xml", "cursor_to_xmlschema":
		return true
	}
	return false
}

// followText analyses what a call of a text function runs: SQL literals are
// parsed and merged into the statement, relation literals added to the
// tables read. Anything it cannot follow sets a.opaque.
func (a *analysis) followText(tf *textFunction, name string, call *pg_query.FuncCall) {
	if tf.refuse != "" {
		a.setOpaque("%s %s", name, tf.refuse)
		return
	}
	if call.FuncVariadic || call.AggStar || len(call.AggOrder) > 0 || call.AggFilter != nil || call.Over != nil {
		a.setOpaque("%s is called with VARIADIC, an aggregate clause or a window, which the analysis does not follow: call it with plain arguments", name)
		return
	}
	args, ok := positionalArgs(tf, call.Args)
	if !ok {
		a.setOpaque("%s is called with named arguments the analysis does not follow: pass its arguments by position", name)
		return
	}
	roles, ok := tf.roles(args)
	if !ok {
		a.setOpaque("%s runs SQL given as text, and which argument is the text cannot be told here (only string and boolean literals tell them apart): pass the query as a string literal", name)
		return
	}
	for i, arg := range args {
		if i >= len(roles) || arg == nil {
			continue
		}
		switch roles[i] {
		case roleSQL:
			text, null, ok := literalText(arg, sqlTextCasts)
			switch {
			case null:
			case !ok:
				a.setOpaque("%s runs SQL given as text, and that text is not a string literal here, so what it runs cannot be known before the call: pass the query as a string literal, or write it as plain SQL", name)
			default:
				a.mergeText(name, text)
			}
		case roleRelation:
			if isIntegerLiteral(arg) {
				a.setOpaque("%s reads the table its argument names, and the argument here is an OID: name the table in a string literal such as 'orders'", name)
				continue
			}
			text, null, ok := literalText(arg, relationCasts)
			switch {
			case null:
			case !ok:
				a.setOpaque("%s reads the table its argument names, and that argument is not a string literal here: name the table in a string literal such as 'orders'", name)
			default:
				rel, err := relationName(text)
				if err != "" {
					a.setOpaque("%s reads the table its argument names, and %s: name the table as 'table' or 'schema.table'", name, err)
					continue
				}
				a.read = appendUnique(a.read, rel)
			}
		}
	}
}

// mergeText parses SQL text a function runs and merges what it finds into
// the calling statement: tables, functions, why it is not a plain read, and
// anything that would make the call refused.
func (a *analysis) mergeText(name, text string) {
	if a.depth+1 > maxTextDepth {
		a.setOpaque("%s runs SQL text nested more than %d levels deep: write the query without nesting SQL text in SQL text", name, maxTextDepth)
		return
	}
	p, err := parseSQLAt(text, a.depth+1)
	if err != nil {
		a.setOpaque("the SQL text %s runs does not parse (%v): fix the query in the string", name, err)
		return
	}
	if p.opaque != "" {
		a.setOpaque("%s", p.opaque)
		return
	}
	for _, st := range p.statements {
		a.read = appendUnique(a.read, st.facts.TablesRead...)
		a.written = appendUnique(a.written, st.facts.TablesWritten...)
		a.functions = appendUnique(a.functions, st.facts.Functions...)
		if st.notRead != "" && a.textNotRead == "" {
			a.textNotRead = fmt.Sprintf("%s runs SQL text that is not a plain read: %s", name, st.notRead)
		}
		if st.refusal != "" && a.textRefusal == "" {
			a.textRefusal = fmt.Sprintf("%s runs SQL text with a statement that is not allowed: %s", name, st.refusal)
		}
	}
}

// positionalArgs puts a call's arguments in parameter order, placing named
// arguments (name => value) by the function's parameter names. A parameter
// left to its default is nil.
func positionalArgs(tf *textFunction, args []*pg_query.Node) ([]*pg_query.Node, bool) {
	out := make([]*pg_query.Node, 0, len(args))
	named := false
	for _, arg := range args {
		na := arg.GetNamedArgExpr()
		if na == nil {
			if named {
				return nil, false // PostgreSQL refuses a positional argument after a named one
			}
			out = append(out, arg)
			continue
		}
		named = true
		i := slices.Index(tf.params, na.Name)
		if i < 0 {
			return nil, false
		}
		for len(out) <= i {
			out = append(out, nil)
		}
		if out[i] != nil {
			return nil, false
		}
		out[i] = na.Arg
	}
	return out, true
}

// Casts a literal may go through and keep its text: to text or an unbounded
// varchar for SQL text; for a table name also to regclass, or to name (which
// truncates to the identifier length, as table names are anyway).
var (
	sqlTextCasts  = map[string]bool{"text": true, "varchar": true, "unknown": true}
	relationCasts = map[string]bool{"text": true, "varchar": true, "unknown": true, "regclass": true, "name": true}
)

// literalText returns the text of a string constant, possibly cast (to a
// type in casts, without a type modifier) or given a collation. null is true
// for a NULL constant (the function then runs nothing).
func literalText(n *pg_query.Node, casts map[string]bool) (text string, null, ok bool) {
	for n != nil {
		switch {
		case n.GetTypeCast() != nil:
			tc := n.GetTypeCast()
			if !castKeepsText(tc.TypeName, casts) {
				return "", false, false
			}
			n = tc.Arg
		case n.GetCollateClause() != nil:
			n = n.GetCollateClause().Arg
		case n.GetAConst() != nil:
			c := n.GetAConst()
			if c.Isnull {
				return "", true, true
			}
			if s := c.GetSval(); s != nil {
				return s.Sval, false, true
			}
			return "", false, false
		default:
			return "", false, false
		}
	}
	return "", false, false
}

func castKeepsText(tn *pg_query.TypeName, casts map[string]bool) bool {
	if tn == nil || len(tn.Typmods) > 0 || len(tn.ArrayBounds) > 0 || tn.Setof || tn.PctType {
		return false
	}
	schema, name := splitName(exactName(tn.Names))
	if schema != "" && schema != "pg_catalog" {
		return false
	}
	return casts[name]
}

func isStringLiteral(n *pg_query.Node) bool {
	_, null, ok := literalText(n, sqlTextCasts)
	return ok && !null
}

func isIntegerLiteral(n *pg_query.Node) bool {
	for n != nil && n.GetTypeCast() != nil {
		n = n.GetTypeCast().Arg
	}
	c := n.GetAConst()
	return c != nil && c.GetIval() != nil
}

func isBooleanLiteral(n *pg_query.Node) bool {
	if tc := n.GetTypeCast(); tc != nil {
		_, name := splitName(exactName(tc.TypeName.GetNames()))
		return name == "bool" || name == "boolean"
	}
	c := n.GetAConst()
	return c != nil && c.GetBoolval() != nil
}

// relationName parses a table name given as text the way a regclass input
// would read it, with PostgreSQL's parser: as the only item of a FROM
// clause. Anything but a plain, optionally qualified name is an error (the
// empty string when it is one): an OID in digits, several names, an alias,
// a clause.
func relationName(text string) (string, string) {
	tree, err := pg_query.Parse("SELECT FROM " + text)
	if err != nil || len(tree.Stmts) != 1 {
		return "", "its argument is not a table name"
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.FromClause) != 1 || sel.WhereClause != nil || len(sel.TargetList) != 0 ||
		sel.GroupClause != nil || sel.HavingClause != nil || sel.LimitCount != nil || sel.LimitOffset != nil ||
		len(sel.LockingClause) != 0 || sel.WithClause != nil || sel.IntoClause != nil || len(sel.SortClause) != 0 ||
		len(sel.WindowClause) != 0 || len(sel.DistinctClause) != 0 || sel.Op != pg_query.SetOperation_SETOP_NONE {
		return "", "its argument is not a single table name"
	}
	rv := sel.FromClause[0].GetRangeVar()
	if rv == nil || rv.Alias != nil || !rv.Inh || strings.TrimSpace(text) == "" {
		return "", "its argument is not a single table name"
	}
	return rangeVarName(rv), ""
}

// exactName joins a name list (String nodes) with dots, keeping case: the
// name as PostgreSQL resolves it (the parser already folded unquoted parts).
func exactName(nodes []*pg_query.Node) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if s := n.GetString_(); s != nil {
			parts = append(parts, s.Sval)
		}
	}
	return strings.Join(parts, ".")
}
