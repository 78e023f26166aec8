package postgres

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/airlock-mcp/airlock/tools"
)

// Provenance: where each result column's values come from.
//
// PostgreSQL's row description names the table OID and attribute number of
// every result column that is a plain column reference, through aliases,
// alias lists, CTEs, subqueries and joins: such a column is that column
// (resolveColumns). What it does not name is traced here, from the
// statement's parse tree (parsed once, in Decode) and the catalog:
//
//	view column      → the view's definition (pg_get_viewdef, parsed and
//	                   resolved by this same code, maxViewDepth deep)
//	generated column → the columns its expression reads (pg_depend)
//	computed column  → every column reference in its expression, resolved
//	                   against the FROM scope: alias lists map onto the
//	                   table's columns in attnum order, * and whole rows expand
//	                   to every column, subqueries, CTEs (recursive too), set
//	                   operations, joins with USING/NATURAL, functions in
//	                   FROM, LATERAL and correlated subqueries recursively;
//	                   (x).f and t.f are calls f(x), f(t.*) unless a field
//	                   or column f exists (indirection, columnRef); a
//	                   count(x) reads no column of x; a table's system
//	                   columns (ctid, xmin, ...) read none
//	count of rows    → an aggregate or window function, and a subquery in
//	                   an expression, also read what decides how many rows
//	                   their FROM items yield (relation.rows): a function's
//	                   arguments, a FROM subquery's or CTE's clauses
//	                   (selectStmt); the rounds of WITH RECURSIVE shape its
//	                   columns (recursiveCTE)
//	write RETURNING  → the returned column plus what SET / the inserted
//	                   row / ON CONFLICT assigned to it
//	EXPLAIN          → no column: the plan is text about the query; EXPLAIN
//	                   ANALYZE is unknown (it prints the rows each node
//	                   yielded and removed)
//
// A reference to a subquery's or CTE's column goes by the name PostgreSQL
// 15 gives it (colname, a port of FigureColname); a column whose name is
// not known for certain (vague) may be meant by any name.
//
// What cannot be traced for certain is unknown (prov.unknown says why): a
// relation not in the catalog or in two schemas of the search path, a
// function or operator that is not built in (it may read any table), a
// built-in function that runs SQL given as text (query_to_xml), session
// state an expression can set (current_setting, currval, random after
// setseed: sessionState), the sampled values of column statistics, a
// sequence's columns, the row a write returns from a table with a trigger
// or rule, every column after an earlier statement of the call that may
// have changed the schema or the search_path, a statement or FROM item this
// code does not follow, a statement too complex to trace (maxTraceSteps,
// which counts the work of unions and lookups too).
//
// Not traced: how many rows the statement itself returns and what decides
// it at its own level (WHERE, LIMIT, FROM functions), the side channel
// docs/masking.md names; and a view's own clauses (a view's rows count like
// a table's).
// The broker masks unknown columns whole whenever the profile protects any
// column.
//
// Catalog data comes through the admin pool into the resource's
// metadataCache (TTL metadataTTL): a call whose catalog data is cached makes
// no round trip. A read-write call that may have changed the catalog drops
// the cache (forgetChangedCatalog).

const (
	// maxViewDepth bounds view-in-view resolution.
	maxViewDepth = 8
	// maxRecursiveRounds bounds the fixpoint of WITH RECURSIVE.
	maxRecursiveRounds = 8
	// forgetTimeout bounds the catalog reads that decide, after a
	// read-write call, whether it may have changed the catalog.
	forgetTimeout = 5 * time.Second
)

// origin is one base column: a relation OID and attribute number.
type origin struct {
	rel uint32
	att int16
}

// prov is what a value is derived from: base columns, or unknown.
type prov struct {
	from    []origin // sorted by (rel, att), no duplicates; never modified once built: union copies
	unknown string   // why the origin cannot be told; "" when it can
}

func unknownProv(format string, args ...any) prov {
	return prov{unknown: fmt.Sprintf(format, args...)}
}

func (p prov) union(q prov) prov {
	u, _ := p.unionWork(q)
	return u
}

// unionWork is union, and how many origins it compared or copied (what
// tracing charges for it: see resolver.union). A set that adds nothing to
// the other is found without copying either: the larger one is returned,
// its slice shared.
func (p prov) unionWork(q prov) (prov, int) {
	out := prov{unknown: p.unknown}
	if out.unknown == "" {
		out.unknown = q.unknown
	}
	a, b := p.from, q.from
	switch {
	case len(b) == 0:
		out.from = a
		return out, 0
	case len(a) == 0:
		out.from = b
		return out, 0
	case len(a) == len(b) && &a[0] == &b[0]:
		out.from = a // the same set
		return out, 0
	}
	if len(a) < len(b) {
		a, b = b, a // b is the smaller
	}
	contained, work := containsAll(a, b)
	if contained {
		out.from = a
		return out, work
	}
	from := make([]origin, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := compareOrigins(a[i], b[j]); {
		case c < 0:
			from = append(from, a[i])
			i++
		case c > 0:
			from = append(from, b[j])
			j++
		default:
			from = append(from, a[i])
			i, j = i+1, j+1
		}
	}
	from = append(append(from, a[i:]...), b[j:]...)
	out.from = from
	return out, work + len(a) + len(b)
}

// containsAll reports whether the sorted set a holds every origin of the
// sorted set b (no longer than a), and the work it took: a binary search
// per origin of b when b is much smaller, else one merge-like pass.
func containsAll(a, b []origin) (bool, int) {
	if searches := len(b) * bits.Len(uint(len(a))); searches < len(a)+len(b) {
		for _, o := range b {
			if _, found := slices.BinarySearchFunc(a, o, compareOrigins); !found {
				return false, searches
			}
		}
		return true, searches
	}
	i := 0
	for _, o := range b {
		for i < len(a) && compareOrigins(a[i], o) < 0 {
			i++
		}
		if i == len(a) || a[i] != o {
			return false, len(a) + len(b)
		}
	}
	return true, len(a) + len(b)
}

func compareOrigins(x, y origin) int {
	if x.rel != y.rel {
		return cmp.Compare(x.rel, y.rel)
	}
	return cmp.Compare(x.att, y.att)
}

// unionAll is the union of many provs, sorted once: what a relation's whole
// row or a run of columns reads, at the cost of its size, not its square.
func unionAll(ps []prov) prov {
	var out prov
	n := 0
	for _, p := range ps {
		if out.unknown == "" {
			out.unknown = p.unknown
		}
		n += len(p.from)
	}
	if n == 0 {
		return out
	}
	from := make([]origin, 0, n)
	for _, p := range ps {
		from = append(from, p.from...)
	}
	slices.SortFunc(from, compareOrigins)
	out.from = slices.Compact(from)
	return out
}

// unionOf is the union of what the columns carry.
func unionOf(outs []outCol) prov {
	ps := make([]prov, len(outs))
	for i, o := range outs {
		ps[i] = o.prov
	}
	return unionAll(ps)
}

// outCol is one output column of a query; width -1 is a run of columns of
// unknown count that all carry prov (a function's result, (x).*).
type outCol struct {
	name  string
	prov  prov
	width int
	vague bool // name may not be the one PostgreSQL gives it (see colname)
}

// column is a column of a FROM item. A vague column's name may not be the
// one PostgreSQL gives it: a reference by any name may mean it.
type column struct {
	name  string
	prov  prov
	vague bool
}

// relation is a FROM item as the statement sees it. Its cols are never
// changed once it is built (a relation of a cached table shares them):
// whatever derives a relation from another copies them first.
type relation struct {
	name   string   // the name it is addressed by; "" for an unaliased join
	cols   []column // in order; nil when opaque
	opaque bool     // its columns' count and names are not known: each carries all
	all    prov     // the union of every column: what a whole-row reference reads (see whole)
	summed bool     // all is computed
	system bool     // a stored table's: it has the system columns (systemColumn), which carry no value
	// rows is what decides how many rows it yields beside its tables'
	// contents: a function's arguments, a subquery's clauses (see
	// selectStmt). A count of them is derived from it.
	rows prov
}

func newRelation(name string, cols []column) *relation {
	return &relation{name: name, cols: cols}
}

func opaqueRelation(name string, p prov) *relation {
	return &relation{name: name, opaque: true, all: p, summed: true}
}

// whole is what a whole-row reference to the relation reads: every column.
func (r *relation) whole() prov {
	if !r.summed {
		ps := make([]prov, 0, len(r.cols)+1)
		ps = append(ps, r.all)
		for _, c := range r.cols {
			ps = append(ps, c.prov)
		}
		r.all, r.summed = unionAll(ps), true
	}
	return r.all
}

// renamed applies an alias column list: the first names replace the
// relation's, positionally (a table's columns in attnum order).
func (r *relation) renamed(name string, colnames []*pg_query.Node) *relation {
	if r.opaque {
		o := opaqueRelation(name, r.all)
		o.rows = r.rows
		return o
	}
	if len(colnames) == 0 {
		return &relation{name: name, cols: r.cols, all: r.all, summed: r.summed, system: r.system, rows: r.rows}
	}
	cols := slices.Clone(r.cols)
	for i, n := range colnames {
		if i < len(cols) {
			cols[i].name, cols[i].vague = n.GetString_().GetSval(), false
		}
	}
	return &relation{name: name, cols: cols, all: r.all, summed: r.summed, system: r.system, rows: r.rows}
}

// column returns the prov of the columns a reference to name may mean
// (those of that name and the vague ones); ok is false when there is none.
func (r *relation) column(name string) (prov, bool) {
	p, exact, maybe := r.lookup(name)
	return p, exact || maybe
}

// lookup returns the prov of the columns a reference to name may mean:
// exact when a column has that name (the vague ones are added), maybe when
// only a vague column (or an opaque relation's unknown columns) may be it.
// An opaque relation may know the names of its first columns.
func (r *relation) lookup(name string) (p prov, exact, maybe bool) {
	if r.opaque {
		for _, c := range r.cols {
			if c.name == name {
				p, exact = p.union(c.prov), true
			}
		}
		if exact {
			return p, true, false
		}
		return r.all, false, true
	}
	for _, c := range r.cols {
		switch {
		case c.name == name:
			p, exact = p.union(c.prov), true
		case c.vague:
			p, maybe = p.union(c.prov), true
		}
	}
	return p, exact, maybe && !exact
}

func relationOf(name string, outs []outCol) *relation {
	cols := make([]column, 0, len(outs))
	for _, o := range outs {
		if o.width < 0 {
			return opaqueRelation(name, unionOf(outs))
		}
		cols = append(cols, column{name: o.name, prov: o.prov, vague: o.vague})
	}
	return newRelation(name, cols)
}

// level is the name scope of one query level.
type level struct {
	parent  *level
	named   []*relation // addressable by name, searched for unqualified columns
	from    []*relation // the FROM list's items, in order, for *
	ctes    *cteScope
	windows []*pg_query.Node // the WINDOW clause, for OVER w
	quals   []*pg_query.Node // join conditions and TABLESAMPLE arguments, what decides the rows (selectStmt)
	// rows is what decides how many rows the FROM items yield (their
	// relation.rows): what an aggregate or window function of the level,
	// or of a level nested in it, counts (see funcCall).
	rows prov
	// multiplies is what the set-returning functions of the select list
	// (and functions that are not built in, which may return sets) read:
	// they yield as many rows as their arguments decide.
	multiplies prov
	// windowProv is what the WINDOW clause reads, once resolved (every OVER w
	// of the level reads it).
	windowProv *prov
	birth      int // see resolver.born
}

// windowClause returns what the level's WINDOW clause reads, resolving it
// once.
func (rs *resolver) windowClause(lv *level) prov {
	if lv.windowProv == nil {
		p := rs.exprList(lv.windows, lv)
		lv.windowProv = &p
	}
	return *lv.windowProv
}

// cteScope holds the CTEs of one WITH clause.
type cteScope struct {
	parent *cteScope
	ctes   map[string]*cteBinding
	birth  int // see resolver.born
}

type cteBinding struct {
	rel     *relation // nil until resolved (a forward or self reference of WITH RECURSIVE sees an empty opaque relation)
	pending bool      // a non-recursive CTE being resolved: invisible to itself
	// recursing marks a CTE of WITH RECURSIVE while its query is resolved:
	// a reference then is its recursive reference, whose rows add nothing
	// to what the CTE's rows are made of (see recursiveCTE).
	recursing bool
}

// cteNamed returns the CTE a relation name means in scope s, or nil.
func (rs *resolver) cteNamed(s *cteScope, name string) *cteBinding {
	for ; s != nil; s = s.parent {
		if b, ok := s.ctes[name]; ok && !b.pending {
			rs.saw(s.birth)
			return b
		}
	}
	return nil
}

// relation returns the FROM item a name addresses from level lv (the
// innermost first), or nil.
func (rs *resolver) relation(lv *level, name string) *relation {
	for l := lv; l != nil; l = l.parent {
		rs.saw(l.birth)
		rs.charge(len(l.named))
		for _, r := range l.named {
			if r.name == name {
				return r
			}
		}
	}
	return nil
}

// born numbers a new query level or CTE scope, in the order they are made.
// While a WITH RECURSIVE is resolved, tracing keeps the lowest number of
// what its resolution read (saw): lower than the number its scope got, and
// it read something outside itself (an enclosing query, an enclosing CTE),
// whose resolution may change from one round of an enclosing WITH
// RECURSIVE to the next; else what it resolved to holds wherever it is
// resolved again (tracing.closed).
func (rs *resolver) born() int {
	w := rs.tracing()
	w.births++
	return w.births
}

// saw notes that tracing read a level or scope of number birth.
func (rs *resolver) saw(birth int) {
	if w := rs.tracing(); birth < w.seen {
		w.seen = birth
	}
}

// resolver traces a statement's result columns.
type resolver struct {
	cat   *catalog
	path  []string // schemas searched for unqualified relation names
	depth int      // view nesting
	work  *tracing // shared by the resolvers of one call (views too)
}

// tracing is one call's tracing state: the work done, and what lets the
// work stay linear in the size of the statement.
//
// The same node can be resolved more than once: each round of a WITH
// RECURSIVE fixpoint resolves the CTEs' queries again, and with them every
// WITH RECURSIVE nested in them. A nested one that read nothing outside
// itself is resolved once (closed); one that did starts from where its
// previous resolution ended (warm), so a round whose inputs did not change
// settles in one pass instead of doubling the work at every level (since
// what a round sees only grows, starting there still ends at a fixpoint:
// at worst wider, never narrower). The work is bounded all the same
// (maxTraceSteps) and stops when the call's context ends: the columns are
// then of unknown origin, or the call fails.
type tracing struct {
	steps      int
	stopped    string                                          // why tracing stopped; "" while it goes on
	warm       map[*pg_query.WithClause]map[string]*relation   // a WITH RECURSIVE's last fixpoint
	sublinks   map[*pg_query.Node]outCol                       // a scalar subquery's first column, for its name
	views      map[uint32]string                               // userCode of the views read, by OID
	merged     int                                             // origins unions compared or copied, and columns looked through (charge)
	unionRight map[*pg_query.SelectStmt]prov                   // what decides the rows of a UNION's right side (recursiveCTE)
	births     int                                             // levels and CTE scopes made (born)
	seen       int                                             // the lowest birth read in the WITH RECURSIVE being resolved
	closed     map[*pg_query.WithClause]map[string]*cteBinding // a WITH RECURSIVE that read nothing outside itself, resolved
}

const (
	// maxTraceSteps bounds the expressions and queries one call's tracing
	// visits (a statement of ordinary size visits a few hundred), each
	// mergedPerStep origins its unions compare or copy counting as one more:
	// a step's cost grows with the sets it unions, so the bound is one of
	// time, not only of the statement's size.
	maxTraceSteps = 200_000
	mergedPerStep = 32
	// traceCheckEvery is how many steps pass between checks of the call's
	// context.
	traceCheckEvery = 1024
)

// tick counts one step of tracing and reports whether tracing goes on.
func (rs *resolver) tick() bool {
	w := rs.tracing()
	if w.stopped != "" {
		return false
	}
	w.steps++
	switch {
	case w.steps+w.merged/mergedPerStep > maxTraceSteps:
		w.stopped = fmt.Sprintf("the statement is too complex to trace (more than %d steps)", maxTraceSteps)
	case w.steps%traceCheckEvery == 0 && rs.cat.ctx != nil && rs.cat.ctx.Err() != nil:
		w.stopped = "the call ended before its result columns were traced"
		if rs.cat.err == nil {
			rs.cat.err = rs.cat.ctx.Err()
		}
	}
	return w.stopped == ""
}

// union is p.union(q), charged to the call's tracing by its work.
func (rs *resolver) union(p, q prov) prov {
	u, work := p.unionWork(q)
	rs.tracing().merged += work
	return u
}

// charge counts work that is not a union (the columns a lookup goes
// through) toward the bound.
func (rs *resolver) charge(work int) { rs.tracing().merged += work }

func (rs *resolver) tracing() *tracing {
	if rs.work == nil {
		rs.work = &tracing{seen: math.MaxInt}
	}
	return rs.work
}

// stoppedProv is the prov of whatever is resolved after tracing stopped.
func (rs *resolver) stoppedProv() prov { return prov{unknown: rs.tracing().stopped} }

// statement returns the output columns of a parsed statement.
func (rs *resolver) statement(node *pg_query.Node) []outCol {
	if node == nil {
		return []outCol{{width: -1, prov: unknownProv("the statement could not be parsed")}}
	}
	switch node.Node.(type) {
	case *pg_query.Node_ExplainStmt:
		// EXPLAIN ANALYZE runs the statement and prints how many rows each
		// node of the plan yielded and removed: counts that values decide
		// (generate_series(1, ascii(email)) yields as many rows as the code
		// of a character), whatever the statement's columns.
		if explainAnalyze(node.GetExplainStmt()) {
			return []outCol{{width: -1, prov: unknownProv("EXPLAIN ANALYZE prints how many rows each step of the plan yielded and removed, counts the data can decide")}}
		}
		// The plan is text about the query, not its rows; but the planner
		// folds immutable functions of constants and prints the result,
		// and one that is not built in may have read a table to get it.
		if why := rs.userCode(node.GetExplainStmt().Query, 0); why != "" {
			return []outCol{{width: -1, prov: unknownProv("EXPLAIN prints what the planner computed, and the statement %s", why)}}
		}
		return []outCol{{width: -1}}
	case *pg_query.Node_VariableShowStmt:
		return []outCol{{width: -1}} // a setting
	case *pg_query.Node_SelectStmt, *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt:
		outs, _ := rs.query(node, nil, nil, columnsOnly)
		return outs
	}
	return []outCol{{width: -1, prov: unknownProv("the rows of a %s statement are not traced to their columns", kindOf(statementTypeName(node), nil))}}
}

func statementTypeName(node *pg_query.Node) string {
	if m := nodeMessage(node); m != nil {
		return string(m.Descriptor().Name())
	}
	return ""
}

// reach says what resolving a query reports beside what its columns carry.
type reach int

const (
	// columnsOnly: the statement itself, whose rows the agent counts anyway.
	columnsOnly reach = iota
	// withRows: a FROM item or CTE, whose rows a count(*) or row_number()
	// of the query it is in counts: also what decides how many rows it
	// yields (relation.rows).
	withRows
	// withAll: a subquery in an expression, whose result is a value: every
	// output column also carries what the query reads anywhere.
	withAll
)

// query resolves a SELECT or a data-modifying statement: its output
// columns and, unless columnsOnly, what decides how many rows it yields
// beside its tables' contents (see selectStmt). outer is the enclosing
// level for correlated references.
func (rs *resolver) query(node *pg_query.Node, outer *level, ctes *cteScope, mode reach) ([]outCol, prov) {
	if !rs.tick() {
		return []outCol{{width: -1, prov: rs.stoppedProv()}}, rs.stoppedProv()
	}
	switch {
	case node.GetSelectStmt() != nil:
		return rs.selectStmt(node.GetSelectStmt(), outer, ctes, mode)
	case node.GetInsertStmt() != nil:
		return rs.insertStmt(node.GetInsertStmt(), outer, ctes)
	case node.GetUpdateStmt() != nil:
		return rs.updateStmt(node.GetUpdateStmt(), outer, ctes)
	case node.GetDeleteStmt() != nil:
		return rs.deleteStmt(node.GetDeleteStmt(), outer, ctes)
	}
	p := unknownProv("a %s statement is not traced", kindOf(statementTypeName(node), nil))
	return []outCol{{width: -1, prov: p}}, p
}

// selectStmt resolves a SELECT, VALUES or set operation.
//
// Unless columnsOnly, it also returns what decides how many rows the query
// yields beside its tables' contents: what its FROM items' rows depend on
// (a function's arguments: generate_series(1, ascii(email)) yields that
// many; a subquery's own clauses), WHERE, GROUP BY, HAVING, DISTINCT (ON),
// LIMIT, OFFSET, join conditions, TABLESAMPLE arguments, set-returning
// functions in the select list (and functions that are not built in, which
// may be), and the values a set operation other than UNION ALL compares.
//
// With withAll (a subquery in an expression), every output column carries
// that, and ORDER BY and WINDOW too: a value there can decide what the
// subquery yields (ARRAY(SELECT ... LIMIT n) has n elements,
// (SELECT count(*) FROM generate_series(1, n)) is n).
func (rs *resolver) selectStmt(s *pg_query.SelectStmt, outer *level, ctes *cteScope, mode reach) ([]outCol, prov) {
	if s.WithClause != nil {
		ctes = rs.with(s.WithClause, outer, ctes)
	}
	lv := &level{parent: outer, ctes: ctes, windows: s.WindowClause, birth: rs.born()}
	var out []outCol
	var rows prov
	switch {
	case s.Op != pg_query.SetOperation_SETOP_NONE && s.Op != pg_query.SetOperation_SET_OPERATION_UNDEFINED:
		l, lrows := rs.selectStmt(s.Larg, outer, ctes, mode)
		r, rrows := rs.selectStmt(s.Rarg, outer, ctes, mode)
		out = zipUnion(l, r)
		rows = rs.union(lrows, rrows)
		if s.Op == pg_query.SetOperation_SETOP_UNION && mode != columnsOnly {
			w := rs.tracing()
			if w.unionRight == nil {
				w.unionRight = map[*pg_query.SelectStmt]prov{}
			}
			w.unionRight[s] = rrows
		}
		if mode != columnsOnly && (s.Op != pg_query.SetOperation_SETOP_UNION || !s.All) {
			rows = rs.union(rows, unionOf(out)) // duplicates removed, or rows matched: by value
		}
	case len(s.ValuesLists) > 0:
		for _, row := range s.ValuesLists {
			for i, e := range row.GetList().GetItems() {
				p := rs.expr(e, lv)
				if i < len(out) {
					out[i].prov = rs.union(out[i].prov, p)
				} else {
					out = append(out, outCol{name: fmt.Sprintf("column%d", i+1), prov: p, width: 1})
				}
			}
		}
	default:
		for _, item := range s.FromClause {
			r := rs.fromItem(item, lv, mode)
			lv.from = append(lv.from, r)
			lv.rows = rs.union(lv.rows, r.rows)
		}
		out = rs.targetList(s.TargetList, lv)
		rows = rs.union(lv.rows, lv.multiplies)
	}
	if mode == columnsOnly {
		return out, prov{}
	}
	// GROUP BY, ORDER BY and DISTINCT ON may name output columns too, or
	// give their positions.
	lv.named = append(lv.named, relationOf("", out))
	for _, n := range []*pg_query.Node{s.WhereClause, s.HavingClause, s.LimitCount, s.LimitOffset} {
		rows = rs.union(rows, rs.expr(n, lv))
	}
	rows = rs.union(rows, rs.exprList(lv.quals, lv))
	rows = rs.union(rows, rs.clauses(s.GroupClause, lv, out))
	if len(s.DistinctClause) == 1 && s.DistinctClause[0].GetNode() == nil {
		rows = rs.union(rows, unionOf(out)) // DISTINCT: every column's values decide
	} else {
		rows = rs.union(rows, rs.clauses(s.DistinctClause, lv, out))
	}
	if mode == withAll {
		extra := rs.union(rows, rs.clauses(s.SortClause, lv, out))
		extra = rs.union(extra, rs.windowClause(lv))
		for i := range out {
			out[i].prov = rs.union(out[i].prov, extra)
		}
	}
	return out, rows
}

// clauses is what GROUP BY, DISTINCT ON or ORDER BY items read: an
// integer constant is the select-list entry at that position (all of them
// when the positions are not known), a grouping set what its items read.
func (rs *resolver) clauses(list []*pg_query.Node, lv *level, out []outCol) prov {
	var p prov
	for _, n := range list {
		if sb := n.GetSortBy(); sb != nil {
			p = rs.union(p, rs.clauses([]*pg_query.Node{sb.Node}, lv, out))
			continue
		}
		if gs := n.GetGroupingSet(); gs != nil {
			p = rs.union(p, rs.clauses(gs.Content, lv, out))
			continue
		}
		if c := n.GetAConst(); c != nil && c.GetIval() != nil {
			k := int(c.GetIval().GetIval())
			known := true
			for _, o := range out {
				known = known && o.width == 1
			}
			switch {
			case known && k >= 1 && k <= len(out):
				p = rs.union(p, out[k-1].prov)
			case !known:
				p = rs.union(p, unionOf(out))
			}
			continue
		}
		p = rs.union(p, rs.expr(n, lv))
	}
	return p
}

// zipUnion pairs the columns of a set operation's two sides (named by the
// left one, as PostgreSQL names them); when they cannot be lined up,
// everything is one run carrying the union.
func zipUnion(l, r []outCol) []outCol {
	aligned := len(l) == len(r)
	for i := 0; aligned && i < len(l); i++ {
		aligned = l[i].width == 1 && r[i].width == 1
	}
	if aligned {
		out := make([]outCol, len(l))
		for i := range l {
			out[i] = outCol{name: l[i].name, prov: l[i].prov.union(r[i].prov), width: 1, vague: l[i].vague}
		}
		return out
	}
	return []outCol{{width: -1, prov: unionOf(append(slices.Clone(l), r...))}}
}

// with resolves a WITH clause into a scope of CTEs.
//
// WITH RECURSIVE is resolved to a fixpoint: references to a CTE not yet
// resolved see an empty run, then every CTE is resolved again, each new
// resolution joined with the last, until nothing grows. A WITH RECURSIVE
// resolved before in this call (nested in the query of another one, which
// each round of that one resolves again) starts from its last fixpoint
// (see tracing).
func (rs *resolver) with(w *pg_query.WithClause, outer *level, ctes *cteScope) *cteScope {
	work := rs.tracing()
	if closed, ok := work.closed[w]; ok {
		return &cteScope{parent: ctes, ctes: closed, birth: rs.born()}
	}
	sc := &cteScope{parent: ctes, ctes: map[string]*cteBinding{}, birth: rs.born()}
	if !w.Recursive {
		for _, n := range w.Ctes {
			cte := n.GetCommonTableExpr()
			b := &cteBinding{pending: true}
			sc.ctes[cte.Ctename] = b
			b.rel = rs.cte(cte, outer, sc)
			b.pending = false
		}
		return sc
	}
	warm := work.warm[w]
	for _, n := range w.Ctes {
		name := n.GetCommonTableExpr().Ctename
		sc.ctes[name] = &cteBinding{rel: warm[name]}
	}
	seenBefore := work.seen
	work.seen = math.MaxInt
	defer func() {
		seen := work.seen
		work.seen = min(seenBefore, seen)
		if seen >= sc.birth && work.stopped == "" {
			if work.closed == nil {
				work.closed = map[*pg_query.WithClause]map[string]*cteBinding{}
			}
			work.closed[w] = sc.ctes
			return
		}
		if work.warm == nil {
			work.warm = map[*pg_query.WithClause]map[string]*relation{}
		}
		last := make(map[string]*relation, len(sc.ctes))
		for name, b := range sc.ctes {
			last[name] = b.rel
		}
		work.warm[w] = last
	}()
	for round := 0; ; round++ {
		grew := false
		for _, n := range w.Ctes {
			cte := n.GetCommonTableExpr()
			b := sc.ctes[cte.Ctename]
			b.recursing = true
			rel := joinRelations(b.rel, rs.recursiveCTE(cte, outer, sc))
			b.recursing = false
			if b.rel == nil || !sameShape(b.rel, rel) {
				grew = true
			}
			b.rel = rel
		}
		if !grew || work.stopped != "" {
			return sc
		}
		if round == maxRecursiveRounds {
			for _, b := range sc.ctes {
				b.rel = opaqueRelation(b.rel.name, unknownProv("WITH RECURSIVE did not settle in %d rounds", maxRecursiveRounds))
			}
			return sc
		}
	}
}

// cte resolves one CTE's query into the relation its references see: its
// columns renamed by its column list, and the columns its SEARCH and CYCLE
// clauses add (derived from the columns they name).
func (rs *resolver) cte(cte *pg_query.CommonTableExpr, outer *level, sc *cteScope) *relation {
	outs, rows := rs.query(cte.Ctequery, outer, sc, withRows)
	rel := relationOf(cte.Ctename, outs).renamed(cte.Ctename, cte.Aliascolnames)
	rel.rows = rows
	search, cycle := cte.SearchClause, cte.CycleClause
	if search == nil && cycle == nil {
		return rel
	}
	named := func(list []*pg_query.Node) prov {
		var p prov
		for _, n := range list {
			cp, _ := rel.column(n.GetString_().GetSval())
			p = rs.union(p, cp)
		}
		return p
	}
	if rel.opaque {
		return rel
	}
	cols := slices.Clone(rel.cols)
	if search != nil {
		cols = append(cols, column{name: search.SearchSeqColumn, prov: named(search.SearchColList)})
	}
	if cycle != nil {
		lv := &level{parent: outer, ctes: sc, birth: rs.born()}
		p := rs.union(rs.union(named(cycle.CycleColList), rs.expr(cycle.CycleMarkValue, lv)), rs.expr(cycle.CycleMarkDefault, lv))
		cols = append(cols, column{name: cycle.CycleMarkColumn, prov: p}, column{name: cycle.CyclePathColumn, prov: p})
	}
	return newRelation(rel.name, cols)
}

// recursiveCTE resolves a CTE of WITH RECURSIVE. One of the form
// "initial UNION [ALL] recursive" computes each round's rows from the
// last's: how many rounds run, which the recursive term's rows decide,
// shapes its values too (WHERE n < ascii(email) makes n count to that
// code), so every column carries what decides them.
func (rs *resolver) recursiveCTE(cte *pg_query.CommonTableExpr, outer *level, sc *cteScope) *relation {
	rel := rs.cte(cte, outer, sc)
	s := cte.Ctequery.GetSelectStmt()
	if s == nil || s.Op != pg_query.SetOperation_SETOP_UNION {
		return rel
	}
	rounds, ok := rs.tracing().unionRight[s]
	if !ok {
		rounds = rel.rows // not resolved as a union: all it reads
	}
	if len(rounds.from) == 0 && rounds.unknown == "" {
		return rel
	}
	if rel.opaque {
		o := opaqueRelation(rel.name, rs.union(rel.all, rounds))
		o.rows = rel.rows
		return o
	}
	cols := slices.Clone(rel.cols)
	for i := range cols {
		cols[i].prov = rs.union(cols[i].prov, rounds)
	}
	r := newRelation(rel.name, cols)
	r.rows = rel.rows
	return r
}

// joinRelations is what two resolutions of one CTE together may carry:
// column by column when both have the same columns, else one opaque run.
func joinRelations(old, rel *relation) *relation {
	if old == nil {
		return rel
	}
	if old.opaque || rel.opaque || len(old.cols) != len(rel.cols) {
		if old.opaque && len(old.whole().from) == 0 && old.whole().unknown == "" && len(old.rows.from) == 0 && old.rows.unknown == "" {
			return rel // the empty run of a first round
		}
		o := opaqueRelation(rel.name, old.whole().union(rel.whole()))
		o.rows = old.rows.union(rel.rows)
		return o
	}
	cols := slices.Clone(rel.cols)
	for i := range cols {
		cols[i].prov = old.cols[i].prov.union(cols[i].prov)
		cols[i].vague = cols[i].vague || old.cols[i].vague
	}
	r := newRelation(rel.name, cols)
	r.rows = old.rows.union(rel.rows)
	return r
}

// sameShape reports whether two resolutions of a CTE carry the same
// provenance (unions only grow, so sizes tell).
func sameShape(a, b *relation) bool {
	if a.opaque != b.opaque || len(a.cols) != len(b.cols) || len(a.whole().from) != len(b.whole().from) || a.whole().unknown != b.whole().unknown ||
		len(a.rows.from) != len(b.rows.from) || a.rows.unknown != b.rows.unknown {
		return false
	}
	for i := range a.cols {
		if len(a.cols[i].prov.from) != len(b.cols[i].prov.from) || a.cols[i].prov.unknown != b.cols[i].prov.unknown {
			return false
		}
	}
	return true
}

// targetList resolves a select list (or RETURNING list), expanding stars.
func (rs *resolver) targetList(list []*pg_query.Node, lv *level) []outCol {
	out := make([]outCol, 0, len(list))
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			out = append(out, outCol{width: -1, prov: unknownProv("a target list entry is not traced")})
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil && isStar(cr.Fields) {
			out = append(out, rs.star(cr.Fields, lv)...)
			continue
		}
		if ind := rt.Val.GetAIndirection(); ind != nil && len(ind.Indirection) > 0 && ind.Indirection[len(ind.Indirection)-1].GetAStar() != nil {
			out = append(out, outCol{width: -1, prov: rs.expr(rt.Val, lv)}) // (x).*: as many columns as x has fields
			continue
		}
		p := rs.expr(rt.Val, lv) // first: naming a scalar subquery reads what resolving it found
		name, vague := rt.Name, false
		if name == "" {
			name, vague = rs.colname(rt.Val)
		}
		out = append(out, outCol{name: name, prov: p, width: 1, vague: vague})
	}
	return out
}

func isStar(fields []*pg_query.Node) bool {
	return len(fields) > 0 && fields[len(fields)-1].GetAStar() != nil
}

// star expands * (every FROM item) or rel.* in a target list.
func (rs *resolver) star(fields []*pg_query.Node, lv *level) []outCol {
	rels := lv.from
	if len(fields) > 1 {
		name := fields[len(fields)-2].GetString_().GetSval()
		r := rs.relation(lv, name)
		if r == nil {
			return []outCol{{width: -1, prov: unknownProv("relation %s is not in scope", name)}}
		}
		rels = []*relation{r}
	}
	var out []outCol
	for _, r := range rels {
		if r.opaque {
			out = append(out, outCol{width: -1, prov: r.whole()})
			continue
		}
		for _, c := range r.cols {
			out = append(out, outCol{name: c.name, prov: c.prov, width: 1, vague: c.vague})
		}
	}
	return out
}

// fromItem resolves one FROM item, adding what it makes addressable to lv.
func (rs *resolver) fromItem(item *pg_query.Node, lv *level, mode reach) *relation {
	if mode != withAll {
		mode = withRows
	}
	switch n := item.Node.(type) {
	case *pg_query.Node_RangeVar:
		r := rs.rangeVar(n.RangeVar, lv.ctes)
		lv.named = append(lv.named, r)
		return r
	case *pg_query.Node_RangeSubselect:
		sub := n.RangeSubselect
		outer := lv.parent // a plain subquery sees the enclosing query, not its siblings
		if sub.Lateral {
			outer = lv
		}
		name := ""
		var colnames []*pg_query.Node
		if sub.Alias != nil {
			name, colnames = sub.Alias.Aliasname, sub.Alias.Colnames
		}
		outs, rows := rs.query(sub.Subquery, outer, lv.ctes, mode)
		r := relationOf(name, outs).renamed(name, colnames)
		r.rows = rows
		lv.named = append(lv.named, r)
		return r
	case *pg_query.Node_RangeFunction:
		r := rs.rangeFunction(n.RangeFunction, lv)
		lv.named = append(lv.named, r)
		return r
	case *pg_query.Node_RangeTableFunc:
		r := rs.rangeTableFunc(n.RangeTableFunc, lv)
		lv.named = append(lv.named, r)
		return r
	case *pg_query.Node_RangeTableSample:
		// The sampling arguments choose rows, like a WHERE clause.
		ts := n.RangeTableSample
		r := rs.fromItem(ts.Relation, lv, mode) // a new relation: its rows can be set
		r.rows = rs.union(rs.union(r.rows, rs.exprList(ts.Args, lv)), rs.expr(ts.Repeatable, lv))
		return r
	case *pg_query.Node_JoinExpr:
		return rs.join(n.JoinExpr, lv, mode)
	}
	r := opaqueRelation("", unknownProv("a %s in FROM is not traced", statementTypeName(item)))
	r.rows = r.all
	lv.named = append(lv.named, r)
	return r
}

// rangeVar resolves a table, view or CTE reference.
func (rs *resolver) rangeVar(rv *pg_query.RangeVar, ctes *cteScope) *relation {
	name := rv.Relname
	var colnames []*pg_query.Node
	if rv.Alias != nil {
		name, colnames = rv.Alias.Aliasname, rv.Alias.Colnames
	}
	if rv.Schemaname == "" {
		if b := rs.cteNamed(ctes, rv.Relname); b != nil {
			if b.rel == nil { // WITH RECURSIVE, first round
				return opaqueRelation(name, prov{})
			}
			r := b.rel.renamed(name, colnames)
			if b.recursing {
				r.rows = prov{}
			}
			return r
		}
	}
	m, why := rs.cat.lookup(rv.Schemaname, rv.Relname, rs.path)
	if m == nil {
		r := opaqueRelation(name, prov{unknown: why})
		r.rows = r.all
		return r
	}
	_, cols := rs.resolveRel(m)
	r := newRelation(name, cols).renamed(name, colnames)
	r.system = hasSystemColumns(m.kind)
	return r
}

// hasSystemColumns reports whether a relation of this pg_class.relkind has
// the system columns: a table, partitioned table, materialized view,
// foreign table or TOAST table (a view, a sequence or a composite type
// is not taken for one).
func hasSystemColumns(kind byte) bool {
	return strings.IndexByte("rpmft", kind) >= 0
}

// systemColumn reports whether name is a system column of a table (ctid,
// xmin, xmax, cmin, cmax, tableoid): the tuple's address, the transactions
// and commands that wrote and deleted it, the table's OID. None carries a
// column's value. A table cannot have a user column of those names.
func systemColumn(name string) bool {
	switch name {
	case "ctid", "xmin", "xmax", "cmin", "cmax", "tableoid":
		return true
	}
	return false
}

// columnProvs returns the prov of each of m's columns in attnum order:
// itself for a table's column, the resolved definition for a view's.
func (rs *resolver) columnProvs(m *relMeta) []prov {
	provs, _ := rs.resolveRel(m)
	return provs
}

// resolveRel returns the prov of each of m's columns in attnum order, and
// the columns as a FROM item sees them; both are cached on m (they are
// never changed once built).
func (rs *resolver) resolveRel(m *relMeta) ([]prov, []column) {
	if p, c := rs.cat.resolved(m); p != nil {
		return p, c
	}
	provs := make([]prov, len(m.order))
	switch {
	case m.isView() && rs.depth >= maxViewDepth:
		for i := range provs {
			provs[i] = unknownProv("views nested more than %d deep (%s)", maxViewDepth, m.qname)
		}
	case m.isView() && m.view == nil:
		for i := range provs {
			provs[i] = unknownProv("the definition of view %s could not be read", m.qname)
		}
	case m.isView():
		sub := &resolver{cat: rs.cat, path: nil, depth: rs.depth + 1, work: rs.tracing()}
		for i, p := range align(sub.statement(m.view), len(m.order)) {
			provs[i] = p
		}
	default:
		for i, att := range m.order {
			provs[i] = baseProv(m, att)
		}
	}
	cols := make([]column, len(m.order))
	for i, att := range m.order {
		cols[i] = column{name: m.cols[att], prov: provs[i]}
	}
	if rs.cat.err == nil && rs.tracing().stopped == "" { // resolved while the catalog could not be read, or cut short: not for later calls
		rs.cat.setResolved(m, provs, cols)
	}
	return provs, cols
}

// baseProv is the prov of a stored table's column: itself, and for a
// generated column what its expression reads.
func baseProv(m *relMeta, att int16) prov {
	if why := unknownValues(m, att); why != "" {
		return prov{unknown: why}
	}
	p := prov{from: []origin{{rel: m.oid, att: att}}}
	if g, ok := m.generated[att]; ok {
		p = p.union(g)
	}
	return p
}

// unknownValues says why a stored column's values may come from anywhere,
// or "": a sequence's state, which setval in the same call can set to any
// value, or statistics samples (sampledValues).
func unknownValues(m *relMeta, att int16) string {
	if m.kind == 'S' {
		return fmt.Sprintf("sequence %s holds whatever value setval set it to", m.qname)
	}
	return sampledValues(m, att)
}

// sampledValues says why a catalog column holds values sampled from other
// columns (statistics), or "".
func sampledValues(m *relMeta, att int16) string {
	if m.schema != "pg_catalog" {
		return ""
	}
	col := m.cols[att]
	switch {
	case m.relname == "pg_statistic" && strings.HasPrefix(col, "stavalues"),
		m.relname == "pg_statistic_ext_data" && (col == "stxdmcv" || col == "stxdexpr"):
		return fmt.Sprintf("statistics samples (pg_catalog.%s.%s) hold values of whatever column they describe", m.relname, col)
	}
	return ""
}

// rangeFunction resolves functions in FROM: every column carries what the
// functions' arguments read. Its columns are known only when every function
// has a column definition list (a function's result type is not looked
// up); else it is opaque.
func (rs *resolver) rangeFunction(rf *pg_query.RangeFunction, lv *level) *relation {
	var p prov
	var names []string
	known := true
	name := ""
	// state is set when the one function returns session state in some of
	// its columns only (stateColumns): the others carry args.
	var state, args prov
	var stateCols []stateColumn
	for _, f := range rf.Functions {
		items := f.GetList().GetItems()
		if len(items) == 0 {
			continue
		}
		// Functions in FROM see the items before them.
		if fc := items[0].GetFuncCall(); fc != nil && len(rf.Functions) == 1 && stateColumns[qualifiedName(fc.Funcname)] != nil && !isSystemUser(fc) {
			if state = rs.call(fc.Funcname); state.unknown != "" && rs.function(fc.Funcname).unknown == "" {
				stateCols = stateColumns[qualifiedName(fc.Funcname)]
				args = rs.funcArgs(fc, lv, false)
			}
			p = rs.union(rs.union(p, state), rs.funcArgs(fc, lv, false))
		} else {
			p = rs.union(p, rs.expr(items[0], lv))
		}
		if name == "" {
			if fc := items[0].GetFuncCall(); fc != nil && len(fc.Funcname) > 0 {
				name = fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval()
			}
		}
		defs := rf.Coldeflist
		if len(items) > 1 && len(items[1].GetList().GetItems()) > 0 {
			defs = items[1].GetList().GetItems()
		} else if len(rf.Functions) > 1 {
			defs = nil
		}
		if len(defs) == 0 {
			known = false
		}
		for _, d := range defs {
			names = append(names, d.GetColumnDef().GetColname())
		}
	}
	if rf.Ordinality {
		names = append(names, "ordinality")
	}
	var colnames []*pg_query.Node
	if rf.Alias != nil {
		name, colnames = rf.Alias.Aliasname, rf.Alias.Colnames
	}
	colProv := func(i int) prov {
		if stateCols != nil && !slices.ContainsFunc(stateCols, func(c stateColumn) bool { return c.position == i }) {
			return args
		}
		return p
	}
	if !known {
		// How many columns it returns is not known, but the alias names
		// the first ones (as view definitions do).
		r := opaqueRelation(name, p)
		for i, n := range colnames {
			r.cols = append(r.cols, column{name: n.GetString_().GetSval(), prov: colProv(i)})
		}
		r.rows = p
		return r
	}
	cols := make([]column, len(names))
	for i := range cols {
		cols[i] = column{name: names[i], prov: colProv(i)}
	}
	r := newRelation(name, cols).renamed(name, colnames)
	r.rows = p // how many rows a function yields is its arguments' doing
	return r
}

// rangeTableFunc resolves XMLTABLE: every column carries what any of its
// expressions read (the document, the row and column paths, the defaults,
// the namespaces).
func (rs *resolver) rangeTableFunc(tf *pg_query.RangeTableFunc, lv *level) *relation {
	p := rs.union(rs.union(rs.expr(tf.Docexpr, lv), rs.expr(tf.Rowexpr, lv)), rs.exprList(tf.Namespaces, lv))
	rows := p // one row per node the row path finds in the document
	cols := make([]column, 0, len(tf.Columns))
	for _, c := range tf.Columns {
		tc := c.GetRangeTableFuncCol()
		if tc == nil {
			r := opaqueRelation("", unknownProv("an XMLTABLE column is not traced"))
			r.rows = r.all
			return r
		}
		p = rs.union(rs.union(p, rs.expr(tc.Colexpr, lv)), rs.expr(tc.Coldefexpr, lv))
		cols = append(cols, column{name: tc.Colname})
	}
	for i := range cols {
		cols[i].prov = p
	}
	name := "xmltable"
	var colnames []*pg_query.Node
	if tf.Alias != nil {
		name, colnames = tf.Alias.Aliasname, tf.Alias.Colnames
	}
	r := newRelation(name, cols).renamed(name, colnames)
	r.rows = rows
	return r
}

// join resolves a JOIN: USING and NATURAL columns are merged (the union of
// both sides) and come first, as PostgreSQL expands them; an aliased join
// hides its sides.
func (rs *resolver) join(j *pg_query.JoinExpr, lv *level, mode reach) *relation {
	mark := len(lv.named)
	l := rs.fromItem(j.Larg, lv, mode)
	r := rs.fromItem(j.Rarg, lv, mode)
	if j.Quals != nil {
		lv.quals = append(lv.quals, j.Quals)
	}
	name := ""
	var colnames []*pg_query.Node
	if j.Alias != nil {
		name, colnames = j.Alias.Aliasname, j.Alias.Colnames
	}
	var rel *relation
	if l.opaque || r.opaque {
		rel = opaqueRelation(name, rs.union(l.whole(), r.whole()))
	} else {
		var using []string
		for _, u := range j.UsingClause {
			using = append(using, u.GetString_().GetSval())
		}
		if j.IsNatural {
			rs.charge(len(l.cols) * len(r.cols))
			for _, lc := range l.cols {
				if _, ok := r.column(lc.name); ok && !slices.Contains(using, lc.name) {
					using = append(using, lc.name)
				}
			}
		}
		var cols, merged []column
		rs.charge(len(using) * (len(l.cols) + len(r.cols) + len(using)))
		for _, u := range using {
			lp, _ := l.column(u)
			rp, _ := r.column(u)
			merged = append(merged, column{name: u, prov: rs.union(lp, rp)})
		}
		cols = append(cols, merged...)
		for _, side := range []*relation{l, r} {
			for _, c := range side.cols {
				if !slices.Contains(using, c.name) {
					cols = append(cols, c)
				}
			}
		}
		rel = newRelation(name, cols)
		if j.JoinUsingAlias != nil {
			lv.named = append(lv.named, newRelation(j.JoinUsingAlias.Aliasname, merged))
		}
	}
	rel.rows = rs.union(l.rows, r.rows) // its join condition is the level's (quals)
	if j.Alias != nil {
		lv.named = append(lv.named[:mark], rel.renamed(name, colnames))
		return lv.named[len(lv.named)-1]
	}
	return rel
}

// insertStmt resolves INSERT ... RETURNING: a returned column carries what
// the row held before (ON CONFLICT), what was inserted into it and what ON
// CONFLICT DO UPDATE set. How many rows it returns is decided by the
// source's rows and, under ON CONFLICT, by the inserted values and the
// conflict's WHERE.
func (rs *resolver) insertStmt(ins *pg_query.InsertStmt, outer *level, ctes *cteScope) ([]outCol, prov) {
	if ins.WithClause != nil {
		ctes = rs.with(ins.WithClause, outer, ctes)
	}
	if why := rs.rewritten(ins.Relation); why != "" {
		return unknownWrite(why)
	}
	target := rs.rangeVar(ins.Relation, nil)
	name := ins.Relation.Relname
	if ins.Relation.Alias != nil {
		name = ins.Relation.Alias.Aliasname
	}
	if target.opaque {
		return []outCol{{width: -1, prov: target.whole()}}, target.whole()
	}
	var src []outCol
	var rows prov
	if ins.SelectStmt != nil {
		src, rows = rs.query(ins.SelectStmt, outer, ctes, withRows)
	}
	var names []string
	for _, c := range ins.Cols {
		names = append(names, c.GetResTarget().GetName())
	}
	if len(ins.Cols) == 0 {
		for _, c := range target.cols {
			names = append(names, c.name)
		}
	}
	// What each named column receives: positionally, or, when the source's
	// width is not known, everything it yields.
	inserted := make([]prov, len(names))
	runs := false
	for _, o := range src {
		runs = runs || o.width < 0
	}
	if runs || len(src) > len(names) {
		all := unionOf(src)
		for i := range inserted {
			inserted[i] = all
		}
	} else {
		for i, o := range src {
			inserted[i] = o.prov
		}
	}
	cols := slices.Clone(target.cols)
	excluded := slices.Clone(target.cols)
	for i := range cols {
		for k, n := range names {
			if n == cols[i].name && k < len(inserted) {
				cols[i].prov = rs.union(cols[i].prov, inserted[k])
				excluded[i].prov = inserted[k]
			}
		}
	}
	if oc := ins.OnConflictClause; oc != nil {
		lv := &level{parent: outer, ctes: ctes, birth: rs.born()}
		lv.named = []*relation{newRelation(name, target.cols), newRelation("excluded", excluded)}
		rs.assign(cols, oc.TargetList, lv)
		rows = rs.union(rs.union(rows, unionOf(src)), rs.expr(oc.WhereClause, lv))
	}
	rel := newRelation(name, cols)
	lv := &level{parent: outer, ctes: ctes, named: []*relation{rel}, from: []*relation{rel}, birth: rs.born()}
	return rs.targetList(ins.ReturningList, lv), rows
}

// unknownWrite is what a write returns when its rows cannot be traced.
func unknownWrite(why string) ([]outCol, prov) {
	p := unknownProv("%s", why)
	return []outCol{{width: -1, prov: p}}, p
}

// updateStmt resolves UPDATE ... RETURNING: an assigned column carries its
// old value and its new one. How many rows it returns is decided by its
// WHERE and its FROM items.
func (rs *resolver) updateStmt(up *pg_query.UpdateStmt, outer *level, ctes *cteScope) ([]outCol, prov) {
	if up.WithClause != nil {
		ctes = rs.with(up.WithClause, outer, ctes)
	}
	if why := rs.rewritten(up.Relation); why != "" {
		return unknownWrite(why)
	}
	lv := &level{parent: outer, ctes: ctes, birth: rs.born()}
	target := rs.rangeVar(up.Relation, nil)
	lv.named = append(lv.named, target)
	lv.from = append(lv.from, target)
	for _, item := range up.FromClause {
		lv.from = append(lv.from, rs.fromItem(item, lv, withRows))
	}
	if target.opaque {
		return []outCol{{width: -1, prov: target.whole()}}, target.whole()
	}
	rows := rs.writeRows(lv, up.WhereClause)
	cols := slices.Clone(target.cols)
	rs.assign(cols, up.TargetList, lv)
	rel := newRelation(target.name, cols)
	lv.named[0], lv.from[0] = rel, rel
	return rs.targetList(up.ReturningList, lv), rows
}

// writeRows is what decides which rows an UPDATE or DELETE writes and
// returns: its FROM (USING) items' rows, their join conditions, its WHERE.
func (rs *resolver) writeRows(lv *level, where *pg_query.Node) prov {
	var rows prov
	for _, r := range lv.from {
		rows = rs.union(rows, r.rows)
	}
	return rs.union(rs.union(rows, rs.exprList(lv.quals, lv)), rs.expr(where, lv))
}

// assign adds to cols what a SET list assigns to them.
func (rs *resolver) assign(cols []column, set []*pg_query.Node, lv *level) {
	for _, n := range set {
		rt := n.GetResTarget()
		if rt == nil {
			continue
		}
		p := rs.expr(rt.Val, lv) // MultiAssignRef: the whole source, for each column
		p = rs.union(p, rs.exprList(rt.Indirection, lv))
		for i := range cols {
			if cols[i].name == rt.Name {
				cols[i].prov = rs.union(cols[i].prov, p)
			}
		}
	}
}

func (rs *resolver) deleteStmt(del *pg_query.DeleteStmt, outer *level, ctes *cteScope) ([]outCol, prov) {
	if del.WithClause != nil {
		ctes = rs.with(del.WithClause, outer, ctes)
	}
	if why := rs.rewritten(del.Relation); why != "" {
		return unknownWrite(why)
	}
	lv := &level{parent: outer, ctes: ctes, birth: rs.born()}
	target := rs.rangeVar(del.Relation, nil)
	lv.named = append(lv.named, target)
	lv.from = append(lv.from, target)
	for _, item := range del.UsingClause {
		lv.from = append(lv.from, rs.fromItem(item, lv, withRows))
	}
	return rs.targetList(del.ReturningList, lv), rs.writeRows(lv, del.WhereClause)
}

// rewritten says why a write to rv may return rows its statement does not
// show (a trigger or rule on it), or "".
func (rs *resolver) rewritten(rv *pg_query.RangeVar) string {
	m, _ := rs.cat.lookup(rv.Schemaname, rv.Relname, rs.path)
	if m == nil || m.rewrites == "" {
		return ""
	}
	return fmt.Sprintf("%s on %s, so what a write returns is not only what its statement shows", m.rewrites, m.qname)
}

// changedBefore says why an earlier statement of the call may have changed
// what this one's names and columns mean, or "": the admin connection that
// reads the catalog does not see the call's changes before it commits.
func (rs *resolver) changedBefore(earlier []*pg_query.Node) string {
	for i, node := range earlier {
		why := catalogChange(node)
		if why == "" {
			why = rs.userCode(node, 0)
		}
		if why != "" {
			return fmt.Sprintf("statement %d of the call %s, which the catalog Airlock reads does not show before the call commits", i+1, why)
		}
	}
	return ""
}

// forgetChangedCatalog drops the resource's cached catalog after a
// read-write call one of whose statements may have changed it (DDL, a
// function that is not built in): later calls read it afresh instead of
// trusting the old view definitions and names for up to the TTL.
func (r *Resource) forgetChangedCatalog(ctx context.Context, stmts []*pg_query.Node, role string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), forgetTimeout)
	defer cancel()
	cat := &catalog{r: r, ctx: ctx, now: time.Now(), role: role}
	rs := &resolver{cat: cat}
	rs.path = cat.searchPath()
	for _, node := range stmts {
		if catalogChange(node) != "" || rs.userCode(node, 0) != "" || cat.err != nil {
			r.meta.forget()
			return
		}
	}
}

// catalogChange says how a statement may change the schema or the
// search_path for the statements after it, or "" when it cannot. A
// function that is not built in may too (userCode).
func catalogChange(node *pg_query.Node) string {
	switch n := node.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		if n.SelectStmt.IntoClause != nil {
			return "creates a table (SELECT INTO)"
		}
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt, *pg_query.Node_VariableShowStmt:
	case *pg_query.Node_ExplainStmt:
		return catalogChange(n.ExplainStmt.Query) // as if ANALYZE ran it
	case *pg_query.Node_VariableSetStmt:
		if n.VariableSetStmt.Name == "search_path" || n.VariableSetStmt.Kind == pg_query.VariableSetKind_VAR_RESET_ALL {
			return "changes the search_path"
		}
		return ""
	default:
		if kind := kindOf(statementTypeName(node), nil); kind != "other" {
			return "runs " + article(kind) + " statement"
		}
		return "runs a statement that is no query (" + statementTypeName(node) + ")"
	}
	why := ""
	eachMessage(node.ProtoReflect(), func(m protoreflect.Message) bool {
		if fc, ok := m.Interface().(*pg_query.FuncCall); ok && len(fc.Funcname) > 0 &&
			fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval() == "set_config" {
			why = "calls set_config"
		}
		return why == ""
	})
	return why
}

func article(kind string) string {
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + strings.ToUpper(kind)
	}
	return "a " + strings.ToUpper(kind)
}

// userCode says which function or operator that is not built in (or runs
// SQL given as text) the statement calls, itself or through the views it
// reads, or "". A call in attribute notation counts ((x).f, and t.f where
// f may be a function on t's row type). Each view is read once per call.
func (rs *resolver) userCode(node *pg_query.Node, depth int) string {
	why := ""
	called := func(n *pg_query.Node) {
		if p := rs.function([]*pg_query.Node{n}); p.unknown != "" {
			why = "calls " + n.GetString_().GetSval()
		}
	}
	eachMessage(node.ProtoReflect(), func(m protoreflect.Message) bool {
		switch n := m.Interface().(type) {
		case *pg_query.FuncCall:
			if p := rs.function(n.Funcname); p.unknown != "" {
				why = "calls " + qualifiedName(n.Funcname)
			}
		case *pg_query.A_Indirection:
			for _, f := range n.Indirection {
				if f.GetString_() != nil && why == "" {
					called(f)
				}
			}
		case *pg_query.ColumnRef:
			if len(n.Fields) > 1 && n.Fields[len(n.Fields)-1].GetString_() != nil {
				called(n.Fields[len(n.Fields)-1])
			}
		case *pg_query.A_Expr:
			if p := rs.operator(n.Name); p.unknown != "" {
				why = "uses operator " + qualifiedName(n.Name)
			}
		case *pg_query.RangeVar:
			if depth >= maxViewDepth {
				why = fmt.Sprintf("reads views nested more than %d deep", maxViewDepth)
				break
			}
			if rel, _ := rs.cat.lookup(n.Schemaname, n.Relname, rs.path); rel != nil && rel.isView() && rel.view != nil {
				if w := rs.viewCode(rel, depth); w != "" {
					why = w + " (in view " + rel.qname + ")"
				}
			}
		}
		return why == ""
	})
	return why
}

// viewCode is userCode of a view's definition, read once per call.
func (rs *resolver) viewCode(rel *relMeta, depth int) string {
	w := rs.tracing()
	if why, ok := w.views[rel.oid]; ok {
		return why
	}
	if w.views == nil {
		w.views = map[uint32]string{}
	}
	w.views[rel.oid] = "" // a view cannot read itself; guards the recursion all the same
	sub := &resolver{cat: rs.cat, work: w}
	why := sub.userCode(rel.view, depth+1)
	w.views[rel.oid] = why
	return why
}

// eachMessage calls f on m and every message nested in it, parents first,
// until f returns false.
func eachMessage(m protoreflect.Message, f func(protoreflect.Message) bool) bool {
	if !f(m) {
		return false
	}
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; ok && i < l.Len(); i++ {
				ok = eachMessage(l.Get(i).Message(), f)
			}
		} else if !fd.IsMap() {
			ok = eachMessage(v.Message(), f)
		}
		return ok
	})
	return ok
}

// align lines outs up with n result columns: a run of unknown width takes
// what the others leave. When they cannot be lined up (two runs), every
// column carries the union of all; when the count is wrong, every column is
// unknown.
func align(outs []outCol, n int) []prov {
	res := make([]prov, n)
	known, runs := 0, 0
	for _, o := range outs {
		if o.width < 0 {
			runs++
		} else {
			known++
		}
	}
	switch {
	case runs == 0 && known == n, runs == 1 && known <= n:
		i := 0
		for _, o := range outs {
			w := o.width
			if w < 0 {
				w = n - known
			}
			for ; w > 0; w-- {
				res[i] = o.prov
				i++
			}
		}
	case runs > 1:
		all := unionOf(outs)
		for i := range res {
			res[i] = all
		}
	default:
		for i := range res {
			res[i] = unknownProv("the statement's %d result columns could not be lined up with its %d select-list entries", n, known)
		}
	}
	return res
}

// modifies reports whether a statement writes (at the top or in a WITH):
// then the row description's origins name the written columns, not what
// was written into them.
func modifies(node *pg_query.Node) bool {
	var with *pg_query.WithClause
	switch n := node.GetNode().(type) {
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
		return true
	case *pg_query.Node_SelectStmt:
		with = n.SelectStmt.WithClause
	}
	if with == nil {
		return false
	}
	for _, c := range with.Ctes {
		switch c.GetCommonTableExpr().GetCtequery().GetNode().(type) {
		case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
			return true
		}
	}
	return false
}

// expr returns what an expression reads: every column reference in it,
// the subqueries in it (all they read), and unknown for functions and
// operators that are not built in, run SQL given as text or return session
// state.
func (rs *resolver) expr(n *pg_query.Node, lv *level) prov {
	if n == nil || n.Node == nil {
		return prov{}
	}
	if !rs.tick() {
		return rs.stoppedProv()
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_AConst, *pg_query.Node_ParamRef, *pg_query.Node_String_, *pg_query.Node_Integer, *pg_query.Node_AStar:
		return prov{}
	case *pg_query.Node_ColumnRef:
		return rs.columnRef(x.ColumnRef.Fields, lv)
	case *pg_query.Node_AIndirection:
		return rs.indirection(x.AIndirection, lv)
	case *pg_query.Node_SubLink:
		sl := x.SubLink
		p := rs.union(rs.expr(sl.Testexpr, lv), rs.operator(sl.OperName))
		outs, _ := rs.query(sl.Subselect, lv, lv.ctes, withAll)
		for _, o := range outs {
			p = rs.union(p, o.prov)
		}
		if sl.SubLinkType == pg_query.SubLinkType_EXPR_SUBLINK {
			rs.noteSublink(sl.Subselect, outs)
		}
		return p
	case *pg_query.Node_FuncCall:
		return rs.funcCall(x.FuncCall, lv)
	case *pg_query.Node_AExpr:
		e := x.AExpr
		var p prov
		switch e.Kind {
		case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_OP_ALL,
			pg_query.A_Expr_Kind_AEXPR_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NULLIF,
			pg_query.A_Expr_Kind_AEXPR_IN, pg_query.A_Expr_Kind_AEXPR_LIKE, pg_query.A_Expr_Kind_AEXPR_ILIKE, pg_query.A_Expr_Kind_AEXPR_SIMILAR:
			p = rs.operator(e.Name)
		}
		return rs.union(rs.union(p, rs.expr(e.Lexpr, lv)), rs.expr(e.Rexpr, lv))
	case *pg_query.Node_SelectStmt:
		var p prov
		outs, _ := rs.query(n, lv, lv.ctes, withAll)
		for _, o := range outs {
			p = rs.union(p, o.prov)
		}
		return p
	case *pg_query.Node_List:
		return rs.exprList(x.List.Items, lv)
	}
	m := nodeMessage(n)
	if m == nil {
		return unknownProv("an expression is not traced")
	}
	if name := newerSyntaxFunction(n); name != "" {
		// SQL/JSON syntax PostgreSQL 15 does not have: it reads the same
		// text as a call of a function of that name, which may be a user's.
		return rs.union(rs.call([]*pg_query.Node{pg_query.MakeStrNode(name)}), rs.exprMessage(m, lv))
	}
	// Every other expression (CASE, COALESCE, casts, ROW, ARRAY[...],
	// IS NULL, XML constructors, ...) reads what its parts read.
	return rs.exprMessage(m, lv)
}

// funcCall resolves a function call: what the function adds (call), and
// what its arguments, aggregate ORDER BY and FILTER, and window (PARTITION
// BY, ORDER BY, frame offsets) read. count(x) is a count of x's non-null
// values, not a value derived from x (like count(*) ... WHERE x IS NOT
// NULL): it reads no column of x.
func (rs *resolver) funcCall(fc *pg_query.FuncCall, lv *level) prov {
	if isSystemUser(fc) {
		// PostgreSQL 15 reads system_user as a column name; it is a keyword
		// from 16 on, and in the parser here.
		if p, ok := rs.unqualified("system_user", lv, true); ok {
			return p
		}
		return unknownProv("system_user names a column on PostgreSQL 15, and none is in scope")
	}
	p := rs.call(fc.Funcname)
	p = rs.union(p, rs.funcArgs(fc, lv, p.unknown == "" && isCount(fc.Funcname)))
	switch {
	case p.unknown == "" && countsRows(fc):
		// An aggregate or window function counts the rows of its level:
		// as many as the FROM items yield (count(*) FROM
		// generate_series(1, ascii(email)) is that code). An aggregate of
		// an enclosing level's columns counts that level's: every
		// enclosing level's count.
		for l := lv; l != nil; l = l.parent {
			p = rs.union(p, l.rows)
		}
	case p.unknown != "" || setReturning(fc.Funcname):
		// In a select list, it multiplies the rows by what its
		// arguments decide (or, not built in, may).
		lv.multiplies = rs.union(lv.multiplies, p)
	}
	return p
}

// countsRows reports whether a call's value depends on how many rows there
// are: a built-in aggregate or window function, or any call with OVER.
func countsRows(fc *pg_query.FuncCall) bool {
	if fc.Over != nil || fc.AggStar {
		return true
	}
	f, ok := builtinFunctionOf(qualifiedName(fc.Funcname))
	return ok && strings.ContainsAny(f.kinds, "aw")
}

// funcArgs is what a call's arguments, aggregate ORDER BY and FILTER, and
// window read; for a count, the arguments' columns are left out.
func (rs *resolver) funcArgs(fc *pg_query.FuncCall, lv *level, count bool) prov {
	args := rs.union(rs.exprList(fc.Args, lv), rs.exprList(fc.AggOrder, lv))
	if count {
		args = prov{unknown: args.unknown}
	}
	p := rs.union(args, rs.expr(fc.AggFilter, lv))
	if w := fc.Over; w != nil {
		p = rs.union(p, rs.exprMessage(w.ProtoReflect(), lv))
		if w.Name != "" || w.Refname != "" {
			p = rs.union(p, rs.windowClause(lv))
		}
	}
	return p
}

// isSystemUser reports whether fc is the keyword SYSTEM_USER (PostgreSQL
// 16 and later; the parser here is PostgreSQL 17's).
func isSystemUser(fc *pg_query.FuncCall) bool {
	return fc.Funcformat == pg_query.CoercionForm_COERCE_SQL_SYNTAX && len(fc.Args) == 0 &&
		qualifiedName(fc.Funcname) == "pg_catalog.system_user"
}

// isCount reports whether a function name is the built-in aggregate count.
func isCount(names []*pg_query.Node) bool {
	switch len(names) {
	case 1:
		return names[0].GetString_().GetSval() == "count"
	case 2:
		return names[0].GetString_().GetSval() == "pg_catalog" && names[1].GetString_().GetSval() == "count"
	}
	return false
}

// newerSyntaxFunction names the function PostgreSQL 15 calls for SQL/JSON
// syntax of PostgreSQL 16 and later (json_scalar(x), json_array(...),
// merge_action(), ...), or "".
func newerSyntaxFunction(n *pg_query.Node) string {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_JsonParseExpr:
		return "json"
	case *pg_query.Node_JsonScalarExpr:
		return "json_scalar"
	case *pg_query.Node_JsonSerializeExpr:
		return "json_serialize"
	case *pg_query.Node_JsonObjectConstructor:
		return "json_object"
	case *pg_query.Node_JsonArrayConstructor, *pg_query.Node_JsonArrayQueryConstructor:
		return "json_array"
	case *pg_query.Node_JsonObjectAgg:
		return "json_objectagg"
	case *pg_query.Node_JsonArrayAgg:
		return "json_arrayagg"
	case *pg_query.Node_MergeSupportFunc:
		return "merge_action"
	case *pg_query.Node_JsonFuncExpr:
		switch x.JsonFuncExpr.Op {
		case pg_query.JsonExprOp_JSON_EXISTS_OP:
			return "json_exists"
		case pg_query.JsonExprOp_JSON_QUERY_OP:
			return "json_query"
		case pg_query.JsonExprOp_JSON_VALUE_OP:
			return "json_value"
		}
		return "json_table"
	}
	return ""
}

// noteSublink keeps the first column of a scalar subquery, whose name
// PostgreSQL gives the subquery (see figureColname).
func (rs *resolver) noteSublink(sub *pg_query.Node, outs []outCol) {
	w := rs.tracing()
	if w.sublinks == nil {
		w.sublinks = map[*pg_query.Node]outCol{}
	}
	first := outCol{vague: true}
	if len(outs) > 0 && outs[0].width == 1 {
		first = outs[0]
	}
	w.sublinks[sub] = first
}

// indirection resolves (x).f, (x)[i] and (x).*. PostgreSQL reads a field
// name as a field of x when x is of a composite type that has it, and else
// as a call f(x) of a function taking x (attribute notation:
// (4242).pg_advisory_lock is pg_advisory_lock(4242)). When x is a
// relation's whole row, the relation's columns tell which; otherwise the
// name is taken as both.
func (rs *resolver) indirection(ind *pg_query.A_Indirection, lv *level) prov {
	rel := rs.wholeRowOf(ind.Arg, lv)
	var p prov
	if rel != nil {
		p = rel.whole()
	} else {
		p = rs.expr(ind.Arg, lv)
	}
	for _, n := range ind.Indirection {
		switch {
		case n.GetString_() != nil:
			if rel != nil {
				if cp, exact, _ := rel.lookup(n.GetString_().GetSval()); exact {
					p = cp
				} else {
					p = rs.union(p, rs.call([]*pg_query.Node{n}))
				}
			} else {
				p = rs.union(p, rs.call([]*pg_query.Node{n}))
			}
		case n.GetAIndices() != nil:
			p = rs.union(rs.union(p, rs.expr(n.GetAIndices().Lidx, lv)), rs.expr(n.GetAIndices().Uidx, lv))
		}
		rel = nil
	}
	return p
}

// wholeRowOf returns the relation whose whole row x is (c, c.*), or nil.
func (rs *resolver) wholeRowOf(x *pg_query.Node, lv *level) *relation {
	cr := x.GetColumnRef()
	if cr == nil {
		return nil
	}
	switch {
	case len(cr.Fields) == 1 && cr.Fields[0].GetString_() != nil:
		name := cr.Fields[0].GetString_().GetSval()
		if _, isCol := rs.unqualified(name, lv, false); isCol {
			return nil
		}
		return rs.relation(lv, name)
	case len(cr.Fields) == 2 && cr.Fields[1].GetAStar() != nil:
		return rs.relation(lv, cr.Fields[0].GetString_().GetSval())
	}
	return nil
}

func (rs *resolver) exprList(list []*pg_query.Node, lv *level) prov {
	var p prov
	for _, n := range list {
		p = rs.union(p, rs.expr(n, lv))
	}
	return p
}

var nodeDescriptor = (&pg_query.Node{}).ProtoReflect().Descriptor()

// exprMessage unions the expressions nested in any parse-tree message.
func (rs *resolver) exprMessage(m protoreflect.Message, lv *level) prov {
	var p prov
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		one := func(mv protoreflect.Message) {
			if mv.Descriptor() == nodeDescriptor {
				p = rs.union(p, rs.expr(mv.Interface().(*pg_query.Node), lv))
			} else {
				p = rs.union(p, rs.exprMessage(mv, lv))
			}
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				one(l.Get(i).Message())
			}
		} else if !fd.IsMap() {
			one(v.Message())
		}
		return true
	})
	return p
}

// columnRef resolves a column reference as PostgreSQL does: a single name
// is a column (innermost query level first) or else a whole row; rel.col
// (schema.rel.col) is column col of relation rel or, when rel has no such
// column, a call col(rel.*) of a function on rel's row type; rel.* and *
// are whole rows.
func (rs *resolver) columnRef(fields []*pg_query.Node, lv *level) prov {
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		if f.GetAStar() != nil {
			break
		}
		names = append(names, f.GetString_().GetSval())
	}
	if isStar(fields) {
		if len(names) == 0 {
			var p prov
			for _, r := range lv.from {
				p = rs.union(p, r.whole())
			}
			return p
		}
		if r := rs.relation(lv, names[len(names)-1]); r != nil {
			return r.whole()
		}
		return unknownProv("relation %s is not in scope", strings.Join(names, "."))
	}
	switch len(names) {
	case 0:
		return unknownProv("a column reference is not traced")
	case 1:
		if p, ok := rs.unqualified(names[0], lv, true); ok {
			return p
		}
		return unknownProv("column %s is not in scope", names[0])
	}
	last := len(names) - 1
	if r := rs.relation(lv, names[last-1]); r != nil {
		rs.charge(len(r.cols))
		p, exact, maybe := r.lookup(names[last])
		switch {
		case exact:
			return p
		case r.system && !maybe && systemColumn(names[last]):
			return prov{} // PostgreSQL takes the system column before a function on the row
		}
		return rs.union(r.whole(), rs.call(fields[last:last+1]))
	}
	return unknownProv("relation %s is not in scope", strings.Join(names[:last], "."))
}

// unqualified resolves a single-name column reference. A relation whose
// columns are not all known (opaque, or with a vague name) may hold the
// name: its prov is added and the search goes on outward. With wholeRow, a
// name that is no column is a relation's whole row.
func (rs *resolver) unqualified(name string, lv *level, wholeRow bool) (prov, bool) {
	var acc prov
	matched := false
	for l := lv; l != nil; l = l.parent {
		if !rs.tick() { // one step per level searched: deep nesting costs its depth
			return rs.stoppedProv(), true
		}
		rs.saw(l.birth)
		var p prov
		found, system := false, false
		for _, r := range l.named {
			rs.charge(len(r.cols))
			cp, exact, maybe := r.lookup(name)
			switch {
			case exact:
				p, found = rs.union(p, cp), true
			case maybe:
				acc, matched = rs.union(acc, cp), true
			}
			system = system || r.system
		}
		if found {
			return rs.union(acc, p), true
		}
		if system && systemColumn(name) {
			// A table's system column, found before a column of an
			// enclosing level or a relation's whole row of that name.
			return acc, true
		}
	}
	if wholeRow {
		if r := rs.relation(lv, name); r != nil {
			return rs.union(acc, r.whole()), true
		}
	}
	return acc, matched
}

// call is what calling a function adds to what its arguments read (as
// f(x), (x).f or t.f): unknown for a function that is not built in, runs SQL
// given as text, reads rows by itself, or returns session state.
func (rs *resolver) call(names []*pg_query.Node) prov {
	if p := rs.function(names); p.unknown != "" {
		return p
	}
	if why := sessionState(names[len(names)-1].GetString_().GetSval()); why != "" {
		return unknownProv("function %s %s, which another expression can set to any value", qualifiedName(names), why)
	}
	return prov{}
}

// function is unknown for a function that is not built in (it may read
// any table) or that runs SQL given as text.
func (rs *resolver) function(names []*pg_query.Node) prov {
	if len(names) == 0 {
		return unknownProv("a function call without a name is not traced")
	}
	last := names[len(names)-1].GetString_().GetSval()
	if runsSQLText(last) || readsRowsItself(last) {
		return unknownProv("function %s runs SQL given as text or reads rows by itself", qualifiedName(names))
	}
	if !rs.cat.builtin(kindFunction, last) {
		return unknownProv("function %s is not built into PostgreSQL, so what it reads is not known", qualifiedName(names))
	}
	return prov{}
}

// readsRowsItself names built-in functions beside runsSQLText whose result
// holds table data they read on their own.
func readsRowsItself(function string) bool {
	switch function[strings.LastIndexByte(function, '.')+1:] {
	case "ts_rewrite", "pg_logical_slot_get_changes", "pg_logical_slot_peek_changes",
		"pg_logical_slot_get_binary_changes", "pg_logical_slot_peek_binary_changes":
		return true
	}
	return false
}

// sessionState says what session or transaction state a built-in function
// returns that an expression of the same call can write with a value of its
// choosing (set_config, setval, setseed, an advisory lock, a large object),
// or "". Such a result may carry any value: its origin is unknown.
func sessionState(function string) string {
	switch function {
	case "current_setting", "pg_show_all_settings":
		return "returns a setting (set_config)"
	case "currval", "lastval", "nextval", "setval", "pg_sequence_last_value":
		return "returns a sequence's state (setval, nextval)"
	case "random":
		return "returns the next value of the generator setseed seeds"
	case "pg_lock_status":
		return "returns the locks held, advisory lock keys included"
	case "pg_stat_get_activity":
		return "returns the sessions' state, application_name included (set_config)"
	case "lo_get", "loread":
		return "returns a large object's contents (lo_from_bytea, lowrite, lo_put)"
	}
	return ""
}

// stateColumns lists, for a function of sessionState returning rows, the
// only columns that carry the state, by position among its output columns
// (the catalog views pg_settings, pg_locks and pg_stat_activity read them
// so); its other columns are derived from its arguments only.
var stateColumns = map[string][]stateColumn{
	"pg_show_all_settings": {{1, "setting"}},
	"pg_lock_status":       {{7, "classid"}, {8, "objid"}, {9, "objsubid"}}, // an advisory lock's key
	"pg_stat_get_activity": {{3, "application_name"}},
}

// stateColumn is an output column of a function: its position (from 0) and
// its name in the catalog.
type stateColumn struct {
	position int
	name     string
}

func (rs *resolver) operator(names []*pg_query.Node) prov {
	if len(names) == 0 {
		return prov{}
	}
	op := names[len(names)-1].GetString_().GetSval()
	if !rs.cat.builtin(kindOperator, op) {
		return unknownProv("operator %s is not built into PostgreSQL, so what it reads is not known", op)
	}
	return prov{}
}

// colname names an unnamed select-list entry as PostgreSQL 15 does
// (FigureColname in src/backend/parser/parse_target.c), so references to a
// subquery's or CTE's columns resolve to the column PostgreSQL resolves
// them to. vague is true when the name may be another: a scalar subquery
// whose first column's name is not known (then any reference may mean the
// column; see relation.lookup).
func (rs *resolver) colname(n *pg_query.Node) (name string, vague bool) {
	name, _, vague = rs.figureColname(n)
	if name == "" {
		name = "?column?"
	}
	return name, vague
}

// figureColname is FigureColnameInternal: a name ("" for none) and how
// good a choice it is (2 good, 1 second best, 0 none), which decides
// between a cast's argument and its type, and a CASE's ELSE and "case".
func (rs *resolver) figureColname(n *pg_query.Node) (name string, strength int, vague bool) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ColumnRef:
		for i := len(x.ColumnRef.Fields) - 1; i >= 0; i-- {
			if s := x.ColumnRef.Fields[i].GetString_(); s != nil {
				return s.Sval, 2, false
			}
		}
	case *pg_query.Node_AIndirection:
		for i := len(x.AIndirection.Indirection) - 1; i >= 0; i-- {
			if s := x.AIndirection.Indirection[i].GetString_(); s != nil {
				return s.Sval, 2, false
			}
		}
		return rs.figureColname(x.AIndirection.Arg)
	case *pg_query.Node_FuncCall:
		if f := x.FuncCall.Funcname; len(f) > 0 {
			return f[len(f)-1].GetString_().GetSval(), 2, false
		}
	case *pg_query.Node_AExpr:
		if x.AExpr.Kind == pg_query.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2, false
		}
	case *pg_query.Node_TypeCast:
		name, strength, vague = rs.figureColname(x.TypeCast.Arg)
		if t := x.TypeCast.TypeName; strength <= 1 && t != nil && len(t.Names) > 0 {
			return t.Names[len(t.Names)-1].GetString_().GetSval(), 1, vague
		}
		return name, strength, vague
	case *pg_query.Node_CollateClause:
		return rs.figureColname(x.CollateClause.Arg)
	case *pg_query.Node_GroupingFunc:
		return "grouping", 2, false
	case *pg_query.Node_SubLink:
		switch x.SubLink.SubLinkType {
		case pg_query.SubLinkType_EXISTS_SUBLINK:
			return "exists", 2, false
		case pg_query.SubLinkType_ARRAY_SUBLINK:
			return "array", 2, false
		case pg_query.SubLinkType_EXPR_SUBLINK:
			// The name of the subquery's first column, as resolved.
			first, ok := rs.tracing().sublinks[x.SubLink.Subselect]
			if !ok {
				return "", 2, true
			}
			return first.name, 2, first.vague
		}
	case *pg_query.Node_CaseExpr:
		name, strength, vague = rs.figureColname(x.CaseExpr.Defresult)
		if strength <= 1 {
			return "case", 1, vague
		}
		return name, strength, vague
	case *pg_query.Node_AArrayExpr:
		return "array", 2, false
	case *pg_query.Node_RowExpr:
		return "row", 2, false
	case *pg_query.Node_CoalesceExpr:
		return "coalesce", 2, false
	case *pg_query.Node_MinMaxExpr:
		if x.MinMaxExpr.Op == pg_query.MinMaxOp_IS_LEAST {
			return "least", 2, false
		}
		return "greatest", 2, false
	case *pg_query.Node_SqlvalueFunction:
		if name := sqlValueNames[x.SqlvalueFunction.Op]; name != "" {
			return name, 2, false
		}
	case *pg_query.Node_XmlExpr:
		if x.XmlExpr.Op != pg_query.XmlExprOp_IS_DOCUMENT {
			return strings.ToLower(strings.TrimPrefix(x.XmlExpr.Op.String(), "IS_")), 2, false
		}
	case *pg_query.Node_XmlSerialize:
		return "xmlserialize", 2, false
	default:
		if name := newerSyntaxFunction(n); name != "" {
			return name, 2, false
		}
	}
	return "", 0, false
}

// sqlValueNames are the names FigureColname gives SQL value functions.
var sqlValueNames = map[pg_query.SQLValueFunctionOp]string{
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_DATE:        "current_date",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME:        "current_time",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:      "current_time",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP:   "current_timestamp",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N: "current_timestamp",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME:           "localtime",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME_N:         "localtime",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP:      "localtimestamp",
	pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:    "localtimestamp",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:        "current_role",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER:        "current_user",
	pg_query.SQLValueFunctionOp_SVFOP_USER:                "user",
	pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER:        "session_user",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:     "current_catalog",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:      "current_schema",
}

// ownTrees holds the parse trees of the tools' own catalog queries
// (list_tables, describe_table), parsed once per process.
var ownTrees sync.Map // text → *pg_query.Node (nil when it does not parse)

func ownTree(text string) *pg_query.Node {
	if v, ok := ownTrees.Load(text); ok {
		return v.(*pg_query.Node)
	}
	var node *pg_query.Node
	if tree, err := pg_query.Parse(text); err == nil && len(tree.Stmts) == 1 {
		node = tree.Stmts[0].Stmt
	}
	ownTrees.Store(text, node)
	return node
}

// catalog reads the resource's metadata cache for one call, fetching what
// is missing or stale through the admin pool. The first fetch error is kept
// in err (resolution goes on with unknown provenance; the call fails).
type catalog struct {
	r    *Resource
	ctx  context.Context
	now  time.Time
	role string // the lease's role, for "$user" in the search_path
	err  error
	g    *globalMeta // the globals this call reads, once read
}

func (c *catalog) fresh(t time.Time) bool { return c.now.Sub(t) <= c.r.meta.ttl }

// fetch runs one fetch through the admin pool unless an earlier one failed.
func (c *catalog) fetch(f func(pool *pgxpool.Pool) error) bool {
	if c.err != nil {
		return false
	}
	pool, err := c.r.adminPool()
	if err == nil {
		err = f(pool)
	}
	c.err = err
	return err == nil
}

// rel returns the relation with this OID, or nil.
func (c *catalog) rel(oid uint32) *relMeta {
	c.r.meta.mu.Lock()
	m, ok := c.r.meta.rels[oid]
	c.r.meta.mu.Unlock()
	if ok && c.fresh(m.fetched) {
		return m
	}
	if !c.fetch(func(pool *pgxpool.Pool) error { return c.r.fetchMetadata(c.ctx, pool, []uint32{oid}, nil, c.now) }) {
		return nil
	}
	c.r.meta.mu.Lock()
	defer c.r.meta.mu.Unlock()
	return c.r.meta.rels[oid]
}

// lookup resolves a relation name as the server would: qualified, or
// through path with pg_catalog first unless path places it. A name found in
// more than one schema of the path is not resolved (the role's USAGE
// privileges decide which one the server picks): why says so.
func (c *catalog) lookup(schema, name string, path []string) (m *relMeta, why string) {
	c.r.meta.mu.Lock()
	nm, ok := c.r.meta.names[name]
	c.r.meta.mu.Unlock()
	if !ok || !c.fresh(nm.fetched) {
		if !c.fetch(func(pool *pgxpool.Pool) error { return c.r.fetchNames(c.ctx, pool, []string{name}, c.now) }) {
			return nil, "the catalog could not be read"
		}
		c.r.meta.mu.Lock()
		nm = c.r.meta.names[name]
		c.r.meta.mu.Unlock()
	}
	if schema != "" {
		for _, cand := range nm.rels {
			if cand.schema == schema {
				if m := c.rel(cand.oid); m != nil {
					return m, ""
				}
			}
		}
		return nil, fmt.Sprintf("relation %s.%s is not in the catalog", schema, name)
	}
	if !slices.Contains(path, "pg_catalog") {
		path = append([]string{"pg_catalog"}, path...)
	}
	var hits []nameCandidate
	for _, s := range path {
		for _, cand := range nm.rels {
			if cand.schema == s {
				hits = append(hits, cand)
			}
		}
	}
	switch {
	case len(hits) == 0:
		return nil, fmt.Sprintf("relation %s is not in the catalog on the search path", name)
	case len(hits) > 1 && hits[0].schema != "pg_catalog":
		return nil, fmt.Sprintf("relation %s is in more than one schema of the search path (%s, %s)", name, hits[0].schema, hits[1].schema)
	}
	if m := c.rel(hits[0].oid); m != nil {
		return m, ""
	}
	return nil, fmt.Sprintf("relation %s is not in the catalog", name)
}

// globals returns the search_path and non-built-in names, fetched if stale.
func (c *catalog) globals() *globalMeta {
	if c.g != nil {
		return c.g
	}
	c.r.meta.mu.Lock()
	g := c.r.meta.global
	c.r.meta.mu.Unlock()
	if g.userFuncs == nil || !c.fresh(g.fetched) {
		if !c.fetch(func(pool *pgxpool.Pool) error { return c.r.fetchGlobal(c.ctx, pool, c.now) }) {
			return nil
		}
		c.r.meta.mu.Lock()
		g = c.r.meta.global
		c.r.meta.mu.Unlock()
	}
	c.g = &g
	return c.g
}

// searchPath is the schemas a minted role's unqualified names go through:
// its own setting, else the database's or the server's.
func (c *catalog) searchPath() []string {
	g := c.globals()
	if g == nil {
		return nil
	}
	role := g.searchPath
	if own, ok := g.rolePaths[c.role]; ok {
		role = own
	}
	path := make([]string, 0, len(role))
	for _, s := range role {
		if s == "$user" {
			s = c.role
		}
		path = append(path, s)
	}
	return path
}

const (
	kindFunction = iota
	kindOperator
)

// builtin reports whether every function (or operator) of this name was
// created by initdb; when the catalog cannot be read it is not.
func (c *catalog) builtin(kind int, name string) bool {
	g := c.globals()
	if g == nil {
		return false
	}
	if kind == kindOperator {
		return !g.userOps[name]
	}
	return !g.userFuncs[name]
}

func (c *catalog) resolved(m *relMeta) ([]prov, []column) {
	c.r.meta.mu.Lock()
	defer c.r.meta.mu.Unlock()
	return m.provs, m.columns
}

func (c *catalog) setResolved(m *relMeta, provs []prov, cols []column) {
	c.r.meta.mu.Lock()
	defer c.r.meta.mu.Unlock()
	m.provs, m.columns = provs, cols
}

// origins names the base columns of p but the column itself (rel, att).
func (c *catalog) origins(p prov, rel uint32, att int16) []tools.ColumnOrigin {
	var out []tools.ColumnOrigin
	for _, o := range p.from {
		if o.rel == rel && o.att == att {
			continue
		}
		m := c.rel(o.rel)
		if m == nil {
			out = append(out, tools.ColumnOrigin{Table: fmt.Sprintf("relation %d", o.rel), Column: fmt.Sprintf("column %d", o.att)})
			continue
		}
		out = append(out, tools.ColumnOrigin{Table: m.qname, Column: m.cols[o.att]})
	}
	return out
}
