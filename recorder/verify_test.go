package recorder

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
)

// seed appends five events of one call and returns them.
func seed(t *testing.T, r *Recorder) []Event {
	t.Helper()
	var evs []Event
	for _, typ := range []string{TypeCallReceived, TypeCallDecided, TypeLeaseMinted, TypeCallExecuted, TypeCallCompleted} {
		evs = append(evs, mustAppend(t, r, Event{
			Type: typ, CallID: "c1", Subject: "alice", Tool: "query_db", Resource: "orders",
			Data: []byte(`{"step":"` + typ + `"}`),
		}))
	}
	return evs
}

// insertRaw writes ev as it is, the way someone with database access would.
func insertRaw(t *testing.T, db *sql.DB, ev Event) {
	t.Helper()
	mustExec(t, db, `INSERT INTO transcript_events
		(seq, time, type, call_id, session_id, subject, issuer, token_id, tool, resource, effect, data, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.Seq, ev.Time.UnixNano(), ev.Type, ev.CallID, ev.SessionID, ev.Subject, ev.Issuer, ev.TokenID,
		ev.Tool, ev.Resource, ev.Effect, string(ev.Data), ev.PrevHash, ev.Hash)
}

// forge returns a self-consistent event (its hash recomputed) at seq linking to prevHash.
func forge(t *testing.T, seq int64, prevHash string) Event {
	t.Helper()
	ev := Event{Seq: seq, Time: t0, Type: TypeApprovalDecided, CallID: "c1", Subject: "mallory",
		Data: []byte(`{"approved_by":"mallory"}`), PrevHash: prevHash}
	ev.Hash = computeHash(ev)
	return ev
}

// shiftUp renumbers events from seq onwards by +1, making room at seq.
func shiftUp(t *testing.T, db *sql.DB, seq int64) {
	mustExec(t, db, `UPDATE transcript_events SET seq = seq + 1000 WHERE seq >= ?`, seq)
	mustExec(t, db, `UPDATE transcript_events SET seq = seq - 999 WHERE seq >= 1000`)
}

func testVerifyDetectsTampering(t *testing.T, b backend) {
	tests := []struct {
		name       string
		tamper     func(t *testing.T, db *sql.DB, evs []Event)
		wantReason Reason
		wantSeq    int64
		wantCount  int64 // events verified good before the break
		// exportHides: Export re-encodes Data compactly, so a whitespace-only
		// change shows in Verify but not in an export.
		exportHides bool
	}{
		{
			name: "data changed",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `UPDATE transcript_events SET data = '{"step":"nothing"}' WHERE seq = 3`)
			},
			wantReason: ReasonChanged, wantSeq: 3, wantCount: 2,
		},
		{
			name: "data reformatted only",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `UPDATE transcript_events SET data = '{"step": "lease.minted"}' WHERE seq = 3`)
			},
			wantReason: ReasonChanged, wantSeq: 3, wantCount: 2, exportHides: true,
		},
		{
			name: "data removed",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `UPDATE transcript_events SET data = NULL WHERE seq = 3`)
			},
			wantReason: ReasonChanged, wantSeq: 3, wantCount: 2,
		},
		{
			name: "time changed by 1ns",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `UPDATE transcript_events SET time = time + 1 WHERE seq = 2`)
			},
			wantReason: ReasonChanged, wantSeq: 2, wantCount: 1,
		},
		{
			name: "subject changed",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `UPDATE transcript_events SET subject = 'bob' WHERE seq = 1`)
			},
			wantReason: ReasonChanged, wantSeq: 1, wantCount: 0,
		},
		{
			name: "effect set",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `UPDATE transcript_events SET effect = 'allow' WHERE seq = 5`)
			},
			wantReason: ReasonChanged, wantSeq: 5, wantCount: 4,
		},
		{
			name: "changed and re-hashed",
			tamper: func(t *testing.T, db *sql.DB, evs []Event) {
				ev := evs[2]
				ev.Subject = "bob"
				ev.Hash = computeHash(ev)
				mustExec(t, db, `UPDATE transcript_events SET subject = ?, hash = ? WHERE seq = 3`, ev.Subject, ev.Hash)
			},
			wantReason: ReasonChanged, wantSeq: 3, wantCount: 2,
		},
		{
			name: "middle event deleted",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 3`)
			},
			wantReason: ReasonRemoved, wantSeq: 3, wantCount: 2,
		},
		{
			name: "two middle events deleted",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `DELETE FROM transcript_events WHERE seq IN (2, 3)`)
			},
			wantReason: ReasonRemoved, wantSeq: 2, wantCount: 1,
		},
		{
			name: "first event deleted",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 1`)
			},
			wantReason: ReasonRemoved, wantSeq: 1, wantCount: 0,
		},
		{
			name: "forged event inserted in the middle, hash recomputed, later events renumbered",
			tamper: func(t *testing.T, db *sql.DB, evs []Event) {
				shiftUp(t, db, 3)
				insertRaw(t, db, forge(t, 3, evs[1].Hash))
			},
			wantReason: ReasonInserted, wantSeq: 3, wantCount: 2,
		},
		{
			name: "forged event inserted first",
			tamper: func(t *testing.T, db *sql.DB, evs []Event) {
				shiftUp(t, db, 1)
				insertRaw(t, db, forge(t, 1, GenesisHash))
			},
			wantReason: ReasonInserted, wantSeq: 1, wantCount: 0,
		},
		{
			name: "forged event appended with a made-up prev_hash",
			tamper: func(t *testing.T, db *sql.DB, evs []Event) {
				insertRaw(t, db, forge(t, 6, strings.Repeat("0", 64)))
			},
			wantReason: ReasonInserted, wantSeq: 6, wantCount: 5,
		},
		{
			name: "event replaced by a forged one linking correctly",
			tamper: func(t *testing.T, db *sql.DB, evs []Event) {
				mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 3`)
				insertRaw(t, db, forge(t, 3, evs[1].Hash))
			},
			wantReason: ReasonChanged, wantSeq: 3, wantCount: 2,
		},
		{
			name: "two events swapped",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `UPDATE transcript_events SET seq = 100 WHERE seq = 2`)
				mustExec(t, db, `UPDATE transcript_events SET seq = 2 WHERE seq = 3`)
				mustExec(t, db, `UPDATE transcript_events SET seq = 3 WHERE seq = 100`)
			},
			wantReason: ReasonChanged, wantSeq: 2, wantCount: 1,
		},
		{
			name: "event deleted and later events renumbered",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 3`)
				mustExec(t, db, `UPDATE transcript_events SET seq = seq - 1 WHERE seq > 3`)
			},
			wantReason: ReasonChanged, wantSeq: 3, wantCount: 2,
		},
		{
			name: "hash overwritten",
			tamper: func(t *testing.T, db *sql.DB, _ []Event) {
				mustExec(t, db, `UPDATE transcript_events SET hash = ? WHERE seq = 4`, strings.Repeat("f", 64))
			},
			wantReason: ReasonChanged, wantSeq: 4, wantCount: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r, db := newRecorder(t, b)
			evs := seed(t, r)
			if rep, err := r.Verify(ctx); err != nil || !rep.OK || rep.Count != 5 {
				t.Fatalf("Verify before tampering = %+v, %v", rep, err)
			}
			tt.tamper(t, db, evs)

			rep, err := r.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || rep.Reason != tt.wantReason || rep.BadSeq != tt.wantSeq || rep.Count != tt.wantCount {
				t.Errorf("Verify = %+v\nwant reason %s at seq %d after %d good events", rep, tt.wantReason, tt.wantSeq, tt.wantCount)
			}
			if rep.Detail == "" {
				t.Error("no detail")
			}

			if tt.exportHides {
				return
			}
			// The same verdict from an export of the tampered store.
			var buf bytes.Buffer
			if err := r.Export(ctx, &buf, Filter{}); err != nil {
				t.Fatal(err)
			}
			fromFile, err := VerifyJSONL(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if fromFile != rep {
				t.Errorf("VerifyJSONL = %+v, Verify = %+v", fromFile, rep)
			}
		})
	}
}

// Cutting off the tail leaves a valid chain: only an anchor catches it.
func testTailTruncationNeedsAnchor(t *testing.T, b backend) {
	ctx := context.Background()
	r, db := newRecorder(t, b)
	seed(t, r)
	seq, hash, err := r.Head(ctx)
	if err != nil || seq != 5 {
		t.Fatalf("Head = %d, %v", seq, err)
	}
	if err := r.VerifyAnchor(ctx, seq, hash); err != nil {
		t.Fatalf("VerifyAnchor on intact transcript: %v", err)
	}

	mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 5`)
	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK || rep.HeadSeq != 4 {
		t.Fatalf("Verify after tail truncation = %+v, %v; the chain alone cannot tell", rep, err)
	}
	if err := r.VerifyAnchor(ctx, seq, hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("VerifyAnchor after truncation = %v, want ErrNotFound", err)
	}

	// Rewriting the new tail and re-hashing is caught by the anchor too.
	mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 4`)
	_, prev, _ := r.Head(ctx)
	insertRaw(t, db, forge(t, 4, prev))
	f5 := forge(t, 5, "")
	ev4, _ := r.Events(ctx, Filter{AfterSeq: 3})
	f5.PrevHash = ev4[0].Hash
	f5.Hash = computeHash(f5)
	insertRaw(t, db, f5)
	if rep, err := r.Verify(ctx); err != nil || !rep.OK {
		t.Fatalf("Verify after a consistent tail rewrite = %+v, %v", rep, err)
	}
	if err := r.VerifyAnchor(ctx, seq, hash); !errors.Is(err, ErrAnchorMismatch) {
		t.Errorf("VerifyAnchor after tail rewrite = %v, want ErrAnchorMismatch", err)
	}
	if err := r.VerifyAnchor(ctx, 0, GenesisHash); err != nil {
		t.Errorf("VerifyAnchor(genesis) = %v", err)
	}
}

func testVerifyJSONL(t *testing.T, b backend) {
	ctx := context.Background()
	r, _ := newRecorder(t, b)
	seed(t, r)
	var buf bytes.Buffer
	if err := r.Export(ctx, &buf, Filter{}); err != nil {
		t.Fatal(err)
	}
	export := buf.String()
	lines := strings.SplitAfter(strings.TrimSuffix(export, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("export has %d lines, want 5", len(lines))
	}

	tests := []struct {
		name       string
		input      string
		wantOK     bool
		wantReason Reason
		wantSeq    int64
	}{
		{"complete", export, true, "", 0},
		{"blank lines ignored", "\n" + strings.ReplaceAll(export, "\n", "\n\n"), true, "", 0},
		{"empty", "", true, "", 0},
		{"line edited", strings.Replace(export, `"subject":"alice"`, `"subject":"bob"`, 1), false, ReasonChanged, 1},
		{"time edited", strings.Replace(export, `.124456789Z`, `.124456788Z`, 1), false, ReasonChanged, 1},
		{"line duplicated", lines[0] + lines[1] + lines[1] + lines[2], false, ReasonInserted, 2},
		{"lines reordered", lines[0] + lines[2] + lines[1], false, ReasonRemoved, 2},
		{"line dropped", lines[0] + lines[2], false, ReasonRemoved, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := VerifyJSONL(strings.NewReader(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK != tt.wantOK || rep.Reason != tt.wantReason || rep.BadSeq != tt.wantSeq {
				t.Errorf("VerifyJSONL = %+v, want ok=%v %s at %d", rep, tt.wantOK, tt.wantReason, tt.wantSeq)
			}
		})
	}
	if _, err := VerifyJSONL(strings.NewReader("{not json\n")); err == nil {
		t.Error("VerifyJSONL accepted a malformed line")
	}
}

func testVerifyEmpty(t *testing.T, b backend) {
	r, _ := newRecorder(t, b)
	rep, err := r.Verify(context.Background())
	if err != nil || !rep.OK || rep.Count != 0 || rep.HeadHash != GenesisHash {
		t.Errorf("Verify(empty) = %+v, %v", rep, err)
	}
}
