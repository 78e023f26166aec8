package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestOutbox runs the outbox cases against SQLite and a real PostgreSQL,
// as TestSuite does.
func TestOutbox(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, b backend)
	}{
		{"Lifecycle", testOutboxLifecycle},
		{"ClaimExpires", testOutboxClaimExpires},
		{"Release", testOutboxRelease},
		{"Prune", testOutboxPrune},
		{"Invalid", testOutboxInvalid},
		{"SurvivesReopen", testOutboxSurvivesReopen},
		{"ConcurrentClaimers", testOutboxConcurrentClaimers},
		{"WithTheApproval", testOutboxWithTheApproval},
	}
	for _, b := range []backend{sqliteBackend(), postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, b) })
			}
		})
	}
}

func delivery(id, webhook string, at time.Time) Delivery {
	return Delivery{ID: id, Webhook: webhook, Topic: "approval.requested", ApprovalID: "a-" + id, CallID: "c-" + id,
		Body: []byte(`{"type":"approval.requested","n":"` + id + `"}`), CreatedAt: at}
}

func deliveryIDs(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func testOutboxLifecycle(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	if err := s.EnqueueDeliveries(ctx, []Delivery{delivery("d2", "hook-a", t0), delivery("d1", "hook-a", t0), delivery("x1", "hook-b", t0)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimDeliveries(ctx, "hook-a", t0, "r1", time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(deliveryIDs(got)) != "[d1 d2]" {
		t.Fatalf("claimed %v, want [d1 d2] (hook-a only, in order)", deliveryIDs(got))
	}
	d := got[0]
	if d.Attempts != 1 || d.ClaimedBy != "r1" || !d.ClaimedUntil.Equal(t0.Add(time.Minute)) ||
		string(d.Body) != `{"type":"approval.requested","n":"d1"}` || d.ApprovalID != "a-d1" || d.CallID != "c-d1" || d.Topic != "approval.requested" {
		t.Errorf("claimed %+v", d)
	}
	// Claimed: nobody else gets them.
	if again, err := s.ClaimDeliveries(ctx, "hook-a", t0.Add(time.Second), "r2", time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("second claim = %v, %v; want nothing", deliveryIDs(again), err)
	}
	// d1 fails and is retried in 5s; d2 is delivered.
	if ok, err := s.RetryDelivery(ctx, "d1", "r1", t0.Add(5*time.Second), "receiver answered 500 (hooks.example.com)"); !ok || err != nil {
		t.Fatalf("RetryDelivery = %v, %v", ok, err)
	}
	if err := s.DeliverySucceeded(ctx, "d2", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ClaimDeliveries(ctx, "hook-a", t0.Add(4*time.Second), "r2", time.Minute, 10); len(got) != 0 {
		t.Fatalf("claimed %v before the retry is due", deliveryIDs(got))
	}
	got, err = s.ClaimDeliveries(ctx, "hook-a", t0.Add(5*time.Second), "r2", time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != "d1" || got[0].Attempts != 2 || got[0].LastError == "" {
		t.Fatalf("retry claim = %+v, %v", got, err)
	}
	// Only the holder settles a failure.
	if ok, err := s.FailDelivery(ctx, "d1", "r1", t0.Add(6*time.Second), "x"); ok || err != nil {
		t.Errorf("FailDelivery by a former holder = %v, %v; want false", ok, err)
	}
	if ok, err := s.FailDelivery(ctx, "d1", "r2", t0.Add(6*time.Second), "receiver answered 401"); !ok || err != nil {
		t.Errorf("FailDelivery = %v, %v", ok, err)
	}
	d1, err := s.Delivery(ctx, "d1")
	if err != nil || !d1.Done() || !d1.FailedAt.Equal(t0.Add(6*time.Second)) || d1.LastError != "receiver answered 401" || d1.ClaimedBy != "" {
		t.Errorf("d1 = %+v, %v", d1, err)
	}
	d2, err := s.Delivery(ctx, "d2")
	if err != nil || !d2.DeliveredAt.Equal(t0.Add(time.Second)) || !d2.FailedAt.IsZero() {
		t.Errorf("d2 = %+v, %v", d2, err)
	}
	// Done rows are never claimed again, and a late success changes nothing.
	if err := s.DeliverySucceeded(ctx, "d1", t0.Add(7*time.Second)); err != nil {
		t.Fatal(err)
	}
	if d1, _ := s.Delivery(ctx, "d1"); !d1.DeliveredAt.IsZero() {
		t.Errorf("a failed delivery became delivered: %+v", d1)
	}
	if got, _ := s.ClaimDeliveries(ctx, "hook-a", t0.Add(time.Hour), "r3", time.Minute, 10); len(got) != 0 {
		t.Errorf("claimed done deliveries %v", deliveryIDs(got))
	}
	if _, err := s.Delivery(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delivery(nope) = %v, want ErrNotFound", err)
	}
	all, err := s.Deliveries(ctx, "")
	if err != nil || len(all) != 3 {
		t.Errorf("Deliveries = %v, %v", deliveryIDs(all), err)
	}
	if only, _ := s.Deliveries(ctx, "hook-b"); fmt.Sprint(deliveryIDs(only)) != "[x1]" {
		t.Errorf("Deliveries(hook-b) = %v", deliveryIDs(only))
	}
}

func testOutboxClaimExpires(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	if err := s.EnqueueDeliveries(ctx, []Delivery{delivery("d1", "h", t0)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ClaimDeliveries(ctx, "h", t0, "dead", time.Second, 1); len(got) != 1 {
		t.Fatal("first claim got nothing")
	}
	if got, _ := s.ClaimDeliveries(ctx, "h", t0.Add(999*time.Millisecond), "alive", time.Second, 1); len(got) != 0 {
		t.Fatal("claimed while the first claim is in force")
	}
	got, err := s.ClaimDeliveries(ctx, "h", t0.Add(time.Second), "alive", time.Second, 1)
	if err != nil || len(got) != 1 || got[0].ClaimedBy != "alive" || got[0].Attempts != 2 {
		t.Fatalf("claim after expiry = %+v, %v", got, err)
	}
	// The dead claimer's late retry does not disturb the new holder.
	if ok, _ := s.RetryDelivery(ctx, "d1", "dead", t0.Add(time.Hour), "late"); ok {
		t.Error("a former holder rescheduled the delivery")
	}
	if d, _ := s.Delivery(ctx, "d1"); d.ClaimedBy != "alive" {
		t.Errorf("claim = %q, want alive", d.ClaimedBy)
	}
}

func testOutboxRelease(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	if err := s.EnqueueDeliveries(ctx, []Delivery{delivery("d1", "h", t0)}); err != nil {
		t.Fatal(err)
	}
	s.ClaimDeliveries(ctx, "h", t0, "r1", time.Hour, 1)
	if ok, err := s.ReleaseDelivery(ctx, "d1", "r2"); ok || err != nil {
		t.Errorf("release by another = %v, %v", ok, err)
	}
	if ok, err := s.ReleaseDelivery(ctx, "d1", "r1"); !ok || err != nil {
		t.Errorf("release = %v, %v", ok, err)
	}
	got, err := s.ClaimDeliveries(ctx, "h", t0, "r2", time.Hour, 1)
	if err != nil || len(got) != 1 || got[0].Attempts != 1 {
		t.Errorf("claim after release = %+v, %v; want attempt 1 (the aborted one uncounted)", got, err)
	}
}

func testOutboxPrune(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	var ds []Delivery
	recent := t0.Add(90 * time.Minute)
	for _, id := range []string{"old-ok", "old-failed", "orphan"} { // orphan: its webhook is gone
		ds = append(ds, delivery(id, "h", t0))
	}
	for _, id := range []string{"recent-ok", "recent-pending", "recent-ok-done-late"} {
		ds = append(ds, delivery(id, "h", recent))
	}
	if err := s.EnqueueDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	s.ClaimDeliveries(ctx, "h", recent, "r", time.Minute, 10)
	s.DeliverySucceeded(ctx, "old-ok", t0)
	s.FailDelivery(ctx, "old-failed", "r", t0, "x")
	s.DeliverySucceeded(ctx, "recent-ok", recent)
	s.DeliverySucceeded(ctx, "recent-ok-done-late", t0.Add(2*time.Hour))
	n, err := s.PruneDeliveries(ctx, t0.Add(time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("PruneDeliveries = %d, %v; want 3", n, err)
	}
	left, _ := s.Deliveries(ctx, "h")
	if fmt.Sprint(deliveryIDs(left)) != "[recent-ok recent-ok-done-late recent-pending]" {
		t.Errorf("left %v", deliveryIDs(left))
	}
}

func testOutboxInvalid(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	good := delivery("ok", "h", t0)
	for name, d := range map[string]Delivery{
		"no id":      {Webhook: "h", Topic: "t", Body: []byte("{}"), CreatedAt: t0},
		"no webhook": {ID: "x", Topic: "t", Body: []byte("{}"), CreatedAt: t0},
		"no topic":   {ID: "x", Webhook: "h", Body: []byte("{}"), CreatedAt: t0},
		"no body":    {ID: "x", Webhook: "h", Topic: "t", CreatedAt: t0},
		"no time":    {ID: "x", Webhook: "h", Topic: "t", Body: []byte("{}")},
	} {
		if err := s.EnqueueDeliveries(ctx, []Delivery{good, d}); !errors.Is(err, ErrInvalidDelivery) {
			t.Errorf("%s: %v, want ErrInvalidDelivery", name, err)
		}
	}
	// All or none: the good one was not written either, nor a duplicate.
	if left, _ := s.Deliveries(ctx, ""); len(left) != 0 {
		t.Errorf("an invalid batch left %v", deliveryIDs(left))
	}
	if err := s.EnqueueDeliveries(ctx, []Delivery{good, good}); err == nil {
		t.Error("a duplicate id was accepted")
	}
	if left, _ := s.Deliveries(ctx, ""); len(left) != 0 {
		t.Errorf("a failed batch left %v", deliveryIDs(left))
	}
}

func testOutboxSurvivesReopen(t *testing.T, b backend) {
	ctx := context.Background()
	u := b.url(t)
	s, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueDeliveries(ctx, []Delivery{delivery("d1", "h", t0)}); err != nil {
		t.Fatal(err)
	}
	// A claim held by a process that then stops.
	s.ClaimDeliveries(ctx, "h", t0, "gone", time.Second, 1)
	s.Close()
	s2 := openURL(t, u)
	got, err := s2.ClaimDeliveries(ctx, "h", t0.Add(time.Second), "new", time.Second, 1)
	if err != nil || len(got) != 1 || got[0].ID != "d1" || got[0].Attempts != 2 {
		t.Errorf("after reopen = %+v, %v", got, err)
	}
}

// Several claimers on several connections (as replicas are) never get the
// same delivery.
func testOutboxConcurrentClaimers(t *testing.T, b backend) {
	ctx := context.Background()
	u := b.url(t)
	stores := []*Store{openURL(t, u), openURL(t, u)}
	const n = 60
	var ds []Delivery
	for i := range n {
		ds = append(ds, delivery(fmt.Sprintf("d%02d", i), "h", t0))
	}
	if err := stores[0].EnqueueDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		seen   = map[string]string{}
		wg     sync.WaitGroup
		errs   = make(chan error, 8)
		dupes  []string
		starts = make(chan struct{})
	)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-starts
			s := stores[w%2]
			who := fmt.Sprintf("r%d", w)
			for {
				got, err := s.ClaimDeliveries(ctx, "h", t0, who, time.Hour, 3)
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, d := range got {
					if prev, ok := seen[d.ID]; ok {
						dupes = append(dupes, d.ID+" by "+prev+" and "+who)
					}
					seen[d.ID] = who
				}
				mu.Unlock()
			}
		}()
	}
	close(starts)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(dupes) > 0 {
		t.Errorf("claimed twice: %v", dupes)
	}
	if len(seen) != n {
		t.Errorf("claimed %d of %d", len(seen), n)
	}
}

// A new approval's deliveries commit in its transaction: both or neither.
// A request that finds an open approval writes none.
func testOutboxWithTheApproval(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t)
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	if _, created, err := s.RequestApproval(ctx, testApproval("a1", "d1", t0), t0, delivery("w1", "hook", t0), delivery("w2", "other", t0)); err != nil || !created {
		t.Fatalf("request = %v, %v", created, err)
	}
	for _, id := range []string{"w1", "w2"} {
		if d, err := s.Delivery(ctx, id); err != nil || d.Done() {
			t.Errorf("delivery %s = %+v, %v", id, d, err)
		}
	}
	// The same call again: its approval exists, no delivery is written.
	if got, created, err := s.RequestApproval(ctx, testApproval("a2", "d1", t0), t0, delivery("w3", "hook", t0)); err != nil || created || got.ID != "a1" {
		t.Fatalf("second request = %s, %v, %v", got.ID, created, err)
	}
	if _, err := s.Delivery(ctx, "w3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a delivery for an approval that was not created: %v", err)
	}
	// A delivery that cannot be written (its id is taken) takes the
	// approval with it.
	if _, _, err := s.RequestApproval(ctx, testApproval("b1", "d2", t0), t0, delivery("w1", "hook", t0)); err == nil {
		t.Fatal("an approval whose delivery could not be written was created")
	}
	if _, err := s.Approval(ctx, "b1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("approval b1 after its delivery failed: %v, want not found", err)
	}
}
