package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func testApproval(id, digest string, created time.Time) Approval {
	return Approval{
		ID: id, Digest: digest, CallID: "call-" + id,
		Subject: "alice", Email: "alice@example.com", Issuer: "https://idp.example.com/",
		Tool: "query_db", Resource: "orders", Arguments: []byte(`{"sql":"DELETE FROM orders WHERE id = 1"}`),
		Rule: "writes-need-a-dba", Rules: []byte(`[{"rule":"writes-need-a-dba","effect":"approve"}]`),
		ApproverGroups: []string{"dba", "sre"}, MinApprovers: 1, PolicyVersion: "v1",
		State: ApprovalPending, CreatedAt: created, ExpiresAt: created.Add(15 * time.Minute),
	}
}

func decision(subject, verdict string, at time.Time) ApprovalDecision {
	return ApprovalDecision{Subject: subject, Issuer: "https://idp.example.com/", Email: subject + "@example.com",
		Verdict: verdict, Reason: "ok", Via: "api", At: at}
}

func testRequestApprovalReuse(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	now := t0

	first, created, err := s.RequestApproval(ctx, testApproval("a1", "d1", now), now)
	if err != nil || !created {
		t.Fatalf("first RequestApproval = %v, created %v", err, created)
	}
	if got, err := s.Approval(ctx, "a1"); err != nil || got.Digest != "d1" || len(got.ApproverGroups) != 2 || string(got.Arguments) != string(first.Arguments) {
		t.Fatalf("Approval(a1) = %+v, %v", got, err)
	}

	// Same digest while pending: the pending one, nothing created.
	got, created, err := s.RequestApproval(ctx, testApproval("a2", "d1", now), now.Add(time.Minute))
	if err != nil || created || got.ID != "a1" {
		t.Fatalf("pending reuse = %s created %v, %v; want a1, false", got.ID, created, err)
	}
	// Another digest: a new approval.
	if got, created, _ := s.RequestApproval(ctx, testApproval("b1", "d2", now), now); !created || got.ID != "b1" {
		t.Fatalf("other digest = %s created %v; want b1, true", got.ID, created)
	}
	// Approved: the approved one.
	if _, err := s.DecideApproval(ctx, "a1", decision("bob", VerdictApprove, now), now); err != nil {
		t.Fatal(err)
	}
	if got, created, _ := s.RequestApproval(ctx, testApproval("a3", "d1", now), now); created || got.ID != "a1" || got.State != ApprovalApproved {
		t.Fatalf("approved reuse = %s %s created %v; want a1 approved", got.ID, got.State, created)
	}
	// Consumed: used up, so a new one.
	if _, err := s.ConsumeApproval(ctx, "a1", "call-x", now); err != nil {
		t.Fatal(err)
	}
	if got, created, _ := s.RequestApproval(ctx, testApproval("a4", "d1", now), now); !created || got.ID != "a4" {
		t.Fatalf("after consume = %s created %v; want a4, true", got.ID, created)
	}
	// Expired pending: a new one.
	late := now.Add(16 * time.Minute)
	if got, created, _ := s.RequestApproval(ctx, testApproval("a5", "d1", late), late); !created || got.ID != "a5" {
		t.Fatalf("after expiry = %s created %v; want a5, true", got.ID, created)
	}
}

func testRequestApprovalInvalid(t *testing.T, b backend) {
	s := b.open(t)
	tests := []struct {
		name   string
		mutate func(*Approval)
	}{
		{"no id", func(a *Approval) { a.ID = "" }},
		{"no digest", func(a *Approval) { a.Digest = "" }},
		{"no requester", func(a *Approval) { a.Subject = "" }},
		{"no groups", func(a *Approval) { a.ApproverGroups = nil }},
		{"min zero", func(a *Approval) { a.MinApprovers = 0 }},
		{"not pending", func(a *Approval) { a.State = ApprovalApproved }},
		{"no expiry", func(a *Approval) { a.ExpiresAt = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testApproval("x", "dx", t0)
			tt.mutate(&a)
			if _, _, err := s.RequestApproval(context.Background(), a, t0); !errors.Is(err, ErrInvalidApproval) {
				t.Errorf("RequestApproval = %v, want ErrInvalidApproval", err)
			}
		})
	}
}

func testDecideApproval(t *testing.T, b backend) {
	at := t0.Add(time.Minute)
	tests := []struct {
		name      string
		min       int
		decisions []ApprovalDecision // applied in order; all but the last must succeed
		now       time.Time          // of the last decision
		wantErr   error
		wantState ApprovalState
	}{
		{"one approval of one", 1, []ApprovalDecision{decision("bob", VerdictApprove, at)}, at, nil, ApprovalApproved},
		{"one approval of two", 2, []ApprovalDecision{decision("bob", VerdictApprove, at)}, at, nil, ApprovalPending},
		{"two approvals of two", 2, []ApprovalDecision{decision("bob", VerdictApprove, at), decision("carol", VerdictApprove, at)}, at, nil, ApprovalApproved},
		{"deny after one approval", 2, []ApprovalDecision{decision("bob", VerdictApprove, at), decision("carol", VerdictDeny, at)}, at, nil, ApprovalDenied},
		{"same approver twice", 2, []ApprovalDecision{decision("bob", VerdictApprove, at), decision("bob", VerdictApprove, at)}, at, ErrDuplicateDecision, ApprovalPending},
		{"after approved", 1, []ApprovalDecision{decision("bob", VerdictApprove, at), decision("carol", VerdictApprove, at)}, at, ErrApprovalState, ApprovalApproved},
		{"after denied", 1, []ApprovalDecision{decision("bob", VerdictDeny, at), decision("carol", VerdictApprove, at)}, at, ErrApprovalState, ApprovalDenied},
		{"expired", 1, []ApprovalDecision{decision("bob", VerdictApprove, at)}, t0.Add(15 * time.Minute), ErrApprovalState, ApprovalPending},
		{"bad verdict", 1, []ApprovalDecision{decision("bob", "maybe", at)}, at, ErrInvalidApproval, ApprovalPending},
		{"no approver", 1, []ApprovalDecision{decision("", VerdictApprove, at)}, at, ErrInvalidApproval, ApprovalPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t)
			a := testApproval("a1", "d1", t0)
			a.MinApprovers = tt.min
			if _, _, err := s.RequestApproval(ctx, a, t0); err != nil {
				t.Fatal(err)
			}
			var err error
			for i, d := range tt.decisions {
				now := at
				if i == len(tt.decisions)-1 {
					now = tt.now
				}
				_, err = s.DecideApproval(ctx, "a1", d, now)
				if i < len(tt.decisions)-1 && err != nil {
					t.Fatalf("decision %d: %v", i, err)
				}
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("last DecideApproval = %v, want %v", err, tt.wantErr)
			}
			got, err := s.Approval(ctx, "a1")
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tt.wantState {
				t.Errorf("state = %s, want %s", got.State, tt.wantState)
			}
			if (got.State == ApprovalApproved || got.State == ApprovalDenied) != !got.DecidedAt.IsZero() {
				t.Errorf("DecidedAt = %v with state %s", got.DecidedAt, got.State)
			}
		})
	}

	t.Run("not found", func(t *testing.T) {
		s := b.open(t)
		if _, err := s.DecideApproval(context.Background(), "nope", decision("bob", VerdictApprove, at), at); !errors.Is(err, ErrNotFound) {
			t.Errorf("DecideApproval(nope) = %v, want ErrNotFound", err)
		}
	})
}

func testConsumeApproval(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	if _, _, err := s.RequestApproval(ctx, testApproval("a1", "d1", t0), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeApproval(ctx, "a1", "c1", t0); !errors.Is(err, ErrApprovalState) {
		t.Fatalf("consuming a pending approval = %v, want ErrApprovalState", err)
	}
	if _, err := s.DecideApproval(ctx, "a1", decision("bob", VerdictApprove, t0), t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.ConsumeApproval(ctx, "a1", "c1", t0.Add(time.Second))
	if err != nil || got.State != ApprovalConsumed || got.ConsumedBy != "c1" || got.ConsumedAt.IsZero() {
		t.Fatalf("ConsumeApproval = %+v, %v", got, err)
	}
	if got, err := s.ConsumeApproval(ctx, "a1", "c2", t0.Add(time.Second)); !errors.Is(err, ErrApprovalState) || got.ConsumedBy != "c1" {
		t.Fatalf("second ConsumeApproval = %s, %v; want ErrApprovalState, still consumed by c1", got.ConsumedBy, err)
	}
	if _, err := s.ConsumeApproval(ctx, "nope", "c1", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("ConsumeApproval(nope) = %v, want ErrNotFound", err)
	}

	// Approved but expired: not usable.
	if _, _, err := s.RequestApproval(ctx, testApproval("b1", "d2", t0), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecideApproval(ctx, "b1", decision("bob", VerdictApprove, t0), t0); err != nil {
		t.Fatal(err)
	}
	got, err = s.ConsumeApproval(ctx, "b1", "c3", t0.Add(15*time.Minute))
	if !errors.Is(err, ErrApprovalState) || got.StateAt(t0.Add(15*time.Minute)) != "expired" {
		t.Errorf("consuming an expired approval = %s, %v; want expired, ErrApprovalState", got.StateAt(t0.Add(15*time.Minute)), err)
	}
}

func testListApprovals(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	mk := func(id, subject string, groups []string, created time.Time) {
		a := testApproval(id, "d-"+id, created)
		a.Subject, a.ApproverGroups = subject, groups
		if _, _, err := s.RequestApproval(ctx, a, created); err != nil {
			t.Fatal(err)
		}
	}
	mk("old-pending", "alice", []string{"dba"}, t0)
	mk("decided", "alice", []string{"dba"}, t0.Add(time.Minute))
	mk("expired", "alice", []string{"dba"}, t0.Add(-time.Hour))
	mk("sre-only", "dave", []string{"sre"}, t0.Add(2*time.Minute))
	if _, err := s.DecideApproval(ctx, "decided", decision("bob", VerdictDeny, t0.Add(time.Minute)), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(3 * time.Minute)

	ids := func(f ApprovalFilter) []string {
		t.Helper()
		list, err := s.ListApprovals(ctx, f, now)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range list {
			out = append(out, a.ID)
		}
		return out
	}
	tests := []struct {
		name string
		f    ApprovalFilter
		want []string
	}{
		{"all, open first then newest", ApprovalFilter{}, []string{"sre-only", "old-pending", "decided", "expired"}},
		{"pending", ApprovalFilter{State: "pending"}, []string{"sre-only", "old-pending"}},
		{"expired", ApprovalFilter{State: "expired"}, []string{"expired"}},
		{"denied", ApprovalFilter{State: "denied"}, []string{"decided"}},
		{"dba approver", ApprovalFilter{Subject: "bob", Issuer: "https://idp.example.com/", Groups: []string{"dba"}}, []string{"old-pending", "decided", "expired"}},
		{"requester dave", ApprovalFilter{Subject: "dave", Issuer: "https://idp.example.com/"}, []string{"sre-only"}},
		{"same subject, other issuer", ApprovalFilter{Subject: "dave", Issuer: "https://other/"}, nil},
		{"limit", ApprovalFilter{Limit: 1}, []string{"sre-only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ids(tt.f)
			if len(got) != len(tt.want) {
				t.Fatalf("ids = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("ids = %v, want %v", got, tt.want)
				}
			}
		})
	}
	if _, err := s.ListApprovals(ctx, ApprovalFilter{State: "bogus"}, now); !errors.Is(err, ErrInvalidApproval) {
		t.Errorf("unknown state filter = %v, want ErrInvalidApproval", err)
	}
}

func testApprovalSurvivesReopen(t *testing.T, b backend) {
	ctx := context.Background()
	url := b.url(t)
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RequestApproval(ctx, testApproval("a1", "d1", t0), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecideApproval(ctx, "a1", decision("bob", VerdictApprove, t0), t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Approval(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ApprovalApproved || len(got.Decisions) != 1 || got.Decisions[0].Subject != "bob" || !got.Decisions[0].At.Equal(t0) {
		t.Errorf("after reopen: %+v", got)
	}
}

// Several Stores on one database (replicas) asking for the same digest at
// once share one approval: exactly one is created.
func testRequestApprovalConcurrentWriters(t *testing.T, b backend) {
	ctx := context.Background()
	u := b.url(t)
	const writers = 6
	stores := make([]*Store, writers)
	for i := range stores {
		stores[i] = openURL(t, u)
	}
	var (
		wg      sync.WaitGroup
		created atomic.Int32
		ids     sync.Map
	)
	errs := make(chan error, writers)
	for i, s := range stores {
		wg.Go(func() {
			got, c, err := s.RequestApproval(ctx, testApproval(fmt.Sprintf("a%d", i), "same", t0), t0)
			if err != nil {
				errs <- err
				return
			}
			if c {
				created.Add(1)
			}
			ids.Store(got.ID, true)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := 0
	ids.Range(func(any, any) bool { n++; return true })
	if created.Load() != 1 || n != 1 {
		t.Errorf("%d approvals created, %d distinct ids returned; want 1 and 1", created.Load(), n)
	}
}

// Two approvers deciding at once on different replicas, with two needed:
// the approval ends approved with both decisions, whoever commits last
// counting the other.
func testDecideApprovalConcurrentWriters(t *testing.T, b backend) {
	ctx := context.Background()
	u := b.url(t)
	s1, s2 := openURL(t, u), openURL(t, u)
	for round := range 10 {
		id := fmt.Sprintf("a%d", round)
		a := testApproval(id, "d-"+id, t0)
		a.MinApprovers = 2
		if _, _, err := s1.RequestApproval(ctx, a, t0); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for i, s := range []*Store{s1, s2} {
			wg.Go(func() {
				_, err := s.DecideApproval(ctx, id, decision(fmt.Sprintf("approver%d", i), VerdictApprove, t0), t0)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := s1.Approval(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != ApprovalApproved || len(got.Decisions) != 2 {
			t.Fatalf("round %d: state %s with %d decisions; want approved with 2", round, got.State, len(got.Decisions))
		}
	}
}
