package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// Red team 4e, attack 3 (expiry): settle reads the clock once, before the
// decision waits for the transcript (another replica holds the chain
// lock), and the store checks expiry against that reading. A decision made
// before expiry but committed after it is stored, approved, with its
// event; what matters is that it cannot be used: the approval reads as
// expired, and Consume refuses it.
func TestRedTeam4eDecisionCommittedAfterExpiry(t *testing.T) {
	be := rt4eBackends(t)[1]
	ctx := context.Background()
	st := rt4eOpen(t, be.url(t))
	r := rt4eNewReplica(t, st, func(c *approval.Config) { c.Wait, c.Expire = 200*time.Millisecond, time.Second })
	id := rt4eHold(t, r.am, 1)
	held, err := r.am.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// Another replica's long append holds the chain past the expiry.
	tx, err := st.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, 0)`, sqldialect.LockChain)); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(time.Until(held.ExpiresAt) + 300*time.Millisecond)
		_ = tx.Rollback()
	}()
	a, derr := r.am.Decide(ctx, id, rt4eApprover(1), approval.Approve, "ok", approval.ViaAPI)
	done := time.Now()
	stored, err := st.Approval(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Decide = %v, told state %s; returned at %s after expiry; stored %s, decided_at %s before expiry",
		derr, a.State, done.Sub(held.ExpiresAt).Round(time.Millisecond), stored.State, held.ExpiresAt.Sub(stored.DecidedAt).Round(time.Millisecond))
	rt4eConsistent(t, st, r.rec, id)
	now, err := r.am.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if derr == nil && now.State != approval.Expired {
		t.Errorf("approval reads %s after its expiry", now.State)
	}
	if err := r.am.Consume(ctx, id, "late"); !errors.Is(err, approval.ErrExpired) {
		t.Errorf("Consume of an approval decided at the wire = %v, want ErrExpired", err)
	}
}
