package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// listen runs ListenApprovals on s until the test ends and returns the ids
// it hears, once the LISTEN is in place.
func listen(t *testing.T, s *Store) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ids := make(chan string, 16)
	up := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.ListenApprovals(ctx, ApprovalListener{
			Changed: func(id string) { ids <- id },
			Up:      func() { up <- struct{}{} },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("ListenApprovals = %v, want context.Canceled", err)
		}
	})
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("ListenApprovals = %v before listening", err)
	case <-time.After(10 * time.Second):
		t.Fatal("ListenApprovals did not start listening within 10s")
	}
	return ids
}

func expectID(t *testing.T, ids <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ids:
		if got != want {
			t.Fatalf("notified %q, want %q", got, want)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("no notification for %s within 2s", want)
	}
}

func expectNone(t *testing.T, ids <-chan string, why string) {
	t.Helper()
	select {
	case got := <-ids:
		t.Fatalf("notified %q %s", got, why)
	case <-time.After(300 * time.Millisecond):
	}
}

// A decision committed through one store is heard by a listener on
// another; a refused decision and a rolled-back transaction send nothing.
func TestListenApprovalsPostgres(t *testing.T) {
	ctx := context.Background()
	u := postgresBackend(t).url(t)
	decider, listener := openURL(t, u), openURL(t, u)
	ids := listen(t, listener)

	if _, _, err := decider.RequestApproval(ctx, testApproval("n1", "dn1", t0), t0); err != nil {
		t.Fatal(err)
	}
	expectNone(t, ids, "for a new approval (nobody waits on it yet)")
	if _, err := decider.DecideApproval(ctx, "n1", decision("bob", VerdictDeny, t0), t0); err != nil {
		t.Fatal(err)
	}
	expectID(t, ids, "n1")
	// Denied already: refused, no notification.
	if _, err := decider.DecideApproval(ctx, "n1", decision("carol", VerdictApprove, t0), t0); !errors.Is(err, ErrApprovalState) {
		t.Fatalf("second decision = %v, want ErrApprovalState", err)
	}
	expectNone(t, ids, "for a refused decision")

	// The NOTIFY is transactional: rolled back, it is never delivered.
	tx, err := decider.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := decider.notifyApproval(ctx, tx, "rolled-back"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	expectNone(t, ids, "from a rolled-back transaction")
}

func TestListenApprovalsSQLite(t *testing.T) {
	s := sqliteBackend().open(t)
	if err := s.ListenApprovals(context.Background(), ApprovalListener{}); !errors.Is(err, ErrNoNotifications) {
		t.Fatalf("ListenApprovals on SQLite = %v, want ErrNoNotifications", err)
	}
}
