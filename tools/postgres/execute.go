package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/airlock-mcp/airlock/tools"
)

// Defaults for limits the broker left unset (it should set them all).
const (
	defaultTimeout  = 30 * time.Second
	defaultMaxRows  = 1000
	defaultMaxBytes = 10 << 20
	// clientGrace is how much longer than the server-side statement_timeout
	// the client waits before giving up on its own.
	clientGrace = 5 * time.Second
	// valueOverhead approximates the per-value cost in the byte budget.
	valueOverhead = 4
)

var errCommitRolledBack = errors.New("the transaction was rolled back instead of committed")

// execStatement is one statement to run, with its own parameters.
type execStatement struct {
	text string
	args []any
	// read is true when the statement is a plain read: if its result is cut
	// off, nothing is lost by abandoning the transaction.
	read bool
	// node is the statement's parse tree, for tracing where its result
	// columns come from (provenance.go); nil for the tools' own catalog
	// queries, which are parsed from text once per process (ownTree).
	node *pg_query.Node
	// earlier are the parse trees of the call's statements before this one:
	// one that changes the schema or the search_path changes what this
	// one's names mean, unseen by the admin connection until the call
	// commits (see catalogChange).
	earlier []*pg_query.Node
}

// execResult is the result of one statement.
type execResult struct {
	table     tools.Table
	hasRows   bool // the statement returned a row description
	truncated bool
}

// execution is one call's run: the statements, in one transaction.
type execution struct {
	resource *Resource
	cred     *Credential
	limits   tools.Limits
	stmts    []execStatement
	// sequential runs a one-statement call the way a call of several
	// runs, one round trip per step (BenchmarkExecuteSelectPipelined compares).
	sequential bool
}

// readOnly reports whether the call's transaction is READ ONLY: under a
// read-only grant, and under any grant when the facts call every statement
// a plain read. The facts classify functions by name, from the built-ins;
// should a name resolve to something that writes (a user's overload of a
// built-in's name, say), PostgreSQL itself refuses the write.
func (e *execution) readOnly() bool {
	if e.cred.readOnly {
		return true
	}
	for _, s := range e.stmts {
		if !s.read {
			return false
		}
	}
	return len(e.stmts) > 0
}

// run executes the statements in one transaction:
//
//	acquire a connection as the lease's role
//	BEGIN [READ ONLY]   (READ ONLY: a read-only grant, or only plain reads)
//	set_config(statement_timeout, idle_in_transaction_session_timeout, local)
//	each statement (extended protocol, text results): stream, cut at the limits
//	ROLLBACK (read-only grant, an error, or a cut) | COMMIT (read_write),
//	  and the session reset in the same round trip (endCall)
//
// A call of one statement sends these steps pipelined (pipeline.go): one
// round trip under a read-only grant, two under a read-write one. A call of
// several runs them one round trip each, as a statement's parameter types
// may depend on what the statements before it did.
//
// A result cut off at the limits is abandoned at once: the query's context
// is cancelled, which closes the connection, and the server ends the
// backend. When the transaction may have written (a read_write grant and a
// statement that is not a plain read), the rest of the result is drained
// instead so the writes still commit.
func (e *execution) run(ctx context.Context) ([]execResult, string, error) {
	limits := e.limits
	if limits.Timeout <= 0 {
		limits.Timeout = defaultTimeout
	}
	if limits.MaxRows <= 0 {
		limits.MaxRows = defaultMaxRows
	}
	if limits.MaxBytes <= 0 {
		limits.MaxBytes = defaultMaxBytes
	}
	pool, err := e.cred.connPool()
	if err != nil {
		return nil, "", err
	}
	callCtx, cancel := context.WithTimeout(ctx, limits.Timeout+clientGrace)
	defer cancel()

	conn, err := pool.Acquire(callCtx)
	if err != nil {
		return nil, "", e.connectError(ctx, err)
	}
	discard := false
	defer func() {
		if discard {
			// The connection was abandoned mid-result: never reuse it.
			c := conn.Hijack()
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = c.Close(closeCtx)
			return
		}
		conn.Release()
	}()

	// BEGIN and the limits go in one round trip. This text is ours (the
	// timeout is an integer we format), so the simple protocol is safe here;
	// agent SQL only ever goes through the extended protocol below.
	ms := strconv.FormatInt(limits.Timeout.Milliseconds(), 10)
	begin := "BEGIN READ WRITE"
	if e.readOnly() {
		begin = "BEGIN READ ONLY"
	}
	pc := conn.Conn()
	if len(e.stmts) == 1 && !e.sequential {
		results, notice, abandon, err := e.runPipelined(ctx, callCtx, pc, begin, ms, limits)
		discard = abandon
		return results, notice, err
	}
	if _, err := pc.Exec(callCtx, begin+"; "+limitsSQL(ms)); err != nil {
		discard = true // the transaction state is unknown
		return nil, "", e.queryError(ctx, pc, -1, err)
	}

	results := make([]execResult, 0, len(e.stmts))
	var notices []string
	for i, st := range e.stmts {
		res, abandoned, err := e.runStatement(callCtx, pc, st, limits)
		if err != nil {
			discard = abandoned || pc.IsClosed()
			if !discard {
				if rerr := endCall(callCtx, pc, "ROLLBACK", e.readOnly()); rerr != nil {
					discard = true
				}
			}
			return nil, "", e.queryError(ctx, pc, e.index(i), err)
		}
		results = append(results, res)
		if res.truncated {
			notices = append(notices, e.cutNotice(i, limits, abandoned))
		}
		if abandoned {
			discard = true
			if i < len(e.stmts)-1 {
				notices = append(notices, fmt.Sprintf("the remaining %d statement(s) did not run", len(e.stmts)-1-i))
			}
			return results, strings.Join(notices, "; "), nil
		}
	}
	end := "COMMIT"
	if e.readOnly() {
		end = "ROLLBACK"
	}
	if err := endCall(callCtx, pc, end, e.readOnly()); err != nil {
		discard = true
		return nil, "", e.queryError(ctx, pc, -1, err)
	}
	return results, strings.Join(notices, "; "), nil
}

// Every call ends with its transaction's end and a session reset, in one
// simple-protocol round trip of our own text (endCall; a one-statement call
// under a read-only grant sends the same statements pipelined with it, see
// pipeline.go), so that no session state outlives the call on a pooled
// connection. First what no
// transaction undoes, after any call:
//
//	SELECT pg_catalog.pg_advisory_unlock_all(), pg_catalog.setseed(<seed>)
//
// session advisory locks, and the random seed (setseed, SET seed), which a
// call could set to carry a value to its next call through random(): the
// seed is one the broker draws, no statement's. Then SQL-level prepared
// statements (DEALLOCATE ALL, which PREPARE, or a function through
// EXECUTE, may leave) and, after a read-write transaction, what a
// committing one keeps: settings made with set_config(..., false) or SET,
// cursors WITH HOLD, LISTEN, temporary objects, sequence values for
// currval, a role set by set_config('role') (sessionReset). That is
// DISCARD ALL spelled out, because DISCARD ALL may not follow COMMIT in one
// query string (it refuses to run in the implicit transaction the rest of
// the string runs in), plus the seed, which DISCARD ALL leaves.
//
// A READ ONLY transaction needs no more: it cannot create temporary objects
// or advance a sequence, and ROLLBACK undoes the rest of what it may change
// (settings, SET ROLE, cursors WITH HOLD, LISTEN);
// TestReadOnlyTransactionLeavesNoSessionState tries each.
//
// DEALLOCATE ALL drops only SQL-level prepared statements here: the driver
// names none of its own, since credential pools run in
// QueryExecModeCacheDescribe (unnamed statements; kind.go), and the
// descriptions it caches do not depend on the session.
const (
	unlockAndReseed = "SELECT pg_catalog.pg_advisory_unlock_all(), pg_catalog.setseed("
	readReset       = "DEALLOCATE ALL"
	sessionReset    = "SET SESSION AUTHORIZATION DEFAULT; CLOSE ALL; UNLISTEN *; RESET ALL; DISCARD TEMP; DISCARD SEQUENCES; DEALLOCATE ALL"
)

// endCall ends the call's transaction with end (COMMIT or ROLLBACK) and
// resets the session in the same round trip: after a read-only transaction
// (readOnly: the call's BEGIN READ ONLY, which the server enforces) what
// ROLLBACK does not undo, after a read-write one all a committed
// transaction may keep; see BenchmarkEndOfCall for what each costs. The
// reset does not depend on the call's facts: they may take a function for
// a column (t.f, a function taking a row type), and that function may
// leave a lock or a setting behind. A COMMIT the server turned into a
// rollback is errCommitRolledBack. On any error the session state is
// unknown and the caller discards the connection.
func endCall(ctx context.Context, conn *pgx.Conn, end string, readOnly bool) error {
	reset := sessionReset
	if readOnly {
		reset = readReset
	}
	// A seed in [0, 1) from the runtime's ChaCha8 source, printed as a
	// plain number: our own text, safe in the simple protocol, and without
	// a minus sign, an operator the session's search_path would resolve.
	var buf [24]byte
	seed := strconv.AppendFloat(buf[:0], rand.Float64(), 'g', -1, 64)
	mrr := conn.PgConn().Exec(ctx, end+"; "+unlockAndReseed+string(seed)+"); "+reset)
	committed := false
	for first := true; mrr.NextResult(); first = false {
		tag, err := mrr.ResultReader().Close()
		if first && err == nil {
			committed = tag.String() == "COMMIT"
		}
	}
	if err := mrr.Close(); err != nil {
		return err
	}
	if end == "COMMIT" && !committed {
		return errCommitRolledBack
	}
	return nil
}

// index is the statement number for error messages, or -1 for a single one.
func (e *execution) index(i int) int {
	if len(e.stmts) == 1 {
		return -1
	}
	return i
}

func (e *execution) cutNotice(i int, limits tools.Limits, abandoned bool) string {
	prefix := "result"
	if len(e.stmts) > 1 {
		prefix = fmt.Sprintf("result of statement %d", i+1)
	}
	how := "the query was cancelled"
	if !abandoned {
		how = "the rest was read and discarded so the transaction could commit"
	}
	return fmt.Sprintf("%s cut off at the limits (%d rows, %d bytes); %s — narrow the query (WHERE, LIMIT, fewer columns) to see the rest",
		prefix, limits.MaxRows, limits.MaxBytes, how)
}

// runStatement runs one statement and collects its rows up to the limits.
// abandoned reports that the connection was given up mid-result.
func (e *execution) runStatement(ctx context.Context, conn *pgx.Conn, st execStatement, limits tools.Limits) (execResult, bool, error) {
	qctx, qcancel := context.WithCancel(ctx)
	defer qcancel()
	args := make([]any, 0, len(st.args)+1)
	args = append(args, pgx.QueryResultFormats{pgx.TextFormatCode})
	args = append(args, st.args...)
	rows, err := conn.Query(qctx, st.text, args...)
	if err != nil {
		return execResult{}, false, err
	}
	return e.collect(ctx, conn, rows, qcancel, st, limits)
}

// resultRows is what collect reads a result through: pgx.Rows, or a
// pipeline's *pgconn.ResultReader (readerRows).
type resultRows interface {
	FieldDescriptions() []pgconn.FieldDescription
	Next() bool
	RawValues() [][]byte
	Close()
	Err() error
	CommandTag() pgconn.CommandTag
}

// collect reads a statement's result up to the limits, resolving where its
// columns come from first. abandon cancels the context the result is read
// under, which closes the connection. abandoned reports that it did.
func (e *execution) collect(ctx context.Context, conn *pgx.Conn, rows resultRows, abandon context.CancelFunc, st execStatement, limits tools.Limits) (execResult, bool, error) {
	var res execResult
	fds := rows.FieldDescriptions()
	res.hasRows = len(fds) > 0
	oids := make([]uint32, len(fds))
	for i, fd := range fds {
		oids[i] = fd.DataTypeOID
		res.table.Columns = append(res.table.Columns, tools.Column{Name: fd.Name, Type: builtinTypeName(conn.TypeMap(), fd.DataTypeOID)})
	}
	if err := e.resource.resolveColumns(ctx, res.table.Columns, fds, st, e.cred.role); err != nil {
		rows.Close()
		return execResult{}, false, err
	}
	res.table.Rows = [][]any{}
	var size int64
	for rows.Next() {
		raw := rows.RawValues()
		if len(res.table.Rows) >= limits.MaxRows {
			res.truncated = true
			break
		}
		rowSize := int64(0)
		for _, v := range raw {
			rowSize += int64(len(v)) + valueOverhead
		}
		if size+rowSize > limits.MaxBytes {
			res.truncated = true
			break
		}
		size += rowSize
		row := make([]any, len(raw))
		for i, v := range raw {
			row[i] = textValue(oids[i], v)
		}
		res.table.Rows = append(res.table.Rows, row)
	}
	if res.truncated {
		if st.read || e.readOnly() {
			abandon() // closes the connection at once instead of draining the rest
			rows.Close()
			res.table.Tag = fmt.Sprintf("SELECT %d", len(res.table.Rows))
			return res, true, nil
		}
		rows.Close() // drain, so the statement's writes can still commit
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return execResult{}, false, err
	}
	res.table.Tag = rows.CommandTag().String()
	return res, false, nil
}

// connectError explains a failure to log in as the lease's role. The
// server's message is reduced like any other (withoutValues); nothing the
// agent wrote can be in it.
func (e *execution) connectError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", ctx.Err())
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		pe = withoutValues(pe, nil)
		switch {
		case pe.Code == "28P01" || pe.Code == "28000":
			return fmt.Errorf("%w: role %s (%w)", ErrLoginRefused, e.cred.role, pe)
		case unavailableCode(pe.Code) || pe.Code == "53300": // 53300: too many connections
			return fmt.Errorf("%w: PostgreSQL for resource %s is not accepting connections (%w)", tools.ErrBackendUnavailable, e.resource.spec.Name, pe)
		}
		return fmt.Errorf("connecting to PostgreSQL as %s: %w", e.cred.role, pe)
	}
	return fmt.Errorf("%w: PostgreSQL for resource %s could not be reached: %w", tools.ErrBackendUnavailable, e.resource.spec.Name, err)
}

// queryError explains a failure during the transaction. Database errors are
// returned as a *pgconn.PgError reduced to severity, SQLSTATE and a message
// that quotes only what the agent wrote (withoutValues): "ERROR: <message>
// (SQLSTATE xxxxx)", prefixed with the statement number when the call has
// several. A permission error under an enforced lease says why.
func (e *execution) queryError(ctx context.Context, conn *pgx.Conn, index int, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("query_db: %w", ctx.Err())
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		pe = withoutValues(pe, wordsOf(e.stmts))
		if unavailableCode(pe.Code) {
			return fmt.Errorf("%w: PostgreSQL for resource %s went away during the call (%w)", tools.ErrBackendUnavailable, e.resource.spec.Name, pe)
		}
		var out error = pe
		if pe.Code == "42501" && e.cred.guard != "" && refusedRelation(pe.Message) {
			out = e.cred.guardRefusal(pe)
		}
		if index >= 0 {
			return fmt.Errorf("statement %d: %w", index+1, out)
		}
		return out
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("query_db: the call ran longer than its timeout of %s: %w", e.limits.Timeout, err)
	}
	if conn.IsClosed() {
		return fmt.Errorf("%w: the connection to PostgreSQL for resource %s was lost during the call", tools.ErrBackendUnavailable, e.resource.spec.Name)
	}
	if index >= 0 {
		return fmt.Errorf("statement %d: %w", index+1, err)
	}
	return err
}

// textValue turns a text-format value into a JSON-friendly one: booleans,
// integers and floats become Go values; everything else (numeric, dates,
// uuid, bytea, json, arrays, ...) stays the string PostgreSQL printed.
func textValue(oid uint32, raw []byte) any {
	if raw == nil {
		return nil
	}
	s := string(raw)
	switch oid {
	case pgtype.BoolOID:
		return s == "t"
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	case pgtype.Float4OID, pgtype.Float8OID:
		if f, err := strconv.ParseFloat(s, 64); err == nil && s != "NaN" && s != "Infinity" && s != "-Infinity" {
			return f
		}
	}
	return s
}

func builtinTypeName(m *pgtype.Map, oid uint32) string {
	if t, ok := m.TypeForOID(oid); ok {
		return t.Name
	}
	return ""
}

// metadataCache holds, per resource, what column resolution reads from the
// catalog through the admin pool: relations by OID (kind, columns by
// attribute number, the parsed definition of views), relations by name,
// the search_path a minted role gets, the names of functions and operators
// that are not built in, and type names. Entries expire after ttl so DDL
// shows up; a call whose catalog data is cached makes no round trip.
type metadataCache struct {
	ttl    time.Duration
	mu     sync.Mutex
	rels   map[uint32]*relMeta
	names  map[string]nameMeta // relname → the relations of that name, any schema
	types  map[uint32]typeMeta
	global globalMeta
	trips  atomic.Int64 // admin round trips made, for tests
}

// forget drops everything cached: a call may have changed the catalog.
func (mc *metadataCache) forget() {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	clear(mc.rels)
	clear(mc.names)
	clear(mc.types)
	mc.global = globalMeta{}
}

// relMeta is one relation as resolution sees it.
type relMeta struct {
	oid     uint32
	schema  string
	relname string
	qname   string           // "schema.relname"
	kind    byte             // pg_class.relkind
	cols    map[int16]string // attnum → name, system columns included, dropped ones not
	order   []int16          // the user columns in attnum order: what * and alias lists see
	view    *pg_query.Node   // the parsed definition of a view or materialized view
	// generated holds, per generated column, what its values are computed
	// from (the table's columns its expression reads, or unknown when it
	// calls a function or operator that is not built in).
	generated map[int16]prov
	// rewrites says why a write to the relation may return a row its
	// statement does not show (a user trigger BEFORE or INSTEAD OF each row,
	// a rule), or "".
	rewrites string
	provs    []prov   // per column of order, once resolved (guarded by metadataCache.mu)
	columns  []column // the same, named: what a FROM item sees (guarded by metadataCache.mu)
	fetched  time.Time
}

func (m *relMeta) isView() bool { return m.kind == 'v' || m.kind == 'm' }

// index returns the position of attnum in order, or -1.
func (m *relMeta) index(att int16) int { return slices.Index(m.order, att) }

type nameMeta struct {
	rels    []nameCandidate
	fetched time.Time
}

type nameCandidate struct {
	schema string
	oid    uint32
}

type globalMeta struct {
	searchPath []string            // a minted role's, "$user" unexpanded
	rolePaths  map[string][]string // the search_path of roles that set their own (ALTER ROLE ... SET)
	userFuncs  map[string]bool     // names of functions that are not built in
	userOps    map[string]bool     // names of operators that are not built in
	fetched    time.Time
}

type typeMeta struct {
	name    string
	fetched time.Time
}

func newMetadataCache(ttl time.Duration) *metadataCache {
	return &metadataCache{ttl: ttl, rels: map[uint32]*relMeta{}, names: map[string]nameMeta{}, types: map[uint32]typeMeta{}}
}

// resolveColumns fills in where each result column's values come from,
// and Type for types the driver does not know, through the admin connection
// and the cache:
//   - a field the row description traces to a table column (table OID +
//     attribute number: through aliases, alias lists, CTEs, subqueries and
//     joins) is that column; attribute 0 is the whole row;
//   - a view's column comes from what its definition reads;
//   - a computed field (no table OID), and every field of a statement that
//     writes (RETURNING returns what was assigned, not the column's old
//     value), is traced through the statement's parse tree (provenance.go).
//
// A result whose origins cannot be resolved is not returned: masking
// depends on them.
func (r *Resource) resolveColumns(ctx context.Context, cols []tools.Column, fds []pgconn.FieldDescription, st execStatement, role string) error {
	cat := &catalog{r: r, ctx: ctx, now: time.Now(), role: role}
	var missingRels, missingTypes []uint32
	r.meta.mu.Lock()
	for i, fd := range fds {
		if fd.TableOID != 0 && !slices.Contains(missingRels, fd.TableOID) {
			if m, ok := r.meta.rels[fd.TableOID]; !ok || !cat.fresh(m.fetched) {
				missingRels = append(missingRels, fd.TableOID)
			}
		}
		if cols[i].Type == "" {
			if tm, ok := r.meta.types[fd.DataTypeOID]; !ok || !cat.fresh(tm.fetched) {
				missingTypes = append(missingTypes, fd.DataTypeOID)
			}
		}
	}
	r.meta.mu.Unlock()
	if len(missingRels) > 0 || len(missingTypes) > 0 {
		pool, err := r.adminPool()
		if err != nil {
			return err
		}
		if err := r.fetchMetadata(ctx, pool, missingRels, missingTypes, cat.now); err != nil {
			return fmt.Errorf("resolving result columns: %w", adminError(err))
		}
	}

	node := st.node
	if node == nil {
		node = ownTree(st.text)
	}
	written := modifies(node)
	trace := written
	var provs []prov // only for columns that are more than their own table column
	more := func(i int, p prov) {
		if provs == nil {
			provs = make([]prov, len(fds))
		}
		provs[i] = provs[i].union(p)
	}
	rs := &resolver{cat: cat}
	if len(st.earlier) > 0 {
		rs.path = cat.searchPath()
		if why := rs.changedBefore(st.earlier); why != "" {
			for i := range fds {
				more(i, unknownProv("%s", why))
			}
		}
	}
	for i, fd := range fds {
		if fd.TableOID == 0 {
			trace = true
			continue
		}
		m := cat.rel(fd.TableOID)
		if m == nil {
			more(i, unknownProv("relation %d of the row description is not in the catalog", fd.TableOID))
			continue
		}
		att := int16(fd.TableAttributeNumber)
		if att == 0 { // a whole row: no one column, but every one of them
			for _, p := range rs.columnProvs(m) {
				more(i, p)
			}
			continue
		}
		cols[i].Table, cols[i].Source = m.qname, m.cols[att]
		switch {
		case m.isView():
			if k := m.index(att); k >= 0 {
				more(i, rs.columnProvs(m)[k])
			} else {
				more(i, unknownProv("column %d of view %s is not in the catalog", att, m.qname))
			}
		default:
			if why := unknownValues(m, att); why != "" {
				more(i, prov{unknown: why})
			} else if g, ok := m.generated[att]; ok {
				more(i, g) // a generated column: what its expression reads
			}
		}
	}
	if trace {
		rs.path = cat.searchPath()
		traced := align(rs.statement(node), len(fds))
		for i, fd := range fds {
			if fd.TableOID == 0 || written {
				more(i, traced[i])
			}
		}
	}
	if w := rs.work; w != nil && w.stopped != "" { // cut short: nothing traced is certain
		for i := range fds {
			more(i, prov{unknown: w.stopped})
		}
	}
	for i := range provs {
		cols[i].From, cols[i].Unknown = cat.origins(provs[i], fds[i].TableOID, int16(fds[i].TableAttributeNumber)), provs[i].unknown
	}
	if cat.err != nil {
		return fmt.Errorf("resolving result columns: %w", adminError(cat.err))
	}

	r.meta.mu.Lock()
	defer r.meta.mu.Unlock()
	for i, fd := range fds {
		if cols[i].Type == "" {
			if tm, ok := r.meta.types[fd.DataTypeOID]; ok {
				cols[i].Type = tm.name
			} else {
				cols[i].Type = strconv.FormatUint(uint64(fd.DataTypeOID), 10)
			}
		}
	}
	return nil
}

// fetchMetadata reads the relations and types the cache lacks, in one
// round trip. View definitions are printed with an empty search_path, so
// every name in them not in pg_catalog is schema-qualified. Generated
// columns come with the columns their expression reads (pg_depend), and
// relations with whether a trigger or rule may rewrite the rows a write
// returns.
func (r *Resource) fetchMetadata(ctx context.Context, pool *pgxpool.Pool, relOIDs, typeOIDs []uint32, now time.Time) error {
	b := &pgx.Batch{}
	if len(relOIDs) > 0 {
		b.Queue(`SELECT pg_catalog.set_config('search_path', '', true)`)
		b.Queue(`
			SELECT c.oid, c.relkind, n.nspname, c.relname,
			       CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END,
			       CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_trigger t
			                         WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgtype & 1 = 1 AND t.tgtype & 66 <> 0)
			              THEN 'a trigger runs before or instead of each row'
			            WHEN EXISTS (SELECT FROM pg_catalog.pg_rewrite w WHERE w.ev_class = c.oid AND w.rulename <> '_RETURN')
			              THEN 'a rule rewrites writes to it'
			       END
			FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE c.oid = ANY($1::oid[])`, relOIDs)
		b.Queue(`
			SELECT a.attrelid, a.attnum, a.attname, a.attgenerated <> '',
			       ARRAY(SELECT d.refobjsubid FROM pg_catalog.pg_depend d
			             WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid AND d.deptype = 'n'
			               AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = a.attrelid AND d.refobjsubid > 0),
			       EXISTS (SELECT FROM pg_catalog.pg_depend d
			               WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid
			                 AND d.refclassid <> 'pg_catalog.pg_class'::pg_catalog.regclass)
			FROM pg_catalog.pg_attribute a
			LEFT JOIN pg_catalog.pg_attrdef ad ON a.attgenerated <> '' AND ad.adrelid = a.attrelid AND ad.adnum = a.attnum
			WHERE a.attrelid = ANY($1::oid[]) AND a.attnum <> 0 AND NOT a.attisdropped
			ORDER BY a.attrelid, a.attnum`, relOIDs)
	}
	if len(typeOIDs) > 0 {
		b.Queue(`SELECT oid, pg_catalog.format_type(oid, NULL) FROM pg_catalog.pg_type WHERE oid = ANY($1::oid[])`, typeOIDs)
	}
	if b.Len() == 0 {
		return nil
	}
	r.meta.trips.Add(1)
	br := pool.SendBatch(ctx, b)
	defer br.Close()
	rels := map[uint32]*relMeta{}
	if len(relOIDs) > 0 {
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, _ := br.Query()
		var (
			oid          uint32
			kind         string
			schema, name string
			def          *string
			rewrites     *string
			attnum       int16
			column       string
			generated    bool
			genFrom      []int32
			genUnknown   bool
		)
		_, err := pgx.ForEachRow(rows, []any{&oid, &kind, &schema, &name, &def, &rewrites}, func() error {
			m := &relMeta{oid: oid, schema: schema, relname: name, qname: schema + "." + name, cols: map[int16]string{}, fetched: now}
			if rewrites != nil {
				m.rewrites = *rewrites
			}
			if len(kind) == 1 {
				m.kind = kind[0]
			}
			if def != nil {
				if tree, err := pg_query.Parse(*def); err == nil && len(tree.Stmts) == 1 {
					m.view = tree.Stmts[0].Stmt
				}
			}
			rels[oid] = m
			return nil
		})
		if err != nil {
			return err
		}
		rows, _ = br.Query()
		_, err = pgx.ForEachRow(rows, []any{&oid, &attnum, &column, &generated, &genFrom, &genUnknown}, func() error {
			m, ok := rels[oid]
			if !ok {
				return nil
			}
			m.cols[attnum] = column
			if attnum > 0 {
				m.order = append(m.order, attnum)
			}
			if generated {
				var p prov
				for _, src := range genFrom {
					p = p.union(prov{from: []origin{{rel: oid, att: int16(src)}}})
				}
				if genUnknown {
					p.unknown = fmt.Sprintf("generated column %s.%s calls a function or operator that is not built into PostgreSQL", m.qname, column)
				}
				if m.generated == nil {
					m.generated = map[int16]prov{}
				}
				m.generated[attnum] = p
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	types := map[uint32]typeMeta{}
	if len(typeOIDs) > 0 {
		rows, _ := br.Query()
		var (
			oid  uint32
			name string
		)
		_, err := pgx.ForEachRow(rows, []any{&oid, &name}, func() error {
			types[oid] = typeMeta{name: name, fetched: now}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	r.meta.mu.Lock()
	defer r.meta.mu.Unlock()
	for oid, m := range rels {
		r.meta.rels[oid] = m
	}
	for oid, tm := range types {
		r.meta.types[oid] = tm
	}
	return nil
}

// fetchNames reads which relations (tables, views, sequences, ...) have
// these names, in any schema but other sessions' temporary ones.
func (r *Resource) fetchNames(ctx context.Context, pool *pgxpool.Pool, names []string, now time.Time) error {
	r.meta.trips.Add(1)
	// In pg_catalog alone, as fetchMetadata and fetchGlobal read: no
	// schema's own operator runs as the admin role.
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_catalog.set_config('search_path', '', true)`)
	b.Queue(`
		SELECT c.relname, n.nspname, c.oid
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
		  AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'`, names)
	br := pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return err
	}
	rows, _ := br.Query()
	found := map[string]nameMeta{}
	for _, n := range names {
		found[n] = nameMeta{fetched: now}
	}
	var (
		name, schema string
		oid          uint32
	)
	_, err := pgx.ForEachRow(rows, []any{&name, &schema, &oid}, func() error {
		nm := found[name]
		nm.rels = append(nm.rels, nameCandidate{schema: schema, oid: oid})
		found[name] = nm
		return nil
	})
	if err != nil {
		return err
	}
	r.meta.mu.Lock()
	defer r.meta.mu.Unlock()
	maps.Copy(r.meta.names, found)
	return nil
}

// searchPathSQL is the search_path a new session of a minted role starts
// with when it has no setting of its own (rolePathsSQL): its database's
// setting for all roles, else the setting for all roles in all databases,
// else the server's (members do not inherit their roles' settings).
const searchPathSQL = `
	SELECT coalesce(
	  (SELECT substr(s, 13) FROM pg_catalog.pg_db_role_setting d, pg_catalog.unnest(d.setconfig) s
	    WHERE d.setrole = 0 AND d.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
	      AND s LIKE 'search\_path=%' LIMIT 1),
	  (SELECT substr(s, 13) FROM pg_catalog.pg_db_role_setting d, pg_catalog.unnest(d.setconfig) s
	    WHERE d.setrole = 0 AND d.setdatabase = 0 AND s LIKE 'search\_path=%' LIMIT 1),
	  (SELECT CASE WHEN source IN ('default', 'configuration file', 'command line', 'environment variable', 'override')
	               THEN reset_val ELSE boot_val END
	    FROM pg_catalog.pg_settings WHERE name = 'search_path'))`

// rolePathsSQL lists the roles that have a search_path of their own in
// this database (ALTER ROLE ... SET, which a role may run on itself),
// database-specific settings last so they win.
const rolePathsSQL = `
	SELECT r.rolname, substr(s, 13)
	FROM pg_catalog.pg_db_role_setting d
	JOIN pg_catalog.pg_roles r ON r.oid = d.setrole, pg_catalog.unnest(d.setconfig) s
	WHERE d.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
	  AND s LIKE 'search\_path=%'
	ORDER BY d.setdatabase <> 0`

// fetchGlobal reads a minted role's search_path and the names of functions
// and operators that are not built in (OIDs from FirstNormalObjectId,
// 16384, on: created after initdb, by users or extensions).
func (r *Resource) fetchGlobal(ctx context.Context, pool *pgxpool.Pool, now time.Time) error {
	r.meta.trips.Add(1)
	b := &pgx.Batch{}
	// Names resolve in pg_catalog alone (the settings read below are the
	// reset and boot values, which this does not change): no schema's own
	// function or operator runs as the admin role.
	b.Queue(`SELECT pg_catalog.set_config('search_path', '', true)`)
	b.Queue(searchPathSQL)
	b.Queue(rolePathsSQL)
	b.Queue(`SELECT 'f', proname::text FROM pg_catalog.pg_proc WHERE oid >= 16384
	         UNION SELECT 'o', oprname::text FROM pg_catalog.pg_operator WHERE oid >= 16384`)
	br := pool.SendBatch(ctx, b)
	defer br.Close()
	g := globalMeta{rolePaths: map[string][]string{}, userFuncs: map[string]bool{}, userOps: map[string]bool{}, fetched: now}
	if _, err := br.Exec(); err != nil {
		return err
	}
	var path string
	if err := br.QueryRow().Scan(&path); err != nil {
		return err
	}
	g.searchPath = parseSearchPath(path)
	var role string
	rows, _ := br.Query()
	_, err := pgx.ForEachRow(rows, []any{&role, &path}, func() error {
		g.rolePaths[role] = parseSearchPath(path)
		return nil
	})
	if err != nil {
		return err
	}
	rows, _ = br.Query()
	var kind, name string
	_, err = pgx.ForEachRow(rows, []any{&kind, &name}, func() error {
		if kind == "f" {
			g.userFuncs[name] = true
		} else {
			g.userOps[name] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	r.meta.mu.Lock()
	defer r.meta.mu.Unlock()
	r.meta.global = g
	return nil
}

// parseSearchPath splits a search_path value into schema names: quoted
// names keep their case, others are lower-cased.
func parseSearchPath(s string) []string {
	var out []string
	for s = strings.TrimSpace(s); s != ""; {
		var name string
		if s[0] == '"' {
			i := 1
			var b strings.Builder
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					break
				}
				b.WriteByte(s[i])
				i++
			}
			name, s = b.String(), s[min(i+1, len(s)):]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			name, s = strings.ToLower(strings.TrimSpace(s[:end])), s[end:]
		}
		if name != "" {
			out = append(out, name)
		}
		s = strings.TrimSpace(s)
		s = strings.TrimSpace(strings.TrimPrefix(s, ","))
	}
	return out
}

// withoutValues reduces a database error to what may reach the agent
// whatever its class (see errors.go): severity, SQLSTATE and a message kept
// only in one of PostgreSQL's known forms, its slots only as the agent wrote
// them (said) where no value can have reached them (else its condition
// name), or a fixed sentence for a message a function raised. Detail, Hint, Where
// (PL/pgSQL context), the internal query, positions and the schema, table,
// column, type and constraint names are dropped: any of them can repeat a
// row, a key or a statement built from values.
func withoutValues(pe *pgconn.PgError, said agentWords) *pgconn.PgError {
	c := &pgconn.PgError{Severity: pe.Severity, SeverityUnlocalized: pe.SeverityUnlocalized, Code: pe.Code}
	if raisedByFunction(pe) {
		c.Message = raisedMessage
	} else {
		c.Message = reduceMessage(pe, said)
	}
	return c
}
