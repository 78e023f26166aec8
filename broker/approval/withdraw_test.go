package approval

import (
	"context"
	"errors"
	"testing"
)

// Only the requester withdraws, only a pending approval; a withdrawn one is
// denied by the requester, can be neither decided nor used, and is reported
// as approval.withdrawn, not as an approver's decision.
func TestWithdraw(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	a := f.request(t, input(sqlArgs, 1))

	for _, who := range []string{"bob", "mallory"} {
		id := bob
		if who == "mallory" {
			id = person("mallory", "eng")
		}
		if _, err := f.m.Withdraw(ctx, a.ID, id, "not mine"); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s withdrew alice's approval: %v", who, err)
		}
	}
	got, err := f.m.Withdraw(ctx, a.ID, alice, "changed my mind")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Denied || !got.Withdrawn() || got.Decisions[0].Via != ViaWithdrawn || got.Decisions[0].Reason != "changed my mind" {
		t.Fatalf("withdrawn approval: %+v", got)
	}
	if _, err := f.m.Decide(ctx, a.ID, bob, Approve, "", ViaWeb); !errors.Is(err, ErrDenied) {
		t.Errorf("approving a withdrawn approval: %v, want ErrDenied", err)
	}
	if err := f.m.Consume(ctx, a.ID, "call-2"); err == nil {
		t.Error("a withdrawn approval was used")
	}
	if _, err := f.m.Withdraw(ctx, a.ID, alice, ""); !errors.Is(err, ErrDenied) {
		t.Errorf("withdrawing twice: %v, want ErrDenied", err)
	}
	if n := len(f.events.ofType(EventWithdrawn)); n != 1 {
		t.Errorf("%d approval.withdrawn events, want 1", n)
	}
	if n := len(f.events.ofType(EventDecided)); n != 0 {
		t.Errorf("a withdrawal was reported as %d decisions", n)
	}

	// An approver's deny is not a withdrawal.
	b := f.request(t, input(`{"resource":"orders","sql":"DELETE FROM orders WHERE id = 8"}`, 1))
	denied, err := f.m.Decide(ctx, b.ID, bob, Deny, "no", ViaWeb)
	if err != nil || denied.Withdrawn() {
		t.Errorf("an approver's deny reads as withdrawn: %+v %v", denied, err)
	}
	if _, err := f.m.Withdraw(ctx, b.ID, alice, ""); !errors.Is(err, ErrDenied) {
		t.Errorf("withdrawing a denied approval: %v, want ErrDenied", err)
	}
}
