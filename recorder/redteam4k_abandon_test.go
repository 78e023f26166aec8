package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Red team 4k: abandon (commit.go) against the leader that still holds
// the request it gave up on.

// rt4kLeaders counts the goroutines running lead, of every recorder of
// the process (4j's wedged ones included: compare with a count taken
// before).
func rt4kLeaders() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "recorder.(*Recorder).lead(")
}

// rt4kUnstuck waits for the recorder to have no leader and not be stuck.
func rt4kUnstuck(t *testing.T, r *Recorder, wait time.Duration) {
	t.Helper()
	until := time.Now().Add(wait)
	for time.Now().Before(until) {
		r.mu.Lock()
		busy := r.stuck || r.leading
		r.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the recorder was still stuck or leading %v after its writer returned", wait)
}

// Attack 1: a hook that ignores its ctx and blocks past the append's
// timeout and r.late. Its caller is told ErrOutcomeUnknown by abandon,
// which formats q.evs[0].Type under r.mu; the leader, released later,
// finishes the same request (finish writes q.evs, q.err without r.mu,
// and abandon's select on done saw it open): a data race on q.evs. In
// the worst interleaving finish has set q.evs = nil and not yet closed
// done when abandon indexes q.evs[0]: an index-out-of-range panic on the
// caller's goroutine, which takes the whole process down. Run with -race.
// The rest asserts the fail-closed promises around a stuck writer.
func TestRedTeam4kAbandonThenFinish(t *testing.T) {
	// The race detector misses the race in some runs (happens-before
	// through the fmt printers' sync.Pool, which every caller and the
	// leader use), so the scenario is played several times.
	pg := postgresBackend(t)
	for i := range 16 {
		b := sqliteBackend
		if i%2 == 1 {
			b = pg
		}
		t.Run(fmt.Sprintf("%s-%d", b.name, i/2), func(t *testing.T) {
			r, err := New(b.openDB(t), WithAppendTimeout(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			r.late = 100 * time.Millisecond
			if _, err := r.Append(context.Background(), Event{Type: "rt4k.seed"}); err != nil {
				t.Fatal(err)
			}
			// A short first batch, so that the wedged one and the appends
			// after it queue and are led as one batch: the leader holds
			// them all when their callers give up. The hook wakes by
			// itself: a channel the test closed after the callers returned
			// would order abandon's reads before finish's writes for the
			// race detector (so would a fmt printer the sync.Pool hands
			// from a caller to the leader, hence several held requests).
			const held = 8
			first := make(chan struct{})
			go r.AppendWith(context.Background(), Event{Type: "rt4k.first"}, func(ctx context.Context, tx *sql.Tx) error {
				close(first)
				time.Sleep(100 * time.Millisecond)
				return nil
			})
			<-first
			entered := make(chan struct{})
			wedge := r.timeout + r.late + 400*time.Millisecond
			heldErr := make(chan error, held)
			go func() {
				_, err := r.AppendWith(context.Background(), Event{Type: "rt4k.held"}, func(ctx context.Context, tx *sql.Tx) error {
					close(entered)
					time.Sleep(wedge) // ignores ctx: a driver wedged under it
					return nil
				})
				heldErr <- err
			}()
			time.Sleep(20 * time.Millisecond)
			for range held - 1 {
				go func() {
					_, err := r.Append(context.Background(), Event{Type: "rt4k.held2"})
					heldErr <- err
				}()
			}
			<-entered
			queuedErr := make(chan error, 3)
			for range 3 {
				go func() {
					_, err := r.Append(context.Background(), Event{Type: "rt4k.queued"})
					queuedErr <- err
				}()
			}
			bound := r.timeout + r.late + 2*time.Second
			for range held {
				select {
				case err := <-heldErr:
					if !errors.Is(err, ErrOutcomeUnknown) {
						t.Errorf("an append the stuck writer holds: %v; want ErrOutcomeUnknown", err)
					}
				case <-time.After(bound):
					t.Fatalf("a held append was not answered within %v", bound)
				}
			}
			for range 3 {
				select {
				case err := <-queuedErr:
					if !errors.Is(err, errWriterStuck) || errors.Is(err, ErrOutcomeUnknown) {
						t.Errorf("an append queued behind the stuck writer: %v; want errWriterStuck, not written", err)
					}
				case <-time.After(bound):
					t.Fatalf("a queued append was not answered within %v", bound)
				}
			}
			start := time.Now()
			if _, err := r.Append(context.Background(), Event{Type: "rt4k.refused"}); !errors.Is(err, errWriterStuck) || time.Since(start) > 200*time.Millisecond {
				t.Errorf("an append while the writer is stuck: %v after %v; want errWriterStuck at once", err, time.Since(start))
			}
			// The leader wakes, goes on, and finishes the request abandon answered.
			rt4kUnstuck(t, r, 15*time.Second)
			if _, err := r.Append(context.Background(), Event{Type: "rt4k.after"}); err != nil {
				t.Errorf("the next append once the writer returned: %v", err)
			}
			for _, typ := range []string{"rt4k.queued", "rt4k.refused"} {
				if n := rt4kCount(t, r, typ); n != 0 {
					t.Errorf("%s: told errWriterStuck (never written), %d stored", typ, n)
				}
			}
			if n := rt4kCount(t, r, "rt4k.after"); n != 1 {
				t.Errorf("rt4k.after: told made, %d stored", n)
			}
			if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
				t.Errorf("verify: %+v %v", rep, err)
			}
		})
	}
}

// rt4kCount counts the stored events of type typ.
func rt4kCount(t *testing.T, r *Recorder, typ string) int {
	t.Helper()
	var n int
	if err := r.db.QueryRow(r.q(`SELECT count(*) FROM transcript_events WHERE type = ?`), typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
