package postgres

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/airlock-mcp/airlock/policy"
)

// sideEffect is a function known to act outside the statement's own result:
// on other sessions, the server's files, large objects, sequences, other
// databases, or session state. A statement calling one is not read-only.
type sideEffect struct {
	name   string // lower-case, unqualified
	prefix bool   // name is a prefix: every function starting with it
	why    string
}

// sideEffects is the named table of functions that make a call not
// read-only. It is matched against the unqualified, lower-cased name, so
// "pg_catalog.pg_terminate_backend" matches too. Functions defined by users
// or by other extensions are not known here: BEGIN READ ONLY and the grant's
// own privileges still bound what they can do.
var sideEffects = []sideEffect{
	{name: "pg_terminate_backend", why: "terminates other sessions"},
	{name: "pg_cancel_backend", why: "cancels other sessions' queries"},
	{name: "pg_reload_conf", why: "reloads the server configuration"},
	{name: "pg_rotate_logfile", why: "rotates the server log"},
	{name: "pg_promote", why: "promotes a standby"},
	{name: "pg_switch_wal", why: "forces a WAL switch"},
	{name: "pg_create_restore_point", why: "writes a WAL restore point"},
	{name: "pg_log_backend_memory_contexts", why: "writes to the server log"},
	{name: "pg_stat_reset", prefix: true, why: "resets statistics"},
	{name: "pg_read_file", why: "reads server files"},
	{name: "pg_read_binary_file", why: "reads server files"},
	{name: "pg_stat_file", why: "inspects server files"},
	{name: "pg_ls_", prefix: true, why: "lists server directories"},
	{name: "pg_file_", prefix: true, why: "writes server files (adminpack)"},
	{name: "lo_import", why: "reads a server file into a large object"},
	{name: "lo_export", why: "writes a large object to a server file"},
	{name: "lo_unlink", why: "deletes a large object"},
	{name: "lo_from_bytea", why: "creates a large object"},
	{name: "lo_put", why: "writes a large object"},
	{name: "lo_create", why: "creates a large object"},
	{name: "lo_creat", why: "creates a large object"},
	{name: "lo_truncate", why: "truncates a large object"},
	{name: "dblink", prefix: true, why: "connects to another database"},
	{name: "set_config", why: "changes session settings"},
	{name: "nextval", why: "advances a sequence"},
	{name: "setval", why: "sets a sequence"},
	{name: "pg_advisory_", prefix: true, why: "takes or releases advisory locks"},
	{name: "pg_try_advisory_", prefix: true, why: "takes advisory locks"},
	{name: "pg_sleep", prefix: true, why: "holds a connection for as long as asked"},
	{name: "txid_current", why: "assigns a transaction id"},
	{name: "pg_current_xact_id", why: "assigns a transaction id"},
	{name: "pg_notify", why: "notifies listeners"},
	{name: "pg_logical_emit_message", why: "writes to the WAL"},
	{name: "pg_create_physical_replication_slot", why: "creates a replication slot"},
	{name: "pg_create_logical_replication_slot", why: "creates a replication slot"},
	{name: "pg_drop_replication_slot", why: "drops a replication slot"},
	{name: "pg_replication_origin_", prefix: true, why: "changes replication origins"},
	{name: "pg_import_system_collations", why: "creates collations"},
}

// sideEffectOf returns why the function (lower-case, maybe qualified) is not
// read-only, or "" when it is not in the table.
func sideEffectOf(function string) string {
	name := function
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	for _, se := range sideEffects {
		if name == se.name || (se.prefix && strings.HasPrefix(name, se.name)) {
			return se.why
		}
	}
	return ""
}

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
}

// statement is one parsed statement of a query_db call.
type statement struct {
	text    string // the statement's own text, as sent to the server
	kind    string
	params  int    // highest $n referenced
	notRead string // why the statement is not a plain read; "" when it is
	refusal string // why Execute refuses it whatever the grant; "" when allowed
	facts   policy.Statement
	// columns are the column names the statement refers to anywhere,
	// lower-case, with "*" for a star, a whole-row reference or SQL run from
	// a string: what a computed result column may be derived from.
	columns []string
}

// parsedSQL is the result of parsing a query_db call's SQL once, in Decode.
type parsedSQL struct {
	statements []statement
	facts      policy.SQL
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

func parseSQL(sql string) (*parsedSQL, error) {
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
		st := analyze(raw.Stmt)
		st.text = statementText(sql, raw)
		p.statements = append(p.statements, st)
		p.facts.Statements = append(p.facts.Statements, st.facts)
		if st.notRead != "" {
			readOnly = false
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
	writeTargets map[*pg_query.RangeVar]bool
	cteNames     map[string]bool
	relNames     map[string]bool // tables, aliases and CTEs a row variable may name
	columns      []string
	singleRefs   []string // one-field column references: a column, or a whole row
	read         []string
	written      []string
	functions    []string
	params       int
	modifying    bool // a data-modifying statement nested anywhere (CTEs)
	selectInto   bool
	locking      bool
}

func analyze(node *pg_query.Node) statement {
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

	a := &analysis{writeTargets: map[*pg_query.RangeVar]bool{}, cteNames: map[string]bool{}, relNames: map[string]bool{}}
	a.markDDLTargets(top.Interface())
	// One walk, parents before children: write targets are marked when their
	// statement is visited; table references are classified after the walk,
	// once every CTE name is known.
	var refs []*pg_query.RangeVar
	walk(top, func(m protoreflect.Message) {
		switch n := m.Interface().(type) {
		case *pg_query.RangeVar:
			refs = append(refs, n)
			a.relNames[strings.ToLower(n.Relname)] = true
			if n.Alias != nil {
				a.relNames[strings.ToLower(n.Alias.Aliasname)] = true
			}
		case *pg_query.RangeSubselect:
			if n.Alias != nil {
				a.relNames[strings.ToLower(n.Alias.Aliasname)] = true
			}
		case *pg_query.RangeFunction:
			if n.Alias != nil {
				a.relNames[strings.ToLower(n.Alias.Aliasname)] = true
			}
		case *pg_query.ColumnRef:
			a.columnRef(n)
		case *pg_query.FuncCall:
			name := qualifiedName(n.Funcname)
			a.functions = appendUnique(a.functions, name)
			if runsSQLText(name) {
				a.columns = appendUnique(a.columns, "*")
			}
		case *pg_query.ParamRef:
			a.params = max(a.params, int(n.Number))
		case *pg_query.CommonTableExpr:
			a.cteNames[n.Ctename] = true
			a.relNames[strings.ToLower(n.Ctename)] = true
		case *pg_query.InsertStmt:
			a.markWritten(n.Relation)
			a.modifying = a.modifying || m.Interface() != top.Interface()
		case *pg_query.UpdateStmt:
			a.markWritten(n.Relation)
			a.modifying = a.modifying || m.Interface() != top.Interface()
		case *pg_query.DeleteStmt:
			a.markWritten(n.Relation)
			a.modifying = a.modifying || m.Interface() != top.Interface()
		case *pg_query.MergeStmt:
			a.markWritten(n.Relation)
			a.modifying = a.modifying || m.Interface() != top.Interface()
		case *pg_query.SelectStmt:
			if n.IntoClause != nil {
				a.selectInto = true
				a.markWritten(n.IntoClause.Rel)
			}
			if len(n.LockingClause) > 0 {
				a.locking = true
			}
		}
	})
	for _, rv := range refs {
		switch {
		case a.writeTargets[rv]:
			a.written = appendUnique(a.written, rangeVarName(rv))
		case rv.Schemaname == "" && a.cteNames[rv.Relname]:
			// a reference to a CTE, not a table
		default:
			a.read = appendUnique(a.read, rangeVarName(rv))
		}
	}

	for _, name := range a.singleRefs {
		if a.relNames[name] {
			a.columns = appendUnique(a.columns, "*") // a whole row: every column
		}
	}
	st.columns = a.columns
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
	st.notRead = a.notRead(st.kind, top.Interface())
	st.refusal = refusalOf(top.Interface())
	return st
}

// columnRef notes the column a reference names ("*" for a star).
func (a *analysis) columnRef(ref *pg_query.ColumnRef) {
	if len(ref.Fields) == 0 {
		return
	}
	last := ref.Fields[len(ref.Fields)-1]
	if last.GetAStar() != nil {
		a.columns = appendUnique(a.columns, "*")
		return
	}
	name := strings.ToLower(last.GetString_().GetSval())
	a.columns = appendUnique(a.columns, name)
	if len(ref.Fields) == 1 {
		a.singleRefs = append(a.singleRefs, name)
	}
}

// runsSQLText reports whether a function runs SQL given as text, so what it
// reads cannot be seen in the statement (query_to_xml('select ssn from …')).
func runsSQLText(function string) bool {
	name := function[strings.LastIndexByte(function, '.')+1:]
	switch name {
	case "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
		"table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
		"schema_to_xml", "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xml_and_xmlschema",
		"ts_stat", "dblink", "dblink_exec":
		return true
	}
	return false
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
func (a *analysis) notRead(kind string, stmt any) string {
	switch kind {
	case "show":
		return ""
	case "explain":
		ex := stmt.(*pg_query.ExplainStmt)
		if !explainAnalyze(ex) {
			return "" // EXPLAIN without ANALYZE plans and does not execute
		}
		inner := analyze(ex.Query)
		if inner.notRead != "" {
			return "EXPLAIN ANALYZE executes the statement: " + inner.notRead
		}
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
		for _, f := range a.functions {
			if why := sideEffectOf(f); why != "" {
				return fmt.Sprintf("function %s %s", f, why)
			}
		}
		return ""
	}
	return fmt.Sprintf("a %s statement is not a plain read", strings.ToUpper(kind))
}

func explainAnalyze(ex *pg_query.ExplainStmt) bool {
	for _, o := range ex.Options {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		if d.Arg == nil {
			return true
		}
		if b := d.Arg.GetBoolean(); b != nil {
			return b.Boolval
		}
		if s := d.Arg.GetString_(); s != nil {
			switch strings.ToLower(s.Sval) {
			case "false", "off", "0", "no":
				return false
			}
		}
		return true
	}
	return false
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
		if why, ok := protectedSettings[strings.ToLower(n.Name)]; ok {
			return "changing " + strings.ReplaceAll(strings.ToLower(n.Name), "_", " ") + " is not allowed: " + why
		}
	}
	return ""
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

// walk calls visit for m and every message nested in it, parents first.
func walk(m protoreflect.Message, visit func(protoreflect.Message)) {
	visit(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), visit)
			}
		case fd.IsMap():
			// the parse tree has no maps
		default:
			walk(v.Message(), visit)
		}
		return true
	})
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
