package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 6: the background WAL checkpointer (walcheckpoint.go).

// rt6SustainedAppends appends transcript events through a recorder on s
// from two goroutines, back to back, for d, and reports the largest
// -wal size seen (sampled every 50 ms), the appends made and the error
// of the first that failed.
func rt6SustainedAppends(t *testing.T, s *Store, path string, d, pace time.Duration) (maxWAL int64, appends int64, err error) {
	t.Helper()
	r, nerr := recorder.New(s.DB(), recorder.WithReadDB(s.ReadDB()))
	if nerr != nil {
		t.Fatal(nerr)
	}
	ctx := context.Background()
	stop := make(chan struct{})
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := r.Append(ctx, recorder.Event{Type: recorder.TypeCallReceived, CallID: fmt.Sprintf("w%d-%d", w, i), Tool: "query_db"}); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
				if pace > 0 {
					time.Sleep(pace)
				}
			}
		})
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
		maxWAL = max(maxWAL, fileSize(t, path+"-wal"))
	}
	close(stop)
	wg.Wait()
	if v := firstErr.Load(); v != nil {
		err = v.(error)
	}
	rep, verr := r.Verify(ctx)
	if verr != nil || !rep.OK || rep.Count != n.Load() {
		t.Errorf("Verify after %d appends = %+v, %v", n.Load(), rep, verr)
	}
	return maxWAL, n.Load(), err
}

// TestRedTeam6WALBoundedUnderSustainedAppends: with the background
// checkpointer, a store whose writer never pauses for as long as one
// checkpoint takes keeps its -wal file bounded, as SQLite's automatic
// checkpoint (1,000 pages, run by the writer between its own commits)
// kept it before (the limit allows 32 MiB or 8x the control).
//
// A PASSIVE checkpoint on another connection copies the log while the
// writer goes on committing; the log is only restarted from its start
// when a write transaction begins with every frame already copied
// (walRestartLog: the writer's read lock must be 0). A writer that
// commits during every checkpoint never finds that, so the log only
// grows. The control run (the writer checkpointing for itself, the old
// way) shows what bounded looks like under the same load.
func TestRedTeam6WALBoundedUnderSustainedAppends(t *testing.T) {
	const d = 3 * time.Second
	ctx := context.Background()

	// Control: the old way, the writer checkpoints every 1,000 pages.
	ctlPath := filepath.Join(t.TempDir(), "airlock.db")
	ctl, err := Open(ctx, "sqlite://"+ctlPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if err := ctl.wal.close(); err != nil {
		t.Fatal(err)
	}
	ctl.wal = nil
	if _, err := ctl.db.ExecContext(ctx, `PRAGMA wal_autocheckpoint=1000`); err != nil {
		t.Fatal(err)
	}
	ctlWAL, ctlN, err := rt6SustainedAppends(t, ctl, ctlPath, d, 0)
	if err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gotWAL, gotN, err := rt6SustainedAppends(t, s, path, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("writer checkpointing (old): %d appends, -wal at most %d KiB", ctlN, ctlWAL>>10)
	t.Logf("background checkpointer:    %d appends, -wal at most %d KiB", gotN, gotWAL>>10)
	// SQLite's default bound is ~1,000 pages of 4 KiB (plus the commit that
	// crosses it); allow 8x that and 8x the control.
	if limit := max(32<<20, 8*ctlWAL); gotWAL > limit {
		t.Errorf("the -wal file reached %d KiB in %v of sustained appends with the background checkpointer, against %d KiB with the writer checkpointing: the log is never restarted while the writer commits during every checkpoint", gotWAL>>10, d, ctlWAL>>10)
	}
}

// TestRedTeam6WALBoundedUnderPacedAppends: the same at a pace a busy
// broker sees (each of two writers appends, then sleeps 1 ms: some 1,500
// appends a second, a few events per call), not a saturating benchmark.
// The -wal file is sampled after 10 s; with SQLite's automatic checkpoint it
// stays near 4 MiB.
func TestRedTeam6WALBoundedUnderPacedAppends(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const d = 10 * time.Second
	gotWAL, gotN, err := rt6SustainedAppends(t, s, path, d, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("background checkpointer, paced: %d appends in %v, -wal at most %d KiB", gotN, d, gotWAL>>10)
	if gotWAL > 32<<20 {
		t.Errorf("the -wal file reached %d KiB after %d paced appends in %v: the log is not restarted while appends keep coming", gotWAL>>10, gotN, d)
	}
}

// TestRedTeam6WALFallbackSurvivesWriterReconnect: once the checkpointer
// has failed and handed checkpointing back to the writer
// (wal_autocheckpoint=1000 on the writer connection), the writer keeps
// checkpointing. The setting is made on the connection the writer pool
// holds at that moment; the pool's connection is replaced whenever a
// statement on it is interrupted by its context (modernc's conn.usable:
// database/sql discards a connection whose last statement was
// interrupted), and the replacement is opened from the writer's DSN,
// which says wal_autocheckpoint(0). From then on nothing checkpoints: the
// log grows for as long as the process runs.
func TestRedTeam6WALFallbackSurvivesWriterReconnect(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.wal.conn.Close(); err != nil { // its checkpoints fail from now on
		t.Fatal(err)
	}
	// Let it notice (it stops, or keeps failing: either way only the
	// writer can checkpoint now).
	select {
	case <-s.wal.done:
	case <-time.After(4 * walCheckpointEvery):
	}
	var pages int
	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&pages); err != nil || pages <= 0 {
		t.Fatalf("after the failure the writer's wal_autocheckpoint is %d (%v), want it checkpointing (> 0)", pages, err)
	}

	// A statement on the writer cancelled by its context while it runs
	// (an append or a lease write whose caller went away).
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	_, err = s.db.ExecContext(short, `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < 100000000) SELECT count(*) FROM n`)
	cancel()
	if err == nil {
		t.Fatal("the long statement was not interrupted")
	}

	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&pages); err != nil || pages <= 0 {
		t.Errorf("after one interrupted statement the writer's wal_autocheckpoint is %d (%v), want > 0: the checkpointer has stopped and the writer no longer checkpoints", pages, err)
	}
	gotWAL, gotN, err := rt6SustainedAppends(t, s, path, 2*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the fallback and one interrupted statement: %d appends, -wal at most %d KiB", gotN, gotWAL>>10)
	if gotWAL > 32<<20 {
		t.Errorf("the -wal file reached %d KiB in 2 s: nothing checkpoints it", gotWAL>>10)
	}
}

// TestRedTeam6TwoStoresLongReader: two Stores on one file (two
// checkpointers, two writers), each appending through its recorder, while
// a reader on the second holds read transactions open for 700 ms at a
// time: no append fails, every read transaction sees one snapshot (the
// count it starts with it ends with), and the chain verifies with every
// append in it.
func TestRedTeam6TwoStoresLongReader(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	var stores [2]*Store
	var recs [2]*recorder.Recorder
	for i := range stores {
		s, err := Open(ctx, "sqlite://"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r, err := recorder.New(s.DB(), recorder.WithReadDB(s.ReadDB()))
		if err != nil {
			t.Fatal(err)
		}
		stores[i], recs[i] = s, r
	}
	end := time.Now().Add(4 * time.Second)
	var appended atomic.Int64
	var wg sync.WaitGroup
	for i, r := range recs {
		wg.Go(func() {
			for j := 0; time.Now().Before(end); j++ {
				if _, err := r.Append(ctx, recorder.Event{Type: recorder.TypeCallReceived, CallID: fmt.Sprintf("s%d-%d", i, j)}); err != nil {
					t.Errorf("store %d append %d: %v", i, j, err)
					return
				}
				appended.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(end) {
			tx, err := stores[1].ReadDB().BeginTx(ctx, nil)
			if err != nil {
				t.Error(err)
				return
			}
			var a, b int64
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM transcript_events`).Scan(&a); err != nil {
				t.Error(err)
			}
			time.Sleep(700 * time.Millisecond)
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM transcript_events`).Scan(&b); err != nil {
				t.Error(err)
			}
			tx.Rollback()
			if a != b {
				t.Errorf("one read transaction saw %d events, then %d", a, b)
			}
		}
	})
	wg.Wait()
	rep, err := recs[0].Verify(ctx)
	if err != nil || !rep.OK || rep.Count != appended.Load() {
		t.Errorf("Verify = %+v, %v; want OK with %d", rep, err, appended.Load())
	}
	t.Logf("%d appends from two stores; -wal %d KiB at the end", appended.Load(), fileSize(t, path+"-wal")>>10)
}

// TestRedTeam6CloseDuringCheckpoint: a store closed (twice) while its
// checkpointer, running every millisecond, is mid-checkpoint under
// writes returns, leaks no goroutine of the checkpointer, and reopens
// with every committed row.
func TestRedTeam6CloseDuringCheckpoint(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	var committed int64
	for round := range 20 {
		s, err := Open(ctx, "sqlite://"+path)
		if err != nil {
			t.Fatal(err)
		}
		p := s.wal
		if err := p.close(); err != nil {
			t.Fatal(err)
		}
		if s.wal, err = startWALCheckpointer(p.dsn, s.db, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS scratch (b BLOB NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		var n int64
		for range 50 + 10*round {
			if _, err := s.db.ExecContext(ctx, `INSERT INTO scratch (b) VALUES (randomblob(3000))`); err != nil {
				t.Fatal(err)
			}
			n++
		}
		committed += n
		done := make(chan error, 1)
		go func() { done <- errors.Join(s.Close(), s.Close()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Close: %v", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Close did not return", round)
		}
		select {
		case <-s.wal.done:
		default:
			t.Fatalf("round %d: the checkpointer still runs after Close", round)
		}
	}
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int64
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM scratch`).Scan(&n); err != nil || n != committed {
		t.Fatalf("after 20 closes: %d rows (%v), want %d", n, err, committed)
	}
}
