package broker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4f, attack 5: claim 5 under more contention than 4e's 12: two
// and three replicas, each with a queue of approvers on one approval (so
// each replica always has a decision in flight against the others'). A
// nil error must mean stored; ErrChanged (409, "try again") is counted as
// a lost decision.
func TestRedTeam4fManyApproversManyReplicas(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		for _, shape := range []struct{ replicas, each int }{{2, 12}, {3, 8}, {4, 6}} {
			t.Run(fmt.Sprintf("%s/%dx%d", be.name, shape.replicas, shape.each), func(t *testing.T) {
				u := be.url(t)
				reps := make([]*rt4eReplica, shape.replicas)
				for i := range reps {
					reps[i] = rt4eNewReplica(t, rt4eOpen(t, u), nil)
				}
				n := shape.replicas * shape.each
				id := rt4eHold(t, reps[0].am, n)
				errs := make([]error, n)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						_, errs[i] = reps[i%shape.replicas].am.Decide(context.Background(), id, rt4eApprover(i), approval.Approve, "ok", approval.ViaAPI)
					}()
				}
				began := time.Now()
				close(start)
				wg.Wait()
				took := time.Since(began)
				a := rt4eConsistent(t, reps[0].st, reps[0].rec, id)
				changed := 0
				for i, err := range errs {
					found := false
					for _, d := range a.Decisions {
						found = found || d.Subject == rt4eApprover(i).Subject
					}
					if (err == nil) != found {
						t.Errorf("approver %d: Decide = %v, stored = %v", i, err, found)
					}
					if errors.Is(err, approval.ErrChanged) {
						changed++
					} else if err != nil {
						t.Errorf("approver %d: %v", i, err)
					}
				}
				t.Logf("%s, %d replicas x %d approvers: %d stored, %d told ErrChanged, in %v", be.name, shape.replicas, shape.each, len(a.Decisions), changed, took.Round(time.Millisecond))
				if changed > 0 {
					t.Errorf("claim 5: %d of %d concurrent approvers lost their decision to ErrChanged", changed, n)
				}
			})
		}
	}
}

// Red team 4f, attack 6: holds matches a decision by approver, verdict,
// via and At, not by reason. Two replicas with one coarse clock (a test
// clock; equally a clock that ticks in milliseconds): the same approver
// approves from both at once with different reasons. Replica B reads the
// approval before A's decision lands; A's commits; B's append then fails
// (a store error on its insert: here a trigger refusing it). B reads the
// approval back, finds "its" decision (A's: same approver, verdict, via,
// At) and tells the approver success: the reason B was given is stored
// nowhere and no event records it.
func TestRedTeam4fHoldsMatchesAnotherDecision(t *testing.T) {
	ctx := context.Background()
	u := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	at := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	clock := func() time.Time { return at }
	rA := rt4eNewReplica(t, rt4eOpen(t, u), func(c *approval.Config) { c.Clock = clock })
	var rB *rt4eReplica
	var aErr error
	rB = rt4eNewReplica(t, rt4eOpen(t, u), func(c *approval.Config) {
		c.Clock = clock
		c.OnEvent = func(ctx context.Context, ev approval.Event) error {
			if ev.Type == approval.EventDecided {
				// A's decision lands between B's read and B's write.
				_, aErr = rA.am.Decide(ctx, ev.ApprovalID, rt4eApprover(1), approval.Approve, "reason given on A", approval.ViaAPI)
				if _, err := rB.st.DB().Exec(`CREATE TRIGGER rt4f_fail BEFORE INSERT ON transcript_events
					WHEN NEW.type = 'approval.decided' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`); err != nil {
					return err
				}
				defer rB.st.DB().Exec(`DROP TRIGGER rt4f_fail`)
			}
			return RecordApprovalEvent(ctx, rB.rec, ev)
		}
	})
	id := rt4eHold(t, rA.am, 2)
	_, bErr := rB.am.Decide(ctx, id, rt4eApprover(1), approval.Approve, "reason given on B", approval.ViaAPI)
	a, err := rA.st.Approval(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := rA.rec.Events(ctx, recorder.Filter{Type: approval.EventDecided})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, d := range a.Decisions {
		reasons = append(reasons, d.Subject+": "+d.Reason)
	}
	t.Logf("A: %v; B: %v; stored decisions %q; approval.decided events %d", aErr, bErr, reasons, len(evs))
	if aErr == nil && bErr == nil {
		t.Errorf("both replicas told %s success; the store holds only %q: B's decision (reason %q) is stored nowhere", rt4eApprover(1).Subject, reasons, "reason given on B")
	}
}
