package lease

import (
	"context"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
)

// After a gap in its own heartbeats (the store was unreachable for all
// replicas, or this process paused), a replica does not take others for
// dead until a heartbeat timeout after its heartbeats resume: their
// heartbeats are stale for the same reason. Once the others have beaten
// again, a reap finds them alive and revokes nothing.
func TestNoReapForAHeartbeatTimeoutAfterAGap(t *testing.T) {
	ctx := context.Background()
	s := newReplicaSetup(t)
	a := s.manager(t, "A", "host-a", 100)
	b := s.manager(t, "B", "host-b", 200)
	lb, err := b.Acquire(ctx, s.res, "ro", nil, bob, "call-b", nil)
	if err != nil {
		t.Fatal(err)
	}

	s.clk.Advance(5 * time.Second)
	if !a.heartbeat(ctx) {
		t.Fatal("A may not reap after a heartbeat on time")
	}
	b.heartbeat(ctx)

	// 20 s without heartbeats from anyone (the store was down), then A
	// beats first: B's heartbeat is older than the timeout.
	s.clk.Advance(20 * time.Second)
	if a.heartbeat(ctx) {
		t.Fatal("A may reap right after a 20s gap in its own heartbeats: it would take B for dead")
	}
	for range 2 {
		s.clk.Advance(5 * time.Second)
		b.heartbeat(ctx)
		if a.heartbeat(ctx) {
			t.Fatal("A may reap before a heartbeat timeout has passed since its heartbeats resumed")
		}
	}
	s.clk.Advance(5 * time.Second)
	b.heartbeat(ctx)
	if !a.heartbeat(ctx) {
		t.Fatal("A still may not reap a heartbeat timeout after its heartbeats resumed")
	}
	a.Reap(ctx)
	if len(s.res.revoked) != 0 {
		t.Errorf("A revoked %v of a live replica", s.res.revoked)
	}
	if l, _ := s.st.Lease(ctx, lb.Record.ID); l.State != store.LeaseActive {
		t.Errorf("B's lease is %s, want active", l.State)
	}
	// B resumed 5 s after A (at its next tick): it may reap 5 s later too.
	if b.heartbeat(ctx) {
		t.Error("B may reap before a heartbeat timeout has passed since its own heartbeats resumed")
	}
	s.clk.Advance(5 * time.Second)
	a.heartbeat(ctx)
	if !b.heartbeat(ctx) {
		t.Error("B still may not reap a heartbeat timeout after its heartbeats resumed")
	}
}
