package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/broker/web"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// screenshotsEnv names a directory: when set, the browser test saves
// approvals.png and transcript.png there (docs/screenshots in the repo).
const screenshotsEnv = "AIRLOCK_SCREENSHOTS"

// A person logs in to the web UI through a real OIDC provider (Ory Hydra,
// authorization code + PKCE, with a login and consent app served here) in
// a real browser (Chromium driven over CDP), approves a held call, sees
// the decision take effect (the waiting call consumes the approval and
// completes), and opens the call's transcript.
func TestBrowserApprovesAHeldCall(t *testing.T) {
	chromium := testenv.ChromiumPath(t)

	// The login and consent app: Hydra sends the browser here; it logs in
	// bob, a DBA, and puts his email and groups in the ID token.
	bob := person{Subject: "bob", Email: "bob@example.com", Groups: []string{"dba", "ops"}}
	var adminURL string
	loginApp := httptest.NewServer(loginConsentApp(t, &adminURL, bob))
	t.Cleanup(loginApp.Close)
	hydra := testenv.HydraWith(t, testenv.HydraOptions{LoginURL: loginApp.URL + "/login", ConsentURL: loginApp.URL + "/consent"})
	adminURL = hydra.AdminURL()

	// Airlock's UI, on a store with a held call.
	var ui http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ui.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	clientID, clientSecret := createUIClient(t, hydra.AdminURL(), srv.URL+"/ui/callback")

	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := approval.New(approval.Config{
		Store: st, PublicURL: srv.URL + "/mcp", Wait: 50 * time.Second, Expire: 15 * time.Minute,
		PollInterval: 50 * time.Millisecond,
		OnEvent: func(ctx context.Context, ev approval.Event) error { // as airlock serve records them
			return broker.RecordApprovalEvent(ctx, rec, ev)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr.Start(context.Background())
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	h, err := web.New(web.Config{
		Approvals: mgr, Recorder: rec,
		OIDC:     authn.OIDCConfig{Issuer: hydra.Issuer(), Audience: srv.URL + "/mcp"},
		ClientID: clientID, ClientSecret: clientSecret, PublicURL: srv.URL + "/mcp",
		SessionKey: key, ReviewersGroup: "auditors",
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", h) // as airlock serve mounts it
	ui = mux

	iss := hydra.Issuer()
	alice := policy.Identity{Subject: "alice", Email: "alice@example.com", Issuer: iss, Groups: []string{"eng"}, Method: "oidc"}
	carol := policy.Identity{Subject: "carol", Email: "carol@example.com", Issuer: iss, Groups: []string{"sre"}, Method: "oidc"}
	bobID := policy.Identity{Subject: bob.Subject, Email: bob.Email, Issuer: iss, Groups: bob.Groups, Method: "oidc"}
	history(t, rec, bobID) // bob's own earlier calls, for the transcripts page

	// alice's write is held for a DBA; carol's restart waits for ops; an
	// older request was denied.
	held := holdCall(t, rec, mgr, alice, "query_db", "orders", "writes-need-a-dba", []string{"dba"},
		map[string]any{"resource": "orders", "sql": "UPDATE orders\n   SET status = 'refunded', refunded_at = now()\n WHERE id = 1042\nRETURNING id, status, customer_email"})
	holdCall(t, rec, mgr, carol, "run_ssh", "web-1", "restarts-need-ops", []string{"ops"},
		map[string]any{"resource": "web-1", "command": "sudo systemctl restart nginx && journalctl -u nginx -n 20 --no-pager"})
	old := holdCall(t, rec, mgr, alice, "query_db", "orders", "writes-need-a-dba", []string{"dba"},
		map[string]any{"resource": "orders", "sql": "DELETE FROM orders WHERE created_at < '2020-01-01'"})
	dan := policy.Identity{Subject: "dan", Email: "dan@example.com", Issuer: iss, Groups: []string{"dba"}}
	if _, err := mgr.Decide(context.Background(), old.approval.ID, dan, approval.Deny, "too broad: archive first", approval.ViaAPI); err != nil {
		t.Fatal(err)
	}

	// The held call waits for the decision, as the broker does, then runs.
	done := make(chan error, 1)
	go func() { done <- held.wait(context.Background(), rec, mgr) }()

	// The browser.
	ctx, cancel := testenv.Browser(t, chromium)
	defer cancel()
	shots := os.Getenv(screenshotsEnv)
	card := "#approval-" + held.approval.ID
	started := time.Now()
	err = chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/ui/"), // → /ui/login → Hydra → login app → consent app → /ui/callback
		chromedp.WaitVisible(chromedp.CSS(card)),
	)
	if err != nil {
		t.Fatalf("logging in and opening the approvals page: %v", err)
	}
	t.Logf("login through Hydra and first page: %s", time.Since(started).Round(time.Millisecond))
	page := text(t, ctx, "body")
	for _, want := range []string{"bob@example.com", "alice@example.com", "RETURNING", "writes-need-a-dba", "left", "systemctl restart nginx", "Decided and closed"} {
		if !strings.Contains(page, want) {
			t.Errorf("approvals page lacks %q:\n%s", want, page)
		}
	}
	if shots != "" {
		screenshot(t, ctx, filepath.Join(shots, "approvals.png"))
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(card+" textarea[name=reason]"), "OPS-1042: refund confirmed with finance"),
		chromedp.Click(chromedp.CSS(card+` button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
	)
	if err != nil {
		t.Fatalf("approving: %v", err)
	}
	if flash := text(t, ctx, ".flash.ok"); !strings.Contains(flash, "approve") {
		t.Errorf("after approving: %q", flash)
	}

	// The decision takes effect: the waiting call consumes the approval and completes.
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the held call: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the held call did not proceed after the approval")
	}
	a, err := mgr.Get(context.Background(), held.approval.ID)
	if err != nil || a.State != approval.Consumed || a.ConsumedBy != held.callID || len(a.Decisions) != 1 {
		t.Fatalf("approval after the browser's decision: %+v %v", a, err)
	}
	if d := a.Decisions[0]; d.Approver.Subject != "bob" || d.Approver.Issuer != iss || d.Via != approval.ViaWeb || d.Reason != "OPS-1042: refund confirmed with finance" {
		t.Errorf("decision: %+v", d)
	}
	if err := mgr.Consume(context.Background(), held.approval.ID, "another-call"); !errors.Is(err, approval.ErrConsumed) {
		t.Errorf("a second use: %v", err)
	}

	// Its transcript, reached from the approval.
	err = chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/ui/approvals/"+held.approval.ID),
		chromedp.WaitVisible(chromedp.CSS(".links a")),
		chromedp.Click(chromedp.CSS(".links a")),
		chromedp.WaitVisible(chromedp.CSS(".badge.chain-ok")),
	)
	if err != nil {
		t.Fatalf("opening the transcript: %v", err)
	}
	transcript := text(t, ctx, "main")
	for _, want := range []string{
		"Hash chain verified", "Call received", "Policy decided: approve", "writes-need-a-dba", "Approval requested",
		"Approval decided: approve", "bob", "Credential lease minted", "lease-" + held.callID[:8], "readwrite",
		"Result returned", "refunded", "[EMAIL]",
	} {
		if !strings.Contains(transcript, want) {
			t.Errorf("transcript page lacks %q:\n%s", want, transcript)
		}
	}
	if shots != "" {
		screenshot(t, ctx, filepath.Join(shots, "transcript.png"))
	}

	// bob's own calls on the transcripts page; then log out.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/ui/transcripts"), chromedp.WaitVisible(chromedp.CSS("table.calls"))); err != nil {
		t.Fatalf("transcripts page: %v", err)
	}
	list := text(t, ctx, "main")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("button.link")), chromedp.WaitVisible(chromedp.CSS("main .card"))); err != nil {
		t.Fatalf("logout: %v", err)
	}
	out := text(t, ctx, "main")
	if !strings.Contains(list, "list_tables") || !strings.Contains(list, "Hash chain verified") || strings.Contains(list, held.callID[:8]) {
		t.Errorf("bob's transcripts page:\n%s", list)
	}
	if !strings.Contains(out, "Logged out") {
		t.Errorf("after logout: %s", out)
	}
}

type person struct {
	Subject, Email string
	Groups         []string
}

// loginConsentApp accepts every login challenge as who, and every consent
// challenge with the requested scopes and who's email and groups in the ID
// token, through Hydra's admin API.
func loginConsentApp(t *testing.T, adminURL *string, who person) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		ch := r.URL.Query().Get("login_challenge")
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		if err := hydraAdmin(http.MethodPut, *adminURL+"/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(ch),
			map[string]any{"subject": who.Subject, "remember": false}, &out); err != nil {
			t.Errorf("accepting login: %v", err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, out.RedirectTo, http.StatusFound)
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		ch := url.QueryEscape(r.URL.Query().Get("consent_challenge"))
		var req struct {
			Scope    []string `json:"requested_scope"`
			Audience []string `json:"requested_access_token_audience"`
		}
		if err := hydraAdmin(http.MethodGet, *adminURL+"/admin/oauth2/auth/requests/consent?consent_challenge="+ch, nil, &req); err != nil {
			t.Errorf("reading consent: %v", err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		err := hydraAdmin(http.MethodPut, *adminURL+"/admin/oauth2/auth/requests/consent/accept?consent_challenge="+ch, map[string]any{
			"grant_scope": req.Scope, "grant_access_token_audience": req.Audience, "remember": false,
			"session": map[string]any{"id_token": map[string]any{"email": who.Email, "groups": who.Groups}},
		}, &out)
		if err != nil {
			t.Errorf("accepting consent: %v", err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, out.RedirectTo, http.StatusFound)
	})
	return mux
}

// createUIClient registers the UI's confidential authorization code client.
func createUIClient(t *testing.T, adminURL, redirect string) (id, secret string) {
	t.Helper()
	var out struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	err := hydraAdmin(http.MethodPost, adminURL+"/admin/clients", map[string]any{
		"client_name": "airlock-ui", "grant_types": []string{"authorization_code"}, "response_types": []string{"code"},
		"redirect_uris": []string{redirect}, "scope": "openid profile email", "token_endpoint_auth_method": "client_secret_basic",
	}, &out)
	if err != nil {
		t.Fatalf("creating the UI's client: %v", err)
	}
	return out.ID, out.Secret
}

func hydraAdmin(method, u string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, raw)
	}
	return json.Unmarshal(raw, out)
}

// heldCall is a call the broker holds for approval.
type heldCall struct {
	callID   string
	who      policy.Identity
	tool     string
	resource string
	approval approval.Approval
}

// holdCall records a call up to its approval request, as the broker does.
func holdCall(t *testing.T, rec *recorder.Recorder, mgr *approval.Manager, who policy.Identity, tool, resource, rule string, groups []string, args map[string]any) *heldCall {
	t.Helper()
	c := &heldCall{callID: newID(), who: who, tool: tool, resource: resource}
	raw, _ := json.Marshal(args)
	sum := sha256.Sum256(raw)
	decision := policy.Decision{
		Effect: policy.Approve, Rule: rule, Message: "changes need a second pair of eyes",
		Matched: []policy.Match{
			{Rule: "engineers-use-" + resource, Effect: policy.Allow},
			{Rule: rule, Effect: policy.Approve, Message: "changes need a second pair of eyes"},
		},
		Grant: "readwrite", Approvers: &policy.Approvers{Groups: groups, Min: 1}, PolicyVersion: "3f9a1c0d5e7b2a46",
	}
	c.record(t, rec, recorder.TypeCallReceived, "", map[string]any{"arguments": args})
	c.record(t, rec, recorder.TypeCallDecided, "approve", map[string]any{"decision": decision, "facts": map[string]any{"sql": map[string]any{"read_only": false}}})
	a, _, err := mgr.Request(context.Background(), approval.RequestInput{
		Requester: who, Tool: tool, Resource: resource, Arguments: raw, ArgumentsDigest: sum[:], Decision: decision, CallID: c.callID,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.approval = a
	c.record(t, rec, recorder.TypeApprovalRequested, "approve", map[string]any{"approval_id": a.ID, "approvers": groups, "expires_at": a.ExpiresAt})
	return c
}

func (c *heldCall) record(t testing.TB, rec *recorder.Recorder, typ, effect string, data any) {
	if err := c.append(rec, typ, effect, data); err != nil {
		t.Fatal(err)
	}
}

func (c *heldCall) append(rec *recorder.Recorder, typ, effect string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	ev := recorder.Event{Type: typ, CallID: c.callID, SessionID: "mcp-session-" + c.who.Subject, Subject: c.who.Subject, Issuer: c.who.Issuer,
		Tool: c.tool, Effect: effect, Data: raw}
	if typ != recorder.TypeCallReceived {
		ev.Resource = c.resource
	}
	_, err = rec.Append(context.Background(), ev)
	return err
}

// wait does what the broker does with a held call: wait for the decision,
// consume the approval, mint a lease, run, record the (masked) result.
func (c *heldCall) wait(ctx context.Context, rec *recorder.Recorder, mgr *approval.Manager) error {
	a, err := mgr.Wait(ctx, c.approval.ID, 0, nil)
	if err != nil {
		return err
	}
	if a.State != approval.Approved {
		return fmt.Errorf("approval is %s", a.State)
	}
	if err := mgr.Consume(ctx, a.ID, c.callID); err != nil {
		return err
	}
	lease := "lease-" + c.callID[:8]
	if err := c.append(rec, recorder.TypeLeaseMinted, "", map[string]any{
		"lease_id": lease, "grant": "readwrite", "kind": "postgres", "handle": "airlock_rw_" + c.callID[:6],
		"expires_at": time.Now().Add(5 * time.Minute).UTC(), "state": "active",
	}); err != nil {
		return err
	}
	return c.append(rec, recorder.TypeCallCompleted, "approve", map[string]any{
		"duration_ms": 4, "truncated": false, "masked": map[string]int{"email": 1}, "lease_id": lease, "lease_reused": false, "rows": 1,
		"result": map[string]any{
			"columns": []map[string]string{{"name": "id", "type": "int4"}, {"name": "status", "type": "text"}, {"name": "customer_email", "type": "text"}},
			"rows":    [][]any{{1042, "refunded", "[EMAIL]"}}, "row_count": 1, "tag": "UPDATE 1",
		},
	})
}

// history records a few allowed calls by who.
func history(t *testing.T, rec *recorder.Recorder, who policy.Identity) {
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"list_tables", map[string]any{"resource": "orders"}},
		{"query_db", map[string]any{"resource": "orders", "sql": "SELECT status, count(*) FROM orders GROUP BY status"}},
	} {
		c := &heldCall{callID: newID(), who: who, tool: call.tool, resource: "orders"}
		c.record(t, rec, recorder.TypeCallReceived, "", map[string]any{"arguments": call.args})
		c.record(t, rec, recorder.TypeCallDecided, "allow", map[string]any{"decision": policy.Decision{
			Effect: policy.Allow, Rule: "dbas-read-orders", Matched: []policy.Match{{Rule: "dbas-read-orders", Effect: policy.Allow}}, Grant: "readonly",
		}})
		c.record(t, rec, recorder.TypeLeaseMinted, "", map[string]any{"lease_id": "lease-" + c.callID[:8], "grant": "readonly", "kind": "postgres", "expires_at": time.Now().Add(10 * time.Minute).UTC()})
		c.record(t, rec, recorder.TypeCallCompleted, "allow", map[string]any{"duration_ms": 2, "rows": 3,
			"result": map[string]any{"columns": []map[string]string{{"name": "status"}, {"name": "count"}}, "rows": [][]any{{"paid", 41}, {"refunded", 3}, {"shipped", 120}}}})
	}
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// screenshot saves the whole page as a PNG.
func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s (%d bytes)", path, len(png))
}

// text is the visible text of the first element sel selects.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}
