package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Attack 2: a burst of appends of which a few have hooks that wedge the
// writer past the append timeout and r.late (ignoring ctx), and a few
// hooks that fail. Abandon, stuck, refusal and the lead's hand-off all
// happen many times, interleaved. What must hold: no two writers at once
// (hooks never overlap), every append answered within timeout + late (and
// a little), told made iff stored (once, at the seq it was told), told
// errWriterStuck or any other error but ErrOutcomeUnknown: not stored; the
// chain verifies; no leader goroutine is left once the burst is over.
func TestRedTeam4kStuckBurst(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			r, err := New(b.openDB(t), WithAppendTimeout(400*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			r.late = 150 * time.Millisecond
			if _, err := r.Append(context.Background(), Event{Type: "rt4k.seed"}); err != nil {
				t.Fatal(err)
			}
			baseline, leaders := runtime.NumGoroutine(), rt4kLeaders()
			const n, workers = 240, 12
			type result struct {
				ev   Event
				err  error
				took time.Duration
			}
			results := make([]result, n)
			var inFlight, overlaps atomic.Int32
			next := atomic.Int32{}
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= n {
							return
						}
						hook := func(ctx context.Context, tx *sql.Tx) error {
							if inFlight.Add(1) > 1 {
								overlaps.Add(1)
							}
							defer inFlight.Add(-1)
							switch {
							case i%37 == 5:
								time.Sleep(700 * time.Millisecond) // wedged past timeout + late
							case i%11 == 3:
								return errors.New("rt4k: the hook fails")
							}
							return nil
						}
						start := time.Now()
						ev, err := r.AppendWith(context.Background(), Event{Type: fmt.Sprintf("rt4k.s.%d", i)}, hook)
						results[i] = result{ev, err, time.Since(start)}
						if err != nil {
							time.Sleep(20 * time.Millisecond)
						}
					}
				}()
			}
			wg.Wait()
			rt4kUnstuck(t, r, 15*time.Second)
			if o := overlaps.Load(); o > 0 {
				t.Errorf("hooks of two transactions ran at once %d times: two writers", o)
			}
			bound := r.timeout + r.late + 750*time.Millisecond
			counts := map[string]int{}
			for _, res := range results {
				if res.err != nil {
					counts[errClass(res.err)]++
				} else {
					counts["made"]++
				}
			}
			t.Logf("outcomes: %v", counts)
			for i, res := range results {
				typ := fmt.Sprintf("rt4k.s.%d", i)
				if res.took > bound {
					t.Errorf("%s: answered after %v (bound %v): %v", typ, res.took, bound, res.err)
				}
				stored := rt4kCount(t, r, typ)
				switch {
				case res.err == nil:
					if stored != 1 {
						t.Errorf("%s: told made (seq %d), %d stored", typ, res.ev.Seq, stored)
						continue
					}
					var got string
					if err := r.db.QueryRow(r.q(`SELECT type FROM transcript_events WHERE seq = ?`), res.ev.Seq).Scan(&got); err != nil || got != typ {
						t.Errorf("%s: told seq %d, which holds %q (%v)", typ, res.ev.Seq, got, err)
					}
				case errors.Is(res.err, ErrOutcomeUnknown):
					if stored > 1 {
						t.Errorf("%s: stored %d times", typ, stored)
					}
				default:
					if stored != 0 {
						t.Errorf("%s: told not made (%v), %d stored", typ, res.err, stored)
					}
				}
			}
			if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
				t.Errorf("verify: %+v %v", rep, err)
			}
			if _, err := r.Append(context.Background(), Event{Type: "rt4k.after"}); err != nil {
				t.Errorf("the append after the burst: %v", err)
			}
			time.Sleep(300 * time.Millisecond)
			if g := runtime.NumGoroutine(); g > baseline+2 || rt4kLeaders() > leaders {
				t.Errorf("goroutines: %d before the burst, %d after (leaders %d, %d before)", baseline, g, rt4kLeaders(), leaders)
			}
		})
	}
}

func errClass(err error) string {
	switch {
	case errors.Is(err, ErrOutcomeUnknown):
		return "unknown"
	case errors.Is(err, errWriterStuck):
		return "stuck"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	}
	return "other"
}
