package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	loginToken = regexp.MustCompile(`name="token" value="([^"]+)"`)
	formCSRF   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// uiClient is a person's browser on one replica's web UI in local mode
// (auth.mode none on loopback, broker/web/local.go): it logs in as name
// with groups and keeps the session cookie. Redirects are not followed, so
// each answer can be checked.
type uiClient struct {
	t    *testing.T
	base string
	http *http.Client
}

func newUIClient(t *testing.T, port int, name, groups string) *uiClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &uiClient{t: t, base: "http://127.0.0.1:" + strconv.Itoa(port), http: &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	status, page := c.get("/ui/login")
	m := loginToken.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil {
		t.Fatalf("GET /ui/login: %d, no login token:\n%s", status, page)
	}
	if status, page := c.post("/ui/login", url.Values{"token": {m[1]}, "name": {name}, "groups": {groups}}); status != http.StatusSeeOther {
		t.Fatalf("POST /ui/login: %d:\n%s", status, page)
	}
	return c
}

func (c *uiClient) get(path string) (int, string) {
	c.t.Helper()
	resp, err := c.http.Get(c.base + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// post sends a form from this UI's own page (its Origin).
func (c *uiClient) post(path string, form url.Values) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.base)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReplicasDecidedOnBOverHTTP: two airlock serve processes on one
// PostgreSQL store. A write held for approval on replica A is approved by a
// person through replica B's HTTP endpoint (its web UI in local mode: the
// login form, then the approval's form with its CSRF token; with auth.mode
// none the JSON API is not served, it takes OIDC bearer tokens). The held
// call on A completes within 1 s of the decision, once, and the decision
// is recorded as made through the web.
func TestReplicasDecidedOnBOverHTTP(t *testing.T) {
	rs := newReplicaSetWith(t, 2, func(cfg string) string {
		return strings.Replace(cfg, "approvals: {wait: 1s, expire: 5m}\n", "approvals: {wait: 30s, expire: 5m}\n", 1)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	a := mcpClient(t, ctx, rs.ports[0])
	type result struct {
		text    string
		isError bool
		err     error
		at      time.Time
	}
	done := make(chan result, 1)
	go func() {
		res, err := queryDB(ctx, a, "UPDATE orders SET status = 'shipped' WHERE id = 5")
		done <- result{text: resultText(res), isError: res != nil && res.IsError, err: err, at: time.Now()}
	}()

	var id string
	for deadline := time.Now().Add(20 * time.Second); id == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no pending approval in the store within 20s")
		}
		if got := rs.d.pg.Query(t, "airlock", `SELECT id FROM approvals WHERE state = 'pending'`); len(got) == 1 {
			id = got[0]
		}
	}

	// Dora, a DBA, opens the approval on replica B's pages.
	b := newUIClient(t, rs.ports[1], "dora", "dba")
	status, page := b.get("/ui/approvals/" + id)
	m := formCSRF.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil || !strings.Contains(page, `value="approve"`) || !strings.Contains(page, "shipped") {
		t.Fatalf("GET /ui/approvals/%s on replica B: %d, no approve form:\n%s", id, status, page)
	}
	select {
	case r := <-done:
		t.Fatalf("the held call returned before any decision: %+v", r)
	default:
	}

	status, page = b.post("/ui/approvals/"+id, url.Values{"csrf": {m[1]}, "verdict": {"approve"}, "reason": {"approved on replica B's web UI"}})
	posted := time.Now()
	if status != http.StatusSeeOther {
		t.Fatalf("POST /ui/approvals/%s on replica B: %d:\n%s", id, status, page)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the held call on replica A did not return within 30s of the decision")
	}
	if r.err != nil || r.isError {
		t.Fatalf("the approved call failed: %v %s", r.err, r.text)
	}

	d := decisionOf(t, rs, id)
	decided, consumed := d.decided, d.consumed
	lag := r.at.Sub(decided)
	t.Logf("decision through replica B's HTTP endpoint → approval consumed on replica A %s → call result on A %s (B answered the POST %s after its decision)",
		consumed.Sub(decided).Round(time.Millisecond), lag.Round(time.Millisecond), posted.Sub(decided).Round(time.Millisecond))
	if lag > time.Second {
		t.Errorf("the held call completed %s after the decision, want within 1s", lag)
	}
	if d.via != "web" || d.subject != "dora" {
		t.Errorf("decision via %q by %q, want via web by dora", d.via, d.subject)
	}
	if st := rs.d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 5"); len(st) != 1 || st[0] != "shipped" {
		t.Errorf("order 5 status = %v, want shipped", st)
	}
	if st := rs.d.pg.Query(t, "airlock", `SELECT state FROM approvals WHERE id = $1`, id); len(st) != 1 || st[0] != "consumed" {
		t.Errorf("approval state = %v, want consumed", st)
	}
}
