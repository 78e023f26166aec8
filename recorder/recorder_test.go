package recorder

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

// stepClock returns a clock that advances by one millisecond per call.
func stepClock() func() time.Time {
	var mu sync.Mutex
	now := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Millisecond)
		return now
	}
}

func newRecorder(t testing.TB, b backend, opts ...Option) (*Recorder, *sql.DB) {
	t.Helper()
	db := b.openDB(t)
	r, err := New(db, append([]Option{WithClock(stepClock())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r, db
}

func mustAppend(t testing.TB, r *Recorder, ev Event) Event {
	t.Helper()
	got, err := r.Append(context.Background(), ev)
	if err != nil {
		t.Fatalf("Append(%s): %v", ev.Type, err)
	}
	return got
}

func testAppendAssignsChain(t *testing.T, b backend) {
	ctx := context.Background()
	r, _ := newRecorder(t, b)
	zone := time.FixedZone("X", 3600)
	first := mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "c1", Subject: "alice",
		Data: json.RawMessage(` { "z": 1, "a": [true, null, 1.50], "html": "<b>&</b>" } `)})
	second := mustAppend(t, r, Event{Type: TypeCallDecided, CallID: "c1", Effect: "allow", Time: t0.In(zone)})

	if first.Seq != 1 || first.PrevHash != GenesisHash {
		t.Errorf("first: seq %d prev %q, want 1 and genesis", first.Seq, first.PrevHash)
	}
	if want := t0.Add(time.Millisecond); !first.Time.Equal(want) || first.Time.Location() != time.UTC {
		t.Errorf("first.Time = %v, want %v from the clock, in UTC", first.Time, want)
	}
	if got, want := string(first.Data), `{"a":[true,null,1.50],"html":"<b>&</b>","z":1}`; got != want {
		t.Errorf("canonical data = %s, want %s", got, want)
	}
	if second.Seq != 2 || second.PrevHash != first.Hash {
		t.Errorf("second: seq %d prev %q, want 2 and %q", second.Seq, second.PrevHash, first.Hash)
	}
	if !second.Time.Equal(t0) || second.Time.Location() != time.UTC {
		t.Errorf("second.Time = %v, want caller's time %v in UTC", second.Time, t0)
	}
	for _, ev := range []Event{first, second} {
		if h := computeHash(ev); h != ev.Hash || len(h) != 64 {
			t.Errorf("event %d hash %q does not recompute (%q)", ev.Seq, ev.Hash, h)
		}
	}

	stored, err := r.Events(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || !eventsEqual(stored[0], first) || !eventsEqual(stored[1], second) {
		t.Errorf("stored events differ from returned:\n%+v\n%+v", stored, []Event{first, second})
	}
	seq, hash, err := r.Head(ctx)
	if err != nil || seq != 2 || hash != second.Hash {
		t.Errorf("Head = %d %q %v, want 2 %q", seq, hash, err, second.Hash)
	}
}

func eventsEqual(a, b Event) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func testAppendInvalid(t *testing.T, b backend) {
	r, _ := newRecorder(t, b)
	tests := []struct {
		name string
		ev   Event
	}{
		{"no type", Event{}},
		{"invalid data", Event{Type: "x", Data: json.RawMessage(`{"a":`)}},
		{"trailing data", Event{Type: "x", Data: json.RawMessage(`{} {}`)}},
		{"invalid utf-8", Event{Type: "x", Subject: "al\xffice"}},
		{"time out of range", Event{Type: "x", Time: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := r.Append(context.Background(), tt.ev); !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("Append = %v, want ErrInvalidEvent", err)
			}
		})
	}
	if rep, err := r.Verify(context.Background()); err != nil || !rep.OK || rep.Count != 0 {
		t.Errorf("Verify after rejected appends = %+v, %v", rep, err)
	}
}

func testAppendConcurrent(t *testing.T, b backend) {
	ctx := context.Background()
	r, _ := newRecorder(t, b)
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				_, err := r.Append(ctx, Event{Type: TypeCallReceived, CallID: fmt.Sprintf("w%d-%d", w, i)})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	// Readers run alongside the writers.
	wg.Go(func() {
		for range 20 {
			if _, err := r.Verify(ctx); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK || rep.Count != workers*each || rep.HeadSeq != workers*each {
		t.Errorf("Verify = %+v, %v; want OK with %d events", rep, err, workers*each)
	}
}

// Append fails closed: when the database cannot take the event, Append
// returns an error, and the chain is intact once the fault is gone.
func TestAppendFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, db *sql.DB)
		fix    func(t *testing.T, db *sql.DB) // nil: cannot recover
	}{
		{
			name:   "closed database",
			break_: func(t *testing.T, db *sql.DB) { db.Close() },
		},
		{
			name:   "read-only connection",
			break_: func(t *testing.T, db *sql.DB) { mustExec(t, db, `PRAGMA query_only = ON`) },
			fix:    func(t *testing.T, db *sql.DB) { mustExec(t, db, `PRAGMA query_only = OFF`) },
		},
		{
			name: "insert rejected (disk full, I/O error)",
			break_: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `CREATE TRIGGER fail BEFORE INSERT ON transcript_events BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`)
			},
			fix: func(t *testing.T, db *sql.DB) { mustExec(t, db, `DROP TRIGGER fail`) },
		},
		{
			name:   "table dropped",
			break_: func(t *testing.T, db *sql.DB) { mustExec(t, db, `ALTER TABLE transcript_events RENAME TO gone`) },
			fix:    func(t *testing.T, db *sql.DB) { mustExec(t, db, `ALTER TABLE gone RENAME TO transcript_events`) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r, db := newRecorder(t, sqliteBackend)
			mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "c1"})
			tt.break_(t, db)
			if ev, err := r.Append(ctx, Event{Type: TypeCallDecided, CallID: "c1"}); err == nil {
				t.Fatalf("Append succeeded on a broken database: %+v", ev)
			}
			if tt.fix == nil {
				return
			}
			tt.fix(t, db)
			ev := mustAppend(t, r, Event{Type: TypeCallDecided, CallID: "c1"})
			if ev.Seq != 2 {
				t.Errorf("seq after recovery = %d, want 2 (failed append left a trace)", ev.Seq)
			}
			if rep, err := r.Verify(ctx); err != nil || !rep.OK || rep.Count != 2 {
				t.Errorf("Verify = %+v, %v", rep, err)
			}
		})
	}
}

// A file the process cannot write: New or Append must fail, never succeed silently.
func TestAppendReadOnlyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	rw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(rw); err != nil {
		t.Fatal(err)
	}
	rw.Close()

	ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	r, err := New(ro)
	if err != nil {
		return // refusing to start is failing closed too
	}
	if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived}); err == nil {
		t.Fatal("Append succeeded on a read-only database")
	}
}

// mustExec runs q, written with ? parameters, in db's dialect.
func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(sqldialect.Of(db).Rebind(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// Audit writes outlive the request: a cancelled context still records.
func testAppendIgnoresCancellation(t *testing.T, b backend) {
	r, _ := newRecorder(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Append(ctx, Event{Type: TypeCallFailed, CallID: "c1"}); err != nil {
		t.Fatalf("Append with cancelled context: %v", err)
	}
}

func TestAppendTimeout(t *testing.T) {
	db := sqliteBackend.openDB(t)
	r, err := New(db, WithAppendTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Hold the only writer connection.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	start := time.Now()
	if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived}); err == nil {
		t.Fatal("Append succeeded while the writer was held")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Append took %v to time out", d)
	}
}
