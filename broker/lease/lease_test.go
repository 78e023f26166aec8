package lease

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// fakeResource records mints and revocations, and checks that each lease is
// in the store before its credential is minted. The real backends are tested
// against real servers in tools/*.
type fakeResource struct {
	t        *testing.T
	st       *store.Store
	reusable bool
	mintErr  error
	orphans  []string

	mu      sync.Mutex
	minted  []string
	guards  []string // the GuardKey of each mint's request, "" for none
	revoked []string
}

type fakeCred struct{ handle string }

func (c fakeCred) Handle() string       { return c.handle }
func (c fakeCred) String() string       { return "[REDACTED]" }
func (c fakeCred) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

func (r *fakeResource) Spec() tools.ResourceSpec {
	return tools.ResourceSpec{Name: "db", Kind: "fake", Grants: map[string]tools.Grant{"ro": {TTL: 10 * time.Minute}}}
}

func (r *fakeResource) Handle(leaseID string) string { return "role_" + leaseID[:8] }

func (r *fakeResource) Mint(ctx context.Context, req tools.MintRequest) (tools.Credential, error) {
	l, err := r.st.Lease(ctx, req.LeaseID)
	if err != nil || l.State != store.LeasePending || l.Handle != req.Handle {
		r.t.Errorf("minting lease %s that is not recorded as pending with its handle: %+v, %v", req.LeaseID, l, err)
	}
	if r.mintErr != nil {
		return nil, r.mintErr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.minted = append(r.minted, req.Handle)
	g := ""
	if req.Guard != nil {
		g = req.Guard.GuardKey()
	}
	r.guards = append(r.guards, g)
	return fakeCred{handle: req.Handle}, nil
}

func (r *fakeResource) Revoke(_ context.Context, ref tools.LeaseRef) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked = append(r.revoked, ref.Handle)
	return nil
}

func (r *fakeResource) Orphans(context.Context) ([]string, error) { return r.orphans, nil }
func (r *fakeResource) Reusable() bool                            { return r.reusable }
func (r *fakeResource) Close()                                    {}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func setup(t *testing.T, reusable bool) (*Manager, *fakeResource, *store.Store, *clock, *[]string) {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://:memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	res := &fakeResource{t: t, st: st, reusable: reusable}
	clk := &clock{now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	var events []string
	m, err := New(Config{
		Store:   st,
		Resolve: func(string) (tools.Resource, bool) { return res, true },
		OnEvent: func(_ context.Context, ev Event) error {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev.Type)
			return nil
		},
		Clock: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, res, st, clk, &events
}

var alice = policy.Identity{Subject: "alice", Issuer: "https://idp"}

func TestAcquireReusesWhileEnoughTTLIsLeft(t *testing.T) {
	m, res, _, clk, events := setup(t, true)
	ctx := context.Background()
	first, err := m.Acquire(ctx, res, "ro", nil, alice, "call-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Minute) // 6 of 10 minutes left: more than half
	second, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-2", nil)
	if !second.Reused || second.Record.ID != first.Record.ID {
		t.Errorf("want the lease reused, got %+v", second.Record)
	}
	bob, _ := m.Acquire(ctx, res, "ro", nil, policy.Identity{Subject: "bob"}, "call-3", nil)
	if bob.Record.ID == first.Record.ID {
		t.Error("another identity got alice's lease")
	}
	clk.Advance(2 * time.Minute) // 4 of 10 left: less than half
	third, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-4", nil)
	if third.Reused || third.Record.ID == first.Record.ID {
		t.Error("a lease with less than half its ttl left was reused")
	}
	if len(res.minted) != 3 {
		t.Errorf("minted %d, want 3", len(res.minted))
	}
	// A reuse is the caller's to record (with the call's own events).
	if want := []string{"lease.minted", "lease.minted", "lease.minted"}; !slices.Equal(*events, want) {
		t.Errorf("events %v, want %v", *events, want)
	}
}

// beforeMint runs before a credential is minted, never for a reuse, and a
// mint it refuses does not happen.
func TestBeforeMint(t *testing.T) {
	m, res, _, _, _ := setup(t, true)
	ctx := context.Background()
	calls := 0
	before := func(context.Context) error { calls++; return nil }
	if _, err := m.Acquire(ctx, res, "ro", nil, alice, "call-1", before); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(ctx, res, "ro", nil, alice, "call-2", before); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("beforeMint ran %d times for one mint and one reuse, want 1", calls)
	}
	refused := errors.New("store unavailable")
	_, err := m.Acquire(ctx, res, "ro", nil, policy.Identity{Subject: "bob"}, "call-3", func(context.Context) error { return refused })
	if !errors.Is(err, refused) {
		t.Errorf("Acquire = %v, want beforeMint's error", err)
	}
	if len(res.minted) != 1 {
		t.Errorf("minted %d credentials, want 1: a mint beforeMint refused went ahead", len(res.minted))
	}
}

func TestSweepRevokesAtExpiry(t *testing.T) {
	m, res, st, clk, _ := setup(t, true)
	ctx := context.Background()
	l, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-1", nil)
	m.Sweep(ctx)
	if len(res.revoked) != 0 {
		t.Fatal("revoked before expiry")
	}
	clk.Advance(10*time.Minute + time.Second)
	m.Sweep(ctx)
	if len(res.revoked) != 1 || res.revoked[0] != l.Record.Handle {
		t.Fatalf("revoked %v, want %s", res.revoked, l.Record.Handle)
	}
	got, _ := st.Lease(ctx, l.Record.ID)
	if got.State != store.LeaseRevoked {
		t.Errorf("state %s", got.State)
	}
	if m.Live() != 0 {
		t.Errorf("live = %d", m.Live())
	}
	// An expired lease is not reused.
	next, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-2", nil)
	if next.Reused {
		t.Error("a revoked lease was reused")
	}
}

func TestSingleUseCredentialsAreRevokedOnRelease(t *testing.T) {
	m, res, _, _, _ := setup(t, false)
	ctx := context.Background()
	l, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-1", nil)
	m.Release(ctx, res, l)
	if len(res.revoked) != 1 {
		t.Errorf("revoked %v", res.revoked)
	}
	l2, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-2", nil)
	if l2.Reused {
		t.Error("single-use credential reused")
	}
}

func TestMintFailureIsRecordedAndCleanedUp(t *testing.T) {
	m, res, st, _, events := setup(t, true)
	res.mintErr = errors.New("permission denied to create role")
	ctx := context.Background()
	if _, err := m.Acquire(ctx, res, "ro", nil, alice, "call-1", nil); err == nil {
		t.Fatal("want an error")
	}
	live, _ := st.LiveLeases(ctx)
	if len(live) != 0 {
		t.Errorf("a failed mint left a live lease: %+v", live)
	}
	if len(res.revoked) != 1 {
		t.Errorf("a failed mint must revoke whatever may exist, revoked %v", res.revoked)
	}
	if (*events)[len(*events)-1] != "lease.failed" {
		t.Errorf("events %v", *events)
	}
}

// Start-up revokes expired leases and backend credentials no live lease owns,
// and leaves live leases (another process may hold them) alone.
func TestRecover(t *testing.T) {
	m, res, st, clk, _ := setup(t, true)
	ctx := context.Background()
	live, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-1", nil)
	res.orphans = []string{"role_orphan1", live.Record.Handle}
	// A lease left by a crashed process, already expired.
	crashed := store.Lease{ID: "00000000-dead", CallID: "c", Resource: "db", Kind: "fake", Grant: "ro", Subject: "x", Handle: "role_crashed",
		State: store.LeaseActive, CreatedAt: clk.Now().Add(-time.Hour), ExpiresAt: clk.Now().Add(-time.Minute)}
	if err := st.InsertLease(ctx, crashed); err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(ctx, []tools.Resource{res}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"role_crashed": true, "role_orphan1": true}
	if len(res.revoked) != 2 || !want[res.revoked[0]] || !want[res.revoked[1]] {
		t.Errorf("revoked %v, want %v", res.revoked, want)
	}
}

func TestCloseRevokesWhatThisProcessHolds(t *testing.T) {
	m, res, _, _, _ := setup(t, true)
	ctx := context.Background()
	m.Start(ctx)
	a, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-1", nil)
	b, _ := m.Acquire(ctx, res, "ro", nil, policy.Identity{Subject: "bob"}, "call-2", nil)
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(res.revoked) != 2 {
		t.Errorf("revoked %v, want %s and %s", res.revoked, a.Record.Handle, b.Record.Handle)
	}
}

// Roles are cluster-wide: a live lease of another resource on the same
// cluster shows up in this resource's orphan listing and must be left alone.
func TestRecoverLeavesOtherResourcesLiveLeases(t *testing.T) {
	m, res, st, clk, _ := setup(t, true)
	ctx := context.Background()
	other := store.Lease{ID: "00000000-0ther", CallID: "c", Resource: "db-staging", Kind: "fake", Grant: "ro", Subject: "x",
		Handle: "role_staging", State: store.LeaseActive, CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(5 * time.Minute)}
	if err := st.InsertLease(ctx, other); err != nil {
		t.Fatal(err)
	}
	res.orphans = []string{"role_staging"}
	if err := m.Recover(ctx, []tools.Resource{res}); err != nil {
		t.Fatal(err)
	}
	if len(res.revoked) != 0 {
		t.Errorf("revoked %v: another resource's live lease", res.revoked)
	}
}

// fakeGuard is a column guard known only by its key.
type fakeGuard string

func (g fakeGuard) GuardKey() string                  { return string(g) }
func (g fakeGuard) Protects(_, _, column string) bool { return column == "email" }

// A lease minted without a guard never serves a call that needs one, nor
// the reverse, nor one guard's lease another's; each is reused under its
// own key, and the guard reaches Mint.
func TestAcquireKeysReuseOnTheGuard(t *testing.T) {
	m, res, _, _, _ := setup(t, true)
	ctx := context.Background()
	pii, pii2 := fakeGuard("pii:0a1b"), fakeGuard("pii:ffff") // same profile, other rules (a reload)
	plain, err := m.Acquire(ctx, res, "ro", nil, alice, "call-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	guarded, err := m.Acquire(ctx, res, "ro", pii, alice, "call-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if guarded.Reused || guarded.Record.ID == plain.Record.ID {
		t.Fatal("an unguarded lease served a call that needs the guard")
	}
	again, _ := m.Acquire(ctx, res, "ro", pii, alice, "call-3", nil)
	if !again.Reused || again.Record.ID != guarded.Record.ID {
		t.Errorf("the guarded lease was not reused under the same key: %+v", again.Record)
	}
	back, _ := m.Acquire(ctx, res, "ro", nil, alice, "call-4", nil)
	if !back.Reused || back.Record.ID != plain.Record.ID {
		t.Errorf("a call without a guard did not get the unguarded lease back: reused=%v id=%s", back.Reused, back.Record.ID)
	}
	other, _ := m.Acquire(ctx, res, "ro", pii2, alice, "call-5", nil)
	if other.Reused || other.Record.ID == guarded.Record.ID || other.Record.ID == plain.Record.ID {
		t.Error("a lease minted under other column rules was reused")
	}
	bob, _ := m.Acquire(ctx, res, "ro", pii, policy.Identity{Subject: "bob"}, "call-6", nil)
	if bob.Reused {
		t.Error("another identity reused alice's guarded lease")
	}
	want := []string{"", "pii:0a1b", "pii:ffff", "pii:0a1b"}
	if len(res.guards) != len(want) {
		t.Fatalf("mints with guards %q, want %q", res.guards, want)
	}
	for i := range want {
		if res.guards[i] != want[i] {
			t.Fatalf("mints with guards %q, want %q", res.guards, want)
		}
	}
	if _, err := m.Acquire(ctx, res, "ro", fakeGuard(""), alice, "call-7", nil); err == nil {
		t.Error("a guard with an empty key was accepted")
	}
}
