package store

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"
)

// RequestApprovalTx writes a new approval and its deliveries in the
// caller's transaction, so they are committed with what else it writes
// (the transcript's approval.requested) or rolled back with it; when it
// finds an approval for the digest it writes nothing. RequestApproval, its
// own transaction, keeps the same rules.
func TestRequestApprovalTx(t *testing.T) {
	for _, b := range []backend{sqliteBackend(), postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) { testRequestApprovalTx(t, b) })
	}
}

func testRequestApprovalTx(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	t0 := time.Now().Truncate(time.Millisecond)
	deliveries := func(s *Store) int {
		t.Helper()
		ds, err := s.Deliveries(ctx, "hook-a")
		if err != nil {
			t.Fatal(err)
		}
		return len(ds)
	}
	errLater := errors.New("a later statement of the transaction failed")

	// Rolled back after the insert (the event's commit failed): nothing
	// of the approval is left, its deliveries neither.
	a1 := testApproval("a1", "digest-1", t0)
	err := s.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		got, created, err := s.RequestApprovalTx(ctx, tx, a1, t0, delivery("d1", "hook-a", t0))
		if err != nil || !created || got.ID != "a1" {
			t.Fatalf("RequestApprovalTx = %s, %v, %v; want a1 created", got.ID, created, err)
		}
		// Inside the transaction it is there, with its delivery.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM approvals`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("approvals inside the transaction: %d, %v; want 1", n, err)
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM webhook_outbox`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("deliveries inside the transaction: %d, %v; want 1", n, err)
		}
		return errLater
	})
	if !errors.Is(err, errLater) {
		t.Fatalf("InTx = %v, want the later failure", err)
	}
	if _, err := s.Approval(ctx, "a1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approval a1 after the rollback: %v, want ErrNotFound", err)
	}
	if n := deliveries(s); n != 0 {
		t.Fatalf("%d deliveries after the rollback, want 0", n)
	}

	// Committed: the approval and its delivery are there.
	if err := s.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, created, err := s.RequestApprovalTx(ctx, tx, a1, t0, delivery("d1", "hook-a", t0))
		if err == nil && !created {
			t.Error("a1 was not created in an empty store")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Approval(ctx, "a1"); err != nil || got.State != ApprovalPending {
		t.Fatalf("approval a1 = %+v, %v; want it pending", got, err)
	}
	if n := deliveries(s); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}

	// Another request for the digest finds a1 (rule 2) and writes nothing:
	// not itself, not its deliveries.
	a2 := testApproval("a2", "digest-1", t0.Add(time.Second))
	if err := s.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		got, created, err := s.RequestApprovalTx(ctx, tx, a2, t0.Add(time.Second), delivery("d2", "hook-a", t0))
		if err != nil || created || got.ID != "a1" {
			t.Errorf("RequestApprovalTx for the same digest = %s, %v, %v; want a1 found", got.ID, created, err)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Approval(ctx, "a2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approval a2: %v, want ErrNotFound (a1 was found)", err)
	}
	if n := deliveries(s); n != 1 {
		t.Fatalf("%d deliveries, want 1 (none for a2)", n)
	}

	// An invalid approval is refused before anything is written.
	bad := testApproval("a3", "", t0)
	if err := s.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, _, err := s.RequestApprovalTx(ctx, tx, bad, t0)
		return err
	}); !errors.Is(err, ErrInvalidApproval) {
		t.Fatalf("RequestApprovalTx of an approval without a digest = %v, want ErrInvalidApproval", err)
	}

	// RequestApproval (its own transaction) keeps the rules.
	if got, created, err := s.RequestApproval(ctx, a2, t0.Add(time.Second)); err != nil || created || got.ID != "a1" {
		t.Fatalf("RequestApproval for the same digest = %s, %v, %v; want a1 found", got.ID, created, err)
	}
	a4 := testApproval("a4", "digest-4", t0)
	if got, created, err := s.RequestApproval(ctx, a4, t0, delivery("d4", "hook-a", t0)); err != nil || !created || got.ID != "a4" {
		t.Fatalf("RequestApproval of a new digest = %s, %v, %v; want a4 created", got.ID, created, err)
	}
	if n := deliveries(s); n != 2 {
		t.Fatalf("%d deliveries, want 2", n)
	}
	if _, _, err := s.RequestApproval(ctx, bad, t0); !errors.Is(err, ErrInvalidApproval) {
		t.Fatalf("RequestApproval of an approval without a digest = %v, want ErrInvalidApproval", err)
	}
}
