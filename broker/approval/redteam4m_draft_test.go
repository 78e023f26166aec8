package approval

import (
	"context"
	"errors"
	"testing"
)

// Red team 4m: a Draft's RequestTx run again after it found an approval
// (ErrExists), this time failing for a store error, must not leave Found
// telling of the first run: the broker would use that approval although
// the append it returned failed for another reason.
func TestRedTeam4mDraftFoundResetByFailedRun(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	in := input(`{"sql":"DELETE FROM orders WHERE id = 7"}`, 1)
	other, created, err := f.m.Request(ctx, in)
	if err != nil || !created {
		t.Fatalf("Request = %v, created %v", err, created)
	}
	mine, err := f.m.Draft(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.InTx(ctx, mine.RequestTx); !errors.Is(err, ErrExists) {
		t.Fatalf("RequestTx with %s stored = %v, want ErrExists", other.ID, err)
	}
	if got, ok := mine.Found(); !ok || got.ID != other.ID || got.State != Pending {
		t.Fatalf("Found = %+v, %v; want %s pending", got, ok, other.ID)
	}
	// The second run's transaction is already over: its first statement fails.
	tx, err := f.store.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback()
	if err := mine.RequestTx(ctx, tx); err == nil || errors.Is(err, ErrExists) {
		t.Fatalf("RequestTx in an ended transaction = %v, want a store error", err)
	}
	if got, ok := mine.Found(); ok {
		t.Fatalf("Found = %s after a run that failed: want nothing", got.ID)
	}
}
