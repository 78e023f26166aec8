package broker

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
)

// Red team 4e, attack 3: many approvers at once, across two replicas (two
// store handles, recorders and managers on one store), on one approval
// that needs all of them. Every decision that returned nil must be stored
// with its event; every one that returned an error must have left nothing;
// the store and the transcript must agree. ErrChanged (the approver told
// "try again" because others kept landing) is counted.
func TestRedTeam4eManyApproversTwoReplicas(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			u := be.url(t)
			r1 := rt4eNewReplica(t, rt4eOpen(t, u), nil)
			r2 := rt4eNewReplica(t, rt4eOpen(t, u), nil)
			const n = 12
			id := rt4eHold(t, r1.am, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m := r1.am
					if i%2 == 1 {
						m = r2.am
					}
					<-start
					_, errs[i] = m.Decide(context.Background(), id, rt4eApprover(i), approval.Approve, "ok", approval.ViaAPI)
				}()
			}
			close(start)
			wg.Wait()
			a := rt4eConsistent(t, r1.st, r1.rec, id)
			ok, changed := 0, 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, approval.ErrChanged):
					changed++
				default:
					t.Errorf("approver %d: %v", i, err)
				}
			}
			for i, err := range errs {
				found := false
				for _, d := range a.Decisions {
					found = found || d.Subject == rt4eApprover(i).Subject
				}
				if (err == nil) != found {
					t.Errorf("approver %d: Decide = %v, decision stored = %v", i, err, found)
				}
			}
			t.Logf("%s: %d approvers at once: %d stored, %d told ErrChanged (409); approval %s with %d decisions", be.name, n, ok, changed, a.State, len(a.Decisions))
			if changed > 0 {
				t.Errorf("%d of %d concurrent approvers were refused with ErrChanged: their decision was lost to starvation, not to a conflict", changed, n)
			}
		})
	}
}

// Approve racing deny racing withdraw racing a second approve, over many
// approvals, across two replicas: whatever lands, the store and the
// transcript agree, and a nil error means stored.
func TestRedTeam4eApproveDenyWithdrawRace(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			u := be.url(t)
			r1 := rt4eNewReplica(t, rt4eOpen(t, u), nil)
			r2 := rt4eNewReplica(t, rt4eOpen(t, u), nil)
			for round := range 15 {
				id := rt4eHold(t, r1.am, 2)
				var wg sync.WaitGroup
				start := make(chan struct{})
				type out struct {
					who string
					err error
				}
				res := make([]out, 4)
				run := func(k int, who string, f func() error) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						res[k] = out{who, f()}
					}()
				}
				ctx := context.Background()
				run(0, rt4eApprover(1).Subject, func() error {
					_, err := r1.am.Decide(ctx, id, rt4eApprover(1), approval.Approve, "", approval.ViaWeb)
					return err
				})
				run(1, rt4eApprover(2).Subject, func() error {
					_, err := r2.am.Decide(ctx, id, rt4eApprover(2), approval.Approve, "", approval.ViaAPI)
					return err
				})
				run(2, rt4eApprover(3).Subject, func() error {
					_, err := r2.am.Decide(ctx, id, rt4eApprover(3), approval.Deny, "no", approval.ViaAPI)
					return err
				})
				run(3, rt4eRequester.Subject, func() error {
					_, err := r1.am.Withdraw(ctx, id, rt4eRequester, "never mind")
					return err
				})
				close(start)
				wg.Wait()
				a := rt4eConsistent(t, r1.st, r1.rec, id)
				for _, o := range res {
					found := false
					for _, d := range a.Decisions {
						found = found || d.Subject == o.who
					}
					if (o.err == nil) != found {
						t.Errorf("round %d: %s: err %v, stored %v", round, o.who, o.err, found)
					}
					if o.err != nil && !errors.Is(o.err, approval.ErrDenied) && !errors.Is(o.err, approval.ErrApproved) {
						t.Errorf("round %d: %s: unexpected error %v", round, o.who, o.err)
					}
				}
				// An approved one is consumed by one call of the two
				// replicas, once.
				if a.State == "approved" {
					e1 := make(chan error, 2)
					go func() { e1 <- r1.am.Consume(ctx, id, "c1") }()
					go func() { e1 <- r2.am.Consume(ctx, id, "c2") }()
					if a, b := <-e1, <-e1; (a == nil) == (b == nil) {
						t.Errorf("round %d: two consumes = %v, %v; want exactly one nil", round, a, b)
					}
					if _, err := r2.am.Decide(ctx, id, rt4eApprover(4), approval.Approve, "", approval.ViaAPI); !errors.Is(err, approval.ErrConsumed) {
						t.Errorf("round %d: decide after consume = %v", round, err)
					}
					rt4eConsistent(t, r1.st, r1.rec, id)
				}
			}
			if rep, err := r1.rec.Verify(context.Background()); err != nil || !rep.OK {
				t.Fatalf("transcript does not verify: %+v %v", rep, err)
			}
		})
	}
}
