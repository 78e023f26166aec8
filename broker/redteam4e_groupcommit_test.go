package broker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4e, attack 2: decisions share group commits with events that
// fail: an insert a trigger refuses, a hook that returns an error, a hook
// that panics (which fails its whole batch). The recorder rolls back and
// writes the batch again without the failed one, so a decision's Write
// runs more than once: it must be committed at most once, only with its
// own event, and Decide's answer must match what was stored.
func TestRedTeam4eDecisionsInFailingGroupCommits(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			u := be.url(t)
			r1 := rt4eNewReplica(t, rt4eOpen(t, u), nil)
			r2 := rt4eNewReplica(t, rt4eOpen(t, u), nil)
			if be.pg == nil {
				if _, err := r1.st.DB().Exec(`CREATE TRIGGER rt4e_poison BEFORE INSERT ON transcript_events
					WHEN NEW.type = 'rt4e.poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END`); err != nil {
					t.Fatal(err)
				}
			} else {
				be.pg.ExecDB(t, be.db, `CREATE FUNCTION rt4e_poison() RETURNS trigger LANGUAGE plpgsql AS $$
					BEGIN IF NEW.type = 'rt4e.poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$;
					CREATE TRIGGER rt4e_poison BEFORE INSERT ON transcript_events FOR EACH ROW EXECUTE FUNCTION rt4e_poison();`)
			}
			const approvals = 6
			ids := make([]string, approvals)
			for i := range ids {
				ids[i] = rt4eHold(t, r1.am, 1+i%3)
			}
			stop := make(chan struct{})
			var noise sync.WaitGroup
			var poisoned, hookFailed, panicked atomic.Int64
			for g := range 6 {
				noise.Add(1)
				go func() {
					defer noise.Done()
					rec := r1.rec
					if g%2 == 1 {
						rec = r2.rec
					}
					for k := 0; ; k++ {
						select {
						case <-stop:
							return
						default:
						}
						var err error
						switch k % 3 {
						case 0:
							_, err = rec.Append(ctx, recorder.Event{Type: "rt4e.poison"})
							if err != nil {
								poisoned.Add(1)
							}
						case 1:
							_, err = rec.AppendWith(ctx, recorder.Event{Type: "rt4e.hookfails"}, func(ctx context.Context, tx *sql.Tx) error {
								return errors.New("hook refused")
							})
							if err != nil {
								hookFailed.Add(1)
							}
						case 2:
							if g < 2 && k%6 == 2 {
								_, err = rec.AppendWith(ctx, recorder.Event{Type: "rt4e.panics"}, func(ctx context.Context, tx *sql.Tx) error {
									panic("rt4e")
								})
								if err != nil {
									panicked.Add(1)
								}
							} else {
								_, _ = rec.Append(ctx, recorder.Event{Type: "rt4e.ok"})
							}
						}
					}
				}()
			}
			type res struct {
				id, who string
				err     error
			}
			var mu sync.Mutex
			var results []res
			var wg sync.WaitGroup
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m := r1.am
					if i%2 == 1 {
						m = r2.am
					}
					for j := range ids {
						id := ids[(i+j)%approvals]
						v := approval.Approve
						if i == 7 && j == 2 {
							v = approval.Deny
						}
						who := rt4eApprover(i)
						_, err := m.Decide(ctx, id, who, v, fmt.Sprint("r", i), approval.ViaAPI)
						mu.Lock()
						results = append(results, res{id, who.Subject, err})
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			close(stop)
			noise.Wait()
			unrecorded, changed := 0, 0
			for _, id := range ids {
				a := rt4eConsistent(t, r1.st, r1.rec, id)
				for _, r := range results {
					if r.id != id {
						continue
					}
					found := false
					for _, d := range a.Decisions {
						found = found || d.Subject == r.who
					}
					if (r.err == nil) != found {
						t.Errorf("%s on %s: err %v, stored %v", r.who, id, r.err, found)
					}
					if errors.Is(r.err, approval.ErrUnrecorded) {
						unrecorded++
					}
					if errors.Is(r.err, approval.ErrChanged) {
						changed++
					}
				}
			}
			t.Logf("%d decisions; %d ErrUnrecorded, %d ErrChanged; noise: %d poisoned inserts, %d failed hooks, %d panicking hooks",
				len(results), unrecorded, changed, poisoned.Load(), hookFailed.Load(), panicked.Load())
			if rep, err := r1.rec.Verify(ctx); err != nil || !rep.OK {
				t.Fatalf("transcript does not verify: %+v %v", rep, err)
			}
		})
	}
}
