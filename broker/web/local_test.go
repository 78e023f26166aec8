package web

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

const localURL = "http://127.0.0.1:8080"

// demoUser is the MCP caller of auth.mode none: no issuer, method none.
var demoUser = policy.Identity{Subject: "demo-user", Email: "demo@example.com", Groups: []string{"eng"}, Method: "none"}

func newLocalFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{clock: &clock{now: t0}, db: st.DB()}
	if f.m, err = approval.New(approval.Config{Store: st, Wait: time.Second, Expire: 15 * time.Minute, Clock: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if f.rec, err = recorder.New(st.DB(), recorder.WithClock(f.clock.Now)); err != nil {
		t.Fatal(err)
	}
	f.h, err = New(Config{
		Approvals: f.m, Recorder: f.rec, Local: true, LocalGroups: []string{"dba"},
		PublicURL: localURL + "/mcp", SessionKey: make([]byte, 32), Clock: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// localRequest is a request as it arrives on a listener at local from
// remote, naming host.
func localRequest(method, path, local, remote, host string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, "http://"+host+path, body)
	laddr, _ := net.ResolveTCPAddr("tcp", local)
	r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, laddr))
	r.RemoteAddr = remote
	r.Host = host
	return r
}

func (f *fixture) serveLocal(r *http.Request, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	for _, c := range cookies {
		if c != nil {
			r.AddCookie(c)
		}
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// Local mode is never offered on an address other than loopback: not by
// configuration, not per request.
func TestLocalModeIsLoopbackOnly(t *testing.T) {
	f := newLocalFixture(t)
	base := f.h.cfg
	for _, u := range []string{"http://10.0.0.5:8080/mcp", "http://airlock.example.com/mcp", "https://0.0.0.0:8080/mcp", "http://[2001:db8::1]:80/mcp"} {
		c := base
		c.PublicURL = u
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("local mode at %s: %v", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/mcp", "http://localhost:9/mcp", "http://[::1]:8080/mcp"} {
		c := base
		c.PublicURL = u
		if _, err := New(c); err != nil {
			t.Errorf("local mode at %s: %v", u, err)
		}
	}
	for _, tc := range []struct {
		name                string
		local, remote, host string
		status              int
	}{
		{"loopback", "127.0.0.1:8080", "127.0.0.1:50000", "127.0.0.1:8080", 200},
		{"localhost", "127.0.0.1:8080", "127.0.0.1:50000", "localhost:8080", 200},
		{"ipv6 loopback", "[::1]:8080", "[::1]:50000", "[::1]:8080", 200},
		{"arrived on a network address", "10.0.0.5:8080", "10.0.0.9:50000", "10.0.0.5:8080", 403},
		{"from another machine", "127.0.0.1:8080", "10.0.0.9:50000", "127.0.0.1:8080", 403},
		{"a rebound DNS name", "127.0.0.1:8080", "127.0.0.1:50000", "evil.example:8080", 403},
	} {
		w := f.serveLocal(localRequest(http.MethodGet, "/ui/login", tc.local, tc.remote, tc.host, nil))
		body := w.Body.String()
		if w.Code != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, w.Code, tc.status)
		}
		form := strings.Contains(body, `name="name"`)
		if form != (tc.status == 200) {
			t.Errorf("%s: the form is offered: %v", tc.name, form)
		}
	}
	// No local address at all (not from a listener): refused.
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, localURL+"/ui/login", nil))
	if w.Code != 403 {
		t.Errorf("without a local address: %d", w.Code)
	}
}

var tokenField = regexp.MustCompile(`name="token" value="([^"]+)"`)

// localLogin logs in through the form as name with groups and returns the
// session cookie.
func (f *fixture) localLogin(t *testing.T, name, groups string, extra url.Values) (*http.Cookie, *httptest.ResponseRecorder) {
	t.Helper()
	w := f.serveLocal(localRequest(http.MethodGet, "/ui/login?next=%2Fui%2Fapprovals", "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", nil))
	m := tokenField.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no token in the login form:\n%s", w.Body.String())
	}
	lc := w.Result().Cookies()[0]
	form := url.Values{"token": {m[1]}, "name": {name}, "groups": {groups}}
	for k, v := range extra {
		form[k] = v
	}
	r := localRequest(http.MethodPost, "/ui/login", "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", localURL)
	w = f.serveLocal(r, lc)
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return c, w
		}
	}
	return nil, w
}

func (f *fixture) requestAs(t *testing.T, who policy.Identity, sql string) approval.Approval {
	t.Helper()
	args, _ := json.Marshal(map[string]any{"resource": "shop", "sql": sql})
	sum := sha256.Sum256(args)
	a, _, err := f.m.Request(context.Background(), approval.RequestInput{
		Requester: who, Tool: "query_db", Resource: "shop", Arguments: args, ArgumentsDigest: sum[:],
		Decision: policy.Decision{Effect: policy.Approve, Rule: "writes-need-a-dba", Approvers: &policy.Approvers{Groups: []string{"dba"}, Min: 1}, Grant: "readwrite", PolicyVersion: "pv1"},
		CallID:   "call-" + sql[:6],
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A person picks a name and groups and decides as that identity, under the
// approvals rules: the agent's own name cannot approve its call.
func TestLocalLoginAndDecide(t *testing.T) {
	f := newLocalFixture(t)
	a := f.requestAs(t, demoUser, "UPDATE orders SET status = 'shipped' WHERE id = 3")

	c, w := f.localLogin(t, "dora", "dba", nil)
	if c == nil || w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/approvals" {
		t.Fatalf("login: %d %s\n%s", w.Code, w.Header().Get("Location"), w.Body.String())
	}
	page := f.serveLocal(localRequest(http.MethodGet, "/ui/approvals", "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", nil), c)
	body := page.Body.String()
	for _, want := range []string{"Local mode", "dora", `<span class="group">dba</span>`, `value="approve"`, "demo@example.com"} {
		if !strings.Contains(body, want) {
			t.Errorf("approvals page lacks %q", want)
		}
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)[1]
	post := func(c *http.Cookie, origin string) *httptest.ResponseRecorder {
		form := url.Values{"csrf": {csrf}, "verdict": {"approve"}, "reason": {"demo"}}
		r := localRequest(http.MethodPost, "/ui/approvals/"+a.ID, "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", origin)
		return f.serveLocal(r, c)
	}
	if w := post(c, "http://evil.example"); w.Code != 403 {
		t.Errorf("a cross-origin decision: %d", w.Code)
	}
	if w := post(c, localURL); w.Code != http.StatusSeeOther {
		t.Fatalf("decide: %d\n%s", w.Code, w.Body.String())
	}
	got, _ := f.m.Get(context.Background(), a.ID)
	if got.State != approval.Approved || got.Decisions[0].Approver.Subject != "dora" || got.Decisions[0].Approver.Issuer != "" || got.Decisions[0].Via != approval.ViaWeb {
		t.Fatalf("after the decision: %+v", got)
	}

	// The agent's own name, even with the approver group, may not decide.
	b := f.requestAs(t, demoUser, "DELETE FROM orders WHERE id = 4")
	self, _ := f.localLogin(t, "demo-user", "dba eng", nil)
	page = f.serveLocal(localRequest(http.MethodGet, "/ui/approvals/"+b.ID, "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", nil), self)
	if strings.Contains(page.Body.String(), `value="approve"`) || !strings.Contains(page.Body.String(), "cannot decide your own request") {
		t.Errorf("the requester is offered the decision:\n%s", page.Body.String())
	}
}

func TestLocalLoginRefusals(t *testing.T) {
	f := newLocalFixture(t)
	// No token (a form posted from elsewhere), or another site's Origin.
	r := localRequest(http.MethodPost, "/ui/login", "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", strings.NewReader("name=dora&groups=dba"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if w := f.serveLocal(r); w.Code != 403 || hasSession(w) {
		t.Errorf("without the login cookie and token: %d", w.Code)
	}
	if c, w := f.localLogin(t, "dora", "dba", url.Values{"token": {"forged"}}); c != nil || w.Code != 403 {
		t.Errorf("a forged token: %d", w.Code)
	}
	if c, w := f.localLogin(t, "", "dba", nil); c != nil || w.Code != 400 {
		t.Errorf("no name: %d", w.Code)
	}
	// Red team 4d: the transcript records decisions under the name, so it
	// is one line of UTF-8 without control characters (a NUL was taken).
	for _, name := range []string{"dora\x00", "dora\x07", "dora\xff"} {
		if c, w := f.localLogin(t, name, "dba", nil); c != nil || w.Code != 400 {
			t.Errorf("name %q: %d", name, w.Code)
		}
	}
	// An OIDC session (same key) does not open in local mode, nor a local
	// one in OIDC mode.
	oidc := newFixture(t)
	oc, _ := oidc.login(t, bob)
	w := f.serveLocal(localRequest(http.MethodGet, "/ui/approvals", "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", nil), oc)
	if w.Code != http.StatusSeeOther {
		t.Errorf("an OIDC session in local mode: %d", w.Code)
	}
	lc, _ := f.localLogin(t, "dora", "dba", nil)
	if r := oidc.do(t, http.MethodGet, "/ui/approvals", lc, nil, nil); r.status != http.StatusSeeOther {
		t.Errorf("a local session in OIDC mode: %d", r.status)
	}
	// OIDC mode has no login form.
	if r := oidc.do(t, http.MethodPost, "/ui/login", nil, url.Values{"name": {"x"}}, sameOrigin); r.status != 405 && r.status != 404 {
		t.Errorf("POST /ui/login in OIDC mode: %d", r.status)
	}
}

func hasSession(w *httptest.ResponseRecorder) bool {
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return true
		}
	}
	return false
}

// The inbox: an empty state that says what will appear, search over the
// SQL and the command, and pages.
func TestInbox(t *testing.T) {
	f := newFixture(t)
	c, _ := f.login(t, bob)
	r := f.do(t, http.MethodGet, "/ui/approvals", c, nil, nil)
	if !strings.Contains(r.body, `id="inbox-empty"`) || strings.Contains(r.body, "Waiting for a decision") {
		t.Errorf("empty inbox:\n%s", r.body)
	}
	for i := range 45 {
		f.request(t, "UPDATE orders SET status = 'refunded' WHERE id = "+itoa(1000+i), "call-"+itoa(i))
		f.clock.Advance(time.Second)
	}
	f.request(t, "DELETE FROM customers WHERE email = 'x@example.com'", "call-del")
	r = f.do(t, http.MethodGet, "/ui/approvals", c, nil, nil)
	if n := strings.Count(r.body, `class="card approval open"`); n != approvalsPerPage || !strings.Contains(r.body, "page 1 of 3 · 46 approvals") || !strings.Contains(r.body, `href="/ui/approvals?page=2"`) {
		t.Errorf("page 1: %d cards\n%s", n, r.body)
	}
	r = f.do(t, http.MethodGet, "/ui/approvals?page=3", c, nil, nil)
	if n := strings.Count(r.body, `class="card approval open"`); n != 6 || !strings.Contains(r.body, `rel="prev"`) || strings.Contains(r.body, `rel="next"`) {
		t.Errorf("page 3: %d cards", n)
	}
	// Search: the SQL text, case-insensitive; the query stays in the links.
	r = f.do(t, http.MethodGet, "/ui/approvals?q=delete+from+CUSTOMERS", c, nil, nil)
	if n := strings.Count(r.body, `class="card approval open"`); n != 1 || !strings.Contains(r.body, "x@example.com") || !strings.Contains(r.body, "1 approval match") {
		t.Errorf("search: %d cards\n%s", n, r.body)
	}
	r = f.do(t, http.MethodGet, "/ui/approvals?q=id+%3D+102", c, nil, nil) // ids 1020-1029
	if n := strings.Count(r.body, `class="card approval open"`); n != 10 {
		t.Errorf("search for id = 102: %d cards", n)
	}
	r = f.do(t, http.MethodGet, "/ui/approvals?q=nothing-like-this", c, nil, nil)
	if !strings.Contains(r.body, `id="search-empty"`) || strings.Contains(r.body, `id="inbox-empty"`) {
		t.Errorf("no match:\n%s", r.body)
	}
	// A countdown the script keeps live.
	if !strings.Contains(r.body, `src="/ui/static/countdown.js"`) || !strings.Contains(f.do(t, http.MethodGet, "/ui/approvals", c, nil, nil).body, `data-expires="2025-06-01T12:`) {
		t.Error("no live countdown")
	}
	if js := f.do(t, http.MethodGet, "/ui/static/countdown.js", nil, nil, nil); js.status != 200 || !strings.Contains(js.body, "data-expires") {
		t.Errorf("countdown.js: %d", js.status)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP: %s", csp)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
