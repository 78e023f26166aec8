package approval

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"
)

// A Draft is stored by RequestTx in the caller's transaction. When an
// approval for the call exists (here another draft stored a moment before
// in the same transaction, as a neighbour in the transcript's group commit
// would), RequestTx writes nothing and says ErrExists, Found naming the
// other; run again in a new transaction (the recorder's retry without
// that neighbour) it starts afresh and stores the draft.
func TestDraftRequestTx(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	in := input(`{"sql":"DELETE FROM orders WHERE id = 1"}`, 1)
	mine, err := f.m.Draft(in)
	if err != nil {
		t.Fatal(err)
	}
	neighbour, err := f.m.Draft(in)
	if err != nil {
		t.Fatal(err)
	}
	a := mine.Approval()
	if a.ID == "" || a.ID == neighbour.Approval().ID || a.State != Pending || a.Approvers.Min != 1 || !a.ExpiresAt.Equal(t0.Add(15*time.Minute)) {
		t.Fatalf("draft approval %+v: want its own id, pending, min 1, expiring in 15m", a)
	}
	if _, ok := mine.Found(); ok {
		t.Fatal("Found before RequestTx ran")
	}

	errRolledBack := errors.New("rolled back")
	err = f.store.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := neighbour.RequestTx(ctx, tx); err != nil {
			t.Fatalf("the neighbour's RequestTx: %v", err)
		}
		if err := mine.RequestTx(ctx, tx); !errors.Is(err, ErrExists) {
			t.Fatalf("RequestTx with the neighbour's approval stored = %v, want ErrExists", err)
		}
		return errRolledBack
	})
	if !errors.Is(err, errRolledBack) {
		t.Fatal(err)
	}
	if got, ok := mine.Found(); !ok || got.ID != neighbour.Approval().ID {
		t.Fatalf("Found = %s, %v; want the neighbour's %s", got.ID, ok, neighbour.Approval().ID)
	}

	if err := f.store.InTx(ctx, mine.RequestTx); err != nil {
		t.Fatalf("RequestTx alone: %v", err)
	}
	if got, ok := mine.Found(); ok {
		t.Fatalf("Found = %s after RequestTx stored the draft; want nothing", got.ID)
	}
	got, err := f.m.Get(ctx, a.ID)
	if err != nil || got.State != Pending || got.CallID != "call-1" {
		t.Fatalf("the stored draft = %+v, %v", got, err)
	}
	if _, err := f.m.Get(ctx, neighbour.Approval().ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the rolled-back neighbour: %v, want ErrNotFound", err)
	}
	// Request for the same call finds it.
	if again, created, err := f.m.Request(ctx, in); err != nil || created || again.ID != a.ID {
		t.Fatalf("Request = %s, %v, %v; want %s found", again.ID, created, err, a.ID)
	}
}
