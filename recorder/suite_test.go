package recorder

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// suite runs against SQLite and a real PostgreSQL (TestSuite).
var suite = []struct {
	name string
	run  func(t *testing.T, b backend)
}{
	{"AppendAssignsChain", testAppendAssignsChain},
	{"AppendInvalid", testAppendInvalid},
	{"AppendConcurrent", testAppendConcurrent},
	{"AppendIgnoresCancellation", testAppendIgnoresCancellation},
	{"AppendSeveralWriters", testAppendSeveralWriters},
	{"VerifyDetectsTampering", testVerifyDetectsTampering},
	{"TailTruncationNeedsAnchor", testTailTruncationNeedsAnchor},
	{"VerifyJSONL", testVerifyJSONL},
	{"VerifyEmpty", testVerifyEmpty},
	{"EventsFilter", testEventsFilter},
	{"Calls", testCalls},
	{"Export", testExport},
	{"CheckpointCatchesTruncation", testCheckpointCatchesTruncation},
	{"CheckpointSigned", testCheckpointSigned},
	{"Checkpointer", testCheckpointer},
}

// TestSuite runs the recorder's store-backed tests against SQLite and a
// real PostgreSQL (one server; a schema per database). Under CI=true a
// missing PostgreSQL fails the test.
func TestSuite(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range suite {
				t.Run(c.name, func(t *testing.T) { c.run(t, b) })
			}
		})
	}
}

// backend opens databases the recorder is tested on.
type backend struct {
	name string
	// dsn returns a new, empty database (driver and DSN); opening it
	// several times gives several writers of one database.
	dsn func(t testing.TB) (driver, dsn string)
}

// openDB opens a new, empty database, configured the way broker/store
// configures its writer pool.
func (b backend) openDB(t testing.TB) *sql.DB {
	t.Helper()
	driver, dsn := b.dsn(t)
	return openDSN(t, driver, dsn)
}

func openDSN(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if driver == "sqlite" {
		db.SetMaxOpenConns(1)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var sqliteBackend = backend{name: "sqlite", dsn: func(t testing.TB) (string, string) {
	path := filepath.Join(t.TempDir(), "transcript.db")
	return "sqlite", path + "?_busy_timeout=5000&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate"
}}

// sqliteFullBackend is sqliteBackend with synchronous=FULL: the log is
// synced at every commit, so a commit survives the machine losing power,
// not only the process dying.
var sqliteFullBackend = backend{name: "sqlite-full", dsn: func(t testing.TB) (string, string) {
	path := filepath.Join(t.TempDir(), "transcript.db")
	return "sqlite", path + "?_busy_timeout=5000&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate"
}}

var pgSchemas atomic.Int64

func postgresBackend(t *testing.T) backend { return postgresBackendB(t) }

func postgresBackendB(t testing.TB) backend {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE transcripts")
	return backend{name: "postgres", dsn: func(t testing.TB) (string, string) {
		schema := "s" + strconv.FormatInt(pgSchemas.Add(1), 10)
		pg.ExecDB(t, "transcripts", "CREATE SCHEMA "+schema)
		return "pgx", pg.DSN("transcripts") + " search_path=" + schema
	}}
}

// Several writers — separate *sql.DB pools, as separate processes or
// replicas have — appending to one database at once keep one chain:
// Verify passes and counts every event, each seq once.
func testAppendSeveralWriters(t *testing.T, b backend) {
	ctx := context.Background()
	driver, dsn := b.dsn(t)
	const writers, each = 4, 50
	recs := make([]*Recorder, writers)
	for i := range recs {
		r, err := New(openDSN(t, driver, dsn))
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = r
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w, r := range recs {
		wg.Go(func() {
			for i := range each {
				if _, err := r.Append(ctx, Event{Type: TypeCallReceived, CallID: fmt.Sprintf("w%d-%d", w, i)}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep, err := recs[0].Verify(ctx)
	if err != nil || !rep.OK || rep.Count != writers*each || rep.HeadSeq != writers*each {
		t.Fatalf("Verify = %+v, %v; want OK with %d events", rep, err, writers*each)
	}
	calls, err := recs[1].Calls(ctx, Filter{})
	if err != nil || len(calls) != writers*each {
		t.Errorf("Calls = %d, %v; want %d distinct calls", len(calls), err, writers*each)
	}
}

// Deleting the last events after a checkpoint fails Verify, naming the
// checkpoint and the events removed; events after the latest checkpoint
// are reported as covered by the chain alone.
func testCheckpointCatchesTruncation(t *testing.T, b backend) {
	ctx := context.Background()
	r, db := newRecorder(t, b)
	seed(t, r)
	cp, written, err := r.Checkpoint(ctx)
	if err != nil || !written || cp.HeadSeq != 5 || cp.Signature != "" {
		t.Fatalf("Checkpoint = %+v, written %v, %v", cp, written, err)
	}
	if again, written, err := r.Checkpoint(ctx); err != nil || written || again.ID != cp.ID {
		t.Errorf("second Checkpoint at the same head = %+v, written %v, %v; want the first, not written", again, written, err)
	}
	mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "c2"})
	mustAppend(t, r, Event{Type: TypeCallCompleted, CallID: "c2"})

	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK || rep.Checkpoint == nil || rep.Checkpoint.HeadSeq != 5 || rep.Checkpoint.After != 2 || rep.Checkpoint.Signed {
		t.Fatalf("Verify = %+v (checkpoint %+v), %v; want OK, proof to #5, 2 after, unsigned", rep, rep.Checkpoint, err)
	}

	// Events after the checkpoint can go unseen...
	mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 7`)
	if rep, err := r.Verify(ctx); err != nil || !rep.OK || rep.Checkpoint.After != 1 {
		t.Fatalf("Verify after cutting an event past the checkpoint = %+v, %v; the checkpoint cannot tell", rep, err)
	}
	// ...those it covers cannot.
	mustExec(t, db, `DELETE FROM transcript_events WHERE seq >= 4`)
	rep, err = r.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Reason != ReasonTruncated || rep.BadSeq != 4 || rep.Count != 3 {
		t.Fatalf("Verify after truncation = %+v; want truncated at #4 after 3 good events", rep)
	}
	for _, want := range []string{"reached event #5", "ends at #3", "events #4 to #5 were removed"} {
		if !strings.Contains(rep.Detail, want) {
			t.Errorf("detail %q does not say %q", rep.Detail, want)
		}
	}
}

// With a checkpoint key, checkpoints are signed, and Verify refuses a
// latest checkpoint that is not signed with it: whoever cuts the tail and
// writes a checkpoint of the new head without the key is caught, and so is
// a tail rewritten and re-hashed up to a signed checkpoint.
func testCheckpointSigned(t *testing.T, b backend) {
	ctx := context.Background()
	key := bytes.Repeat([]byte("k"), MinCheckpointKeyLen)
	r, db := newRecorder(t, b, WithCheckpointKey(key))
	evs := seed(t, r)
	cp, _, err := r.Checkpoint(ctx)
	if err != nil || cp.Signature == "" || cp.KeyID == "" || strings.Contains(cp.KeyID, string(key[:8])) {
		t.Fatalf("Checkpoint = %+v, %v; want signed, with a key id that is not the key", cp, err)
	}
	if rep, err := r.Verify(ctx); err != nil || !rep.OK || !rep.Checkpoint.Signed {
		t.Fatalf("Verify = %+v, %v; want OK and signed", rep, err)
	}
	if _, err := New(db, WithCheckpointKey([]byte("short"))); err == nil {
		t.Error("New accepted a 5-byte checkpoint key")
	}

	t.Run("forged checkpoint after truncation", func(t *testing.T) {
		mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 5`)
		forged := Checkpoint{Time: t0, HeadSeq: 4, HeadHash: evs[3].Hash}
		forged.Signature = sign([]byte(strings.Repeat("x", MinCheckpointKeyLen)), forged)
		mustExec(t, db, `INSERT INTO transcript_checkpoints (time, head_seq, head_hash, key_id, signature) VALUES (?, ?, ?, ?, ?)`,
			forged.Time.UnixNano()+1, forged.HeadSeq, forged.HeadHash, "", forged.Signature)
		mustExec(t, db, `DELETE FROM transcript_checkpoints WHERE head_seq = 5`)
		rep, err := r.Verify(ctx)
		if err != nil || rep.OK || rep.Reason != ReasonCheckpoint || !strings.Contains(rep.Detail, "not signed with this installation's checkpoint key") {
			t.Errorf("Verify = %+v, %v; want the forged checkpoint refused", rep, err)
		}
		// Without the key the forged checkpoint is taken as it is: the
		// signature is what stops it.
		unkeyed, err := New(db)
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := unkeyed.Verify(ctx); err != nil || !rep.OK || rep.Checkpoint.Signed {
			t.Errorf("Verify without a key = %+v, %v", rep, err)
		}
	})

	t.Run("tail rewritten up to a signed checkpoint", func(t *testing.T) {
		r, db := newRecorder(t, b, WithCheckpointKey(key))
		evs := seed(t, r)
		if _, _, err := r.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, `DELETE FROM transcript_events WHERE seq = 5`)
		insertRaw(t, db, forge(t, 5, evs[3].Hash))
		rep, err := r.Verify(ctx)
		if err != nil || rep.OK || rep.Reason != ReasonCheckpoint || rep.BadSeq != 5 {
			t.Errorf("Verify = %+v, %v; want the rewrite caught at #5", rep, err)
		}
	})
}

// The Checkpointer writes a checkpoint when the head moved, logs it, and
// writes a last one on Close.
func testCheckpointer(t *testing.T, b backend) {
	ctx := context.Background()
	r, _ := newRecorder(t, b, WithCheckpointKey(bytes.Repeat([]byte("k"), 32)))
	var logs syncBuffer
	c, err := NewCheckpointer(CheckpointerConfig{Recorder: r, Interval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	seed(t, r)
	c.Start(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := r.LatestCheckpoint(ctx)
		if err == nil && cp.HeadSeq == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of head 5 within 10s: %+v, %v", cp, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "last"})
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := r.LatestCheckpoint(ctx)
	if err != nil || cp.HeadSeq != 6 {
		t.Fatalf("after Close the latest checkpoint = %+v, %v; want head 6", cp, err)
	}
	out := logs.String()
	if !strings.Contains(out, "transcript checkpoint") || !strings.Contains(out, "head_seq=6") || !strings.Contains(out, "signature="+cp.Signature) {
		t.Errorf("log does not carry the checkpoint:\n%s", out)
	}
	if n := strings.Count(out, "head_seq=5"); n != 1 {
		t.Errorf("head 5 logged %d times; an unchanged head must not be checkpointed again:\n%s", n, out)
	}
	if _, err := r.LatestCheckpoint(ctx); errors.Is(err, ErrNotFound) {
		t.Error("checkpoint lost")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
