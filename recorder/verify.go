package recorder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Reason names how the chain is broken.
type Reason string

// Reasons reported by Verify.
const (
	// ReasonChanged: an event's stored fields no longer hash to its stored
	// hash, or an event was rewritten and re-hashed (its successor still
	// points at the old hash).
	ReasonChanged Reason = "changed"
	// ReasonRemoved: one or more events are missing (a gap in seq where the
	// prev_hash link is broken too).
	ReasonRemoved Reason = "removed"
	// ReasonInserted: an event that is not part of the original chain — its
	// successor links past it, its prev_hash does not match its
	// predecessor, or its seq repeats or goes backwards.
	ReasonInserted Reason = "inserted"
	// ReasonTruncated: the chain ends before the head a checkpoint names:
	// events were cut off its end.
	ReasonTruncated Reason = "truncated"
	// ReasonCheckpoint: the event a checkpoint names has another hash (the
	// chain was rewritten up to it and re-hashed), or the latest checkpoint
	// is not signed with the checkpoint key (forged, or another key).
	ReasonCheckpoint Reason = "checkpoint"
	// ReasonTimeBounds: the chain is intact, but the bounds on its times
	// that queries by time rely on (transcript_meta) are lower than its
	// events need: such queries could miss events.
	ReasonTimeBounds Reason = "time-bounds"
)

// CheckpointProof says how far a checkpoint's proof reaches: every event
// up to HeadSeq is as it was when the checkpoint was signed at Time.
// Events after it (After of them) are covered by the chain alone, until
// the next checkpoint.
type CheckpointProof struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	HeadSeq int64     `json:"head_seq"`
	// Signed is true when the signature was checked with the checkpoint
	// key; false when Verify had no key (the checkpoint was taken as it is).
	Signed bool   `json:"signed"`
	KeyID  string `json:"key_id,omitempty"`
	After  int64  `json:"after"` // events after the checkpoint's head
}

// VerifyReport is the result of checking the chain from the first event.
type VerifyReport struct {
	OK       bool   `json:"ok"`
	Count    int64  `json:"count"`     // events verified good, from the start
	HeadSeq  int64  `json:"head_seq"`  // last good event (0 if none)
	HeadHash string `json:"head_hash"` // its hash (GenesisHash if none)

	// On failure:
	BadSeq int64  `json:"bad_seq,omitempty"` // first bad event (for removed: the first missing seq)
	Reason Reason `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`

	// Checkpoint is the latest checkpoint the chain was checked against;
	// nil when there is none (then nothing shows a cut-off tail).
	Checkpoint *CheckpointProof `json:"checkpoint,omitempty"`
}

// Verify recomputes the chain from the first event and stops at the first
// break. It reads through the read pool; events appended while it runs may
// or may not be included.
//
// A clean report proves the events are those appended, in order, with
// nothing removed or inserted between them. It then checks the chain
// against the latest checkpoint (see Checkpoint): the chain must reach the
// checkpoint's head, with the same hash, and with a checkpoint key the
// checkpoint must be signed with it. That catches a tail cut off, or
// rewritten wholesale, up to the checkpoint; report.Checkpoint says how far
// back the proof reaches. Events after the latest checkpoint are covered by
// the chain alone: compare the head with one published earlier (Head,
// VerifyAnchor, the checkpoint log lines).
func (r *Recorder) Verify(ctx context.Context) (VerifyReport, error) {
	cp, err := r.LatestCheckpoint(ctx)
	hasCP := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return VerifyReport{}, fmt.Errorf("verifying transcript: %w", err)
	}
	rows, err := r.read.QueryContext(ctx, `SELECT `+eventColumns+` FROM transcript_events ORDER BY seq`)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("verifying transcript: %w", err)
	}
	defer rows.Close()
	var (
		atCP  string // hash of the event at the checkpoint's head, as stored
		times timesSeen
	)
	rep, err := verify(func() (Event, bool, error) {
		if !rows.Next() {
			return Event{}, false, rows.Err()
		}
		ev, err := scanEvent(rows)
		if hasCP && err == nil && ev.Seq == cp.HeadSeq {
			atCP = ev.Hash
		}
		if err == nil {
			times.add(ev.Seq, ev.Time.UnixNano())
		}
		return ev, err == nil, err
	})
	if err != nil {
		return VerifyReport{}, fmt.Errorf("verifying transcript: %w", err)
	}
	if !rep.OK {
		return rep, nil
	}
	if hasCP {
		if rep = r.checkCheckpoint(rep, cp, atCP); !rep.OK {
			return rep, nil
		}
	}
	// Read after the events: bounds only rise, so an append made since
	// cannot make them look short.
	return r.checkTimeBounds(ctx, rep, times)
}

// timesSeen is what Verify learns of the events' times, in seq order.
type timesSeen struct {
	n                int64
	latest           int64 // the latest time
	latestSeq        int64 // an event with it
	behind, behindAt int64 // the furthest an event's time is behind one before it, and that event's seq
}

func (ts *timesSeen) add(seq, t int64) {
	if ts.n == 0 || t > ts.latest {
		ts.latest, ts.latestSeq = t, seq
	}
	if b := satDiff(ts.latest, t); b > ts.behind {
		ts.behind, ts.behindAt = b, seq
	}
	ts.n++
}

// checkTimeBounds checks transcript_meta against the events' times: a
// bound lower than the events need would hide events from queries by time
// (timebounds.go), so it fails the report.
func (r *Recorder) checkTimeBounds(ctx context.Context, rep VerifyReport, ts timesSeen) (VerifyReport, error) {
	if ts.n == 0 {
		return rep, nil
	}
	high, slack, err := r.readBounds(ctx)
	if err != nil {
		return VerifyReport{}, fmt.Errorf("verifying transcript: %w", err)
	}
	fail := func(seq int64, format string, args ...any) (VerifyReport, error) {
		rep.OK, rep.BadSeq, rep.Reason, rep.Detail = false, seq, ReasonTimeBounds, fmt.Sprintf(format, args...)
		return rep, nil
	}
	switch {
	case ts.behind > slack:
		return fail(ts.behindAt, "event %d's time is %v behind an earlier event's, more than the %v transcript_meta allows: queries by time could miss events (transcript_meta was altered, or written by another program)",
			ts.behindAt, time.Duration(ts.behind), time.Duration(slack))
	case ts.latest > high:
		return fail(ts.latestSeq, "event %d's time is after the latest time transcript_meta allows: events appended later could be missed by queries by time (transcript_meta was altered, or written by another program)",
			ts.latestSeq)
	}
	return rep, nil
}

// checkCheckpoint checks a chain that verified against checkpoint cp;
// atCP is the stored hash of the event at cp.HeadSeq ("" if none).
func (r *Recorder) checkCheckpoint(rep VerifyReport, cp Checkpoint, atCP string) VerifyReport {
	proof := &CheckpointProof{ID: cp.ID, Time: cp.Time, HeadSeq: cp.HeadSeq, KeyID: cp.KeyID, After: rep.HeadSeq - cp.HeadSeq}
	rep.Checkpoint = proof
	fail := func(seq int64, reason Reason, format string, args ...any) VerifyReport {
		rep.OK, rep.BadSeq, rep.Reason, rep.Detail = false, seq, reason, fmt.Sprintf(format, args...)
		return rep
	}
	when := cp.Time.Format(time.RFC3339)
	if len(r.key) > 0 {
		if !checkSignature(r.key, cp) {
			return fail(cp.HeadSeq, ReasonCheckpoint,
				"checkpoint %d (head #%d, %s) is not signed with this installation's checkpoint key (key id %s, checkpoint's %q): it was forged or written with another key",
				cp.ID, cp.HeadSeq, when, keyID(r.key), cp.KeyID)
		}
		proof.Signed = true
	}
	switch {
	case cp.HeadSeq == 0:
	case rep.HeadSeq < cp.HeadSeq:
		proof.After = 0
		return fail(rep.HeadSeq+1, ReasonTruncated,
			"checkpoint %d of %s says the transcript reached event #%d, but it ends at #%d: events #%d to #%d were removed from its end",
			cp.ID, when, cp.HeadSeq, rep.HeadSeq, rep.HeadSeq+1, cp.HeadSeq)
	case atCP != cp.HeadHash:
		return fail(cp.HeadSeq, ReasonCheckpoint,
			"event #%d does not have the hash checkpoint %d of %s names: the transcript was rewritten up to it and re-hashed",
			cp.HeadSeq, cp.ID, when)
	}
	return rep
}

// VerifyJSONL verifies a complete export (Export with an empty Filter) read
// from rd, without the database: a SIEM or an auditor can check a copy.
// A filtered export is not a chain and does not verify.
func VerifyJSONL(rd io.Reader) (VerifyReport, error) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	line := 0
	return verify(func() (Event, bool, error) {
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			var ev Event
			if err := json.Unmarshal(b, &ev); err != nil {
				return Event{}, false, fmt.Errorf("line %d: %w", line, err)
			}
			return ev, true, nil
		}
		return Event{}, false, sc.Err()
	})
}

// link is what the verifier remembers of an event already read.
type link struct {
	seq  int64
	hash string
}

// verify walks events in the order next yields them and classifies the
// first break. It looks one event ahead to tell a rewritten event from an
// inserted one.
func verify(next func() (Event, bool, error)) (VerifyReport, error) {
	rep := VerifyReport{HeadHash: GenesisHash}
	prev := link{hash: GenesisHash}
	var prevPrev *link // the event before prev, once there is one

	fail := func(seq int64, reason Reason, format string, args ...any) (VerifyReport, error) {
		rep.BadSeq, rep.Reason, rep.Detail = seq, reason, fmt.Sprintf(format, args...)
		return rep, nil
	}

	cur, ok, err := next()
	if err != nil {
		return rep, err
	}
	for ok {
		nxt, nextOK, err := next()
		if err != nil {
			return rep, err
		}

		if cur.Seq <= prev.seq {
			return fail(cur.Seq, ReasonInserted, "seq %d follows seq %d (duplicate or out of order)", cur.Seq, prev.seq)
		}
		selfOK := computeHash(cur) == cur.Hash
		linkOK := cur.PrevHash == prev.hash
		gap := cur.Seq > prev.seq+1

		switch {
		case selfOK && linkOK && !gap:
			// good
		case !linkOK && prevPrev != nil && cur.PrevHash == prevPrev.hash:
			// cur points past prev to prev's predecessor: prev was slipped
			// in (and cur probably renumbered to make room).
			rep.Count--
			rep.HeadSeq, rep.HeadHash = prevPrev.seq, prevPrev.hash
			return fail(prev.seq, ReasonInserted,
				"event %d links to event %d, skipping event %d, which is not part of the chain", cur.Seq, prevPrev.seq, prev.seq)
		case gap && !linkOK:
			return fail(prev.seq+1, ReasonRemoved, "events %d to %d are missing (next is %d, whose prev_hash does not match event %d)",
				prev.seq+1, cur.Seq-1, cur.Seq, prev.seq)
		case !selfOK:
			return fail(cur.Seq, ReasonChanged, "event %d does not hash to its stored hash: its fields, data, time or seq were altered", cur.Seq)
		case gap:
			return fail(cur.Seq, ReasonChanged, "event %d links to event %d but its seq skips %d: it was renumbered and re-hashed", cur.Seq, prev.seq, prev.seq+1)
		default: // !linkOK, self-consistent, no gap
			if nextOK && nxt.PrevHash == cur.Hash && prev.seq > 0 {
				// cur is genuine (its successor links to it), so the
				// event before it was rewritten and re-hashed.
				rep.Count-- // prev.seq > 0, so prevPrev is set
				rep.HeadSeq, rep.HeadHash = prevPrev.seq, prevPrev.hash
				return fail(prev.seq, ReasonChanged,
					"event %d was rewritten and re-hashed: event %d still links to its original hash", prev.seq, cur.Seq)
			}
			return fail(cur.Seq, ReasonInserted,
				"event %d's prev_hash does not match event %d: it was inserted, or event %d was rewritten and re-hashed", cur.Seq, prev.seq, prev.seq)
		}

		rep.Count++
		rep.HeadSeq, rep.HeadHash = cur.Seq, cur.Hash
		p := prev
		prevPrev = &p
		prev = link{seq: cur.Seq, hash: cur.Hash}
		cur, ok = nxt, nextOK
	}
	rep.OK = true
	return rep, nil
}
