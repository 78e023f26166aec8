package approval

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
)

// replica is one manager with its own store connection and StoreNotifier,
// as one airlock replica has.
type replica struct {
	m     *Manager
	store *store.Store
	n     *StoreNotifier
}

// pgReplicas starts a real PostgreSQL and returns two replicas on one
// store. Polling every 10 s: within a test's bounds only a notification
// can wake a waiter.
func pgReplicas(t *testing.T) (*testenv.Postgres, [2]replica) {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE store")
	q := url.Values{"host": {pg.SocketDir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}
	u := fmt.Sprintf("postgres://postgres@/store?%s", q.Encode())
	var rs [2]replica
	for i := range rs {
		s, err := store.Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		n := NewStoreNotifier(s, nil)
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		m, err := New(Config{Store: s, Notifier: n, PollInterval: 10 * time.Second, Wait: 8 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = replica{m: m, store: s, n: n}
	}
	return pg, rs
}

// waitWoken waits on a for id while decide runs on another replica after
// 100 ms, and returns the approval and the delay from the decision's
// return to Wait's.
func waitWoken(t *testing.T, a *Manager, id string, decide func() error) (Approval, time.Duration) {
	t.Helper()
	decided := make(chan time.Time, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		if err := decide(); err != nil {
			t.Error(err)
		}
		decided <- time.Now()
	}()
	got, err := a.Wait(context.Background(), id, 0, nil)
	woke := time.Now()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	at := <-decided
	return got, woke.Sub(at)
}

// A decision taken through one replica's store wakes a Wait on another
// replica well under the poll interval: only the NOTIFY sent in the
// decision's transaction can have woken it.
func TestStoreNotifierWakesOtherReplica(t *testing.T) {
	_, rs := pgReplicas(t)
	a, _, err := rs[0].m.Request(context.Background(), input(sqlArgs, 1))
	if err != nil {
		t.Fatal(err)
	}
	got, lag := waitWoken(t, rs[0].m, a.ID, func() error {
		_, err := rs[1].m.Decide(context.Background(), a.ID, bob, Approve, "", ViaWeb)
		return err
	})
	if got.State != Approved {
		t.Fatalf("Wait = %s, want approved", got.State)
	}
	if lag > time.Second {
		t.Errorf("the waiter woke %s after a decision on the other replica (poll interval 10s)", lag)
	}
	t.Logf("decision on replica B woke the waiter on replica A after %s", lag.Round(time.Microsecond))
}

// A withdrawal (a deny through the same store path) wakes it too.
func TestStoreNotifierWithdrawWakesOtherReplica(t *testing.T) {
	_, rs := pgReplicas(t)
	a, _, err := rs[0].m.Request(context.Background(), input(sqlArgs, 1))
	if err != nil {
		t.Fatal(err)
	}
	got, lag := waitWoken(t, rs[0].m, a.ID, func() error {
		_, err := rs[1].m.Withdraw(context.Background(), a.ID, alice, "cancelled")
		return err
	})
	if got.State != Denied || !got.Withdrawn() {
		t.Fatalf("Wait = %s (withdrawn %v), want a withdrawn denial", got.State, got.Withdrawn())
	}
	if lag > time.Second {
		t.Errorf("the waiter woke %s after a withdrawal on the other replica", lag)
	}
}

// The LISTEN connection is killed by the server; the notifier reconnects
// and the next decision still wakes the waiter at once.
func TestStoreNotifierReconnects(t *testing.T) {
	pg, rs := pgReplicas(t)
	listeners := func() []string {
		return pg.Query(t, "store", `SELECT pid::text FROM pg_stat_activity WHERE application_name = 'airlock listen'`)
	}
	if n := len(listeners()); n != 2 {
		t.Fatalf("%d listen connections, want 2 (one per replica)", n)
	}
	pg.ExecDB(t, "store", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'airlock listen'`)
	deadline := time.Now().Add(10 * time.Second)
	for len(listeners()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("listen connections after termination: %v, want 2 again", listeners())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The new backends are in place; give LISTEN itself a moment to run.
	time.Sleep(100 * time.Millisecond)

	a, _, err := rs[0].m.Request(context.Background(), input(sqlArgs, 1))
	if err != nil {
		t.Fatal(err)
	}
	got, lag := waitWoken(t, rs[0].m, a.ID, func() error {
		_, err := rs[1].m.Decide(context.Background(), a.ID, bob, Deny, "no", ViaAPI)
		return err
	})
	if got.State != Denied {
		t.Fatalf("Wait = %s, want denied", got.State)
	}
	if lag > time.Second {
		t.Errorf("after a reconnect the waiter woke %s after the decision", lag)
	}
}

// SQLite has no NOTIFY: Start says so, and the manager keeps the local
// notifier and polling.
func TestStoreNotifierSQLite(t *testing.T) {
	n := NewStoreNotifier(openStore(t, t.TempDir()), nil)
	if err := n.Start(context.Background()); !errors.Is(err, store.ErrNoNotifications) {
		t.Fatalf("Start on SQLite = %v, want ErrNoNotifications", err)
	}
	n.Close()
}
