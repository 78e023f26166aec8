package approval

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// What a cold attack on approvals found (each failed until fixed: typed
// names folded further, an earlier approver's look-alike refused, a
// withdrawal read by its via) and what held (TestHeld…).

// typed is a name typed without an identity provider (auth.mode none, the
// web UI's local mode, the CLI's --as): no issuer.
func typed(subject string, groups ...string) policy.Identity {
	return policy.Identity{Subject: subject, Groups: groups, Method: "none"}
}

// Finding 1: Withdraw accepts any name that Principal.Is folds onto the
// requester ("Alice" for typed "alice", or the requester's e-mail), but
// Withdrawn() compares the subject exactly: the withdrawal is stored
// (a deny via "withdrawn") yet reads as an approver's denial, and the
// task says "denied by Alice" instead of "withdrawn" (cancelled).
func TestWithdrawByFoldedNameReadsAsDenial(t *testing.T) {
	for _, tc := range []struct{ name, as string }{
		{"case", "Alice"},
		{"email", "alice@example.com"},
		{"zero-width", "al\u200bice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			ctx := context.Background()
			in := input(sqlArgs, 1)
			in.Requester = policy.Identity{Subject: "alice", Email: "alice@example.com", Groups: []string{"eng"}, Method: "none"}
			a := f.request(t, in)
			got, err := f.m.Withdraw(ctx, a.ID, typed(tc.as, "eng"), "cancel")
			if err != nil {
				t.Fatalf("Withdraw as %q: %v", tc.as, err)
			}
			if got.State != Denied {
				t.Fatalf("state %s", got.State)
			}
			if !got.Withdrawn() {
				t.Errorf("withdrawn by %q (Is() says it is the requester) but Withdrawn() = false: reads as a real denial by %q", tc.as, got.Decisions[len(got.Decisions)-1].Approver.Subject)
			}
			if n := len(f.events.ofType(EventWithdrawn)); n != 1 {
				t.Errorf("%d approval.withdrawn events", n)
			}
		})
	}
}

// Finding 2: decisions are ordered by decided_at (each replica's clock).
// With min 2, bob approves on a replica whose clock is 1 s ahead, then
// alice withdraws on another: the withdrawal sorts first, the last decision
// is bob's approve, and Withdrawn() is false; deniedText (mcpserver) then
// says the approval "was denied by bob", who approved it.
func TestWithdrawalAfterSkewedApproveReadsAsDenial(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	mk := func(skew time.Duration) *Manager {
		m, err := New(Config{Store: s, Wait: time.Second, Expire: 15 * time.Minute, Clock: func() time.Time { return t0.Add(skew) }})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ahead, behind := mk(time.Second), mk(0)
	ctx := context.Background()
	a, _, err := behind.Request(ctx, input(sqlArgs, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ahead.Decide(ctx, a.ID, bob, Approve, "", ViaWeb); err != nil {
		t.Fatal(err)
	}
	got, err := behind.Withdraw(ctx, a.ID, alice, "cancel")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Withdrawn() {
		t.Errorf("Withdraw returned an approval that is not Withdrawn(): %+v", got.Decisions)
	}
	reread, err := behind.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reread.Withdrawn() {
		last := reread.Decisions[len(reread.Decisions)-1]
		t.Errorf("withdrawn approval reread: Withdrawn() = false; last decision is %s %s via %s", last.Approver.Subject, last.Verdict, last.Via)
	}
}

// Finding 3: typed names the same to a reader that foldName does not fold:
// NFC vs NFD (é vs e+U+0301: the mark is dropped from one only), Hangul
// filler (U+3164, category Lo, renders blank), Braille blank (U+2800, So),
// fullwidth forms (NFKC). Each decides its own request.
func TestSelfApprovalTypedNamesNotFolded(t *testing.T) {
	for _, tc := range []struct{ name, requester, approver string }{
		{"nfc-vs-nfd", "jos\u00e9", "jose\u0301"},
		{"hangul-filler", "alice", "alice\u3164"},
		{"halfwidth-hangul-filler", "alice", "alice\uffa0"},
		{"braille-blank", "alice", "alice\u2800"},
		{"fullwidth", "alice", "\uff41\uff4c\uff49\uff43\uff45"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			in := input(sqlArgs, 1)
			in.Requester = typed(tc.requester, "eng", "dba")
			a := f.request(t, in)
			_, err := f.m.Decide(context.Background(), a.ID, typed(tc.approver, "dba"), Approve, "", ViaCLILocal)
			if !errors.Is(err, ErrSelfApproval) {
				t.Errorf("%q approved %q's request: err = %v, want ErrSelfApproval", tc.approver, tc.requester, err)
			}
		})
	}
}

// Held: a forged NOTIFY (any session of the store's database, with the
// approval's id, another id, or junk) only makes waiters reread: Wait
// stays pending until its deadline and Consume still refuses.
func TestHeldForgedNotifyOnlyRereads(t *testing.T) {
	pg, rs := pgReplicas(t)
	ctx := context.Background()
	a, _, err := rs[0].m.Request(ctx, input(sqlArgs, 1))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		for _, p := range []string{a.ID, a.ID + " ", strings.ToUpper(a.ID), "", "approved", strings.Repeat("x", 7000)} {
			pg.ExecDB(t, "store", `SELECT pg_notify('airlock_approvals', '`+p+`')`)
		}
		pg.ExecDB(t, "store", `NOTIFY airlock_approvals, '`+a.ID+`'`)
	}()
	started := time.Now()
	got, err := rs[0].m.Wait(ctx, a.ID, 1500*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Pending || time.Since(started) < 1400*time.Millisecond {
		t.Fatalf("forged NOTIFY changed the wait: state %s after %s", got.State, time.Since(started))
	}
	if err := rs[1].m.Consume(ctx, a.ID, "call-x"); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Consume after forged NOTIFY: %v", err)
	}
}

// Held: nobody but the requester withdraws; an approver cannot decide via
// "withdrawn"; an approver's deny never reads as withdrawn, even when the
// approver types the requester's subject with another issuer.
func TestHeldWithdrawAndVia(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	a := f.request(t, input(sqlArgs, 1))
	for _, id := range []policy.Identity{
		bob, typed("alice", "dba"), {Subject: "alice", Issuer: issuer + "x"}, {Subject: "alice@example.com", Issuer: issuer}, {Subject: ""},
	} {
		if _, err := f.m.Withdraw(ctx, a.ID, id, ""); !errors.Is(err, ErrForbidden) {
			t.Errorf("%+v withdrew alice's approval: %v", id, err)
		}
	}
	if _, err := f.m.Decide(ctx, a.ID, bob, Deny, "", ViaWithdrawn); !errors.Is(err, ErrInvalid) {
		t.Errorf("decide via withdrawn: %v", err)
	}
	// typed "alice" (no issuer) is not OIDC alice: may decide, and her deny is not a withdrawal.
	got, err := f.m.Decide(ctx, a.ID, typed("alice", "dba"), Deny, "", ViaCLILocal)
	if err != nil {
		t.Fatal(err)
	}
	if got.Withdrawn() {
		t.Error("a typed alice's deny reads as OIDC alice's withdrawal")
	}
}

// Finding 4: the store counts approvers by exact (subject, issuer), while
// Is folds typed names: "bob" and "Bob" (or bob's e-mail) are the same
// person to the self-approval check, yet two distinct approvals of a
// min-2 rule.
func TestTypedApproverCountsTwiceUnderFolding(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	in := input(sqlArgs, 2)
	in.Requester = typed("alice", "eng")
	a := f.request(t, in)
	if _, err := f.m.Decide(ctx, a.ID, typed("bob", "dba"), Approve, "", ViaCLILocal); err != nil {
		t.Fatal(err)
	}
	got, err := f.m.Decide(ctx, a.ID, typed("Bob", "dba"), Approve, "", ViaCLILocal)
	if !errors.Is(err, ErrAlreadyDecided) {
		t.Errorf("typed \"Bob\" after \"bob\": err = %v, state %s with %d approvals; want ErrAlreadyDecided", err, got.State, got.Approvals())
	}
}
