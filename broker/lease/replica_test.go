package lease

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// replicaSetup is two managers, as two replicas, sharing one store file,
// with one clock and one fake resource.
type replicaSetup struct {
	st          *store.Store
	res         *fakeResource
	clk         *clock
	mu          sync.Mutex
	interrupted []string // call ids, "@" the manager that recorded it
}

func newReplicaSetup(t *testing.T) *replicaSetup {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &replicaSetup{st: st, res: &fakeResource{t: t, st: st, reusable: true}, clk: &clock{now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}}
}

func (s *replicaSetup) manager(t *testing.T, name, host string, pid int) *Manager {
	t.Helper()
	m, err := New(Config{
		Store:   s.st,
		Resolve: func(string) (tools.Resource, bool) { return s.res, true },
		OnInterrupted: func(_ context.Context, c store.CallInFlight) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.interrupted = append(s.interrupted, c.CallID+"@"+name)
			return nil
		},
		Replica: name, Host: host, PID: pid,
		HeartbeatInterval: 5 * time.Second, HeartbeatTimeout: 15 * time.Second,
		Clock: s.clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// A replica that stops heartbeating has its leases revoked and its calls
// interrupted by another, once, and only after the timeout.
func TestReapRevokesAGoneReplicasLeases(t *testing.T) {
	ctx := context.Background()
	s := newReplicaSetup(t)
	a := s.manager(t, "A", "host-a", 100)
	b := s.manager(t, "B", "host-b", 200)
	la, err := a.Acquire(ctx, s.res, "ro", nil, alice, "call-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Acquire(ctx, s.res, "ro", nil, bob, "call-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if la.Record.Replica != "A" || lb.Record.Replica != "B" {
		t.Fatalf("lease owners = %q, %q", la.Record.Replica, lb.Record.Replica)
	}
	for _, c := range []store.CallInFlight{{CallID: "call-a", Replica: "A", StartedAt: s.clk.Now()}, {CallID: "call-b", Replica: "B", StartedAt: s.clk.Now()}} {
		if err := s.st.BeginCall(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	// A goes silent; B keeps beating. Before timeout−interval nothing happens.
	s.clk.Advance(9 * time.Second)
	b.heartbeat(ctx)
	b.Reap(ctx)
	if len(s.res.revoked) != 0 || len(s.interrupted) != 0 {
		t.Fatalf("reaped too early: revoked %v, interrupted %v", s.res.revoked, s.interrupted)
	}
	s.clk.Advance(2 * time.Second) // 11s of silence: gone
	b.heartbeat(ctx)
	b.Reap(ctx)
	b.Reap(ctx) // a second pass finds nothing more
	if !slices.Equal(s.res.revoked, []string{la.Record.Handle}) {
		t.Errorf("revoked %v, want A's %s only", s.res.revoked, la.Record.Handle)
	}
	if !slices.Equal(s.interrupted, []string{"call-a@B"}) {
		t.Errorf("interrupted %v, want call-a@B", s.interrupted)
	}
	if l, _ := s.st.Lease(ctx, la.Record.ID); l.State != store.LeaseRevoked {
		t.Errorf("A's lease is %s, want revoked", l.State)
	}
	if l, _ := s.st.Lease(ctx, lb.Record.ID); l.State != store.LeaseActive {
		t.Errorf("B's lease is %s, want active", l.State)
	}
	if rs, _ := s.st.Replicas(ctx); len(rs) != 1 || rs[0].ID != "B" {
		t.Errorf("replicas = %+v, want B only", rs)
	}

	// A comes back from its pause: its row is gone, so it drops what it
	// holds in memory and registers again.
	a.heartbeat(ctx)
	if a.Live() != 0 {
		t.Errorf("A still holds %d leases after being taken for dead", a.Live())
	}
	if rs, _ := s.st.Replicas(ctx); len(rs) != 2 {
		t.Errorf("A did not register again: %+v", rs)
	}

	// A clean stop revokes B's own lease and ends its calls in flight.
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.interrupted, "call-b@B") {
		t.Errorf("Close did not interrupt B's call in flight: %v", s.interrupted)
	}
	if rs, _ := s.st.Replicas(ctx); len(rs) != 1 || rs[0].ID != "A" {
		t.Errorf("after B's Close replicas = %+v, want A", rs)
	}
}

// A restart on the same host revokes what the crashed run left at once,
// without waiting for the heartbeat timeout; another host's live replica
// is left alone.
func TestRegisterRevokesAnEarlierRunOnThisHost(t *testing.T) {
	ctx := context.Background()
	s := newReplicaSetup(t)
	crashed := s.manager(t, "old", "node-1", 1<<22+7) // a pid that does not run
	other := s.manager(t, "other", "node-2", 1<<22+7)
	l, err := crashed.Acquire(ctx, s.res, "ro", nil, alice, "call-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	lo, err := other.Acquire(ctx, s.res, "ro", nil, bob, "call-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	restarted := s.manager(t, "new", "node-1", 300)
	if err := restarted.Recover(ctx, []tools.Resource{s.res}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.res.revoked, []string{l.Record.Handle}) {
		t.Errorf("revoked %v, want the crashed run's %s only", s.res.revoked, l.Record.Handle)
	}
	if got, _ := s.st.Lease(ctx, lo.Record.ID); got.State != store.LeaseActive {
		t.Errorf("the other host's lease is %s", got.State)
	}
}

var bob = policy.Identity{Subject: "bob", Issuer: "https://idp"}
