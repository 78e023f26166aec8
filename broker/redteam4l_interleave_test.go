package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
)

// Red team 4l: two replicas each read the approval before either writes
// (forced with a barrier on each replica's first read), so each one's
// check (folded typed names, requester, state) runs on a read that does
// not hold the other's decision. Only the store's prior count stands
// between them and the store's exact (subject, issuer) duplicate check.

type rt4lBarrierStore struct {
	*store.Store
	target  string
	arrived *sync.WaitGroup
	once    atomic.Bool
}

func (s *rt4lBarrierStore) Approval(ctx context.Context, id string) (store.Approval, error) {
	a, err := s.Store.Approval(ctx, id)
	if id == s.target && s.once.CompareAndSwap(false, true) {
		s.arrived.Done()
		done := make(chan struct{})
		go func() { s.arrived.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	return a, err
}

func rt4lPair(t *testing.T, u string) (a, b *rt4eReplica, sa, sb *rt4lBarrierStore) {
	var wg sync.WaitGroup
	wg.Add(2)
	sa = &rt4lBarrierStore{Store: rt4eOpen(t, u), arrived: &wg}
	sb = &rt4lBarrierStore{Store: rt4eOpen(t, u), arrived: &wg}
	a = rt4eNewReplica(t, sa.Store, func(c *approval.Config) { c.Store = sa })
	b = rt4eNewReplica(t, sb.Store, func(c *approval.Config) { c.Store = sb })
	return
}

// Typed-name variants of one person (no issuer: the web UI's local mode,
// auth none) deciding at once on two replicas must count once: min 2 is
// not met by "carol" and "ＣＡＲＯＬ\u200b".
func TestRedTeam4lFoldedVariantsAcrossReplicas(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			a, b, sa, sb := rt4lPair(t, be.url(t))
			id := rt4eHold(t, a.am, 2)
			sa.target, sb.target = id, id
			v1 := policy.Identity{Subject: "carol", Groups: []string{"dba"}}
			v2 := policy.Identity{Subject: "ＣＡＲＯＬ\u200b", Groups: []string{"dba"}}
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, m := range []*approval.Manager{a.am, b.am} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = m.Decide(context.Background(), id, []policy.Identity{v1, v2}[i], approval.Approve, "ok", approval.ViaWeb)
				}()
			}
			wg.Wait()
			got := rt4eConsistent(t, a.st, a.rec, id)
			t.Logf("%s: errors %v; approval %s with %d decisions", be.name, errs, got.State, len(got.Decisions))
			if got.State != store.ApprovalPending || len(got.Decisions) != 1 {
				t.Errorf("two spellings of one typed name, deciding at once on two replicas, left approval %s with %d decisions (min 2)", got.State, len(got.Decisions))
			}
		})
	}
}

// The requester withdrawing on one replica while an approver approves on
// the other, both from reads that show the approval pending: exactly one
// lands; a nil error means stored; the approval is never approved with a
// withdrawal stored beside it, and is never consumed once withdrawn.
func TestRedTeam4lWithdrawVersusApproveInterleaved(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			for round := range 3 {
				a, b, sa, sb := rt4lPair(t, be.url(t))
				id := rt4eHold(t, a.am, 1)
				sa.target, sb.target = id, id
				var wg sync.WaitGroup
				var wErr, dErr error
				wg.Add(2)
				go func() {
					defer wg.Done()
					_, wErr = a.am.Withdraw(context.Background(), id, rt4eRequester, "cancelled")
				}()
				go func() {
					defer wg.Done()
					_, dErr = b.am.Decide(context.Background(), id, rt4eApprover(round), approval.Approve, "ok", approval.ViaAPI)
				}()
				wg.Wait()
				got := rt4eConsistent(t, a.st, a.rec, id)
				if len(got.Decisions) != 1 {
					t.Errorf("round %d: %d decisions stored (withdraw %v, approve %v)", round, len(got.Decisions), wErr, dErr)
				}
				if (wErr == nil) == (dErr == nil) {
					t.Errorf("round %d: withdraw %v, approve %v: exactly one must land", round, wErr, dErr)
				}
				cerr := a.am.Consume(context.Background(), id, "call-after")
				if wErr == nil && cerr == nil {
					t.Errorf("round %d: a withdrawn approval was consumed", round)
				}
				t.Logf("%s round %d: withdraw %v; approve %v; state %s; consume %v", be.name, round, wErr, dErr, got.State, cerr)
			}
		})
	}
}
