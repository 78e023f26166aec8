package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// The whole flow of issue 13 with nothing simulated: the official
// TypeScript SDK client, with tasks, sends a write that policy holds; the
// call becomes an MCP task whose id is the approval's; a person opens /ui
// in a real Chromium — in local mode (auth.mode none on loopback, a name
// picked on the login page) and in OIDC mode (login through a real Ory
// Hydra) — finds the approval, sees the SQL and the EXPLAIN estimate, and
// decides it. Approved → the SDK's tasks/result returns the rows and the
// row changed in PostgreSQL; denied in the browser → the task fails with
// the reason typed there; cancelled by the client (tasks/cancel) → the
// browser shows the approval withdrawn and offers no decision. The agent
// itself (its name typed in local mode; its subject from Hydra in OIDC
// mode) is not offered the decision, and in OIDC mode a decision posted
// anyway is refused.

// startBrowserTaskClient runs browser_tasks.mjs with plan; with
// plan["cancel"], a line written to the returned writer makes it send
// tasks/cancel.
func startBrowserTaskClient(t *testing.T, plan map[string]any) (*taskClient, io.WriteCloser) {
	t.Helper()
	return runTaskScript(t, "browser_tasks.mjs", plan, 4*time.Minute, nil, true)
}

// heldTask starts the client on a held write and returns it with its task
// id, checking the task is the approval's and names who must decide.
func heldTask(t *testing.T, plan map[string]any) (*taskClient, io.WriteCloser, string) {
	t.Helper()
	c, stdin := startBrowserTaskClient(t, plan)
	c.expect(t, "connected")
	c.expect(t, "tools")
	created := c.expect(t, "taskCreated")
	id := created.Task.TaskID
	if created.Task.Status != "working" || !strings.Contains(created.Task.StatusMessage, "waiting for approval "+id+" by dba") {
		t.Fatalf("created task: %+v", created.Task)
	}
	return c, stdin, id
}

// approvalState reads an approval with the CLI: its state, and the via of
// its last decision. With a token (OIDC mode), the CLI asks the server's
// API as the token's identity; without, it reads the store.
func approvalState(t *testing.T, d *demo, id string, token ...string) string {
	t.Helper()
	cmd := exec.Command(airlockBin, "approvals", "--config", d.config, "show", id, "--json")
	if len(token) > 0 {
		cmd.Env = append(os.Environ(), "AIRLOCK_TOKEN="+token[0])
	}
	raw, err := cmd.CombinedOutput()
	out := string(raw)
	if err != nil {
		t.Fatalf("approvals show: %v %s", err, out)
	}
	var a struct {
		State     string `json:"state"`
		Decisions []struct {
			Via string `json:"via"`
		} `json:"decisions"`
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("approvals show --json: %s", out)
	}
	if n := len(a.Decisions); n > 0 {
		return a.State + "/" + a.Decisions[n-1].Via
	}
	return a.State
}

// decideInBrowser opens the approval's page, checks the SQL and the
// EXPLAIN estimate are shown, types the reason and clicks verdict.
func decideInBrowser(t *testing.T, b context.Context, origin, id, sqlPart, verdict, reason string) {
	t.Helper()
	card := "#approval-" + id
	if err := chromedp.Do(b,
		chromedp.Navigate(origin+"/ui/approvals/"+id),
		chromedp.WaitVisible(chromedp.CSS(card+" pre.sql")),
		chromedp.WaitVisible(chromedp.CSS("#impact")),
	); err != nil {
		t.Fatalf("opening approval %s: %v", id, err)
	}
	if got := text(t, b, card+" pre.sql"); !strings.Contains(got, sqlPart) {
		t.Errorf("the approval page's SQL = %q, want it to contain %q", got, sqlPart)
	}
	if got := text(t, b, "#impact"); !strings.Contains(got, "≈ 1 row ") || !strings.Contains(got, "public.orders") || !strings.Contains(got, "shop_writer") {
		t.Errorf("the EXPLAIN estimate on the approval page: %q", got)
	}
	if err := chromedp.Do(b,
		chromedp.SendKeys(chromedp.CSS(card+" textarea[name=reason]"), reason),
		chromedp.Click(chromedp.CSS(card+` button[value="`+verdict+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
	); err != nil {
		t.Fatalf("%s in the browser: %v", verdict, err)
	}
	if flash := text(t, b, ".flash.ok"); !strings.Contains(flash, "("+verdict+")") {
		t.Errorf("after %s: %q", verdict, flash)
	}
}

// expectCompleted waits for the task to complete and returns its result's text.
func expectCompleted(t *testing.T, c *taskClient, id string) string {
	t.Helper()
	if ev := c.next(t); ev.Event != "taskStatus" || ev.Task.Status != "completed" {
		t.Fatalf("after the approval: %+v", ev)
	}
	res := c.expect(t, "result")
	if res.Result.IsError {
		t.Fatalf("the approved task's result: %+v", res.Result)
	}
	if related, _ := res.Result.Meta["io.modelcontextprotocol/related-task"].(map[string]any); related["taskId"] != id {
		t.Errorf("result _meta: %v", res.Result.Meta)
	}
	c.finish(t)
	return res.Result.Text
}

func TestBrowserTasksLocalMode(t *testing.T) {
	chromium := testenv.ChromiumPath(t)
	port := testenv.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	startServe(t, d, port)
	plan := func(sql string, cancel bool) map[string]any {
		return map[string]any{"url": origin + "/mcp", "name": "query_db", "arguments": update(sql), "cancel": cancel}
	}

	// dora picks her name and dba on the local login page: the inbox is empty.
	b, stop := testenv.Browser(t, chromium)
	defer stop()
	if err := chromedp.Do(b,
		chromedp.Navigate(origin+"/ui"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=name]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "dora"),
		chromedp.Click(chromedp.CSS(`input[name=group][value=dba]`)),
		chromedp.Click(chromedp.CSS(`form.locallogin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#inbox-empty`)),
	); err != nil {
		t.Fatalf("local login and the empty inbox: %v", err)
	}
	if banner := text(t, b, ".localbanner"); !strings.Contains(banner, "Local mode") {
		t.Errorf("banner: %q", banner)
	}

	// held → task → in dora's inbox → approved in the browser → the
	// stream's tasks/result returns the rows.
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 3"); len(got) != 1 || got[0] != "paid" {
		t.Fatalf("order 3 status = %v before the test, want paid", got)
	}
	sql := "UPDATE orders SET status = 'shipped' WHERE id = 3 RETURNING id, status"
	c, _, id := heldTask(t, plan(sql, false))
	card := "#approval-" + id
	if err := chromedp.Do(b, chromedp.Navigate(origin+"/ui/approvals"), chromedp.WaitVisible(chromedp.CSS(card+` button[value="approve"]`))); err != nil {
		t.Fatalf("the held call in the inbox: %v", err)
	}
	if got := text(t, b, card); !strings.Contains(got, "agent@example.com") || !strings.Contains(got, "writes-need-a-dba") || !strings.Contains(got, "left") {
		t.Errorf("the inbox card: %q", got)
	}
	if facts := text(t, b, card+" .sqlfacts"); !strings.Contains(facts, "UPDATE") || !strings.Contains(facts, "orders") {
		t.Errorf("the facts beside the SQL: %q", facts)
	}
	if shots := os.Getenv(screenshotsEnv); shots != "" { // the page the README's walk-through opens
		if err := chromedp.Do(b, chromedp.Navigate(origin+"/ui/approvals/"+id), chromedp.WaitVisible(chromedp.CSS("#impact"))); err != nil {
			t.Fatal(err)
		}
		screenshot(t, b, filepath.Join(shots, "approval-held.png"))
	}
	decideInBrowser(t, b, origin, id, sql, "approve", "order 3 left the warehouse")
	if rows := expectCompleted(t, c, id); !strings.Contains(rows, "shipped") {
		t.Errorf("tasks/result: %q, want the returned row", rows)
	}
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 3"); len(got) != 1 || got[0] != "shipped" {
		t.Errorf("order 3 status = %v, want shipped", got)
	}
	if got := approvalState(t, d, id); got != "consumed/web" {
		t.Errorf("the approval after the run: %s, want consumed/web", got)
	}
	if err := chromedp.Do(b, chromedp.Navigate(origin+"/ui/approvals/"+id), chromedp.WaitVisible(chromedp.CSS("dl.details"))); err != nil {
		t.Fatal(err)
	}
	if state, details := text(t, b, card+" header .state"), text(t, b, "dl.details"); !strings.EqualFold(state, "consumed") || !strings.Contains(details, "used by call") {
		t.Errorf("the approval page after the run: state %q, details %q", state, details)
	}

	// denied in the browser → the task fails with the reason typed there.
	before := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 4")
	c, _, denied := heldTask(t, plan("UPDATE orders SET status = 'lost' WHERE id = 4", false))
	decideInBrowser(t, b, origin, denied, "'lost'", "deny", "not on a Friday")
	// The page dora decided on listed the agent's recent call on shop: the approved UPDATE.
	if got := text(t, b, "#recent"); !strings.Contains(got, "status = 'shipped'") || !strings.Contains(got, "completed") {
		t.Errorf("the agent's recent calls on the approval page: %q", got)
	}
	failed := c.next(t)
	if failed.Event != "taskStatus" || failed.Task.Status != "failed" || !strings.Contains(failed.Task.StatusMessage, "denied by dora: not on a Friday") {
		t.Fatalf("a task denied in the browser: %+v", failed)
	}
	if ev := c.expect(t, "error"); !strings.Contains(ev.Error.Message, "Task "+denied+" failed") {
		t.Errorf("the SDK's error: %+v", ev.Error)
	}
	c.finish(t)
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 4"); len(got) != 1 || fmt.Sprint(got) != fmt.Sprint(before) || got[0] == "lost" {
		t.Errorf("order 4 changed after the denial: %v → %v", before, got)
	}

	// cancelled by the client while dora looks at it → the browser shows it
	// withdrawn and offers no decision.
	c, cancelTask, withdrawn := heldTask(t, plan("UPDATE orders SET status = 'lost' WHERE id = 5", true))
	wcard := "#approval-" + withdrawn
	if err := chromedp.Do(b, chromedp.Navigate(origin+"/ui/approvals/"+withdrawn), chromedp.WaitVisible(chromedp.CSS(wcard+` button[value="approve"]`))); err != nil {
		t.Fatalf("the pending approval before the cancel: %v", err)
	}
	// The agent's own name, typed on the login page with dba ticked, is not
	// offered the decision on its call.
	self, stopSelf := testenv.Browser(t, chromium)
	if err := chromedp.Do(self,
		chromedp.Navigate(origin+"/ui/approvals/"+withdrawn), // → /ui/login → back here
		chromedp.WaitVisible(chromedp.CSS(`input[name=name]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "e2e-agent"),
		chromedp.Click(chromedp.CSS(`input[name=group][value=dba]`)),
		chromedp.Click(chromedp.CSS(`form.locallogin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(wcard)),
	); err != nil {
		t.Fatalf("logging in under the agent's name: %v", err)
	}
	if got := text(t, self, wcard); !strings.Contains(got, "You cannot decide your own request.") {
		t.Errorf("the agent's view of its own approval:\n%s", got)
	}
	if n, err := chromedp.Run(self, chromedp.Evaluate[int](`document.querySelectorAll("form.decide").length`)); err != nil || n != 0 {
		t.Errorf("the agent's name is offered a decision on its own call (%d forms, %v)", n, err)
	}
	stopSelf()
	if _, err := io.WriteString(cancelTask, "cancel\n"); err != nil {
		t.Fatal(err)
	}
	if ev := c.expect(t, "cancelled"); ev.Task.Status != "cancelled" {
		t.Errorf("tasks/cancel answered %+v", ev.Task)
	}
	if ev := c.next(t); ev.Event != "taskStatus" || ev.Task.Status != "cancelled" {
		t.Errorf("after the cancel: %+v", ev)
	}
	c.expect(t, "error") // "Task … was cancelled"
	c.finish(t)
	if err := chromedp.Do(b, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(wcard+" .decisions"))); err != nil {
		t.Fatalf("the approval after the cancel: %v", err)
	}
	if state := text(t, b, wcard+" header .state"); !strings.EqualFold(state, "withdrawn") {
		t.Errorf("the withdrawn approval's state reads %q", state)
	}
	if got := text(t, b, wcard+" .decisions"); !strings.Contains(strings.ToLower(got), "withdrawn by the requester agent@example.com") || !strings.Contains(got, "(MCP tasks/cancel)") {
		t.Errorf("the withdrawn approval's decisions: %q", got)
	}
	if n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("form.decide").length`)); err != nil || n != 0 {
		t.Errorf("the withdrawn approval still offers a decision (%d forms, %v)", n, err)
	}
	if got := approvalState(t, d, withdrawn); got != "denied/withdrawn" {
		t.Errorf("the cancelled task's approval: %s, want denied/withdrawn", got)
	}
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 5"); len(got) != 1 || got[0] != "paid" {
		t.Errorf("order 5 status = %v after its task was cancelled, want paid", got)
	}
	// The held call's transcript, from the approval: withdrawn, never run.
	if err := chromedp.Do(b,
		chromedp.Click(chromedp.CSS(wcard+" .links a")),
		chromedp.WaitVisible(chromedp.CSS(".badge.chain-ok")),
	); err != nil {
		t.Fatalf("the withdrawn call's transcript: %v", err)
	}
	if got := text(t, b, "main"); !strings.Contains(got, "Approval withdrawn by the requester") || strings.Contains(got, "Result returned") {
		t.Errorf("the withdrawn call's transcript:\n%s", got)
	}
}

func TestBrowserTasksOIDC(t *testing.T) {
	chromium := testenv.ChromiumPath(t)
	// The login and consent app logs in whoever the test says is at the
	// browser now.
	var adminURL string
	var at atomic.Pointer[person]
	loginApp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		loginConsentApp(t, &adminURL, *at.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(loginApp.Close)
	hydra := testenv.HydraWith(t, testenv.HydraOptions{LoginURL: loginApp.URL + "/login", ConsentURL: loginApp.URL + "/consent"})
	adminURL = hydra.AdminURL()

	port := testenv.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	mcpURL := origin + "/mcp"
	uiID, uiSecret := createUIClient(t, hydra.AdminURL(), origin+"/ui/callback")
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	cfg, _ := os.ReadFile(d.config)
	conf := strings.Replace(string(cfg), "auth: {mode: none}\n", fmt.Sprintf(`public_url: %s
auth:
  mode: oidc
  oidc: {issuer: %q, audience: %q, required_scopes: [mcp]}
ui:
  client_id: %s
  client_secret_env: E2E_UI_SECRET
`, mcpURL, hydra.Issuer(), mcpURL, uiID), 1)
	if err := os.WriteFile(d.config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d.env = append(d.env, "E2E_UI_SECRET="+uiSecret)
	startServe(t, d, port)

	// The agent: a Hydra client in eng, with an access token for /mcp.
	agent := hydra.CreateClient(t, mcpURL, []string{"mcp"}, "eng")
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 5"); len(got) != 1 || got[0] != "paid" {
		t.Fatalf("order 5 status = %v before the test, want paid", got)
	}
	sql := "UPDATE orders SET status = 'refunded' WHERE id = 5 RETURNING id, status"
	token := hydra.Token(t, agent, "mcp")
	c, _, id := heldTask(t, map[string]any{"url": mcpURL, "name": "query_db", "arguments": update(sql),
		"headers": map[string]string{"Authorization": "Bearer " + token}})
	card := "#approval-" + id

	// Someone logged in to the UI as the agent's own subject (and in dba) is
	// not offered the decision, and the server refuses it when sent anyway.
	at.Store(&person{Subject: agent.ID, Email: "agent@example.com", Groups: []string{"dba"}})
	self, stopSelf := testenv.Browser(t, chromium)
	if err := chromedp.Do(self,
		chromedp.Navigate(origin+"/ui/approvals/"+id), // → Hydra → login app → consent app → back
		chromedp.WaitVisible(chromedp.CSS(card)),
	); err != nil {
		t.Fatalf("the agent's subject logging in through Hydra: %v", err)
	}
	if got := text(t, self, card); !strings.Contains(got, "You cannot decide your own request.") || !strings.Contains(got, "(you)") {
		t.Errorf("the requester's view of its own approval:\n%s", got)
	}
	if n, err := chromedp.Run(self, chromedp.Evaluate[int](`document.querySelectorAll("form.decide").length`)); err != nil || n != 0 {
		t.Errorf("the requester is offered a decision (%d forms, %v)", n, err)
	}
	// The form the page did not offer, posted from the page with the
	// session's CSRF token: the approvals rules refuse it.
	forge := `(() => { const f = document.createElement("form"); f.method = "post"; f.action = "/ui/approvals/` + id + `";
for (const [k, v] of [["csrf", document.querySelector("input[name=csrf]").value], ["verdict", "approve"], ["reason", "my own"]]) {
  const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i); }
document.body.appendChild(f); f.submit(); })()`
	if err := chromedp.Do(self,
		chromedp.Evaluate[chromedp.Void](forge),
		chromedp.WaitVisible(chromedp.CSS(".flash.err")),
	); err != nil {
		t.Fatalf("posting the agent's own decision: %v", err)
	}
	if got := text(t, self, ".flash.err"); got != "Approval "+id+": you cannot decide your own request." {
		t.Errorf("the refusal: %q", got)
	}
	stopSelf()
	if got := approvalState(t, d, id, token); got != "pending" {
		t.Fatalf("after the agent's own attempt: %s, want pending", got)
	}

	// bob, a DBA, logs in through Hydra in another browser and approves.
	at.Store(&person{Subject: "bob", Email: "bob@example.com", Groups: []string{"dba"}})
	b, stop := testenv.Browser(t, chromium)
	defer stop()
	if err := chromedp.Do(b,
		chromedp.Navigate(origin+"/ui/approvals"),
		chromedp.WaitVisible(chromedp.CSS(card+` button[value="approve"]`)),
	); err != nil {
		t.Fatalf("bob logging in through Hydra: %v", err)
	}
	if who := text(t, b, "header .who"); !strings.Contains(who, "bob@example.com") {
		t.Errorf("logged in as %q, want bob", who)
	}
	if got := text(t, b, card); !strings.Contains(got, agent.ID) {
		t.Errorf("the card does not name the agent %s:\n%s", agent.ID, got)
	}
	decideInBrowser(t, b, origin, id, sql, "approve", "refund confirmed")
	if rows := expectCompleted(t, c, id); !strings.Contains(rows, "refunded") {
		t.Errorf("tasks/result: %q, want the returned row", rows)
	}
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 5"); len(got) != 1 || got[0] != "refunded" {
		t.Errorf("order 5 status = %v, want refunded", got)
	}
	if got := approvalState(t, d, id, token); got != "consumed/web" {
		t.Errorf("the approval after the run: %s, want consumed/web", got)
	}
}
