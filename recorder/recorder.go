package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sentinel errors.
var (
	// ErrInvalidEvent is returned by Append for an event that cannot be
	// recorded faithfully (no type, invalid JSON data, invalid UTF-8).
	ErrInvalidEvent = errors.New("recorder: invalid event")
	// ErrNotFound is returned by VerifyAnchor when the anchored event is gone.
	ErrNotFound = errors.New("recorder: event not found")
	// ErrAnchorMismatch is returned by VerifyAnchor when the stored event's
	// hash differs from the anchored one.
	ErrAnchorMismatch = errors.New("recorder: anchored hash does not match")
)

// DefaultAppendTimeout bounds one Append, including the wait for the
// writer connection.
const DefaultAppendTimeout = 10 * time.Second

const schema = `
CREATE TABLE IF NOT EXISTS transcript_events (
	seq         INTEGER PRIMARY KEY,
	time        INTEGER NOT NULL,  -- unix nanoseconds, UTC
	type        TEXT NOT NULL,
	call_id     TEXT NOT NULL DEFAULT '',
	session_id  TEXT NOT NULL DEFAULT '',
	subject     TEXT NOT NULL DEFAULT '',
	issuer      TEXT NOT NULL DEFAULT '',
	token_id    TEXT NOT NULL DEFAULT '',
	tool        TEXT NOT NULL DEFAULT '',
	resource    TEXT NOT NULL DEFAULT '',
	effect      TEXT NOT NULL DEFAULT '',
	data        TEXT,              -- canonical JSON, hashed byte for byte
	prev_hash   TEXT NOT NULL,
	hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transcript_events_call_id ON transcript_events (call_id, seq);
CREATE INDEX IF NOT EXISTS transcript_events_time ON transcript_events (time);
CREATE INDEX IF NOT EXISTS transcript_events_subject ON transcript_events (subject, seq);
`

// Recorder appends events to the hash-chained transcript and reads them
// back. It is safe for concurrent use.
type Recorder struct {
	db      *sql.DB // writes
	read    *sql.DB // queries, verification, export
	now     func() time.Time
	timeout time.Duration

	mu sync.Mutex // serialises appends so the chain is linear
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithClock sets the clock that stamps events whose Time is zero.
func WithClock(now func() time.Time) Option { return func(r *Recorder) { r.now = now } }

// WithReadDB sets a separate (read-only) pool for Events, Calls, Export,
// Verify and Head, so long reads do not hold the writer connection.
func WithReadDB(db *sql.DB) Option { return func(r *Recorder) { r.read = db } }

// WithAppendTimeout bounds each Append (default DefaultAppendTimeout).
func WithAppendTimeout(d time.Duration) Option { return func(r *Recorder) { r.timeout = d } }

// New returns a Recorder writing to db and creates its table if missing.
// db should begin transactions IMMEDIATE (broker/store's writer pool does),
// so concurrent writers from another process wait rather than fail.
func New(db *sql.DB, opts ...Option) (*Recorder, error) {
	r := &Recorder{db: db, read: db, now: time.Now, timeout: DefaultAppendTimeout}
	for _, o := range opts {
		o(r)
	}
	if r.db == nil || r.read == nil || r.now == nil || r.timeout <= 0 {
		return nil, errors.New("recorder: nil database or clock, or non-positive timeout")
	}
	if _, err := db.Exec(schema); err != nil {
		return nil, fmt.Errorf("creating transcript table: %w", err)
	}
	return r, nil
}

// Append assigns the event its Seq, Time (when zero), PrevHash and Hash,
// and writes it in one transaction. Data must be valid JSON; it is stored
// in canonical form (compact, sorted keys). It returns the stored event.
//
// Append fails closed: any error means the event was not recorded, and the
// caller must not go on with the step it describes. It is not cut short by
// ctx's cancellation (a cancelled call still leaves its transcript), only
// by the append timeout.
func (r *Recorder) Append(ctx context.Context, ev Event) (Event, error) {
	data, err := canonicalJSON(ev.Data)
	if err != nil {
		return Event{}, fmt.Errorf("%w: data: %v", ErrInvalidEvent, err)
	}
	ev.Data = data
	if ev.Time.IsZero() {
		ev.Time = r.now()
	}
	ev.Time = ev.Time.UTC() // also drops the monotonic reading
	if err := ev.check(); err != nil {
		return Event{}, err
	}

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()

	r.mu.Lock()
	defer r.mu.Unlock()

	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return Event{}, fmt.Errorf("recording %s: %w", ev.Type, err)
	}
	defer tx.Rollback()

	ev.Seq, ev.PrevHash, err = head(ctx, tx)
	if err != nil {
		return Event{}, fmt.Errorf("recording %s: %w", ev.Type, err)
	}
	ev.Seq++
	if ev.Hash, err = computeHash(ev); err != nil {
		return Event{}, fmt.Errorf("recording %s: hashing: %w", ev.Type, err)
	}

	var dataArg any
	if len(ev.Data) > 0 {
		dataArg = string(ev.Data)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO transcript_events
		(seq, time, type, call_id, session_id, subject, issuer, token_id, tool, resource, effect, data, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.Seq, ev.Time.UnixNano(), ev.Type, ev.CallID, ev.SessionID, ev.Subject, ev.Issuer, ev.TokenID,
		ev.Tool, ev.Resource, ev.Effect, dataArg, ev.PrevHash, ev.Hash)
	if err != nil {
		return Event{}, fmt.Errorf("recording %s: %w", ev.Type, err)
	}
	if err := tx.Commit(); err != nil {
		return Event{}, fmt.Errorf("recording %s: commit: %w", ev.Type, err)
	}
	return ev, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// head returns the last event's seq and hash, or 0 and GenesisHash.
func head(ctx context.Context, q queryer) (int64, string, error) {
	var (
		seq  int64
		hash string
	)
	err := q.QueryRowContext(ctx, `SELECT seq, hash FROM transcript_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, GenesisHash, nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("reading transcript head: %w", err)
	}
	return seq, hash, nil
}

// Head returns the seq and hash of the last event (0 and GenesisHash for
// an empty transcript). The chain cannot reveal that events were cut off
// its tail, or that the whole tail was rewritten with fresh hashes;
// publishing the head somewhere the database's writers cannot reach (a
// log line, a SIEM, a ticket) anchors everything up to it. VerifyAnchor
// checks a published head later.
func (r *Recorder) Head(ctx context.Context) (seq int64, hash string, err error) {
	return head(ctx, r.read)
}

// VerifyAnchor checks that the event at seq still has hash, as published
// earlier by Head. Together with a successful Verify this shows that no
// event up to seq was changed, removed or inserted, and that the
// transcript was not truncated below seq.
func (r *Recorder) VerifyAnchor(ctx context.Context, seq int64, hash string) error {
	if seq == 0 && hash == GenesisHash {
		return nil
	}
	var stored string
	err := r.read.QueryRowContext(ctx, `SELECT hash FROM transcript_events WHERE seq = ?`, seq).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("anchor seq %d: %w (transcript truncated or event removed)", seq, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("checking anchor seq %d: %w", seq, err)
	}
	if stored != hash {
		return fmt.Errorf("anchor seq %d: %w: stored %s, anchored %s", seq, ErrAnchorMismatch, stored, hash)
	}
	return nil
}
