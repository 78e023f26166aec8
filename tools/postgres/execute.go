package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

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
}

// run executes the statements in one transaction:
//
//	acquire a connection as the lease's role
//	BEGIN [READ ONLY]
//	set_config(statement_timeout, idle_in_transaction_session_timeout, local)
//	each statement (extended protocol, text results): stream, cut at the limits
//	ROLLBACK (read-only grant, an error, or a cut) | COMMIT (read_write)
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
	if e.cred.readOnly {
		begin = "BEGIN READ ONLY"
	}
	pc := conn.Conn()
	if _, err := pc.Exec(callCtx, begin+"; SELECT pg_catalog.set_config('statement_timeout', '"+ms+"', true), pg_catalog.set_config('idle_in_transaction_session_timeout', '"+ms+"', true)"); err != nil {
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
				if _, rerr := pc.Exec(callCtx, "ROLLBACK"); rerr != nil {
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
	if e.cred.readOnly {
		end = "ROLLBACK"
	}
	tag, err := pc.Exec(callCtx, end)
	if err == nil && end == "COMMIT" && tag.String() != "COMMIT" {
		err = errCommitRolledBack
	}
	if err != nil {
		discard = true
		return nil, "", e.queryError(ctx, pc, -1, err)
	}
	return results, strings.Join(notices, "; "), nil
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
	var res execResult
	fds := rows.FieldDescriptions()
	res.hasRows = len(fds) > 0
	oids := make([]uint32, len(fds))
	for i, fd := range fds {
		oids[i] = fd.DataTypeOID
		res.table.Columns = append(res.table.Columns, tools.Column{Name: fd.Name, Type: builtinTypeName(conn.TypeMap(), fd.DataTypeOID)})
	}
	if err := e.resource.resolveColumns(ctx, res.table.Columns, fds); err != nil {
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
		if st.read || e.cred.readOnly {
			qcancel() // closes the connection at once instead of draining the rest
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

// connectError explains a failure to log in as the lease's role.
func (e *execution) connectError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", ctx.Err())
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
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
// returned as the *pgconn.PgError ("ERROR: <message> (SQLSTATE xxxxx)"),
// prefixed with the statement number when the call has several.
func (e *execution) queryError(ctx context.Context, conn *pgx.Conn, index int, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("query_db: %w", ctx.Err())
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if unavailableCode(pe.Code) {
			return fmt.Errorf("%w: PostgreSQL for resource %s went away during the call (%w)", tools.ErrBackendUnavailable, e.resource.spec.Name, pe)
		}
		pe = withoutValues(pe)
		if index >= 0 {
			return fmt.Errorf("statement %d: %w", index+1, pe)
		}
		return pe
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

// metadataCache maps column origins (table OID, attribute number) and type
// OIDs to names, per resource. Entries expire so renames show up.
type metadataCache struct {
	ttl    time.Duration
	mu     sync.Mutex
	tables map[uint32]tableMeta
	types  map[uint32]typeMeta
}

type tableMeta struct {
	name    string            // "schema.table"
	columns map[uint16]string // attnum → column name
	fetched time.Time
}

type typeMeta struct {
	name    string
	fetched time.Time
}

func newMetadataCache(ttl time.Duration) *metadataCache {
	return &metadataCache{ttl: ttl, tables: map[uint32]tableMeta{}, types: map[uint32]typeMeta{}}
}

// resolveColumns fills Table and Source from each field's table OID and
// attribute number, and Type for types the driver does not know, through
// the admin connection and the cache. A result whose origins cannot be
// resolved is not returned: masking depends on them.
func (r *Resource) resolveColumns(ctx context.Context, cols []tools.Column, fds []pgconn.FieldDescription) error {
	now := time.Now()
	var missingTables, missingTypes []uint32
	r.meta.mu.Lock()
	for i, fd := range fds {
		if fd.TableOID != 0 {
			if tm, ok := r.meta.tables[fd.TableOID]; !ok || now.Sub(tm.fetched) > r.meta.ttl {
				missingTables = append(missingTables, fd.TableOID)
			}
		}
		if cols[i].Type == "" {
			if tm, ok := r.meta.types[fd.DataTypeOID]; !ok || now.Sub(tm.fetched) > r.meta.ttl {
				missingTypes = append(missingTypes, fd.DataTypeOID)
			}
		}
	}
	r.meta.mu.Unlock()

	if len(missingTables) > 0 || len(missingTypes) > 0 {
		pool, err := r.adminPool()
		if err != nil {
			return err
		}
		if err := r.fetchMetadata(ctx, pool, missingTables, missingTypes, now); err != nil {
			return fmt.Errorf("resolving result columns: %w", adminError(err))
		}
	}

	r.meta.mu.Lock()
	defer r.meta.mu.Unlock()
	for i, fd := range fds {
		if tm, ok := r.meta.tables[fd.TableOID]; ok && fd.TableOID != 0 {
			if col, ok := tm.columns[fd.TableAttributeNumber]; ok {
				cols[i].Table = tm.name
				cols[i].Source = col
			}
		}
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

func (r *Resource) fetchMetadata(ctx context.Context, pool *pgxpool.Pool, tableOIDs, typeOIDs []uint32, now time.Time) error {
	tables := map[uint32]tableMeta{}
	if len(tableOIDs) > 0 {
		rows, err := pool.Query(ctx, `
			SELECT c.oid, a.attnum, n.nspname, c.relname, a.attname
			FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
			WHERE c.oid = ANY($1::oid[]) AND a.attnum > 0`, tableOIDs)
		if err != nil {
			return err
		}
		var (
			oid           uint32
			attnum        int16
			schema, table string
			column        string
		)
		_, err = pgx.ForEachRow(rows, []any{&oid, &attnum, &schema, &table, &column}, func() error {
			tm, ok := tables[oid]
			if !ok {
				tm = tableMeta{name: schema + "." + table, columns: map[uint16]string{}, fetched: now}
			}
			tm.columns[uint16(attnum)] = column
			tables[oid] = tm
			return nil
		})
		if err != nil {
			return err
		}
	}
	types := map[uint32]typeMeta{}
	if len(typeOIDs) > 0 {
		rows, err := pool.Query(ctx, `SELECT oid, format_type(oid, NULL) FROM pg_catalog.pg_type WHERE oid = ANY($1::oid[])`, typeOIDs)
		if err != nil {
			return err
		}
		var (
			oid  uint32
			name string
		)
		_, err = pgx.ForEachRow(rows, []any{&oid, &name}, func() error {
			types[oid] = typeMeta{name: name, fetched: now}
			return nil
		})
		if err != nil {
			return err
		}
	}
	r.meta.mu.Lock()
	defer r.meta.mu.Unlock()
	for oid, tm := range tables {
		r.meta.tables[oid] = tm
	}
	for oid, tm := range types {
		r.meta.types[oid] = tm
	}
	return nil
}

// withoutValues drops the data a PostgreSQL error quotes. A data exception
// (class 22: invalid input syntax for type integer: "123-45-6789") quotes
// the value in its message, an integrity violation (class 23) names the
// key's value in its detail; either can be any value the query read, masked
// columns included.
func withoutValues(pe *pgconn.PgError) *pgconn.PgError {
	c := *pe
	switch {
	case strings.HasPrefix(pe.Code, "22"):
		c.Message = quotedValue.ReplaceAllString(c.Message, `"…"`)
	case strings.HasPrefix(pe.Code, "23"):
	default:
		return pe
	}
	c.Detail, c.Where, c.Hint = "", "", ""
	return &c
}

var quotedValue = regexp.MustCompile(`"(?:[^"]|"")*"`)
