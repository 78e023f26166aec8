package postgres

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/airlock-mcp/airlock/policy"
)

// statementKinds maps a parse-tree statement type to its policy kind (see
// policy.Statement). Types not listed fall back on their prefix (Create,
// Alter, Drop) or "other".
var statementKinds = map[string]string{
	"SelectStmt":           "select",
	"InsertStmt":           "insert",
	"UpdateStmt":           "update",
	"DeleteStmt":           "delete",
	"MergeStmt":            "merge",
	"TruncateStmt":         "truncate",
	"CopyStmt":             "copy",
	"DoStmt":               "do",
	"CallStmt":             "call",
	"VariableSetStmt":      "set",
	"VariableShowStmt":     "show",
	"ExplainStmt":          "explain",
	"TransactionStmt":      "transaction",
	"LockStmt":             "lock",
	"ListenStmt":           "listen",
	"UnlistenStmt":         "listen",
	"NotifyStmt":           "notify",
	"PrepareStmt":          "prepare",
	"ExecuteStmt":          "execute",
	"ViewStmt":             "create",
	"IndexStmt":            "create",
	"DefineStmt":           "create",
	"CompositeTypeStmt":    "create",
	"RuleStmt":             "create",
	"CreatedbStmt":         "create",
	"RenameStmt":           "alter",
	"CommentStmt":          "alter",
	"SecLabelStmt":         "alter",
	"ReassignOwnedStmt":    "alter",
	"RefreshMatViewStmt":   "alter",
	"DropdbStmt":           "drop",
	"DropOwnedStmt":        "drop",
	"DropRoleStmt":         "drop",
	"DropTableSpaceStmt":   "drop",
	"DropUserMappingStmt":  "drop",
	"DropSubscriptionStmt": "drop",
	"ClusterStmt":          "vacuum",
	"ReindexStmt":          "vacuum",
}

// Names of settings a call may not change: they are the limits and the
// identity Airlock sets for the transaction.
var protectedSettings = map[string]string{
	"role":                                "SET ROLE changes the identity Airlock minted",
	"session_authorization":               "SET SESSION AUTHORIZATION changes the identity Airlock minted",
	"transaction":                         "SET TRANSACTION changes the transaction Airlock opened",
	"session_characteristics":             "SET SESSION CHARACTERISTICS changes the transactions Airlock opens",
	"transaction_read_only":               "transaction_read_only is set by Airlock from the grant",
	"default_transaction_read_only":       "default_transaction_read_only is set by Airlock from the grant",
	"transaction_isolation":               "the transaction is opened by Airlock",
	"statement_timeout":                   "statement_timeout is set by Airlock from the call's limits",
	"idle_in_transaction_session_timeout": "idle_in_transaction_session_timeout is set by Airlock from the call's limits",
	// Settings that change how the server reads the SQL that follows (the
	// lexer reads standard_conforming_strings and backslash_quote; the
	// client encoding decides what the bytes are), while the facts read
	// every statement with the defaults: with standard_conforming_strings
	// off, 'x\'', f() --' hides f() in what the facts take for a string.
	// escape_string_warning, which the lexer reads too, only warns.
	"standard_conforming_strings": "it changes how PostgreSQL reads string literals in the SQL that follows, which the facts read with it on",
	"backslash_quote":             "it changes how PostgreSQL reads string literals in the SQL that follows, which the facts read with the default",
	"client_encoding":             "it changes how PostgreSQL reads the bytes of the SQL that follows, which Airlock sends as UTF-8",
}

// statement is one parsed statement of a query_db call.
type statement struct {
	text    string // the statement's own text, as sent to the server
	kind    string
	params  int    // highest $n referenced
	notRead string // why the statement is not a plain read; "" when it is
	refusal string // why Execute refuses it whatever the grant; "" when allowed
	// opaque says why the analysis cannot see through the statement (SQL
	// text that is not a literal, ...): the call is refused before policy.
	opaque string
	// planEffect says why even planning the statement may act (EXPLAIN
	// without ANALYZE): a function whose effects are unknown.
	planEffect string
	facts      policy.Statement
	// node is the statement's parse tree, from which Execute resolves where
	// each result column's values come from (provenance.go).
	node *pg_query.Node
}

// parsedSQL is the result of parsing a query_db call's SQL once, in Decode.
type parsedSQL struct {
	statements []statement
	facts      policy.SQL
	// opaque is the first statement's reason for refusing the call before
	// policy, or "" (see statement.opaque).
	opaque string
}

// ParseError is the parser's complaint about SQL that does not parse.
type ParseError struct {
	Message  string
	Position int // 1-based character position, 0 when unknown
}

func (e *ParseError) Error() string {
	if e.Position > 0 {
		return fmt.Sprintf("%s at position %d", e.Message, e.Position)
	}
	return e.Message
}

// SQLFacts describes sql for policy using PostgreSQL's own parser. SQL that
// does not parse gets facts with ParseError set and nothing else.
func SQLFacts(sql string) policy.SQL {
	p, err := parseSQL(sql)
	if err != nil {
		return policy.SQL{ParseError: err.Error(), Statements: []policy.Statement{},
			Tables: []string{}, TablesRead: []string{}, TablesWritten: []string{}, Functions: []string{}}
	}
	return p.facts
}

// parseSQL parses a call's own SQL, through the cache of recent parses
// (parsecache.go): the result is the caller's to keep.
func parseSQL(sql string) (*parsedSQL, error) { return parses.parse(sql) }

// parseSQLAt parses SQL found depth levels deep in SQL text run by
// functions (0 for the call's own SQL).
func parseSQLAt(sql string, depth int) (*parsedSQL, error) {
	if i := strings.IndexByte(sql, 0); i >= 0 {
		// The parser would stop at it, and so would the server, which
		// reads the rest of the message as something else.
		return nil, &ParseError{Message: "the SQL contains a NUL character", Position: utf8.RuneCountInString(sql[:i]) + 1}
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		var pe *parser.Error
		if errors.As(err, &pe) {
			return nil, &ParseError{Message: pe.Message, Position: pe.Cursorpos}
		}
		return nil, &ParseError{Message: err.Error()}
	}
	p := &parsedSQL{}
	readOnly := true
	var read, written, functions []string
	for _, raw := range tree.Stmts {
		st := analyze(raw.Stmt, depth)
		st.text = statementText(sql, raw)
		st.node = raw.Stmt
		p.statements = append(p.statements, st)
		p.facts.Statements = append(p.facts.Statements, st.facts)
		if st.notRead != "" {
			readOnly = false
		}
		if p.opaque == "" && st.opaque != "" {
			p.opaque = st.opaque
			if len(tree.Stmts) > 1 {
				p.opaque = fmt.Sprintf("statement %d: %s", len(p.statements), st.opaque)
			}
		}
		read = appendUnique(read, st.facts.TablesRead...)
		written = appendUnique(written, st.facts.TablesWritten...)
		functions = appendUnique(functions, st.facts.Functions...)
	}
	p.facts.StatementCount = len(p.statements)
	p.facts.ReadOnly = readOnly && len(p.statements) > 0
	p.facts.TablesRead = nonNil(read)
	p.facts.TablesWritten = nonNil(written)
	p.facts.Tables = nonNil(appendUnique(slices.Clone(read), written...))
	p.facts.Functions = nonNil(functions)
	if p.facts.Statements == nil {
		p.facts.Statements = []policy.Statement{}
	}
	return p, nil
}

// statementText cuts one statement out of the call's SQL. Locations are byte
// offsets; a length of 0 means "to the end".
func statementText(sql string, raw *pg_query.RawStmt) string {
	start := int(raw.StmtLocation)
	end := len(sql)
	if raw.StmtLen > 0 {
		end = start + int(raw.StmtLen)
	}
	if start < 0 || start > end || end > len(sql) {
		return strings.TrimSpace(sql)
	}
	return strings.TrimSpace(sql[start:end])
}

// analysis accumulates what one walk over a statement's tree finds.
type analysis struct {
	depth        int // how deep in SQL text run by functions (0: the call's own SQL)
	writeTargets map[*pg_query.RangeVar]bool
	lockedRels   map[*pg_query.RangeVar]bool // FOR UPDATE OF names: FROM items, not tables
	read         []string
	written      []string
	functions    []string   // lower-case, as listed in sql.functions (SQL text's too)
	calls        []funcCall // the statement's own calls, for their classification
	operators    []string
	params       int
	modifying    bool // a data-modifying statement nested anywhere (CTEs)
	selectInto   bool
	locking      bool
	textNotRead  string // why SQL text run by a function is not a plain read
	textRefusal  string // why SQL text run by a function would be refused
	callRefusal  string // why a function call is refused (set_config of a protected setting)
	opaque       string // why the analysis cannot see through the statement
}

// funcCall is a function a statement calls: lower is its name as listed in
// sql.functions, exact as PostgreSQL resolves it (quoted parts keep case).
type funcCall struct{ lower, exact string }

// withScope is the CTE names visible at a point of a statement: a WITH
// clause's names are visible in its own query (and its subqueries), each CTE
// sees the ones before it (all of them, itself included, under RECURSIVE),
// and an inner WITH shadows an outer one. Only unqualified names resolve to
// CTEs.
type withScope struct {
	names  []string
	parent *withScope
}

func (s *withScope) has(name string) bool {
	for ; s != nil; s = s.parent {
		if slices.Contains(s.names, name) {
			return true
		}
	}
	return false
}

func analyze(node *pg_query.Node, depth int) statement {
	st := statement{kind: "other"}
	if node == nil || node.Node == nil {
		return st
	}
	top := nodeMessage(node)
	if top == nil {
		return st
	}
	typeName := string(top.Descriptor().Name())
	st.kind = kindOf(typeName, top.Interface())
	if ex, ok := top.Interface().(*pg_query.ExplainStmt); ok {
		return analyzeExplain(ex, depth)
	}

	a := &analysis{depth: depth, writeTargets: map[*pg_query.RangeVar]bool{}, lockedRels: map[*pg_query.RangeVar]bool{}}
	a.markDDLTargets(top.Interface())
	a.walk(top, top.Interface(), nil)

	st.params = a.params
	st.facts = policy.Statement{
		Kind:          st.kind,
		TablesRead:    nonNil(a.read),
		TablesWritten: nonNil(a.written),
		Functions:     nonNil(a.functions),
	}
	switch n := top.Interface().(type) {
	case *pg_query.UpdateStmt:
		st.facts.HasWhere = n.WhereClause != nil
	case *pg_query.DeleteStmt:
		st.facts.HasWhere = n.WhereClause != nil
	}
	st.notRead = a.notRead(st.kind)
	st.refusal = refusalOf(top.Interface())
	if st.refusal == "" {
		st.refusal = a.callRefusal
	}
	if st.refusal == "" {
		st.refusal = a.textRefusal
	}
	st.opaque = a.opaque
	if st.refusal == "" && st.opaque != "" {
		// The broker refuses such a call before policy (Facts); Execute
		// refuses it too, should anything call it without facts.
		st.refusal = st.opaque
	}
	st.planEffect = a.planEffect()
	return st
}

// analyzeExplain describes EXPLAIN by the statement it explains: the same
// tables and functions, and the same effects when ANALYZE runs it. Without
// ANALYZE only the planner runs (see planTimeEffect).
func analyzeExplain(ex *pg_query.ExplainStmt, depth int) statement {
	inner := analyze(ex.Query, depth)
	st := inner
	st.kind = "explain"
	st.facts.Kind = "explain"
	st.facts.HasWhere = false
	switch {
	case explainAnalyze(ex):
		if inner.notRead != "" {
			st.notRead = "EXPLAIN ANALYZE executes the statement: " + inner.notRead
		}
	case inner.planEffect != "":
		st.notRead = "EXPLAIN plans the statement, and " + inner.planEffect
	default:
		st.notRead = ""
	}
	return st
}

// walk visits m and every message nested in it, parents first, with the
// CTE names in scope. stmt is the statement being analysed.
func (a *analysis) walk(m protoreflect.Message, stmt any, scope *withScope) {
	a.visit(m, stmt, scope)
	var skip protoreflect.Name
	if with, ok := m.Interface().(interface{ GetWithClause() *pg_query.WithClause }); ok && with.GetWithClause() != nil {
		scope = a.walkWith(with.GetWithClause(), stmt, scope)
		skip = "with_clause"
	}
	// A loop over the fields rather than m.Range, which would allocate a
	// closure for every node; a Node (a oneof of some 250 node types) has
	// only its set field looked at.
	desc := m.Descriptor()
	if oneofs := desc.Oneofs(); oneofs.Len() == 1 && desc.Fields().Len() == oneofs.Get(0).Fields().Len() {
		if fd := m.WhichOneof(oneofs.Get(0)); fd != nil && fd.Kind() == protoreflect.MessageKind {
			a.walk(m.Get(fd).Message(), stmt, scope)
		}
		return
	}
	fields := desc.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if (fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind) || fd.Name() == skip || !m.Has(fd) {
			continue
		}
		switch v := m.Get(fd); {
		case fd.IsList():
			l := v.List()
			for j := 0; j < l.Len(); j++ {
				a.walk(l.Get(j).Message(), stmt, scope)
			}
		case fd.IsMap():
			// the parse tree has no maps
		default:
			a.walk(v.Message(), stmt, scope)
		}
	}
}

// walkWith walks a WITH clause's CTEs, each with the names it can see, and
// returns the scope of the query the clause belongs to.
func (a *analysis) walkWith(wc *pg_query.WithClause, stmt any, outer *withScope) *withScope {
	var names []string
	for _, n := range wc.Ctes {
		if cte := n.GetCommonTableExpr(); cte != nil {
			names = append(names, cte.Ctename)
		}
	}
	all := &withScope{names: names, parent: outer}
	if wc.Recursive {
		for _, n := range wc.Ctes {
			a.walk(n.ProtoReflect(), stmt, all)
		}
		return all
	}
	for i, n := range wc.Ctes {
		a.walk(n.ProtoReflect(), stmt, &withScope{names: names[:min(i, len(names))], parent: outer})
	}
	return all
}

// visit notes what one node means.
func (a *analysis) visit(m protoreflect.Message, stmt any, scope *withScope) {
	switch n := m.Interface().(type) {
	case *pg_query.RangeVar:
		switch {
		case a.writeTargets[n]:
			a.written = appendUnique(a.written, rangeVarName(n))
		case a.lockedRels[n]:
			// FOR UPDATE OF x names a FROM item of the same query
		case n.Schemaname == "" && n.Catalogname == "" && scope.has(n.Relname):
			// a reference to a CTE, not a table
		default:
			a.read = appendUnique(a.read, rangeVarName(n))
		}
	case *pg_query.FuncCall:
		exact := exactName(n.Funcname)
		if n.Funcformat == pg_query.CoercionForm_COERCE_SQL_SYNTAX && exact == "pg_catalog.system_user" {
			a.setOpaque("%s", systemUserRefusal)
		}
		a.call(qualifiedName(n.Funcname), exact, n)
	case *pg_query.A_Indirection:
		a.attributeCalls(n)
	case *pg_query.ColumnRef:
		a.rowCall(n)
	case *pg_query.A_Expr:
		switch n.Kind {
		case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_OP_ALL:
			a.operators = appendUnique(a.operators, exactName(n.Name))
		}
	case *pg_query.SubLink:
		// x op ANY (SELECT ...), x op ALL (...), (a, b) op (SELECT ...);
		// IN (SELECT ...) has no name of its own (it is =).
		if len(n.OperName) > 0 {
			a.operators = appendUnique(a.operators, exactName(n.OperName))
		}
	case *pg_query.SortBy:
		// ORDER BY x USING op, in a query, a window or an aggregate
		if len(n.UseOp) > 0 {
			a.operators = appendUnique(a.operators, exactName(n.UseOp))
		}
	case *pg_query.DoStmt:
		a.setOpaque("DO runs a PL/pgSQL block whose statements the analysis cannot see: send the statements it would run as plain SQL instead")
	case *pg_query.JsonFuncExpr:
		a.setOpaque("%s", newerSyntaxRefusal(strings.TrimSuffix(n.Op.String(), "_OP")))
	case *pg_query.JsonTable:
		a.setOpaque("%s", newerSyntaxRefusal("JSON_TABLE"))
	case *pg_query.JsonParseExpr:
		a.setOpaque("%s", newerSyntaxRefusal("JSON()"))
	case *pg_query.JsonScalarExpr:
		a.setOpaque("%s", newerSyntaxRefusal("JSON_SCALAR"))
	case *pg_query.JsonSerializeExpr:
		a.setOpaque("%s", newerSyntaxRefusal("JSON_SERIALIZE"))
	case *pg_query.JsonObjectConstructor:
		a.setOpaque("%s", newerSyntaxRefusal("JSON_OBJECT"))
	case *pg_query.JsonArrayConstructor, *pg_query.JsonArrayQueryConstructor:
		a.setOpaque("%s", newerSyntaxRefusal("JSON_ARRAY"))
	case *pg_query.JsonObjectAgg:
		a.setOpaque("%s", newerSyntaxRefusal("JSON_OBJECTAGG"))
	case *pg_query.JsonArrayAgg:
		a.setOpaque("%s", newerSyntaxRefusal("JSON_ARRAYAGG"))
	case *pg_query.JsonIsPredicate:
		a.setOpaque("%s", newerSyntaxRefusal("IS JSON"))
	case *pg_query.MergeSupportFunc:
		a.setOpaque("%s", newerSyntaxRefusal("MERGE_ACTION()"))
	case *pg_query.ParamRef:
		a.params = max(a.params, int(n.Number))
	case *pg_query.LockingClause:
		for _, r := range n.LockedRels {
			if rv := r.GetRangeVar(); rv != nil {
				a.lockedRels[rv] = true
			}
		}
	case *pg_query.InsertStmt:
		a.markWritten(n.Relation)
		a.modifying = a.modifying || n != stmt
	case *pg_query.UpdateStmt:
		a.markWritten(n.Relation)
		a.modifying = a.modifying || n != stmt
	case *pg_query.DeleteStmt:
		a.markWritten(n.Relation)
		a.modifying = a.modifying || n != stmt
	case *pg_query.MergeStmt:
		a.markWritten(n.Relation)
		a.modifying = a.modifying || n != stmt
	case *pg_query.SelectStmt:
		if n.IntoClause != nil {
			a.selectInto = true
			a.markWritten(n.IntoClause.Rel)
		}
		if len(n.LockingClause) > 0 {
			a.locking = true
		}
	}
}

// call notes a call of a function: lower is its name as listed in
// sql.functions, exact as PostgreSQL resolves it; n is the call (for
// attribute notation, the call it stands for).
func (a *analysis) call(lower, exact string, n *pg_query.FuncCall) {
	a.functions = appendUnique(a.functions, lower)
	if c := (funcCall{lower: lower, exact: exact}); !slices.Contains(a.calls, c) {
		a.calls = append(a.calls, c)
	}
	if tf := textFunctionOf(lower); tf != nil {
		a.followText(tf, lower, n)
	}
	if functionBaseName(lower) == "set_config" && a.callRefusal == "" {
		a.callRefusal = setConfigRefusal(n)
	}
}

// Attribute notation.
//
// PostgreSQL reads (x).f as the call f(x) when x has no field f (and when x
// is not a row at all), and t.f, for a FROM item t without a column f, as
// f(t) with t's whole row: the "computed field" of a function taking a row
// type. The parse tree has an A_Indirection or a ColumnRef, no FuncCall,
// and which one PostgreSQL picks depends on the types, which the facts do
// not see. So:
//
//   - (x).f where f names a function the facts know (built in, or in the
//     side-effect or SQL-text tables) is the call f(x), whatever x is:
//     listed, classified, and its SQL text followed or refused like
//     f(x). A field of that name is listed as a call too (over-reporting,
//     never under-reporting).
//   - (x).f with any other name is a call of a function that is not built
//     in when x cannot be a row (a constant, a parameter, a cast to a
//     built-in type, an operator expression, a built-in function that
//     never returns a row: (1).peek is peek(1), (length(s)).peek is
//     peek(length(s))), and a field selection otherwise ((w).word,
//     (jsonb_each(doc)).key, (c.addr).city).
//   - t.f is a column unless f is in the side-effect or SQL-text tables
//     (pg_terminate_backend, pg_advisory_lock, ts_stat, dblink, ...): none
//     of them takes a row, but a cast the database defines could make one.
//     Other names (t.name, t.length, and t.system, a volatile built-in that
//     only a table sample can call) stay columns, as they almost always
//     are; a column of a listed name is listed as a call (over-reporting).
//
// What is left, a user-defined function taking a row type called as t.f or
// (row).f, is the schema's own code, like a view or a trigger: the READ
// ONLY transaction bounds it under a read-only grant, the session reset
// after every call (endCall) undoes what it leaves behind, and result
// provenance masks what it returns (its name is not a column).

// attributeCalls notes the calls an A_Indirection stands for.
func (a *analysis) attributeCalls(n *pg_query.A_Indirection) {
	arg := n.Arg
	row := mayBeRow(arg)
	for i, el := range n.Indirection {
		s := el.GetString_()
		if s == nil {
			if el.GetAIndices() != nil {
				row = elementsMayBeRows(arg) // (x)[1].f applies f to an element
			}
			continue
		}
		lower := strings.ToLower(s.Sval)
		if knownFunction(lower, s.Sval) || !row {
			a.call(lower, s.Sval, &pg_query.FuncCall{Funcname: []*pg_query.Node{el}, Args: []*pg_query.Node{arg}})
		}
		// what the next name applies to: this call's result, or the field
		arg = &pg_query.Node{Node: &pg_query.Node_AIndirection{AIndirection: &pg_query.A_Indirection{Arg: n.Arg, Indirection: n.Indirection[:i+1]}}}
		row = true
	}
}

// rowCall notes the call a qualified column reference t.f stands for when
// f names a function of the side-effect or SQL-text tables.
func (a *analysis) rowCall(n *pg_query.ColumnRef) {
	if len(n.Fields) < 2 {
		return // a bare name is a column or a whole row, never a call
	}
	last := n.Fields[len(n.Fields)-1]
	s := last.GetString_()
	if s == nil {
		return // t.*
	}
	lower := strings.ToLower(s.Sval)
	if sideEffectOf(lower) == "" && textFunctions[lower] == nil {
		return // t.name, t.system: a column, or a call without a named effect
	}
	row := &pg_query.Node{Node: &pg_query.Node_ColumnRef{ColumnRef: &pg_query.ColumnRef{Fields: n.Fields[:len(n.Fields)-1]}}}
	a.call(lower, s.Sval, &pg_query.FuncCall{Funcname: []*pg_query.Node{last}, Args: []*pg_query.Node{row}})
}

// knownFunction reports whether a name used in attribute notation names a
// function the facts know: built in (exact case), or in the side-effect or
// SQL-text tables (any case, as their FuncCall forms are matched).
func knownFunction(lower, exact string) bool {
	if _, ok := builtinFunctionOf(exact); ok {
		return true
	}
	return sideEffectOf(lower) != "" || textFunctions[lower] != nil // an unqualified name
}

// mayBeRow reports whether an expression may have a composite type, so
// that (x).f may select its field f. A constant, a parameter, a cast to a
// built-in scalar type, a boolean or operator expression, and a call of a
// built-in function none of whose overloads returns a row, are not rows
// (nor a COALESCE, CASE, GREATEST or LEAST of those); taking a row for a
// scalar only lists one more call.
func mayBeRow(n *pg_query.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_AConst, *pg_query.Node_ParamRef, *pg_query.Node_AExpr, *pg_query.Node_BoolExpr,
		*pg_query.Node_NullTest, *pg_query.Node_BooleanTest, *pg_query.Node_SqlvalueFunction,
		*pg_query.Node_AArrayExpr, *pg_query.Node_CollateClause:
		return false
	case *pg_query.Node_FuncCall:
		schema, name := splitName(exactName(x.FuncCall.Funcname))
		if _, builtin := builtinFunctionOf(exactName(x.FuncCall.Funcname)); !builtin || schema == "information_schema" {
			return true
		}
		return builtinRowFunctions[name]
	case *pg_query.Node_CoalesceExpr:
		return slices.ContainsFunc(x.CoalesceExpr.Args, mayBeRow)
	case *pg_query.Node_MinMaxExpr:
		return slices.ContainsFunc(x.MinMaxExpr.Args, mayBeRow)
	case *pg_query.Node_CaseExpr:
		for _, w := range x.CaseExpr.Args {
			if mayBeRow(w.GetCaseWhen().GetResult()) {
				return true
			}
		}
		return x.CaseExpr.Defresult != nil && mayBeRow(x.CaseExpr.Defresult)
	case *pg_query.Node_TypeCast:
		tn := x.TypeCast.TypeName
		if tn == nil || tn.Setof || tn.PctType {
			return true
		}
		if len(tn.ArrayBounds) > 0 {
			return false // an array is not a row
		}
		// Built-in type names are in builtinFunctions (as types, or as
		// the functions of the same name that cast to them); the only
		// composite ones in pg_catalog are the row types of the catalogs
		// and system views, all named pg_*.
		schema, name := splitName(exactName(tn.Names))
		if schema != "" && schema != "pg_catalog" {
			return true
		}
		_, builtin := builtinFunctions[name]
		return !builtin || strings.HasPrefix(name, "pg_")
	}
	return true
}

// elementsMayBeRows reports whether the elements of an array expression
// may be rows: those of an ARRAY[...] whose elements may be, or of a cast
// to an array of a type that is not built in, or of anything else.
func elementsMayBeRows(n *pg_query.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_AArrayExpr:
		for _, e := range x.AArrayExpr.Elements {
			if e.GetAArrayExpr() != nil {
				if elementsMayBeRows(e) {
					return true
				}
			} else if mayBeRow(e) {
				return true
			}
		}
		return false
	case *pg_query.Node_TypeCast:
		if tn := x.TypeCast.TypeName; tn != nil && len(tn.ArrayBounds) > 0 {
			elem := &pg_query.TypeName{Names: tn.Names}
			return mayBeRow(&pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{TypeName: elem}}})
		}
	}
	return true
}

// systemUserRefusal: PostgreSQL 16 made SYSTEM_USER a reserved keyword, and
// the facts' parser (pg_query, PostgreSQL 17's grammar) reads it as the
// function pg_catalog.system_user(); PostgreSQL 15 reads it as a name, of
// a column most likely, whose values the facts and provenance would miss.
const systemUserRefusal = `system_user is a keyword only from PostgreSQL 16 on, and this server (PostgreSQL 15) reads it as a column name: write "system_user" in double quotes to name a column, or session_user for the login role`

// newerSyntaxRefusal refuses SQL/JSON syntax of PostgreSQL 16 and 17, which
// the facts' parser reads as its own nodes and PostgreSQL 15 as calls of
// functions of those names (a user's json_value(...) would run unseen) or
// as a syntax error.
func newerSyntaxRefusal(construct string) string {
	return construct + " is syntax of PostgreSQL 16 and later, which this server (PostgreSQL 15) reads as a call of a function of that name or refuses: write it with the json and jsonb functions and operators of PostgreSQL 15 (jsonb_path_query_first, ->>, jsonb_build_object, jsonb_agg, ...)"
}

func (a *analysis) setOpaque(format string, args ...any) {
	if a.opaque == "" {
		a.opaque = fmt.Sprintf(format, args...)
	}
}

func (a *analysis) markWritten(rv *pg_query.RangeVar) {
	if rv != nil {
		a.writeTargets[rv] = true
	}
}

// markDDLTargets marks the objects a DDL, GRANT, TRUNCATE or COPY FROM
// statement changes as written.
func (a *analysis) markDDLTargets(stmt any) {
	switch n := stmt.(type) {
	case *pg_query.TruncateStmt:
		a.markNodes(n.Relations)
	case *pg_query.CopyStmt:
		if n.IsFrom {
			a.markWritten(n.Relation)
		}
	case *pg_query.CreateStmt:
		a.markWritten(n.Relation)
	case *pg_query.CreateTableAsStmt:
		if n.Into != nil {
			a.markWritten(n.Into.Rel)
		}
	case *pg_query.ViewStmt:
		a.markWritten(n.View)
	case *pg_query.IndexStmt:
		a.markWritten(n.Relation)
	case *pg_query.AlterTableStmt:
		a.markWritten(n.Relation)
	case *pg_query.RenameStmt:
		a.markWritten(n.Relation)
	case *pg_query.CreateTrigStmt:
		a.markWritten(n.Relation)
	case *pg_query.RuleStmt:
		a.markWritten(n.Relation)
	case *pg_query.CreatePolicyStmt:
		a.markWritten(n.Table)
	case *pg_query.AlterPolicyStmt:
		a.markWritten(n.Table)
	case *pg_query.RefreshMatViewStmt:
		a.markWritten(n.Relation)
	case *pg_query.AlterOwnerStmt:
		a.markWritten(n.Relation)
	case *pg_query.AlterObjectSchemaStmt:
		a.markWritten(n.Relation)
	case *pg_query.CreateSeqStmt:
		a.markWritten(n.Sequence)
	case *pg_query.AlterSeqStmt:
		a.markWritten(n.Sequence)
	case *pg_query.CreateForeignTableStmt:
		if n.BaseStmt != nil {
			a.markWritten(n.BaseStmt.Relation)
		}
	case *pg_query.GrantStmt:
		a.markNodes(n.Objects)
	case *pg_query.DropStmt:
		switch n.RemoveType {
		case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW,
			pg_query.ObjectType_OBJECT_MATVIEW, pg_query.ObjectType_OBJECT_FOREIGN_TABLE,
			pg_query.ObjectType_OBJECT_SEQUENCE, pg_query.ObjectType_OBJECT_INDEX:
			for _, obj := range n.Objects {
				if l := obj.GetList(); l != nil {
					a.written = appendUnique(a.written, qualifiedName(l.Items))
				}
			}
		}
	}
}

func (a *analysis) markNodes(nodes []*pg_query.Node) {
	for _, n := range nodes {
		a.markWritten(n.GetRangeVar())
	}
}

// notRead says why a statement is not a plain read, or "" when it is.
func (a *analysis) notRead(kind string) string {
	switch kind {
	case "show":
		return ""
	case "select":
		switch {
		case a.selectInto:
			return "SELECT INTO creates a table"
		case a.locking:
			return "a locking clause (FOR UPDATE/SHARE) takes row locks"
		case a.modifying:
			return "a WITH clause modifies data"
		}
		for _, c := range a.calls {
			if why := functionEffect(c.lower, c.exact); why != "" {
				return why
			}
		}
		for _, op := range a.operators {
			if why := operatorEffect(op); why != "" {
				return why
			}
		}
		return a.textNotRead
	}
	return fmt.Sprintf("a %s statement is not a plain read", strings.ToUpper(kind))
}

// planEffect says why merely planning the statement may act, or "".
func (a *analysis) planEffect() string {
	for _, c := range a.calls {
		if why := planTimeEffect(c.lower, c.exact); why != "" {
			return why
		}
	}
	for _, op := range a.operators {
		if why := operatorEffect(op); why != "" {
			return "the planner may run the function behind it: " + why
		}
	}
	return ""
}

// explainAnalyze resolves EXPLAIN's ANALYZE option as PostgreSQL does: the
// last occurrence wins, an option without a value is true, and the values
// are the booleans EXPLAIN accepts (true/false/on/off in any case, 1/0).
// PostgreSQL refuses any other value (yes, no, 2, t, ...) and runs nothing;
// the facts then count the statement as analysed, which can only over-block
// a call that fails anyway.
func explainAnalyze(ex *pg_query.ExplainStmt) bool {
	analyze := false
	for _, o := range ex.Options {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		v, ok := defBoolean(d.Arg)
		if !ok {
			return true
		}
		analyze = v
	}
	return analyze
}

// defBoolean reads an option value as PostgreSQL's defGetBoolean does.
func defBoolean(arg *pg_query.Node) (value, ok bool) {
	if arg == nil {
		return true, true
	}
	if i := arg.GetInteger(); i != nil {
		switch i.Ival {
		case 0:
			return false, true
		case 1:
			return true, true
		}
		return false, false
	}
	if s := arg.GetString_(); s != nil {
		switch strings.ToLower(s.Sval) {
		case "true", "on":
			return true, true
		case "false", "off":
			return false, true
		}
	}
	return false, false
}

// refusalOf says why Execute refuses a statement whatever the grant: it
// would end or change the transaction and the identity Airlock set up.
func refusalOf(stmt any) string {
	switch n := stmt.(type) {
	case *pg_query.TransactionStmt:
		return "transaction control statements (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION, ...) are not allowed: Airlock runs each call in its own transaction"
	case *pg_query.DiscardStmt:
		return "DISCARD is not allowed: it resets the session Airlock set up"
	case *pg_query.DeallocateStmt:
		return "DEALLOCATE is not allowed: Airlock's driver manages prepared statements"
	case *pg_query.VariableSetStmt:
		if n.Kind == pg_query.VariableSetKind_VAR_RESET_ALL {
			return "RESET ALL is not allowed: it resets the limits Airlock set"
		}
		return settingRefusal(n.Name, "")
	case *pg_query.AlterRoleSetStmt:
		// the defaults of the sessions the lease opens next
		return settingRefusal(n.Setstmt.GetName(), "ALTER ROLE ... SET ")
	case *pg_query.AlterDatabaseSetStmt:
		return settingRefusal(n.Setstmt.GetName(), "ALTER DATABASE ... SET ")
	case *pg_query.AlterSystemStmt:
		return settingRefusal(n.Setstmt.GetName(), "ALTER SYSTEM SET ")
	}
	return ""
}

// settingRefusal says why changing a setting is refused, or "" when it is
// not protected. how is the statement's wording for other statements than
// SET ("ALTER ROLE ... SET ").
func settingRefusal(setting, how string) string {
	setting = strings.ToLower(strings.TrimSpace(setting))
	why, ok := protectedSettings[setting]
	if !ok {
		return ""
	}
	if how != "" {
		return how + setting + " is not allowed: " + why
	}
	return "changing " + strings.ReplaceAll(setting, "_", " ") + " is not allowed: " + why
}

// setConfigRefusal says why a set_config call is refused: like SET, it may
// not change the identity, the transaction or the limits Airlock set up
// (set_config('statement_timeout', '0', true) would lift the timeout), and a
// setting named by anything but a literal could be any of those.
func setConfigRefusal(call *pg_query.FuncCall) string {
	if len(call.Args) == 0 {
		return ""
	}
	setting, null, ok := literalText(call.Args[0], sqlTextCasts)
	switch {
	case null:
		return ""
	case !ok:
		return "set_config with a setting name that is not a string literal is not allowed: name the setting in a literal"
	}
	return settingRefusal(setting, "")
}

func kindOf(typeName string, stmt any) string {
	switch n := stmt.(type) {
	case *pg_query.GrantStmt:
		if n.IsGrant {
			return "grant"
		}
		return "revoke"
	case *pg_query.GrantRoleStmt:
		if n.IsGrant {
			return "grant"
		}
		return "revoke"
	case *pg_query.VacuumStmt:
		if n.IsVacuumcmd {
			return "vacuum"
		}
		return "analyze"
	case *pg_query.CreateTableAsStmt:
		if n.IsSelectInto {
			return "select"
		}
		return "create"
	}
	if k, ok := statementKinds[typeName]; ok {
		return k
	}
	switch {
	case strings.HasPrefix(typeName, "Create"):
		return "create"
	case strings.HasPrefix(typeName, "Alter"):
		return "alter"
	case strings.HasPrefix(typeName, "Drop"):
		return "drop"
	}
	return "other"
}

// nodeMessage returns the message a Node wraps (its oneof value).
func nodeMessage(node *pg_query.Node) protoreflect.Message {
	m := node.ProtoReflect()
	od := m.Descriptor().Oneofs().Get(0)
	fd := m.WhichOneof(od)
	if fd == nil || fd.Kind() != protoreflect.MessageKind {
		return nil
	}
	return m.Get(fd).Message()
}

func rangeVarName(rv *pg_query.RangeVar) string {
	parts := make([]string, 0, 3)
	for _, p := range []string{rv.Catalogname, rv.Schemaname, rv.Relname} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ".")
}

// qualifiedName joins a name list (String nodes) with dots, lower-cased.
func qualifiedName(nodes []*pg_query.Node) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if s := n.GetString_(); s != nil {
			parts = append(parts, strings.ToLower(s.Sval))
		}
	}
	return strings.Join(parts, ".")
}

func appendUnique(list []string, items ...string) []string {
	for _, it := range items {
		if it != "" && !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
