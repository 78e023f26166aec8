package web

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

const (
	issuer = "http://127.0.0.1:1/" // nothing listens: no test here logs in
	origin = "https://airlock.example.com"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

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

func person(subject string, groups ...string) policy.Identity {
	return policy.Identity{Subject: subject, Email: subject + "@example.com", Issuer: issuer, Groups: groups, Method: "oidc"}
}

var (
	alice = person("alice", "eng")     // requests
	bob   = person("bob", "dba")       // approves
	carol = person("carol", "dba")     // approves too
	dave  = person("dave", "eng")      // neither
	rita  = person("rita", "auditors") // reviewer
	other = policy.Identity{Subject: "alice", Issuer: "https://other.example/", Groups: []string{"dba"}}
)

type fixture struct {
	h     *Handler
	m     *approval.Manager
	rec   *recorder.Recorder
	db    *sql.DB
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{clock: &clock{now: t0}, db: st.DB()}
	f.m, err = approval.New(approval.Config{Store: st, PublicURL: origin + "/mcp", Wait: time.Second, Expire: 15 * time.Minute, Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.rec, err = recorder.New(st.DB(), recorder.WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	f.h, err = New(Config{
		Approvals: f.m, Recorder: f.rec,
		OIDC:     authn.OIDCConfig{Issuer: issuer, Audience: origin + "/mcp"},
		ClientID: "airlock-ui", ClientSecret: "s3cret", PublicURL: origin + "/mcp",
		SessionKey: make([]byte, 32), ReviewersGroup: "auditors", Clock: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// request creates alice's approval for a write; it asks for dba.
func (f *fixture) request(t *testing.T, sql, callID string) approval.Approval {
	t.Helper()
	args, _ := json.Marshal(map[string]any{"resource": "orders", "sql": sql})
	sum := sha256.Sum256(args)
	a, _, err := f.m.Request(context.Background(), approval.RequestInput{
		Requester: alice, Tool: "query_db", Resource: "orders", Arguments: args, ArgumentsDigest: sum[:],
		Decision: policy.Decision{
			Effect: policy.Approve, Rule: "writes-need-a-dba", Message: "writes need a DBA",
			Matched:   []policy.Match{{Rule: "writes-need-a-dba", Effect: policy.Approve, Message: "writes need a DBA"}},
			Approvers: &policy.Approvers{Groups: []string{"dba"}, Min: 1}, Grant: "readwrite", PolicyVersion: "pv1",
		},
		CallID: callID,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// login returns the session cookie (and its CSRF token) for id.
func (f *fixture) login(t *testing.T, id policy.Identity) (*http.Cookie, string) {
	t.Helper()
	w := httptest.NewRecorder()
	if err := f.h.newSession(w, id); err != nil {
		t.Fatal(err)
	}
	c := w.Result().Cookies()[0]
	var s session
	if err := f.h.seal.open(sessionCookie, c.Value, &s); err != nil {
		t.Fatal(err)
	}
	return c, s.CSRF
}

type response struct {
	status int
	body   string
	header http.Header
}

func (f *fixture) do(t *testing.T, method, path string, c *http.Cookie, form url.Values, hdr map[string]string) response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, origin+path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c != nil {
		r.AddCookie(c)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return response{status: w.Code, body: string(b), header: w.Result().Header}
}

var sameOrigin = map[string]string{"Origin": origin}

func (f *fixture) decide(t *testing.T, id policy.Identity, approvalID, verdict, reason string) response {
	t.Helper()
	c, csrf := f.login(t, id)
	return f.do(t, http.MethodPost, "/ui/approvals/"+approvalID, c,
		url.Values{"csrf": {csrf}, "verdict": {verdict}, "reason": {reason}}, sameOrigin)
}

func TestDecideThroughTheManager(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "UPDATE orders SET status = 'refunded' WHERE id = 42", "call-1")

	resp := f.decide(t, bob, a.ID, "approve", "ticket OPS-1")
	if resp.status != http.StatusSeeOther || resp.header.Get("Location") != "/ui/approvals/"+a.ID+"?decided=approve" {
		t.Fatalf("approve: %d %s", resp.status, resp.header.Get("Location"))
	}
	got, err := f.m.Get(context.Background(), a.ID)
	if err != nil || got.State != approval.Approved || got.Decisions[0].Via != approval.ViaWeb || got.Decisions[0].Reason != "ticket OPS-1" {
		t.Fatalf("after approve: %+v %v", got, err)
	}
	c, _ := f.login(t, bob)
	page := f.do(t, http.MethodGet, "/ui/approvals/"+a.ID+"?decided=approve", c, nil, nil)
	if page.status != 200 || !strings.Contains(page.body, "was recorded") || !strings.Contains(page.body, "ticket OPS-1") {
		t.Errorf("approval page after the decision: %d\n%s", page.status, page.body)
	}
}

// Bad input: each refusal comes from the approvals manager and is shown on
// the page with its status.
func TestDecisionRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, f *fixture, a approval.Approval)
		who     policy.Identity
		verdict string
		status  int
		want    string
	}{
		{name: "own request", who: alice, verdict: "approve", status: 403, want: "cannot decide your own request"},
		{name: "approver outside the groups", who: dave, verdict: "approve", status: 403, want: "not in any of this approval&#39;s approver groups"},
		{name: "deny outside the groups", who: dave, verdict: "deny", status: 403, want: "approver groups"},
		{name: "expired", who: bob, verdict: "approve", status: 409, want: "approval has expired",
			setup: func(_ *testing.T, f *fixture, _ approval.Approval) { f.clock.Advance(16 * time.Minute) }},
		{name: "consumed", who: carol, verdict: "approve", status: 409, want: "already been used",
			setup: func(t *testing.T, f *fixture, a approval.Approval) {
				if r := f.decide(t, bob, a.ID, "approve", ""); r.status != 303 {
					t.Fatal(r.body)
				}
				if err := f.m.Consume(context.Background(), a.ID, "call-1"); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "already denied", who: carol, verdict: "approve", status: 409, want: "was denied",
			setup: func(t *testing.T, f *fixture, a approval.Approval) { f.decide(t, bob, a.ID, "deny", "no") }},
		{name: "twice by the same approver", who: bob, verdict: "approve", status: 409, want: "already",
			setup: func(t *testing.T, f *fixture, a approval.Approval) { f.decide(t, bob, a.ID, "approve", "") }},
		{name: "unknown verdict", who: bob, verdict: "maybe", status: 400, want: "verdict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.request(t, "DELETE FROM orders WHERE id = 7", "call-1")
			if tc.setup != nil {
				tc.setup(t, f, a)
			}
			resp := f.decide(t, tc.who, a.ID, tc.verdict, "")
			if resp.status != tc.status || !strings.Contains(resp.body, tc.want) {
				t.Fatalf("got %d, want %d with %q:\n%s", resp.status, tc.status, tc.want, resp.body)
			}
		})
	}
	t.Run("unknown approval", func(t *testing.T) {
		f := newFixture(t)
		if r := f.decide(t, bob, "nope", "approve", ""); r.status != 404 {
			t.Errorf("got %d", r.status)
		}
	})
}

func TestCSRF(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "DELETE FROM orders WHERE id = 7", "call-1")
	c, csrf := f.login(t, bob)
	_, otherCSRF := f.login(t, bob) // another session's token
	for _, tc := range []struct {
		name   string
		form   url.Values
		hdr    map[string]string
		status int
	}{
		{"no token", url.Values{"verdict": {"approve"}}, sameOrigin, 403},
		{"wrong token", url.Values{"csrf": {"x" + csrf}, "verdict": {"approve"}}, sameOrigin, 403},
		{"another session's token", url.Values{"csrf": {otherCSRF}, "verdict": {"approve"}}, sameOrigin, 403},
		{"cross-origin", url.Values{"csrf": {csrf}, "verdict": {"approve"}}, map[string]string{"Origin": "https://evil.example"}, 403},
		{"cross-origin referer", url.Values{"csrf": {csrf}, "verdict": {"approve"}}, map[string]string{"Referer": "https://evil.example/x"}, 403},
		{"cross-site fetch", url.Values{"csrf": {csrf}, "verdict": {"approve"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, http.MethodPost, "/ui/approvals/"+a.ID, c, tc.form, tc.hdr)
			if r.status != tc.status || !strings.Contains(r.body, "Request refused") {
				t.Fatalf("got %d:\n%s", r.status, r.body)
			}
		})
	}
	if got, _ := f.m.Get(context.Background(), a.ID); got.State != approval.Pending || len(got.Decisions) != 0 {
		t.Fatalf("a refused POST changed the approval: %+v", got)
	}
	// No session at all: refused, never redirected.
	if r := f.do(t, http.MethodPost, "/ui/approvals/"+a.ID, nil, url.Values{"csrf": {csrf}, "verdict": {"approve"}}, sameOrigin); r.status != 401 {
		t.Errorf("no session: %d", r.status)
	}
	// Logout needs the token too.
	if r := f.do(t, http.MethodPost, "/ui/logout", c, url.Values{}, sameOrigin); r.status != 403 {
		t.Errorf("logout without a token: %d", r.status)
	}
	// The right token from the same origin is accepted.
	r := f.do(t, http.MethodPost, "/ui/approvals/"+a.ID, c, url.Values{"csrf": {csrf}, "verdict": {"approve"}}, sameOrigin)
	if r.status != http.StatusSeeOther {
		t.Fatalf("valid POST: %d\n%s", r.status, r.body)
	}
}

func TestSessionCookie(t *testing.T) {
	f := newFixture(t)
	c, _ := f.login(t, bob)
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || !c.Secure || c.Path != "/ui" {
		t.Errorf("cookie attributes: %+v", c)
	}
	if strings.Contains(c.Value, "bob") {
		t.Error("the cookie is readable")
	}
	// Tampered, expired, or no cookie: to the login, with the way back.
	tampered := *c
	tampered.Value = c.Value[:len(c.Value)-2] + "AA"
	for name, ck := range map[string]*http.Cookie{"none": nil, "tampered": &tampered} {
		r := f.do(t, http.MethodGet, "/ui/approvals?state=pending", ck, nil, nil)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/ui/login?next=%2Fui%2Fapprovals%3Fstate%3Dpending" {
			t.Errorf("%s: %d %s", name, r.status, r.header.Get("Location"))
		}
	}
	// A value sealed for the login cookie does not open as a session.
	st, _ := f.h.seal.seal(loginCookie, session{Subject: "bob", CSRF: "x", Expires: t0.Add(time.Hour)})
	if r := f.do(t, http.MethodGet, "/ui/approvals", &http.Cookie{Name: sessionCookie, Value: st}, nil, nil); r.status != http.StatusSeeOther {
		t.Errorf("a login cookie as a session: %d", r.status)
	}
	f.clock.Advance(DefaultSessionTTL)
	if r := f.do(t, http.MethodGet, "/ui/approvals", c, nil, nil); r.status != http.StatusSeeOther {
		t.Errorf("expired session: %d", r.status)
	}
	if r := f.do(t, http.MethodGet, "/ui/", nil, nil, nil); r.status != http.StatusSeeOther || r.header.Get("Location") != "/ui/approvals" {
		t.Errorf("/ui/: %d %s", r.status, r.header.Get("Location"))
	}
}

func TestLoginErrors(t *testing.T) {
	f := newFixture(t)
	// The provider is unreachable: a page that says so, and no cookie.
	r := f.do(t, http.MethodGet, "/ui/login", nil, nil, nil)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "could not reach the identity provider at "+issuer) {
		t.Errorf("unreachable provider: %d\n%s", r.status, r.body)
	}
	// A callback without the login cookie, or with another state.
	if r := f.do(t, http.MethodGet, "/ui/callback?code=x&state=y", nil, nil, nil); r.status != 400 {
		t.Errorf("callback without a login: %d", r.status)
	}
	w := httptest.NewRecorder()
	if err := f.h.setCookie(w, loginCookie, loginState{State: "s1", Nonce: "n", Verifier: "v", Next: "/ui/approvals", Expires: t0.Add(time.Minute)}, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	lc := w.Result().Cookies()[0]
	if r := f.do(t, http.MethodGet, "/ui/callback?code=x&state=s2", lc, nil, nil); r.status != 400 || !strings.Contains(r.body, "state") {
		t.Errorf("callback with another state: %d\n%s", r.status, r.body)
	}
	if r := f.do(t, http.MethodGet, "/ui/callback?error=access_denied&state=s1", lc, nil, nil); r.status != 403 || !strings.Contains(r.body, "access_denied") {
		t.Errorf("provider error: %d\n%s", r.status, r.body)
	}
	for _, next := range []string{"/ui/approvals/x", "//evil.example/ui/", "https://evil.example/", "/ui/\\evil"} {
		want := strings.HasPrefix(next, "/ui/") && !strings.Contains(next, "\\")
		if localPath(next) != want {
			t.Errorf("localPath(%q) = %v", next, !want)
		}
	}
}

func TestApprovalsPage(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "UPDATE orders SET note = '<script>alert(1)</script>' WHERE id = 1", "call-1")
	closed := f.request(t, "DELETE FROM orders WHERE id = 2", "call-2")
	f.decide(t, bob, closed.ID, "deny", "no")

	c, _ := f.login(t, bob)
	r := f.do(t, http.MethodGet, "/ui/approvals", c, nil, nil)
	for _, want := range []string{
		`<span class="kw">UPDATE</span>`, `&lt;script&gt;alert(1)&lt;/script&gt;`, "alice@example.com",
		"writes-need-a-dba", "15m 0s left", `name="csrf"`, `value="approve"`, "Decided and closed", "#" + closed.ID[:8],
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("approvals page lacks %q", want)
		}
	}
	if strings.Contains(r.body, "<script>") {
		t.Error("unescaped script in the page")
	}
	if strings.Index(r.body, a.ID[:8]) > strings.Index(r.body, closed.ID[:8]) {
		t.Error("pending approvals are not first")
	}
	// The requester sees it without a form; someone else sees nothing.
	ca, _ := f.login(t, alice)
	if r := f.do(t, http.MethodGet, "/ui/approvals", ca, nil, nil); !strings.Contains(r.body, "cannot decide your own request") || strings.Contains(r.body, `value="approve"`) {
		t.Errorf("requester's page:\n%s", r.body)
	}
	cd, _ := f.login(t, dave)
	if r := f.do(t, http.MethodGet, "/ui/approvals", cd, nil, nil); strings.Contains(r.body, a.ID[:8]) {
		t.Error("dave sees an approval he neither requested nor may decide")
	}
	if r := f.do(t, http.MethodGet, "/ui/approvals/"+a.ID, cd, nil, nil); r.status != 403 {
		t.Errorf("dave opens the approval: %d", r.status)
	}
	if r := f.do(t, http.MethodGet, "/ui/approvals?state=bogus", c, nil, nil); r.status != 400 {
		t.Errorf("bogus state: %d", r.status)
	}
	h := r.header
	if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", h)
	}
}

// recordCall appends the events the broker records for one call of who.
func (f *fixture) recordCall(t *testing.T, who policy.Identity, callID, session, effect string, approvalID string) {
	t.Helper()
	base := recorder.Event{CallID: callID, SessionID: session, Subject: who.Subject, Issuer: who.Issuer, Tool: "query_db"}
	add := func(typ string, resource, eff string, data any) {
		ev := base
		ev.Type, ev.Resource, ev.Effect = typ, resource, eff
		ev.Data, _ = json.Marshal(data)
		if _, err := f.rec.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(10 * time.Millisecond)
	}
	add(recorder.TypeCallReceived, "", "", map[string]any{"arguments": map[string]any{"resource": "orders", "sql": "SELECT id, email FROM customers"}})
	add(recorder.TypeCallDecided, "orders", effect, map[string]any{"decision": policy.Decision{
		Effect: policy.Effect(effect), Rule: "r-" + effect, Matched: []policy.Match{{Rule: "r-" + effect, Effect: policy.Effect(effect)}}, Grant: "readonly", PolicyVersion: "pv1",
	}})
	if approvalID != "" {
		add(recorder.TypeApprovalRequested, "orders", effect, map[string]any{"approval_id": approvalID})
	}
	if effect != "deny" {
		add(recorder.TypeLeaseMinted, "orders", "", map[string]any{"lease_id": "lease-" + callID, "grant": "readonly", "kind": "postgres", "expires_at": t0.Add(10 * time.Minute)})
		add(recorder.TypeCallCompleted, "orders", effect, map[string]any{"duration_ms": 3, "rows": 1, "lease_id": "lease-" + callID,
			"result": map[string]any{"columns": []map[string]string{{"name": "id", "type": "int4"}, {"name": "email", "type": "text"}}, "rows": [][]any{{1, "[EMAIL]"}}}})
	}
}

func TestTranscripts(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "SELECT id, email FROM customers", "call-a")
	f.recordCall(t, alice, "call-a", "sess-1", "approve", a.ID)
	f.recordCall(t, alice, "call-b", "sess-1", "deny", "")
	f.recordCall(t, dave, "call-d", "sess-2", "allow", "")
	f.recordCall(t, other, "call-o", "sess-3", "allow", "") // same subject as alice, other issuer
	// bob's decision on alice's call names bob as the subject.
	if _, err := f.rec.Append(context.Background(), recorder.Event{Type: recorder.TypeApprovalDecided, CallID: "call-a", Subject: bob.Subject, Issuer: issuer, Tool: "query_db", Resource: "orders", Data: json.RawMessage(`{"approval_id":"` + a.ID + `","verdict":"approve"}`)}); err != nil {
		t.Fatal(err)
	}

	get := func(id policy.Identity, path string) response {
		c, _ := f.login(t, id)
		return f.do(t, http.MethodGet, path, c, nil, nil)
	}
	// Lists: own calls only, unless a reviewer.
	for _, tc := range []struct {
		who        policy.Identity
		path       string
		want, deny []string
	}{
		{alice, "/ui/transcripts", []string{"call-a", "call-b"}, []string{"call-d", "call-o"}},
		{bob, "/ui/transcripts", nil, []string{"call-a", "call-b", "call-d", "call-o"}},
		{dave, "/ui/transcripts", []string{"call-d"}, []string{"call-a", "call-o"}},
		{rita, "/ui/transcripts", []string{"call-a", "call-b", "call-d", "call-o"}, nil},
		{rita, "/ui/transcripts?effect=deny", []string{"call-b"}, []string{"call-a", "call-d"}},
		{rita, "/ui/transcripts?subject=dave", []string{"call-d"}, []string{"call-a"}},
		{alice, "/ui/transcripts?subject=dave", nil, []string{"call-d"}}, // not a reviewer: the filter is ignored
		{rita, "/ui/transcripts?session=sess-1&tool=query_db&resource=orders", []string{"call-a", "call-b"}, []string{"call-d"}},
	} {
		r := get(tc.who, tc.path)
		if r.status != 200 || !strings.Contains(r.body, "Hash chain verified") {
			t.Errorf("%s %s: %d\n%s", tc.who.Subject, tc.path, r.status, r.body)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.body, "/ui/transcripts/calls/"+w) {
				t.Errorf("%s %s: %s missing", tc.who.Subject, tc.path, w)
			}
		}
		for _, w := range tc.deny {
			if strings.Contains(r.body, "/ui/transcripts/calls/"+w) {
				t.Errorf("%s %s: %s shown", tc.who.Subject, tc.path, w)
			}
		}
	}
	if r := get(rita, "/ui/transcripts?effect=maybe"); r.status != 400 {
		t.Errorf("bad effect: %d", r.status)
	}
	if r := get(rita, "/ui/transcripts?since=yesterday"); r.status != 400 {
		t.Errorf("bad since: %d", r.status)
	}

	// One call: the requester, the approver (through the approval), a
	// reviewer; not someone else.
	for _, tc := range []struct {
		who    policy.Identity
		path   string
		status int
	}{
		{alice, "/ui/transcripts/calls/call-a", 200},
		{bob, "/ui/transcripts/calls/call-a", 200}, // the approval is named in the call's events
		{rita, "/ui/transcripts/calls/call-a", 200},
		{dave, "/ui/transcripts/calls/call-a", 403},
		{dave, "/ui/transcripts/calls/call-a?approval=" + a.ID, 403},
		{bob, "/ui/transcripts/calls/call-b", 403},
		{bob, "/ui/transcripts/calls/call-b?approval=" + a.ID, 403}, // an approval of another call
		{other, "/ui/transcripts/calls/call-b", 403},                // same subject, other issuer
		{alice, "/ui/transcripts/calls/nope", 404},
	} {
		if r := get(tc.who, tc.path); r.status != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.who.Subject, tc.path, r.status, tc.status)
		}
	}
	r := get(alice, "/ui/transcripts/calls/call-a")
	for _, want := range []string{
		"Call received", `<span class="kw">SELECT</span>`, "Policy decided: approve", "r-approve", "Approval requested",
		"Credential lease minted", "lease-call-a", "readonly", "2025-06-01 12:10:00 UTC", "Result returned",
		"<th>email</th>", "<td>[EMAIL]</td>", "Approval decided: approve", "Hash chain verified",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("call page lacks %q", want)
		}
	}

	// Export: the same selection, as JSON lines.
	exp := get(alice, "/ui/transcripts/export")
	if exp.status != 200 || !strings.HasPrefix(exp.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export: %d %v", exp.status, exp.header)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(exp.body), "\n") {
		var ev recorder.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		calls[ev.CallID]++
	}
	if calls["call-a"] != 6 || calls["call-b"] != 2 || len(calls) != 2 {
		t.Errorf("alice's export: %v", calls)
	}
	full := get(rita, "/ui/transcripts/export")
	rep, err := recorder.VerifyJSONL(strings.NewReader(full.body))
	if err != nil || !rep.OK || rep.Count != 16 {
		t.Errorf("reviewer's full export: %+v %v", rep, err)
	}
}

func TestChainBadgeShowsABreak(t *testing.T) {
	f := newFixture(t)
	f.recordCall(t, alice, "call-a", "s", "allow", "")
	if _, err := f.db.Exec(`UPDATE transcript_events SET data = '{"arguments":{"sql":"SELECT 2"}}' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	c, _ := f.login(t, alice)
	r := f.do(t, http.MethodGet, "/ui/transcripts", c, nil, nil)
	if !strings.Contains(r.body, "Hash chain broken at event 1 (changed)") {
		t.Errorf("no broken badge:\n%s", r.body)
	}
}

func TestHighlighters(t *testing.T) {
	for _, tc := range []struct {
		got  string
		want string
	}{
		{string(highlightSQL(`select "x" from t where a = 'it''s' -- <b>`)), `<span class="kw">select</span> <span class="id">&#34;x&#34;</span> <span class="kw">from</span> t <span class="kw">where</span> a = <span class="st">&#39;it&#39;&#39;s&#39;</span> <span class="cm">-- &lt;b&gt;</span>`},
		{string(highlightSQL("SELECT $1, 2.5 /* c */ FROM t")), `<span class="kw">SELECT</span> <span class="pm">$1</span>, <span class="nu">2.5</span> <span class="cm">/* c */</span> <span class="kw">FROM</span> t`},
		{string(highlightSQL("'unterminated <x>")), `&#39;unterminated &lt;x&gt;`}, // the scanner refuses it: plain
		{string(highlightShell(`ls -la /var/log | grep "err<" && echo $HOME`)), `<span class="kw">ls</span> <span class="fl">-la</span> /var/log <span class="op">|</span> <span class="kw">grep</span> <span class="st">&#34;err&lt;&#34;</span> <span class="op">&amp;&amp;</span> <span class="kw">echo</span> <span class="pm">$HOME</span>`},
	} {
		if tc.got != tc.want {
			t.Errorf("got\n%s\nwant\n%s", tc.got, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	f := newFixture(t)
	base := f.h.cfg
	for name, mutate := range map[string]func(*Config){
		"no client":         func(c *Config) { c.ClientID = "" },
		"short session key": func(c *Config) { c.SessionKey = []byte("short") },
		"relative url":      func(c *Config) { c.PublicURL = "/mcp" },
		"no issuer":         func(c *Config) { c.OIDC.Issuer = "" },
		"no approvals":      func(c *Config) { c.Approvals = nil },
	} {
		c := base
		mutate(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := base
	c.Scopes = []string{"email"}
	h, err := New(c)
	if err != nil || h.cfg.Scopes[0] != "openid" {
		t.Errorf("openid is not added: %v %v", h.cfg.Scopes, err)
	}
	c.PublicURL = "http://127.0.0.1:8080/mcp"
	h, _ = New(c)
	if h.secure || h.origin != "http://127.0.0.1:8080" {
		t.Errorf("http origin: %v %s", h.secure, h.origin)
	}
}
