package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)

func testLease(id string, created time.Time) Lease {
	return Lease{
		ID: id, CallID: "call-" + id, Resource: "orders", Kind: "postgres", Grant: "readonly",
		Subject: "alice", Issuer: "https://idp.example.com/", Handle: "airlock_" + id,
		State: LeasePending, CreatedAt: created, ExpiresAt: created.Add(10 * time.Minute),
	}
}

func testLeaseRoundTrip(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	// A non-UTC zone with nanoseconds must come back as the same instant, in UTC.
	zone := time.FixedZone("X", 5*3600+1800)
	want := testLease("l1", t0.In(zone))
	if err := s.InsertLease(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lease(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	want.CreatedAt, want.ExpiresAt = want.CreatedAt.UTC(), want.ExpiresAt.UTC()
	if got != want {
		t.Errorf("Lease = %+v\nwant %+v", got, want)
	}
	if got.CreatedAt.Location() != time.UTC || got.CreatedAt.Nanosecond() != 123456789 {
		t.Errorf("CreatedAt = %v, want UTC with nanoseconds", got.CreatedAt)
	}

	if err := s.InsertLease(ctx, want); err == nil {
		t.Error("duplicate InsertLease succeeded")
	}
	if _, err := s.Lease(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lease(nope) = %v, want ErrNotFound", err)
	}
}

func testInsertLeaseInvalid(t *testing.T, b backend) {
	s := b.open(t)
	tests := []struct {
		name   string
		mutate func(*Lease)
	}{
		{"no id", func(l *Lease) { l.ID = "" }},
		{"bad state", func(l *Lease) { l.State = "minted" }},
		{"no created", func(l *Lease) { l.CreatedAt = time.Time{} }},
		{"no expiry", func(l *Lease) { l.ExpiresAt = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLease("x", t0)
			tt.mutate(&l)
			if err := s.InsertLease(context.Background(), l); !errors.Is(err, ErrInvalidLease) {
				t.Errorf("InsertLease = %v, want ErrInvalidLease", err)
			}
		})
	}
}

func testSetLeaseState(t *testing.T, b backend) {
	at := t0.Add(time.Minute)
	tests := []struct {
		name        string
		path        []LeaseState // states applied in order after insert (pending)
		wantErr     error        // of the last step
		wantState   LeaseState
		wantRevoked bool
	}{
		{"mint", []LeaseState{LeaseActive}, nil, LeaseActive, false},
		{"mint then revoke", []LeaseState{LeaseActive, LeaseRevoked}, nil, LeaseRevoked, true},
		{"revoke pending", []LeaseState{LeaseRevoked}, nil, LeaseRevoked, true},
		{"mint failed", []LeaseState{LeaseFailed}, nil, LeaseFailed, false},
		{"revoked is final", []LeaseState{LeaseRevoked, LeaseActive}, ErrLeaseFinal, LeaseRevoked, true},
		{"failed is final", []LeaseState{LeaseFailed, LeaseRevoked}, ErrLeaseFinal, LeaseFailed, false},
		{"unknown state", []LeaseState{"gone"}, ErrInvalidLease, LeasePending, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t)
			if err := s.InsertLease(ctx, testLease("l", t0)); err != nil {
				t.Fatal(err)
			}
			var err error
			for i, st := range tt.path {
				err = s.SetLeaseState(ctx, "l", st, fmt.Sprintf("step %d", i), at)
				if i < len(tt.path)-1 && err != nil {
					t.Fatalf("step %d (%s): %v", i, st, err)
				}
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("last SetLeaseState = %v, want %v", err, tt.wantErr)
			}
			got, err := s.Lease(ctx, "l")
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tt.wantState {
				t.Errorf("State = %s, want %s", got.State, tt.wantState)
			}
			if tt.wantRevoked != !got.RevokedAt.IsZero() || (tt.wantRevoked && !got.RevokedAt.Equal(at)) {
				t.Errorf("RevokedAt = %v, want set=%v (%v)", got.RevokedAt, tt.wantRevoked, at)
			}
		})
	}
}

func testSetLeaseStateErrorText(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	if err := s.InsertLease(ctx, testLease("l", t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLeaseState(ctx, "l", LeaseActive, "", t0); err != nil {
		t.Fatal(err)
	}
	// A failed revocation keeps the lease active and records why.
	if err := s.SetLeaseState(ctx, "l", LeaseActive, "connection refused", t0); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Lease(ctx, "l"); l.Error != "connection refused" || l.State != LeaseActive {
		t.Errorf("after failed revoke: %+v", l)
	}
	if err := s.SetLeaseState(ctx, "l", LeaseRevoked, "", t0); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Lease(ctx, "l"); l.Error != "" {
		t.Errorf("Error = %q after successful revoke, want cleared", l.Error)
	}
	if err := s.SetLeaseState(ctx, "missing", LeaseActive, "", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetLeaseState(missing) = %v, want ErrNotFound", err)
	}
}

func testLeaseQueries(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	type row struct {
		id, resource string
		state        LeaseState
		expires      time.Duration // after t0
	}
	rows := []row{
		{"pending-past", "orders", LeasePending, -time.Minute},
		{"active-now", "orders", LeaseActive, 0},
		{"active-1ns-later", "orders", LeaseActive, time.Nanosecond},
		{"active-future", "web-1", LeaseActive, time.Hour},
		{"revoked-past", "orders", LeaseRevoked, -time.Hour},
		{"failed-past", "orders", LeaseFailed, -time.Hour},
	}
	for _, r := range rows {
		l := testLease(r.id, t0.Add(-2*time.Hour))
		l.Resource, l.State, l.ExpiresAt = r.resource, r.state, t0.Add(r.expires)
		if r.state == LeaseRevoked {
			l.RevokedAt = t0
		}
		if err := s.InsertLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}

	due, err := s.LeasesDue(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(due), []string{"pending-past", "active-now"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("LeasesDue = %v, want %v", got, want)
	}

	live, err := s.LiveLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(live), []string{"pending-past", "active-now", "active-1ns-later", "active-future"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("LiveLeases = %v, want %v", got, want)
	}

	n, err := s.CountLiveLeases(ctx)
	if err != nil || n != 4 {
		t.Errorf("CountLiveLeases = %d, %v; want 4", n, err)
	}

	handles, err := s.LeaseHandles(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"airlock_pending-past": true, "airlock_active-now": true, "airlock_active-1ns-later": true}
	if fmt.Sprint(handles) != fmt.Sprint(want) {
		t.Errorf("LeaseHandles(orders) = %v, want %v", handles, want)
	}
	if h, err := s.LeaseHandles(ctx, "none"); err != nil || len(h) != 0 {
		t.Errorf("LeaseHandles(none) = %v, %v; want empty", h, err)
	}
}

func ids(ls []Lease) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

// Many goroutines writing and reading at once, through two Stores on one
// database (two processes): no SQLITE_BUSY, no lost rows.
func testLeasesConcurrent(t *testing.T, b backend) {
	ctx := context.Background()
	u := b.url(t)
	stores := []*Store{openURL(t, u), openURL(t, u)}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := s.InsertLease(ctx, testLease(id, t0)); err != nil {
					errs <- err
					return
				}
				if err := s.SetLeaseState(ctx, id, LeaseActive, "", t0); err != nil {
					errs <- err
					return
				}
				if _, err := s.LiveLeases(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := stores[0].CountLiveLeases(ctx); err != nil || n != workers*each {
		t.Errorf("CountLiveLeases = %d, %v; want %d", n, err, workers*each)
	}
}
