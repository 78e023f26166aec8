package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func testReplicaHeartbeat(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	r := Replica{ID: "r1", Host: "h", PID: 42, Version: "v", StartedAt: t0, HeartbeatAt: t0}
	if err := s.RegisterReplica(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterReplica(ctx, Replica{ID: "r2", Host: "h", PID: 43, StartedAt: t0, HeartbeatAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "r1", t0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, "nope", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Heartbeat(nope) = %v, want ErrNotFound", err)
	}
	got, err := s.Replicas(ctx)
	if err != nil || len(got) != 2 || got[0].ID != "r1" || !got[0].HeartbeatAt.Equal(t0.Add(10*time.Second)) || got[0].PID != 42 {
		t.Fatalf("Replicas = %+v, %v", got, err)
	}
	// r2 is silent since t0: stale before t0+5s; r1 is not.
	gone, err := s.RemoveStaleReplicas(ctx, t0.Add(5*time.Second))
	if err != nil || !slices.Equal(gone, []string{"r2"}) {
		t.Fatalf("RemoveStaleReplicas = %v, %v; want [r2]", gone, err)
	}
	if err := s.Heartbeat(ctx, "r2", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Heartbeat of a removed replica = %v, want ErrNotFound", err)
	}
	if err := s.RemoveReplica(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Replicas(ctx); len(got) != 0 {
		t.Errorf("Replicas after removal = %+v", got)
	}
}

// Each due lease is claimed once, whatever the number of claimers; a claim
// ends after its hold, and a revoked lease is never claimed.
func testClaimLeasesDue(t *testing.T, b backend) {
	ctx := context.Background()
	u := b.url(t)
	stores := []*Store{openURL(t, u), openURL(t, u), openURL(t, u)}
	const n = 60
	for i := range n {
		l := testLease(fmt.Sprintf("l%02d", i), t0)
		l.ExpiresAt = t0.Add(time.Duration(i) * time.Second)
		if err := stores[0].InsertLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(n * time.Second) // all due
	var (
		mu      sync.Mutex
		claimed = map[string]string{}
		wg      sync.WaitGroup
	)
	for w := range 6 {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for {
				ls, err := s.ClaimLeasesDue(ctx, now, fmt.Sprintf("w%d", w), time.Minute, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ls) == 0 {
					return
				}
				mu.Lock()
				for _, l := range ls {
					if prev, ok := claimed[l.ID]; ok {
						t.Errorf("lease %s claimed by %s and w%d", l.ID, prev, w)
					}
					claimed[l.ID] = fmt.Sprintf("w%d", w)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != n {
		t.Fatalf("%d leases claimed, want %d", len(claimed), n)
	}
	// Claims hold: nothing is claimable before they end.
	if ls, err := stores[0].ClaimLeasesDue(ctx, now.Add(59*time.Second), "x", time.Minute, 100); err != nil || len(ls) != 0 {
		t.Errorf("claimed during the hold: %v, %v", ids(ls), err)
	}
	// One is revoked; after the hold, the others are claimable again, soonest first.
	if err := stores[0].SetLeaseState(ctx, "l00", LeaseRevoked, "", now); err != nil {
		t.Fatal(err)
	}
	ls, err := stores[1].ClaimLeasesDue(ctx, now.Add(time.Minute), "y", time.Minute, 3)
	if err != nil || !slices.Equal(ids(ls), []string{"l01", "l02", "l03"}) {
		t.Errorf("after the hold: %v, %v; want l01 l02 l03", ids(ls), err)
	}
	// Not yet due: not claimed.
	if ls, err := stores[1].ClaimLeasesDue(ctx, t0.Add(-time.Second), "z", time.Minute, 100); err != nil || len(ls) != 0 {
		t.Errorf("claimed before expiry: %v, %v", ids(ls), err)
	}
}

// A lease is abandoned when its replica has no row or a stale heartbeat;
// the CLI's (no replica) and the claimer's own are not.
func testClaimAbandonedLeases(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	for _, r := range []Replica{
		{ID: "alive", StartedAt: t0, HeartbeatAt: t0.Add(30 * time.Second)},
		{ID: "silent", StartedAt: t0, HeartbeatAt: t0},
		{ID: "me", StartedAt: t0, HeartbeatAt: t0},
	} {
		if err := s.RegisterReplica(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ id, replica string }{
		{"a", "alive"}, {"s", "silent"}, {"g", "gone"}, {"c", ""}, {"m", "me"},
	} {
		l := testLease(c.id, t0)
		l.Replica = c.replica
		if err := s.InsertLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(31 * time.Second)
	ls, err := s.ClaimAbandonedLeases(ctx, t0.Add(20*time.Second), now, "me", time.Minute, 100)
	if err != nil || !slices.Equal(ids(ls), []string{"g", "s"}) {
		t.Fatalf("ClaimAbandonedLeases = %v, %v; want g s", ids(ls), err)
	}
	if ls[0].Replica != "gone" || ls[1].Replica != "silent" {
		t.Errorf("replicas = %q %q", ls[0].Replica, ls[1].Replica)
	}
	if ls, err := s.ClaimAbandonedLeases(ctx, t0.Add(20*time.Second), now, "other", time.Minute, 100); err != nil || !slices.Equal(ids(ls), []string{"m"}) {
		t.Errorf("second claimer got %v, %v; want only m (its claimer's own, now stale)", ids(ls), err)
	}
}

func testInstallation(t *testing.T, b backend) {
	ctx := context.Background()
	u := b.url(t)
	a, c := openURL(t, u), openURL(t, u)
	id1, err := a.Installation(ctx, "first", t0)
	if err != nil || id1 != "first" {
		t.Fatalf("Installation = %q, %v; want first", id1, err)
	}
	id2, err := c.Installation(ctx, "second", t0)
	if err != nil || id2 != "first" {
		t.Errorf("second Installation = %q, %v; want the first one's id", id2, err)
	}
	other := b.open(t)
	if id, err := other.Installation(ctx, "third", t0); err != nil || id != "third" {
		t.Errorf("another store's Installation = %q, %v; want its own", id, err)
	}
}

func testCallsInFlight(t *testing.T, b backend) {
	ctx := context.Background()
	u := b.url(t)
	s := openURL(t, u)
	for _, r := range []Replica{{ID: "alive", StartedAt: t0, HeartbeatAt: t0.Add(time.Minute)}, {ID: "silent", StartedAt: t0, HeartbeatAt: t0}} {
		if err := s.RegisterReplica(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range []string{"alive", "silent", "silent", "gone", "alive"} {
		c := CallInFlight{CallID: fmt.Sprintf("c%d", i), Replica: r, Tool: "query_db", Resource: "orders", Subject: "alice", StartedAt: t0.Add(time.Duration(i) * time.Second)}
		if err := s.BeginCall(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EndCall(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if err := s.EndCall(ctx, "unknown"); err != nil {
		t.Errorf("EndCall(unknown) = %v", err)
	}
	// Two takers at once: each abandoned call goes to one of them.
	other := openURL(t, u)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		taken []string
	)
	for _, st := range []*Store{s, other} {
		wg.Go(func() {
			cs, err := st.TakeAbandonedCalls(ctx, t0.Add(30*time.Second), "")
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, c := range cs {
				taken = append(taken, c.CallID+"@"+c.Replica)
			}
		})
	}
	wg.Wait()
	slices.Sort(taken)
	if !slices.Equal(taken, []string{"c1@silent", "c3@gone"}) {
		t.Errorf("taken = %v; want c1@silent c3@gone", taken)
	}
	// A replica ending its own at shutdown.
	cs, err := s.TakeAbandonedCalls(ctx, t0.Add(30*time.Second), "alive")
	if err != nil || len(cs) != 2 || cs[0].CallID != "c0" || cs[1].CallID != "c4" || cs[0].Tool != "query_db" {
		t.Errorf("own calls = %+v, %v; want c0 c4", cs, err)
	}
}
