package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// Time bounds. The transcript has no index on time: an index is a page
// written by every commit, a fifth of an append's cost, for the rare
// query by time. Events are in seq order, and their times nearly so (each
// is stamped when its call reached that step, before it queued for the
// chain; replicas' clocks differ), so a query by time is a range of seq
// found by binary search over the primary key, widened by how far times
// go back along seq: the slack.
//
// transcript_meta holds, in one row, high, at least the latest time of
// any event, and slack, at least how far any event's time is behind that
// of an event before it. The append that commits an event keeps both true
// in its transaction, writing the row only when an event's time passes
// high (high then moves timeStep past it, so the row is written about
// once per timeStep of transcript time, not per commit) or falls further
// behind high than slack. Verify checks both against the events.
//
// A query for time >= since starts at the first event at or after the
// binary search's boundary for since-slack; one for time < until ends
// before the boundary for until+slack. The boundary b of a search for t
// has time(event before b) < t <= time(b) whatever the order of times;
// an event before b with a time at or after since would be more than
// slack ahead of time(event before b), which slack rules out (and
// likewise for until). The time conditions are kept, so a query returns
// exactly what a scan would.

// timeStep is how far past an event's time an append moves high, and so
// the least slack: a query by time reads at most this much of the
// transcript on either side of its window.
const timeStep = int64(10 * time.Second)

const (
	sqliteMetaSchema = `CREATE TABLE IF NOT EXISTS transcript_meta (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	high   INTEGER NOT NULL,  -- unix nanoseconds: no event is later
	slack  INTEGER NOT NULL   -- nanoseconds: no event is further behind one before it
);`
	postgresMetaSchema = `CREATE TABLE IF NOT EXISTS transcript_meta (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	high   BIGINT NOT NULL,
	slack  BIGINT NOT NULL
);`

	// headBoundsSQL is the append's head and the time bounds, in one
	// statement: no row for an empty transcript.
	headBoundsSQL = `SELECT e.seq, e.hash, m.high, m.slack
		FROM (SELECT seq, hash FROM transcript_events ORDER BY seq DESC LIMIT 1) e
		LEFT JOIN transcript_meta m ON m.id = 1`
	// raiseBoundsSQL never lowers a bound another writer raised.
	raiseBoundsSQL = `INSERT INTO transcript_meta (id, high, slack) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET
			high = CASE WHEN excluded.high > transcript_meta.high THEN excluded.high ELSE transcript_meta.high END,
			slack = CASE WHEN excluded.slack > transcript_meta.slack THEN excluded.slack ELSE transcript_meta.slack END`
	boundsSQL = `SELECT high, slack FROM transcript_meta WHERE id = 1`
)

// timeBounds are transcript_meta's row as an append sees it.
type timeBounds struct {
	high, slack int64
	known       bool // the row exists (or an event of this append set it)
	dirty       bool // an event of this append raised a bound
}

// add raises the bounds to cover an event at t appended after those they
// cover.
func (b *timeBounds) add(t int64) {
	if !b.known || t > b.high {
		b.high, b.known, b.dirty = satAdd(t, timeStep), true, true
	}
	if behind := satDiff(b.high, t); behind > b.slack {
		b.slack, b.dirty = behind, true
	}
}

// satDiff is a-b, within [math.MinInt64, math.MaxInt64]: times span the
// whole int64 range, and a wrapped difference would hide how far behind
// an event is.
func satDiff(a, b int64) int64 {
	switch d := a - b; {
	case b < 0 && d < a: // overflowed upwards
		return math.MaxInt64
	case b > 0 && d > a: // overflowed downwards
		return math.MinInt64
	default:
		return d
	}
}

// satAdd is a+d for d >= 0, at most math.MaxInt64.
func satAdd(a, d int64) int64 {
	if a > math.MaxInt64-d {
		return math.MaxInt64
	}
	return a + d
}

// satSub is a-d for d >= 0, at least math.MinInt64.
func satSub(a, d int64) int64 {
	if a < math.MinInt64+d {
		return math.MinInt64
	}
	return a - d
}

// dropTimeIndex brings a transcript written before the time bounds to
// them: in one transaction holding the chain lock, it scans the events'
// times in seq order, records the bounds they need and drops the time
// index. A store that has no time index has nothing to do.
func (r *Recorder) dropTimeIndex(ctx context.Context) error {
	// Looked for first without a transaction: every start (each CLI
	// command too) opens the recorder, and a write transaction would wait
	// on the chain's writer for nothing once the index is gone.
	if exists, err := r.timeIndexExists(ctx, r.db); err != nil || !exists {
		return err
	}
	tx, err := r.db.BeginTx(ctx, r.dialect.TxOptions())
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if r.dialect == sqldialect.Postgres {
		// Replicas starting together migrate one at a time, and none
		// appends while the bounds are computed.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, 0), pg_advisory_xact_lock($2, 0)`,
			sqldialect.LockRecorderSchema, sqldialect.LockChain); err != nil {
			return err
		}
	}
	// Again, holding the locks: another process may have migrated since.
	if exists, err := r.timeIndexExists(ctx, tx); err != nil || !exists {
		return err
	}
	b, err := scanBounds(ctx, tx)
	if err != nil {
		return err
	}
	if b.known {
		if _, err := tx.ExecContext(ctx, r.q(raiseBoundsSQL), b.high, b.slack); err != nil {
			return fmt.Errorf("recording the transcript's time bounds: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS transcript_events_time`); err != nil {
		return err
	}
	return tx.Commit()
}

// timeIndexExists reports whether the transcript still has the index on
// time an earlier airlock created.
func (r *Recorder) timeIndexExists(ctx context.Context, q queryer) (bool, error) {
	indexSQL := `SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'index' AND name = 'transcript_events_time'`
	if r.dialect == sqldialect.Postgres {
		indexSQL = `SELECT to_regclass('transcript_events_time') IS NOT NULL`
	}
	var exists bool
	if err := q.QueryRowContext(ctx, indexSQL).Scan(&exists); err != nil {
		return false, fmt.Errorf("looking for the time index: %w", err)
	}
	return exists, nil
}

// scanBounds computes the bounds the events need, in one pass.
func scanBounds(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) (timeBounds, error) {
	rows, err := q.QueryContext(ctx, `SELECT time FROM transcript_events ORDER BY seq`)
	if err != nil {
		return timeBounds{}, fmt.Errorf("reading the transcript's times: %w", err)
	}
	defer rows.Close()
	var b timeBounds
	for rows.Next() {
		var t int64
		if err := rows.Scan(&t); err != nil {
			return timeBounds{}, fmt.Errorf("reading the transcript's times: %w", err)
		}
		b.add(t)
	}
	if err := rows.Err(); err != nil {
		return timeBounds{}, fmt.Errorf("reading the transcript's times: %w", err)
	}
	return b, nil
}

// readBounds returns transcript_meta's bounds. With no row (no event was
// appended with the bounds kept: only a replica of an earlier airlock
// wrote to it) they are what queries assume: no latest time, and the
// least slack any append keeps.
func (r *Recorder) readBounds(ctx context.Context) (high, slack int64, err error) {
	err = r.read.QueryRowContext(ctx, boundsSQL).Scan(&high, &slack)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return math.MaxInt64, timeStep, nil
	case err != nil:
		return 0, 0, fmt.Errorf("reading the transcript's time bounds: %w", err)
	}
	return high, slack, nil
}

// seqRange is the seq range a Filter's time window is within: seq >= from
// (none when 0) and seq < to (none when 0).
type seqRange struct{ from, to int64 }

// seqRange finds the seq range f's Since and Until are within.
func (r *Recorder) seqRange(ctx context.Context, f Filter) (seqRange, error) {
	if f.Since.IsZero() && f.Until.IsZero() {
		return seqRange{}, nil
	}
	var first, last sql.NullInt64
	if err := r.read.QueryRowContext(ctx, `SELECT MIN(seq), MAX(seq) FROM transcript_events`).Scan(&first, &last); err != nil {
		return seqRange{}, fmt.Errorf("reading the transcript's seq range: %w", err)
	}
	if !first.Valid {
		return seqRange{}, nil
	}
	// The bounds are read after the seq range: they only rise, so they
	// cover every event up to last, however many were committed between
	// the two reads (read before, they would not cover those, and a
	// search landing on one far behind could skip events that match).
	_, slack, err := r.readBounds(ctx)
	if err != nil {
		return seqRange{}, err
	}
	if slack == math.MaxInt64 {
		// Times more than the int64 range apart (satDiff): no window.
		return seqRange{}, nil
	}
	var sr seqRange
	if !f.Since.IsZero() {
		if sr.from, err = r.boundary(ctx, satSub(f.Since.UnixNano(), slack), first.Int64, last.Int64); err != nil {
			return seqRange{}, err
		}
	}
	if !f.Until.IsZero() {
		to, err := r.boundary(ctx, satAdd(f.Until.UnixNano(), slack), first.Int64, last.Int64)
		if err != nil {
			return seqRange{}, err
		}
		// Past the last event, events appended since the search are not
		// cut off: their times are bounded by the time condition alone.
		if to <= last.Int64 {
			sr.to = to
		}
	}
	return sr, nil
}

// boundary returns b in [lo, hi+1] such that the last event before b has
// a time before t and the first at or after b (if any) a time at or after
// t, for events with seqs in [lo, hi] (gaps allowed), in O(log(hi-lo))
// lookups by primary key.
func (r *Recorder) boundary(ctx context.Context, t, lo, hi int64) (int64, error) {
	hi++ // invariant: the last event before lo is before t, the first at or after hi is not
	probe := r.q(`SELECT seq, time FROM transcript_events WHERE seq >= ? ORDER BY seq LIMIT 1`)
	for lo < hi {
		mid := lo + (hi-lo)/2
		var seq, at int64
		err := r.read.QueryRowContext(ctx, probe, mid).Scan(&seq, &at)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			hi = mid
			continue
		case err != nil:
			return 0, fmt.Errorf("searching the transcript by time: %w", err)
		}
		switch {
		case seq >= hi:
			hi = mid // no event in [mid, hi)
		case at >= t:
			hi = mid // the first event at or after mid is the one at seq
		default:
			lo = seq + 1
		}
	}
	return lo, nil
}
