package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/airlock-mcp/airlock/tools"
)

// A call of one statement, nearly every call, is pipelined: its steps go
// to the server in one write, each through the extended protocol, and the
// client reads their results in order.
//
//	read-only grant, one round trip:
//	  BEGIN READ ONLY · set_config(limits) · the statement ·
//	  ROLLBACK · pg_advisory_unlock_all(), setseed($1) · DEALLOCATE ALL · Sync
//	read-write grant, two:
//	  BEGIN READ WRITE · set_config(limits) · the statement · Sync
//	  then COMMIT (ROLLBACK after an error) and the full reset (endCall)
//
// The statement goes exactly as it went alone: its own Parse with the
// parameter types the server inferred for it, Bind with the parameters
// encoded for those types, text results. When a step fails, the server
// skips the rest of the segment up to the Sync, ROLLBACK and the reset
// included, and the transaction is left aborted: the client then ends it
// and resets the session with endCall, as the step-by-step path does, one
// round trip more on the failure path only
// (TestPipelinedFailureRollsBackAndResets). One segment rather than a
// segment for the statement and one for the end saves a read on the
// common path: the server answers the whole call in one flush
// (BenchmarkExecuteSelectPipelined measured both).
//
// COMMIT is not pipelined: a read-write call commits only once its result
// has been read and its columns resolved (a result whose origins cannot be
// resolved is not returned, and its writes are rolled back).
//
// Parameter types are what the server infers when it parses the statement
// (a Describe). pgx caches them per connection in QueryExecModeCacheDescribe
// and so does this (paramTypes, in the connection's CustomData): the first
// call of a text with parameters on a connection describes it after BEGIN
// and the limits, so that statement_timeout bounds it, one round trip more.
// An entry is dropped when its statement fails, as pgx drops its own.

// paramTypesKey names the per-connection cache of parameter types in
// pgconn.PgConn.CustomData.
const paramTypesKey = "airlock.paramTypes"

// paramTypesMax bounds that cache; it is cleared when full.
const paramTypesMax = 512

// limitsSQL sets the call's limits for the transaction; ms is an integer we
// format.
func limitsSQL(ms string) string {
	return "SELECT pg_catalog.set_config('statement_timeout', '" + ms + "', true), pg_catalog.set_config('idle_in_transaction_session_timeout', '" + ms + "', true)"
}

// reseedSQL is unlockAndReseed with the seed as a parameter.
const reseedSQL = "SELECT pg_catalog.pg_advisory_unlock_all(), pg_catalog.setseed($1)"

var (
	textResults = []int16{pgtype.TextFormatCode}
	seedOIDs    = []uint32{pgtype.Float8OID}
	seedFormats = []int16{pgtype.TextFormatCode}
)

// runPipelined runs e's one statement (see above). discard reports that the
// connection must not be reused: abandoned mid-result, or in an unknown
// state after an error.
func (e *execution) runPipelined(ctx, callCtx context.Context, pc *pgx.Conn, begin, ms string, limits tools.Limits) (results []execResult, notice string, discard bool, err error) {
	st := e.stmts[0]
	pg := pc.PgConn()
	types, _ := pg.CustomData()[paramTypesKey].(map[string][]uint32)
	if types == nil {
		types = map[string][]uint32{}
		pg.CustomData()[paramTypesKey] = types
	}

	began := false
	oids, known := types[st.text]
	if !known && len(st.args) > 0 {
		// First call of this text on this connection: BEGIN and the limits,
		// then the Describe under them.
		if _, err := pc.Exec(callCtx, begin+"; "+limitsSQL(ms)); err != nil {
			return nil, "", true, e.queryError(ctx, pc, -1, err)
		}
		began = true
		sd, err := pg.Prepare(callCtx, "", st.text, nil)
		if err != nil {
			return nil, "", e.rollback(callCtx, pc), e.queryError(ctx, pc, -1, err)
		}
		oids = sd.ParamOIDs
		if len(types) >= paramTypesMax {
			clear(types)
		}
		types[st.text] = oids
	}
	var eqb pgx.ExtendedQueryBuilder
	if err := eqb.Build(pc.TypeMap(), &pgconn.StatementDescription{SQL: st.text, ParamOIDs: oids}, st.args); err != nil {
		delete(types, st.text)
		if began {
			return nil, "", e.rollback(callCtx, pc), e.queryError(ctx, pc, -1, err)
		}
		return nil, "", false, e.queryError(ctx, pc, -1, err)
	}

	pipeCtx, abandon := context.WithCancel(callCtx)
	defer abandon()
	pl := pg.StartPipeline(pipeCtx)
	if !began {
		pl.SendQueryParams(begin, nil, nil, nil, nil)
		pl.SendQueryParams(limitsSQL(ms), nil, nil, nil, nil)
	}
	pl.SendQueryParams(st.text, eqb.ParamValues, oids, eqb.ParamFormats, textResults)
	if e.readOnly() {
		var buf [24]byte
		seed := strconv.AppendFloat(buf[:0], rand.Float64(), 'g', -1, 64)
		pl.SendQueryParams("ROLLBACK", nil, nil, nil, nil)
		pl.SendQueryParams(reseedSQL, [][]byte{seed}, seedOIDs, seedFormats, nil)
		pl.SendQueryParams(readReset, nil, nil, nil, nil)
	}
	pl.SendPipelineSync()
	if err := pl.Flush(); err != nil {
		pl.Close()
		return nil, "", true, e.queryError(ctx, pc, -1, err)
	}

	if !began {
		for range 2 {
			if err := closeNext(pl); err != nil {
				pl.Close()
				return nil, "", true, e.queryError(ctx, pc, -1, err)
			}
		}
	}
	var res execResult
	var abandoned bool
	rr, stmtErr := nextReader(pl)
	if stmtErr == nil {
		res, abandoned, stmtErr = e.collect(callCtx, pc, &readerRows{rr: rr}, abandon, st, limits)
		if abandoned {
			pl.Close()
			notice = e.cutNotice(0, limits, true)
			return []execResult{res}, notice, true, nil
		}
	}
	if stmtErr != nil {
		delete(types, st.text)
	}
	// The rest of the segment: the end and the reset under a read-only
	// grant, unless the statement failed on the server, which then skipped
	// them up to the Sync.
	ended, err := drainToSync(pl)
	if err != nil {
		pl.Close()
		return nil, "", true, e.queryError(ctx, pc, -1, firstError(stmtErr, err))
	}
	if err := pl.Close(); err != nil {
		return nil, "", true, e.queryError(ctx, pc, -1, firstError(stmtErr, err))
	}
	switch {
	case !e.readOnly():
		end := "COMMIT"
		if stmtErr != nil {
			end = "ROLLBACK"
		}
		if err := endCall(callCtx, pc, end, false); err != nil {
			return nil, "", true, e.queryError(ctx, pc, -1, firstError(stmtErr, err))
		}
	case ended != 3: // skipped: end the aborted transaction and reset now
		if e.rollback(callCtx, pc) {
			return nil, "", true, e.queryError(ctx, pc, -1, firstError(stmtErr, errors.New("the session could not be reset after the statement failed")))
		}
	}
	if stmtErr != nil {
		return nil, "", pc.IsClosed(), e.queryError(ctx, pc, -1, stmtErr)
	}
	if res.truncated {
		notice = e.cutNotice(0, limits, false)
	}
	return []execResult{res}, notice, false, nil
}

// rollback ends a transaction begun outside the pipeline after an error,
// with the session reset; it reports whether the connection must be
// discarded.
func (e *execution) rollback(ctx context.Context, pc *pgx.Conn) bool {
	return pc.IsClosed() || endCall(ctx, pc, "ROLLBACK", e.readOnly()) != nil
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// nextReader is the next result of the pipeline, which must be a
// statement's.
func nextReader(pl *pgconn.Pipeline) (*pgconn.ResultReader, error) {
	res, err := pl.GetResults()
	if err != nil {
		return nil, err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return nil, fmt.Errorf("pipeline: expected a statement's result, got %T", res)
	}
	return rr, nil
}

// closeNext reads and discards the next statement's result.
func closeNext(pl *pgconn.Pipeline) error {
	rr, err := nextReader(pl)
	if err != nil {
		return err
	}
	_, err = rr.Close()
	return err
}

// drainToSync reads the pipeline's results up to the end of its segment,
// closing each statement's; ran is how many statements ran (the server
// skips the rest of a segment after an error).
func drainToSync(pl *pgconn.Pipeline) (ran int, err error) {
	for {
		res, err := pl.GetResults()
		if err != nil {
			return ran, err
		}
		switch r := res.(type) {
		case *pgconn.PipelineSync:
			return ran, nil
		case *pgconn.ResultReader:
			if _, err := r.Close(); err != nil {
				return ran, err
			}
			ran++
		default:
			return ran, fmt.Errorf("pipeline: unexpected result %T", res)
		}
	}
}

// readerRows reads a pipeline's *pgconn.ResultReader as collect's
// resultRows.
type readerRows struct {
	rr     *pgconn.ResultReader
	tag    pgconn.CommandTag
	err    error
	closed bool
}

func (r *readerRows) FieldDescriptions() []pgconn.FieldDescription { return r.rr.FieldDescriptions() }
func (r *readerRows) Next() bool                                   { return !r.closed && r.rr.NextRow() }
func (r *readerRows) RawValues() [][]byte                          { return r.rr.Values() }
func (r *readerRows) Err() error                                   { return r.err }
func (r *readerRows) CommandTag() pgconn.CommandTag                { return r.tag }

func (r *readerRows) Close() {
	if !r.closed {
		r.closed = true
		r.tag, r.err = r.rr.Close()
	}
}
