package approval

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

const sqlArgs = `{"resource":"orders","sql":"DELETE FROM orders WHERE id = 7"}`

func TestDecideRefused(t *testing.T) {
	tests := []struct {
		name     string
		min      int
		setup    func(t *testing.T, f *fixture, id string) // brings the approval into the state under test
		approver policy.Identity
		verdict  Verdict
		via      string
		wantErr  error
		reason   string // refusal reason recorded
	}{
		{name: "own request", approver: alice, wantErr: ErrSelfApproval, reason: "self_approval"},
		{name: "own request, even in the group", approver: person("alice", "dba"), wantErr: ErrSelfApproval, reason: "self_approval"},
		{name: "outside the groups", approver: dave, wantErr: ErrNotApprover, reason: "not_approver"},
		{name: "no groups at all", approver: person("eve"), wantErr: ErrNotApprover, reason: "not_approver"},
		{name: "expired", approver: bob, wantErr: ErrExpired, reason: "expired",
			setup: func(t *testing.T, f *fixture, id string) { f.clock.Advance(15 * time.Minute) }},
		{name: "consumed", approver: carol, wantErr: ErrConsumed, reason: "consumed",
			setup: func(t *testing.T, f *fixture, id string) {
				mustDecide(t, f, id, bob, Approve)
				if err := f.m.Consume(context.Background(), id, "call-9"); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "denied", approver: carol, wantErr: ErrDenied, reason: "denied",
			setup: func(t *testing.T, f *fixture, id string) { mustDecide(t, f, id, bob, Deny) }},
		{name: "already approved", approver: carol, wantErr: ErrApproved, reason: "already_approved",
			setup: func(t *testing.T, f *fixture, id string) { mustDecide(t, f, id, bob, Approve) }},
		{name: "same approver twice", min: 2, approver: bob, wantErr: ErrAlreadyDecided, reason: "already_decided",
			setup: func(t *testing.T, f *fixture, id string) { mustDecide(t, f, id, bob, Approve) }},
		{name: "same subject other issuer is someone else", approver: policy.Identity{Subject: "alice", Issuer: "https://other/", Groups: []string{"dba"}},
			wantErr: nil},
		{name: "unknown verdict", approver: bob, verdict: "maybe", wantErr: ErrInvalid, reason: "invalid"},
		{name: "unknown via", approver: bob, via: "email", wantErr: ErrInvalid, reason: "invalid"},
		{name: "no approver", approver: policy.Identity{}, wantErr: ErrInvalid, reason: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			min := tt.min
			if min == 0 {
				min = 1
			}
			a := f.request(t, input(sqlArgs, min))
			if tt.setup != nil {
				tt.setup(t, f, a.ID)
			}
			before, _ := f.m.Get(context.Background(), a.ID)
			verdict, via := tt.verdict, tt.via
			if verdict == "" {
				verdict = Approve
			}
			if via == "" {
				via = ViaAPI
			}
			_, err := f.m.Decide(context.Background(), a.ID, tt.approver, verdict, "looks fine", via)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Decide = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decide = %v, want %v", err, tt.wantErr)
			}
			after, _ := f.m.Get(context.Background(), a.ID)
			if after.State != before.State || len(after.Decisions) != len(before.Decisions) {
				t.Errorf("a refused decision changed the approval: %s/%d → %s/%d", before.State, len(before.Decisions), after.State, len(after.Decisions))
			}
			refused := f.events.ofType(EventRefused)
			if len(refused) != 1 || refused[0].Data["reason"] != tt.reason || refused[0].Subject != tt.approver.Subject {
				t.Errorf("refused events = %+v, want one with reason %q", refused, tt.reason)
			}
		})
	}

	t.Run("not found", func(t *testing.T) {
		f := newFixture(t, nil)
		if _, err := f.m.Decide(context.Background(), "nope", bob, Approve, "", ViaWeb); !errors.Is(err, ErrNotFound) {
			t.Errorf("Decide(nope) = %v, want ErrNotFound", err)
		}
		if ev := f.events.ofType(EventRefused); len(ev) != 1 || ev[0].Data["reason"] != "not_found" {
			t.Errorf("refused events = %+v", ev)
		}
	})
}

func mustDecide(t *testing.T, f *fixture, id string, who policy.Identity, v Verdict) Approval {
	t.Helper()
	a, err := f.m.Decide(context.Background(), id, who, v, "reason", ViaWeb)
	if err != nil {
		t.Fatalf("Decide(%s, %s): %v", who.Subject, v, err)
	}
	return a
}

func TestDecideMinTwo(t *testing.T) {
	f := newFixture(t, nil)
	a := f.request(t, input(sqlArgs, 2))

	a = mustDecide(t, f, a.ID, bob, Approve)
	if a.State != Pending || a.Approvals() != 1 {
		t.Fatalf("after one approval: %s with %d approvals, want pending with 1", a.State, a.Approvals())
	}
	if err := f.m.Consume(context.Background(), a.ID, "call-2"); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("Consume of a half-approved approval = %v, want ErrNotApproved", err)
	}
	if _, err := f.m.Decide(context.Background(), a.ID, bob, Approve, "", ViaAPI); !errors.Is(err, ErrAlreadyDecided) {
		t.Fatalf("bob again = %v, want ErrAlreadyDecided", err)
	}
	a = mustDecide(t, f, a.ID, carol, Approve)
	if a.State != Approved || a.Approvals() != 2 || a.DecidedAt.IsZero() {
		t.Fatalf("after two approvals: %+v", a)
	}
	decided := f.events.ofType(EventDecided)
	if len(decided) != 2 || decided[1].Data["state"] != Approved || decided[1].Subject != "carol" || decided[1].Data["via"] != ViaWeb {
		t.Errorf("decided events = %+v", decided)
	}
}

func TestDecideConcurrently(t *testing.T) {
	approvers := []policy.Identity{bob, carol, person("erin", "dba"), person("frank", "dba"), person("grace", "dba")}

	t.Run("min 2, five approvers at once", func(t *testing.T) {
		for round := range 5 {
			f := newFixture(t, nil)
			a := f.request(t, input(sqlArgs, 2))
			errs := decideAll(f, a.ID, approvers, func(int) Verdict { return Approve })
			ok, late := 0, 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrApproved):
					late++
				default:
					t.Fatalf("round %d: unexpected error %v", round, err)
				}
			}
			got, _ := f.m.Get(context.Background(), a.ID)
			if ok != 2 || late != 3 || got.State != Approved || len(got.Decisions) != 2 {
				t.Fatalf("round %d: %d ok, %d late, state %s with %d decisions; want 2, 3, approved with 2", round, ok, late, got.State, len(got.Decisions))
			}
			var approvedEvents int
			counts := map[any]int{}
			for _, ev := range f.events.ofType(EventDecided) {
				if ev.Data["state"] == Approved {
					approvedEvents++
				}
				counts[ev.Data["approvals"]]++
			}
			if approvedEvents != 1 {
				t.Fatalf("round %d: %d decisions reported the approval, want exactly 1", round, approvedEvents)
			}
			// Each event says what its own decision made of the approval:
			// written from the approval as read, stored only if no other
			// decision landed in between.
			if len(counts) != 2 || counts[1] != 1 || counts[2] != 1 {
				t.Fatalf("round %d: decided events count approvals %v, want 1 and 2 once each", round, counts)
			}
		}
	})

	t.Run("min 1, approve and deny race", func(t *testing.T) {
		for round := range 10 {
			f := newFixture(t, nil)
			a := f.request(t, input(sqlArgs, 1))
			verdicts := []Verdict{Approve, Deny}
			errs := decideAll(f, a.ID, approvers[:2], func(i int) Verdict { return verdicts[i] })
			got, _ := f.m.Get(context.Background(), a.ID)
			if len(got.Decisions) != 1 {
				t.Fatalf("round %d: %d decisions recorded, want 1", round, len(got.Decisions))
			}
			winner := got.Decisions[0]
			want := map[Verdict]State{Approve: Approved, Deny: Denied}[winner.Verdict]
			if got.State != want {
				t.Fatalf("round %d: state %s but the recorded decision is %s", round, got.State, winner.Verdict)
			}
			var failed int
			for _, err := range errs {
				if err != nil {
					failed++
					if !errors.Is(err, ErrApproved) && !errors.Is(err, ErrDenied) {
						t.Fatalf("round %d: loser got %v", round, err)
					}
				}
			}
			if failed != 1 {
				t.Fatalf("round %d: %d decisions failed, want 1", round, failed)
			}
		}
	})
}

// decideAll has every approver decide at the same moment.
func decideAll(f *fixture, id string, approvers []policy.Identity, verdict func(i int) Verdict) []error {
	errs := make([]error, len(approvers))
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i, who := range approvers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = f.m.Decide(context.Background(), id, who, verdict(i), "", ViaAPI)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func TestRequestBindsToDigest(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	first, created, err := f.m.Request(ctx, input(sqlArgs, 1))
	if err != nil || !created || first.State != Pending {
		t.Fatalf("Request = %+v, %v, %v", first, created, err)
	}
	again, created, err := f.m.Request(ctx, input(sqlArgs, 1))
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("same call again = %s created %v, %v; want %s, false", again.ID, created, err, first.ID)
	}
	mustDecide(t, f, first.ID, bob, Approve)

	// Arguments changed after approval: a new approval; the approved one
	// is not used and stays approved.
	changed, created, err := f.m.Request(ctx, input(`{"resource":"orders","sql":"DELETE FROM orders"}`, 1))
	if err != nil || !created || changed.ID == first.ID || changed.State != Pending || changed.Digest == first.Digest {
		t.Fatalf("changed arguments = %+v created %v, %v; want a new pending approval", changed, created, err)
	}
	if got, _ := f.m.Get(ctx, first.ID); got.State != Approved || got.ConsumedBy != "" {
		t.Fatalf("the approved approval was touched: %+v", got)
	}

	// Someone else, or another policy version: other digests too.
	other := input(sqlArgs, 1)
	other.Requester = dave
	if a, created, _ := f.m.Request(ctx, other); !created || a.ID == first.ID {
		t.Errorf("another requester reused approval %s", first.ID)
	}
	newer := input(sqlArgs, 1)
	newer.Decision.PolicyVersion = "pv2"
	if a, created, _ := f.m.Request(ctx, newer); !created || a.ID == first.ID {
		t.Errorf("another policy version reused approval %s", first.ID)
	}

	// The same call again proceeds with the approved approval, once.
	again, created, err = f.m.Request(ctx, input(sqlArgs, 1))
	if err != nil || created || again.ID != first.ID || again.State != Approved {
		t.Fatalf("same call after approval = %+v created %v, %v", again, created, err)
	}
	if err := f.m.Consume(ctx, again.ID, "call-2"); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Consume(ctx, again.ID, "call-3"); !errors.Is(err, ErrConsumed) {
		t.Fatalf("second Consume = %v, want ErrConsumed", err)
	}
	if got, _ := f.m.Get(ctx, first.ID); got.State != Consumed || got.ConsumedBy != "call-2" {
		t.Fatalf("after Consume: %s by %q", got.State, got.ConsumedBy)
	}
	// Used up: the same call needs a new approval.
	if a, created, _ := f.m.Request(ctx, input(sqlArgs, 1)); !created || a.ID == first.ID {
		t.Errorf("a consumed approval was handed out again")
	}
}

func TestConsumeRefused(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(t *testing.T, f *fixture, id string)
		wantErr error
	}{
		{"pending", func(*testing.T, *fixture, string) {}, ErrNotApproved},
		{"denied", func(t *testing.T, f *fixture, id string) { mustDecide(t, f, id, bob, Deny) }, ErrDenied},
		{"approved then expired", func(t *testing.T, f *fixture, id string) {
			mustDecide(t, f, id, bob, Approve)
			f.clock.Advance(16 * time.Minute)
		}, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			a := f.request(t, input(sqlArgs, 1))
			tt.setup(t, f, a.ID)
			if err := f.m.Consume(ctx, a.ID, "call-2"); !errors.Is(err, tt.wantErr) {
				t.Errorf("Consume = %v, want %v", err, tt.wantErr)
			}
		})
	}
	f := newFixture(t, nil)
	if err := f.m.Consume(ctx, "nope", "call-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Consume(nope) = %v, want ErrNotFound", err)
	}
}

func TestRequestInvalid(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		mutate func(*RequestInput)
	}{
		{"no requester", func(in *RequestInput) { in.Requester = policy.Identity{} }},
		{"no tool", func(in *RequestInput) { in.Tool = "" }},
		{"short digest", func(in *RequestInput) { in.ArgumentsDigest = []byte("x") }},
		{"allow decision", func(in *RequestInput) { in.Decision.Effect = policy.Allow }},
		{"no approvers", func(in *RequestInput) { in.Decision.Approvers = nil }},
		{"no groups", func(in *RequestInput) { in.Decision.Approvers = &policy.Approvers{Min: 1} }},
		{"arguments not JSON", func(in *RequestInput) { in.Arguments = []byte("{") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input(sqlArgs, 1)
			tt.mutate(&in)
			if _, _, err := f.m.Request(context.Background(), in); !errors.Is(err, ErrInvalid) {
				t.Errorf("Request = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestStatusAndList(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	a := f.request(t, input(sqlArgs, 1))
	f.clock.Advance(time.Second)
	sre := input(`{"resource":"orders","sql":"TRUNCATE x"}`, 1)
	sre.Requester = dave
	sre.Decision.Approvers = &policy.Approvers{Groups: []string{"sre"}, Min: 1}
	b := f.request(t, sre)

	for _, tt := range []struct {
		who     policy.Identity
		wantErr error
	}{
		{alice, nil}, {bob, nil}, {dave, ErrForbidden}, {person("alice"), nil},
		{policy.Identity{Subject: "alice", Issuer: "https://other/"}, ErrForbidden},
	} {
		got, err := f.m.Status(ctx, a.ID, tt.who)
		if !errors.Is(err, tt.wantErr) || (err == nil && got.ID != a.ID) {
			t.Errorf("Status as %s@%s = %v, want %v", tt.who.Subject, tt.who.Issuer, err, tt.wantErr)
		}
	}
	if got, _ := f.m.Status(ctx, a.ID, alice); got.URL != "https://airlock.example.com/ui/approvals/"+a.ID {
		t.Errorf("URL = %q", got.URL)
	}

	ids := func(f ListFilter, m *Manager) string {
		list, err := m.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range list {
			out = append(out, a.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct {
		name string
		f    ListFilter
		want string
	}{
		{"everything (local)", ListFilter{}, b.ID + "," + a.ID},
		{"dba approver", ListFilter{Viewer: &bob}, a.ID},
		{"requester dave", ListFilter{Viewer: &dave}, b.ID},
		{"stranger", ListFilter{Viewer: &policy.Identity{Subject: "zed", Issuer: issuer}}, ""},
		{"approved only", ListFilter{State: Approved}, ""},
	} {
		if got := ids(tt.f, f.m); got != tt.want {
			t.Errorf("%s: List = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestPersistsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := &clock{now: t0}
	open := func() (*Manager, func()) {
		s, err := storeOpen(dir)
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(Config{Store: s, Clock: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return m, func() { s.Close() }
	}
	m, closeStore := open()
	a, _, err := m.Request(ctx, input(sqlArgs, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Decide(ctx, a.ID, bob, Approve, "first", ViaWeb); err != nil {
		t.Fatal(err)
	}
	closeStore()

	m, closeStore = open()
	defer closeStore()
	got, err := m.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Pending || got.Approvals() != 1 || got.Decisions[0].Reason != "first" || got.Rules[1].Message != "writes need a DBA" {
		t.Fatalf("after restart: %+v", got)
	}
	if again, created, _ := m.Request(ctx, input(sqlArgs, 2)); created || again.ID != a.ID {
		t.Errorf("the same call after restart created a new approval")
	}
	if got, err := m.Decide(ctx, a.ID, carol, Approve, "", ViaWeb); err != nil || got.State != Approved {
		t.Errorf("decision after restart = %s, %v", got.State, err)
	}
}

func TestConfig(t *testing.T) {
	secret := Secret("0123456789abcdef0123")
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{}, ""},
		{"wait not below expire", Config{Wait: time.Hour, Expire: time.Minute}, "must be shorter"},
		{"bad public url", Config{PublicURL: "airlock.example.com"}, "absolute"},
		{"webhook without public url", Config{Webhooks: []WebhookConfig{{URL: "https://h.example/x", Secret: secret}}}, "public_url is required"},
		{"webhook short secret", Config{PublicURL: "https://a.example", Webhooks: []WebhookConfig{{URL: "https://h.example/x", Secret: Secret("short")}}}, "at least 16 bytes"},
		{"webhook bad url", Config{PublicURL: "https://a.example", Webhooks: []WebhookConfig{{URL: "ftp://h.example/x", Secret: secret}}}, "http(s)"},
		{"webhook bad format", Config{PublicURL: "https://a.example", Webhooks: []WebhookConfig{{URL: "https://h.example/x", Secret: secret, Format: "teams"}}}, "unknown format"},
		{"slack needs no secret", Config{PublicURL: "https://a.example", Webhooks: []WebhookConfig{{URL: "https://hooks.slack.com/services/T/B/X", Format: "slack"}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Store = &fakeStore{}
			err := tt.cfg.CheckAndSetDefaults()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg.Wait != DefaultWait && len(tt.cfg.Webhooks) == 0 && tt.cfg.PublicURL == "" {
					t.Errorf("Wait default = %s", tt.cfg.Wait)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckAndSetDefaults = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "0123456789") || strings.Contains(err.Error(), "/services/") {
				t.Errorf("error leaks a secret or URL path: %v", err)
			}
		})
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without a store succeeded")
	}
}

// fakeStore satisfies Store for config tests; it is never called.
type fakeStore struct{ Store }

// The default wait is under the 60s request timeout of the TypeScript SDK
// and Claude Code, with room for the answer to travel.
func TestDefaultWaitIsUnderClientTimeouts(t *testing.T) {
	cfg := Config{Store: &fakeStore{}}
	if err := cfg.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	if cfg.Wait != 45*time.Second {
		t.Errorf("Wait default = %s, want 45s", cfg.Wait)
	}
}

// A typed name (no issuer vouches for it) is the requester's when it reads
// the same: case, invisible characters and the requester's e-mail do not
// make another person; an OIDC subject is compared exactly.
func TestTypedNamesThatReadTheSameAreTheRequester(t *testing.T) {
	req := Principal{Subject: "demo-user", Email: "demo@example.com"}
	for _, name := range []string{"demo-user", "Demo-User", "demo-user\u200b", "de\u200dmo-user", " demo-user", "demo@example.com", "DEMO@example.com"} {
		if !req.Is(policy.Identity{Subject: name}) {
			t.Errorf("%q is not taken for the requester demo-user", name)
		}
	}
	if !req.Is(policy.Identity{Subject: "someone", Email: "Demo@Example.com"}) {
		t.Error("a name with the requester's e-mail is not taken for the requester")
	}
	for _, name := range []string{"dora", "demo-user2", "demo"} {
		if req.Is(policy.Identity{Subject: name}) {
			t.Errorf("%q is taken for the requester demo-user", name)
		}
	}
	oidc := Principal{Subject: "abc", Issuer: "https://idp"}
	if oidc.Is(policy.Identity{Subject: "ABC", Issuer: "https://idp"}) || !oidc.Is(policy.Identity{Subject: "abc", Issuer: "https://idp"}) {
		t.Error("OIDC subjects must compare exactly")
	}
	if req.Is(policy.Identity{Subject: "demo-user", Issuer: "https://idp"}) {
		t.Error("another issuer is another person")
	}
}
