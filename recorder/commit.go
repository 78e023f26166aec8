package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// Group commit. An append joins the recorder's queue and waits. When no
// append is being written, the one that arrives wakes the leader, or
// starts one: a goroutine that takes what is queued (up to maxBatch
// events) and writes it in one transaction, under the chain lock, each
// event chained to the one before it; then it tells every append of the
// batch how it went. Appends that arrive while a batch is being written
// queue for the next, which the leader writes as soon as the batch is
// committed. A leader with nothing queued waits leaderIdle for the next
// append before it exits. A lone append is
// written at once, in its own transaction; under load a batch holds what
// arrived during one commit, so the store syncs its log once for all of
// them. An append waits no longer than its timeout and a read-back
// (stuckAfter): a writer stuck beyond that is abandoned (abandon).
//
//	append ─┐                       ┌─▶ done (seq n)
//	append ─┼─▶ queue ─▶ leader: BEGIN; lock; head; INSERT n, n+1, …; COMMIT
//	append ─┘                       └─▶ done (seq n+1) …
//
// No append returns before its transaction is committed. When one event of
// a batch cannot be written (its insert fails, its hook fails or panics),
// the transaction is rolled back, the others are written again without it,
// and then it is tried once more alone, so that what it is told is its own
// outcome (a transaction the server ended shows at whichever statement
// comes next); a commit that fails with no one to blame splits the batch
// in halves (write): an event is never committed with one another append
// was told failed, nor lost because another failed.

// maxBatch bounds the appends (an AppendAll counts once) one transaction
// writes.
const maxBatch = 256

// request is one append waiting in the queue: one event, or several
// (AppendAll) that are committed together or not at all.
type request struct {
	evs      []Event
	hooks    []TxHook // hooks[i] runs after evs[i]'s insert; nil entries none
	deadline time.Time
	done     chan struct{}
	err      error // set, with evs, before done is closed
	finished bool  // done is closed; read and written by the leader only
}

func (q *request) finish(evs []Event, err error) {
	q.evs, q.err, q.finished = evs, err, true
	close(q.done)
}

// enqueue appends evs (already validated and canonical) and waits for the
// commit of its batch.
func (r *Recorder) enqueue(evs []Event, hooks []TxHook) ([]Event, error) {
	q := &request{evs: evs, hooks: hooks, deadline: time.Now().Add(r.timeout), done: make(chan struct{})}
	r.mu.Lock()
	if r.stuck {
		r.mu.Unlock()
		return nil, fmt.Errorf("recording %s: %w", evs[0].Type, errWriterStuck)
	}
	r.queue = append(r.queue, q)
	lead := !r.leading
	r.leading = true
	r.mu.Unlock()
	if lead {
		// Batches are written on a goroutine of their own, never a
		// caller's: what a hook does to the goroutine it runs on (a
		// runtime.Goexit) takes no caller with it. An idle leader takes
		// the lead if one is waiting (lead), else a new one starts.
		select {
		case r.wake <- struct{}{}:
		default:
			go r.lead()
		}
	}
	late := time.NewTimer(time.Until(q.deadline) + r.late)
	defer late.Stop()
	select {
	case <-q.done:
	case <-late.C:
		if err := r.abandon(q, evs[0].Type); err != nil {
			return nil, err
		}
	}
	if q.err != nil {
		return nil, q.err
	}
	return q.evs, nil
}

// A writer that has not finished a request this long after its deadline
// is stuck (a hook that never returns, a driver wedged under it): longer
// than a healthy one takes, which is the deadline and a read-back.
const stuckAfter = readBackTimeout + 3*time.Second

var errWriterStuck = errors.New("the transcript's writer is stuck on an earlier batch (restart airlock if this lasts)")

// abandon answers an append whose batch's writer is stuck. One still in
// the queue is taken out of it, never written; one the writer holds may
// yet be committed (ErrOutcomeUnknown). Until that writer returns, new
// appends are refused at once rather than queued behind it. It returns
// nil if the request was finished meanwhile. It reads nothing of q that
// the leader writes (typ is the caller's).
func (r *Recorder) abandon(q *request, typ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-q.done:
		return nil
	default:
	}
	if i := slices.Index(r.queue, q); i >= 0 {
		r.queue = slices.Delete(r.queue, i, i+1)
		return fmt.Errorf("recording %s: %w", typ, errWriterStuck)
	}
	r.stuck = true
	return fmt.Errorf("recording %s: %w (%w)", typ, ErrOutcomeUnknown, errWriterStuck)
}

// leaderIdle is how long a leader with nothing queued waits for the next
// append before it exits. One that stays keeps the stack it grew: a new
// goroutine starts with a few KiB and grows it through the store driver's
// deep calls, copying it several times for every batch (a sixth of an
// append's instructions, counted by callgrind in BenchmarkAppend).
const leaderIdle = 100 * time.Millisecond

// lead writes batches from the queue while appends are waiting, then waits
// r.idle (leaderIdle) to be woken for the next (enqueue) before it exits.
func (r *Recorder) lead() {
	idle := time.NewTimer(r.idle)
	defer idle.Stop()
	for {
		if more := r.leadOne(); more {
			continue
		}
		idle.Reset(r.idle)
		select {
		case <-r.wake:
		case <-idle.C:
			return
		}
	}
}

// leadOne writes one batch from the queue and reports whether more appends
// are waiting; then the caller goes on leading. A leader stopped by a
// hook's runtime.Goexit hands the lead to a new goroutine if they are.
func (r *Recorder) leadOne() (more bool) {
	r.mu.Lock()
	n := min(len(r.queue), r.batch)
	batch := r.queue[:n:n]
	if n == len(r.queue) {
		r.queue = nil
	} else {
		r.queue = r.queue[n:]
	}
	r.mu.Unlock()

	written, exiting := false, false
	defer func() {
		r.mu.Lock()
		more = len(r.queue) > 0
		r.leading, r.stuck = more, false
		r.mu.Unlock()
		if more && exiting {
			go r.lead()
		}
	}()
	defer func() {
		// Whatever stops writeBatch before it has finished every request
		// (a panic tryBatch did not take, a runtime.Goexit) fails the
		// unfinished ones, rather than the goroutine that happens to lead,
		// every append after it, or callers left waiting.
		p := recover()
		if written {
			return
		}
		why := "it stopped"
		if p != nil {
			why = fmt.Sprintf("panic: %v", p)
		} else {
			exiting = true // runtime.Goexit: this goroutine leads no more
		}
		for _, q := range batch {
			if !q.finished {
				q.finish(nil, fmt.Errorf("recording %s: the append's transaction did not finish (%s)", q.evs[0].Type, why))
			}
		}
	}()
	r.writeBatch(batch)
	written = true
	return // the first deferred function sets more
}

// writeBatch commits the batch's events in one transaction and finishes
// every request in it.
func (r *Recorder) writeBatch(batch []*request) {
	now := time.Now()
	live := make([]*request, 0, len(batch))
	var deadline time.Time
	for _, q := range batch {
		if !now.Before(q.deadline) {
			q.finish(nil, fmt.Errorf("recording %s: waited for the store beyond the append timeout: %w", q.evs[0].Type, context.DeadlineExceeded))
			continue
		}
		if deadline.IsZero() || q.deadline.Before(deadline) {
			deadline = q.deadline
		}
		live = append(live, q)
	}
	if len(live) == 0 {
		return
	}
	// The batch is bounded by the earliest deadline in it, so no append
	// waits longer than its timeout (but for the read-back of a commit
	// that lost its answer: committed).
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	r.write(ctx, live)
}

// write commits the requests' events in one transaction if it can. When
// one request's insert or hook fails, the others are written again
// without it and then it alone; when the commit fails, not made, with no
// request to blame (a deferred check, a transaction the server ended),
// each half of the batch is written as a batch of its own, so a culprit
// is found in a few transactions and the rest are made.
func (r *Recorder) write(ctx context.Context, live []*request) {
	var suspects []*request
	for len(live) > 0 {
		evs, bad, err := r.tryBatch(ctx, live)
		if bad == splitBatch {
			if len(live) == 1 {
				live[0].finish(nil, err)
			} else {
				half := len(live) / 2
				r.write(ctx, live[:half:half])
				r.write(ctx, live[half:])
			}
			break
		}
		if bad < 0 {
			for i, q := range live {
				if err != nil {
					q.finish(nil, err)
				} else {
					q.finish(evs[i], nil)
				}
			}
			break
		}
		if len(live) == 1 {
			live[0].finish(nil, err) // alone: the error is its own
			break
		}
		// One event or its hook failed, or the transaction under it did
		// (a transaction the server ended shows at whichever statement
		// comes next): the rest go again without it, and then it goes
		// once more alone, so that it gets its own error, never a
		// neighbour's.
		suspects = append(suspects, live[bad])
		live = append(live[:bad:bad], live[bad+1:]...)
	}
	for _, q := range suspects {
		evs, _, err := r.tryBatch(ctx, []*request{q})
		if err != nil {
			q.finish(nil, err)
		} else {
			q.finish(evs[0], nil)
		}
	}
}

// tryBatch writes the requests' events in one transaction. It returns the
// stored events, or the index of the request whose event or hook failed
// (the transaction rolled back) and its error, or splitBatch and the error
// of a commit that was not made, or -1 and an error that fails the whole
// batch.
func (r *Recorder) tryBatch(ctx context.Context, batch []*request) (_ [][]Event, bad int, err error) {
	first := batch[0].evs[0].Type
	at := -1 // the request whose statements run
	defer func() {
		// A hook that panics fails its own request (the transaction is
		// rolled back by then), as one that returns an error does.
		if p := recover(); p != nil {
			typ := first
			if at >= 0 {
				typ = batch[at].evs[0].Type
			}
			bad, err = at, fmt.Errorf("recording %s: panic in the append's transaction: %v", typ, p)
		}
	}()
	st, err := r.statements(ctx)
	if err != nil {
		return nil, -1, fmt.Errorf("recording %s: %w", first, err)
	}
	tx, err := r.db.BeginTx(ctx, r.dialect.TxOptions())
	if err != nil {
		return nil, -1, fmt.Errorf("recording %s: %w", first, err)
	}
	defer tx.Rollback()
	if err := r.lockChain(ctx, tx); err != nil {
		return nil, -1, fmt.Errorf("recording %s: %w", first, err)
	}
	seq, prev, bounds, insertQ, err := st.bind(ctx, tx)
	if err != nil {
		return nil, -1, fmt.Errorf("recording %s: %w", first, err)
	}
	evs := make([][]Event, len(batch))
	for i, q := range batch {
		at = i
		evs[i] = make([]Event, len(q.evs))
		for j, ev := range q.evs {
			ev.Seq, ev.PrevHash = seq+1, prev
			ev.Hash = computeHash(ev)
			var dataArg any
			if len(ev.Data) > 0 {
				dataArg = string(ev.Data)
			}
			if _, err := insertQ.ExecContext(ctx, ev.Seq, ev.Time.UnixNano(), ev.Type, ev.CallID, ev.SessionID, ev.Subject,
				ev.Issuer, ev.TokenID, ev.Tool, ev.Resource, ev.Effect, dataArg, ev.PrevHash, ev.Hash); err != nil {
				return nil, i, fmt.Errorf("recording %s: %w", ev.Type, err)
			}
			if j < len(q.hooks) && q.hooks[j] != nil {
				if err := q.hooks[j](ctx, tx); err != nil {
					return nil, i, fmt.Errorf("recording %s: %w", ev.Type, err)
				}
			}
			evs[i][j] = ev
			seq, prev = ev.Seq, ev.Hash
			bounds.add(ev.Time.UnixNano())
		}
	}
	at = -1
	if bounds.dirty {
		if _, err := st.raise(ctx, tx).ExecContext(ctx, bounds.high, bounds.slack); err != nil {
			return nil, -1, fmt.Errorf("recording %s: raising the transcript's time bounds: %w", first, err)
		}
	}
	if err := tx.Commit(); err != nil {
		// The answer to a COMMIT can be lost after the server made it (a
		// connection cut at that moment): the batch's last event, read back
		// by its seq and hash (which no other event can have), tells.
		made, rerr := r.committed(seq, prev)
		switch {
		case rerr != nil:
			return nil, -1, fmt.Errorf("recording %s: %w (commit: %w; reading it back: %v)", first, ErrOutcomeUnknown, err, rerr)
		case !made:
			// Perhaps for what one request's statements did (a deferred
			// check, a transaction the server ended while a hook ran):
			// write splits the batch.
			return nil, splitBatch, fmt.Errorf("recording %s: commit: %w", first, err)
		}
	}
	r.commits.Add(1)
	for _, e := range evs {
		r.events.Add(int64(len(e)))
	}
	return evs, -1, nil
}

// splitBatch is tryBatch's answer for a commit that failed, not made.
const splitBatch = -2

// committed reports whether the event at seq with hash is in the store. A
// store that does not answer is asked again for a few seconds (a
// connection cut at a commit is often a store restarting); if it never
// answers, the error says so. On PostgreSQL the read waits for the chain
// lock first: the transaction whose answer was lost holds it until the
// server has committed or aborted it, so a read taken before then cannot
// miss a commit still being made.
func (r *Recorder) committed(seq int64, hash string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), readBackTimeout)
	defer cancel()
	for {
		made, err := r.readBack(ctx, seq, hash)
		if err == nil {
			return made, nil
		}
		select {
		case <-ctx.Done():
			return false, err
		case <-time.After(readBackRetry):
		}
	}
}

func (r *Recorder) readBack(ctx context.Context, seq int64, hash string) (bool, error) {
	tx, err := r.db.BeginTx(ctx, r.dialect.TxOptions())
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if err := r.lockChain(ctx, tx); err != nil {
		return false, err
	}
	var one int
	err = tx.QueryRowContext(ctx, r.q(`SELECT 1 FROM transcript_events WHERE seq = ? AND hash = ?`), seq, hash).Scan(&one)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	}
	return false, err
}

// How long, and how often, a commit whose answer was lost is read back:
// on PostgreSQL for longer than the server keeps a transaction whose
// COMMIT never arrived (chainIdleTimeout), so the read-back, waiting on
// the chain lock, learns how it ended. An append whose commit lost its
// answer can take this long beyond its timeout.
const (
	readBackTimeout = chainIdleTimeout + 2*time.Second
	readBackRetry   = 100 * time.Millisecond
)

const (
	headSQL   = `SELECT seq, hash FROM transcript_events ORDER BY seq DESC LIMIT 1`
	insertSQL = `INSERT INTO transcript_events
		(seq, time, type, call_id, session_id, subject, issuer, token_id, tool, resource, effect, data, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// statements are the append's statements. SQLite's driver parses a
// statement every time it is run unless it is prepared, and parsing was a
// fifth of an append's CPU: on SQLite they are prepared once, on the
// writer connection (its only one), and bound to each transaction. pgx
// keeps a cache of prepared statements per connection itself.
type statements struct {
	head, insert, raiseBounds *sql.Stmt // nil for PostgreSQL
	insertSQL, raiseSQL       string
}

func (r *Recorder) statements(ctx context.Context) (*statements, error) {
	r.stmtMu.Lock()
	defer r.stmtMu.Unlock()
	if r.stmts != nil {
		return r.stmts, nil
	}
	st := &statements{insertSQL: r.q(insertSQL), raiseSQL: r.q(raiseBoundsSQL)}
	if r.dialect == sqldialect.SQLite {
		var prepared []*sql.Stmt
		for _, p := range []struct {
			to    **sql.Stmt
			query string
		}{{&st.head, headBoundsSQL}, {&st.insert, st.insertSQL}, {&st.raiseBounds, st.raiseSQL}} {
			s, err := r.db.PrepareContext(ctx, p.query)
			if err != nil {
				for _, s := range prepared {
					s.Close()
				}
				return nil, fmt.Errorf("preparing the transcript's statements: %w", err)
			}
			*p.to = s
			prepared = append(prepared, s)
		}
	}
	r.stmts = st
	return st, nil
}

// txExecer runs one statement in a transaction.
type txExecer interface {
	ExecContext(ctx context.Context, args ...any) (sql.Result, error)
}

// bind reads the head and the time bounds in tx and returns the insert
// for tx.
func (st *statements) bind(ctx context.Context, tx *sql.Tx) (int64, string, timeBounds, txExecer, error) {
	if st.head == nil {
		seq, hash, b, err := scanHeadBounds(tx.QueryRowContext(ctx, headBoundsSQL))
		return seq, hash, b, txStatement{tx: tx, query: st.insertSQL}, err
	}
	seq, hash, b, err := scanHeadBounds(tx.StmtContext(ctx, st.head).QueryRowContext(ctx))
	return seq, hash, b, tx.StmtContext(ctx, st.insert), err
}

// raise returns the statement that raises the time bounds, for tx.
func (st *statements) raise(ctx context.Context, tx *sql.Tx) txExecer {
	if st.raiseBounds == nil {
		return txStatement{tx: tx, query: st.raiseSQL}
	}
	return tx.StmtContext(ctx, st.raiseBounds)
}

// scanHeadBounds reads the result of headBoundsSQL.
func scanHeadBounds(row *sql.Row) (int64, string, timeBounds, error) {
	var (
		seq         int64
		hash        string
		high, slack sql.NullInt64
	)
	err := row.Scan(&seq, &hash, &high, &slack)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, GenesisHash, timeBounds{}, nil
	}
	if err != nil {
		return 0, "", timeBounds{}, fmt.Errorf("reading transcript head: %w", err)
	}
	if !high.Valid {
		// Events and no bounds: written by a replica of an earlier airlock
		// (or the row was deleted). Nothing bounds their times short of a
		// scan: queries by time read every event from now on.
		return seq, hash, timeBounds{high: math.MaxInt64, slack: math.MaxInt64, known: true, dirty: true}, nil
	}
	return seq, hash, timeBounds{high: high.Int64, slack: slack.Int64, known: true}, nil
}

// txStatement runs an unprepared statement in a transaction.
type txStatement struct {
	tx    *sql.Tx
	query string
}

func (s txStatement) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	return s.tx.ExecContext(ctx, s.query, args...)
}
