package recorder

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Filter selects events. Empty fields match everything; Since is
// inclusive and Until exclusive; Limit 0 means no limit.
type Filter struct {
	Subject   string
	Tool      string
	Resource  string
	Effect    string
	CallID    string
	SessionID string
	Type      string    // event type, e.g. "call.decided"
	Since     time.Time // time >= Since
	Until     time.Time // time < Until
	AfterSeq  int64     // seq > AfterSeq: resume a listing or an export
	Limit     int
}

// where returns the SQL condition (never empty) and its arguments; sr is
// the seq range f's time window is within (Recorder.seqRange).
func (f Filter) where(sr seqRange) (string, []any) {
	conds := []string{"1=1"}
	var args []any
	eq := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = ?")
			args = append(args, v)
		}
	}
	eq("subject", f.Subject)
	eq("tool", f.Tool)
	eq("resource", f.Resource)
	eq("effect", f.Effect)
	eq("call_id", f.CallID)
	eq("session_id", f.SessionID)
	eq("type", f.Type)
	if !f.Since.IsZero() {
		conds = append(conds, "time >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		conds = append(conds, "time < ?")
		args = append(args, f.Until.UnixNano())
	}
	if f.AfterSeq > 0 {
		conds = append(conds, "seq > ?")
		args = append(args, f.AfterSeq)
	}
	if sr.from > 0 {
		conds = append(conds, "seq >= ?")
		args = append(args, sr.from)
	}
	if sr.to > 0 {
		conds = append(conds, "seq < ?")
		args = append(args, sr.to)
	}
	return strings.Join(conds, " AND "), args
}

func (f Filter) limit() string {
	if f.Limit > 0 {
		return fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return ""
}

const eventColumns = `seq, time, type, call_id, session_id, subject, issuer, token_id, tool, resource, effect, data, prev_hash, hash`

func scanEvent(sc interface{ Scan(...any) error }) (Event, error) {
	var (
		ev    Event
		nanos int64
		data  sql.NullString
	)
	err := sc.Scan(&ev.Seq, &nanos, &ev.Type, &ev.CallID, &ev.SessionID, &ev.Subject, &ev.Issuer, &ev.TokenID,
		&ev.Tool, &ev.Resource, &ev.Effect, &data, &ev.PrevHash, &ev.Hash)
	if err != nil {
		return Event{}, err
	}
	ev.Time = time.Unix(0, nanos).UTC()
	if data.Valid && data.String != "" {
		ev.Data = json.RawMessage(data.String)
	}
	return ev, nil
}

// each calls fn for every event f selects, in ascending seq.
func (r *Recorder) each(ctx context.Context, f Filter, fn func(Event) error) error {
	sr, err := r.seqRange(ctx, f)
	if err != nil {
		return err
	}
	where, args := f.where(sr)
	rows, err := r.read.QueryContext(ctx,
		r.q(`SELECT `+eventColumns+` FROM transcript_events WHERE `+where+` ORDER BY seq`+f.limit()), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Events returns the events f selects, in ascending seq.
func (r *Recorder) Events(ctx context.Context, f Filter) ([]Event, error) {
	var evs []Event
	err := r.each(ctx, f, func(ev Event) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing transcript events: %w", err)
	}
	return evs, nil
}

// Export writes the events f selects to w as JSON lines, one Event per
// line in ascending seq, hashes included. An export with an empty Filter
// is a complete chain that VerifyJSONL can check.
func (r *Recorder) Export(ctx context.Context, w io.Writer, f Filter) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := r.each(ctx, f, func(ev Event) error { return enc.Encode(ev) }); err != nil {
		return fmt.Errorf("exporting transcript: %w", err)
	}
	return nil
}

// CallSummary is one call, assembled from all of its events.
type CallSummary struct {
	CallID    string        `json:"call_id"`
	SessionID string        `json:"session_id,omitempty"`
	Time      time.Time     `json:"time"` // first event
	Subject   string        `json:"subject,omitempty"`
	Tool      string        `json:"tool,omitempty"`
	Resource  string        `json:"resource,omitempty"`
	Effect    string        `json:"effect,omitempty"`
	Outcome   string        `json:"outcome"`  // type of the last event, e.g. call.completed
	Duration  time.Duration `json:"duration"` // first to last event
	Events    int           `json:"events"`
}

// Calls returns one summary per call with at least one event f selects,
// newest call first. A call's fields come from all its events, not only
// the selected ones (an Effect filter matches the decision event, but the
// outcome is still the call's last event). Limit counts calls.
func (r *Recorder) Calls(ctx context.Context, f Filter) ([]CallSummary, error) {
	sr, err := r.seqRange(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("listing calls: %w", err)
	}
	where, args := f.where(sr)
	// MAX over text picks the non-empty value: an attribute is set on the
	// events that know it and empty on the others. The subject is the
	// caller's, from the call's first event: later events of the call can
	// name someone else (the approver of approval.decided).
	rows, err := r.read.QueryContext(ctx, r.q(`
		SELECT e.call_id, MAX(e.session_id), MIN(e.time), MAX(e.time),
			(SELECT f.subject FROM transcript_events f WHERE f.call_id = e.call_id ORDER BY f.seq LIMIT 1), MAX(e.tool),
			MAX(e.resource), MAX(e.effect), COUNT(*),
			(SELECT l.type FROM transcript_events l WHERE l.call_id = e.call_id ORDER BY l.seq DESC LIMIT 1)
		FROM transcript_events e
		WHERE e.call_id IN (SELECT call_id FROM transcript_events WHERE call_id <> '' AND `+where+`)
		GROUP BY e.call_id
		ORDER BY MIN(e.seq) DESC`+f.limit()), args...)
	if err != nil {
		return nil, fmt.Errorf("listing calls: %w", err)
	}
	defer rows.Close()
	var calls []CallSummary
	for rows.Next() {
		var (
			c           CallSummary
			first, last int64
		)
		err := rows.Scan(&c.CallID, &c.SessionID, &first, &last, &c.Subject, &c.Tool, &c.Resource, &c.Effect, &c.Events, &c.Outcome)
		if err != nil {
			return nil, fmt.Errorf("listing calls: %w", err)
		}
		c.Time = time.Unix(0, first).UTC()
		c.Duration = time.Duration(last - first)
		calls = append(calls, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing calls: %w", err)
	}
	return calls, nil
}
