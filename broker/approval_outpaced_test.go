package broker

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
)

// An approver whose decision loses the race to another replica's, time
// after time, is still stored: each loss means another decision landed,
// and no more land on a pending approval than it needs approvers, so
// settle keeps trying past its fixed five attempts. Here replica A lands
// a decision between B's read and B's write seven times over.
func TestApprovalOutpacedByOtherDecisionsIsStored(t *testing.T) {
	ctx := context.Background()
	u := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	const min, outpaced = 9, 7
	rA := rt4eNewReplica(t, rt4eOpen(t, u), nil)
	next := 1
	rB := rt4eNewReplica(t, rt4eOpen(t, u), func(c *approval.Config) {
		rec := c.OnEvent
		c.OnEvent = func(ctx context.Context, ev approval.Event) error {
			if ev.Type == approval.EventDecided && next <= outpaced {
				next++
				if _, err := rA.am.Decide(ctx, ev.ApprovalID, rt4eApprover(next), approval.Approve, "first", approval.ViaAPI); err != nil {
					t.Errorf("replica A: %v", err)
				}
			}
			return rec(ctx, ev)
		}
	})
	id := rt4eHold(t, rA.am, min)
	if _, err := rB.am.Decide(ctx, id, rt4eApprover(0), approval.Approve, "outpaced", approval.ViaAPI); err != nil {
		t.Fatalf("outpaced %d times, B's approver was told %v", outpaced, err)
	}
	a := rt4eConsistent(t, rA.st, rA.rec, id)
	if len(a.Decisions) != outpaced+1 || a.Decisions[outpaced].Subject != rt4eApprover(0).Subject {
		t.Fatalf("stored decisions %+v; want A's %d, then B's", a.Decisions, outpaced)
	}
}
