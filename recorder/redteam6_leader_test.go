package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Red team 6: the leader that stays (lead, leadOne, enqueue's wake).

// rt6Churn runs appenders against r for d, each sleeping a random time
// around r.idle between appends so that appends arrive as an idle
// leader's timer fires, as it is about to wait, and while it writes. A
// hook per append checks that no two hooks ever run at once (two
// leaders writing) and, for chaos > 0, one append in chaos calls
// runtime.Goexit or panics in its hook. It returns, per CallID, whether
// the append succeeded (and its seq), and fails the test for an append
// that took longer than maxWait (a lost wake-up: queued with no leader).
func rt6Churn(t *testing.T, r *Recorder, appenders int, d time.Duration, chaos int, maxWait time.Duration) (ok map[string]int64, failed map[string]error) {
	t.Helper()
	var inHook, overlaps atomic.Int64
	var mu sync.Mutex
	ok, failed = map[string]int64{}, map[string]error{}
	var slowest atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range appenders {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 6))
			for i := 0; time.Now().Before(end); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				mode := 0
				if chaos > 0 {
					mode = rng.IntN(chaos)
				}
				hook := func(context.Context, *sql.Tx) error {
					if inHook.Add(1) > 1 {
						overlaps.Add(1)
					}
					defer inHook.Add(-1)
					switch mode {
					case 1:
						runtime.Goexit()
					case 2:
						panic("rt6 hook panic")
					}
					return nil
				}
				start := time.Now()
				var ev Event
				var err error
				done := make(chan struct{})
				// The append runs on a goroutine of its own so that a
				// Goexit that (wrongly) ran on the caller's goroutine
				// would show as a missing result, not a vanished worker.
				go func() {
					defer close(done)
					ev, err = r.AppendWith(context.Background(), Event{Type: TypeCallReceived, CallID: id}, hook)
				}()
				select {
				case <-done:
				case <-time.After(maxWait + 5*time.Second):
					t.Errorf("append %s has not returned after %v", id, maxWait+5*time.Second)
					return
				}
				if took := time.Since(start); took > time.Duration(slowest.Load()) {
					slowest.Store(int64(took))
				}
				if took := time.Since(start); took > maxWait {
					t.Errorf("append %s took %v (%v): queued with no leader to write it?", id, took, err)
				}
				mu.Lock()
				if err == nil {
					ok[id] = ev.Seq
				} else {
					failed[id] = err
				}
				mu.Unlock()
				time.Sleep(time.Duration(rng.Int64N(int64(2 * r.idle))))
			}
		})
	}
	wg.Wait()
	if n := overlaps.Load(); n > 0 {
		t.Errorf("%d hooks ran while another append's hook was running: two leaders wrote at once", n)
	}
	t.Logf("%d appends ok, %d failed, slowest %v", len(ok), len(failed), time.Duration(slowest.Load()))
	return ok, failed
}

// rt6CheckStored: every append that succeeded is in the store at the seq
// it was told, every one that failed is not, no seq is used twice, and
// the chain verifies.
func rt6CheckStored(t *testing.T, r *Recorder, ok map[string]int64, failed map[string]error) {
	t.Helper()
	ctx := context.Background()
	evs, err := r.Events(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	stored := map[string]int64{}
	for _, ev := range evs {
		if seen[ev.Seq] {
			t.Errorf("seq %d stored twice", ev.Seq)
		}
		seen[ev.Seq] = true
		stored[ev.CallID] = ev.Seq
	}
	for id, seq := range ok {
		if got, in := stored[id]; !in || got != seq {
			t.Errorf("append %s was told seq %d; the store has it at %d (present %v)", id, seq, got, in)
		}
	}
	for id, err := range failed {
		if seq, in := stored[id]; in && !errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("append %s failed (%v) but is stored at seq %d", id, err, seq)
		}
	}
	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK || rep.Count != int64(len(evs)) {
		t.Errorf("Verify = %+v, %v; want OK with %d events", rep, err, len(evs))
	}
}

// TestRedTeam6LeaderChurn: with a leader idle time of 200 µs and appends
// arriving at random around it, no append waits for a leader that is not
// coming, no two leaders write at once, and what each append is told is
// what the store holds.
func TestRedTeam6LeaderChurn(t *testing.T) {
	r, _ := newRecorder(t, sqliteBackend, WithAppendTimeout(2*time.Second))
	r.idle = 200 * time.Microsecond
	r.late = time.Second
	ok, failed := rt6Churn(t, r, 6, 3*time.Second, 0, 2*time.Second)
	if len(failed) > 0 {
		for id, err := range failed {
			t.Errorf("append %s failed: %v", id, err)
			break
		}
		t.Errorf("%d appends failed with no hook failing", len(failed))
	}
	rt6CheckStored(t, r, ok, failed)
	rt6NoLeaders(t, r, time.Second)
}

// TestRedTeam6LeaderChurnGoexitPanic: the same with one hook in five
// calling runtime.Goexit or panicking: appends queued behind a leader a
// Goexit stopped are written by another, none waits past its timeout, and
// success and failure are each what the store shows.
func TestRedTeam6LeaderChurnGoexitPanic(t *testing.T) {
	r, _ := newRecorder(t, sqliteBackend, WithAppendTimeout(2*time.Second))
	r.idle = 200 * time.Microsecond
	r.late = time.Second
	ok, failed := rt6Churn(t, r, 6, 3*time.Second, 5, 2*time.Second)
	if len(ok) == 0 {
		t.Fatal("no append succeeded")
	}
	for _, err := range failed {
		if errors.Is(err, errWriterStuck) {
			t.Errorf("an append was refused as stuck: %v", err)
			break
		}
	}
	rt6CheckStored(t, r, ok, failed)
	rt6NoLeaders(t, r, time.Second)
}

// rt6NoLeaders waits up to wait for every goroutine leading r's commits
// to exit.
func rt6NoLeaders(t *testing.T, r *Recorder, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for leadersOf(r) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := leadersOf(r); n > 0 {
		t.Errorf("%d leader goroutines still running %v after the last append", n, wait)
	}
}

// TestRedTeam6LeadersOfDroppedRecorders: 200 recorders, each appended to
// and dropped, leave no leader goroutine behind once leaderIdle has passed.
func TestRedTeam6LeadersOfDroppedRecorders(t *testing.T) {
	db := sqliteBackend.openDB(t)
	var dropped []*Recorder
	for i := range 200 {
		r, err := New(db)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived, CallID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		dropped = append(dropped, r)
	}
	waiting := 0
	for _, r := range dropped {
		waiting += leadersOf(r)
	}
	if waiting == 0 {
		t.Log("no leader waiting right after the appends (they exited already)")
	}
	for _, r := range dropped {
		rt6NoLeaders(t, r, 10*leaderIdle)
	}
}

// TestRedTeam6LeaderChurnPostgres: TestRedTeam6LeaderChurn on a real
// PostgreSQL.
func TestRedTeam6LeaderChurnPostgres(t *testing.T) {
	r, _ := newRecorder(t, postgresBackend(t), WithAppendTimeout(2*time.Second))
	r.idle = 200 * time.Microsecond
	r.late = time.Second
	ok, failed := rt6Churn(t, r, 6, 3*time.Second, 5, 2*time.Second)
	if len(ok) == 0 {
		t.Fatal("no append succeeded")
	}
	rt6CheckStored(t, r, ok, failed)
	rt6NoLeaders(t, r, time.Second)
}
