package e2e

import (
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// The whole approval flow with nothing simulated: an agent (the TypeScript
// SDK client with a Hydra token) makes a write that policy holds for a DBA; a
// webhook receiver gets the signed notice; a DBA logs in to airlock's web page
// in a real browser through Hydra and approves; the agent's call completes;
// the DBA opens the call's transcript and sees every step.
func TestFullApprovalFlowWithBrowser(t *testing.T) {
	chromium := testenv.ChromiumPath(t)
	bob := person{Subject: "bob", Email: "bob@example.com", Groups: []string{"dba"}}
	var adminURL string
	loginApp := httptest.NewServer(loginConsentApp(t, &adminURL, bob))
	t.Cleanup(loginApp.Close)
	hydra := testenv.HydraWith(t, testenv.HydraOptions{LoginURL: loginApp.URL + "/login", ConsentURL: loginApp.URL + "/consent"})
	adminURL = hydra.AdminURL()

	port := testenv.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	mcpURL := origin + "/mcp"
	uiID, uiSecret := createUIClient(t, hydra.AdminURL(), origin+"/ui/callback")
	hook, deliveries := webhookReceiver(t)

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
	conf = strings.Replace(conf, "approvals: {wait: 1s, expire: 5m}\n", fmt.Sprintf(`approvals:
  wait: 90s
  expire: 10m
  webhooks:
    - {url: %q, secret_env: E2E_WEBHOOK_SECRET}
`, hook.URL), 1)
	os.WriteFile(d.config, []byte(conf), 0o600)
	d.env = append(d.env, "E2E_UI_SECRET="+uiSecret, "E2E_WEBHOOK_SECRET="+webhookSecret)
	startServe(t, d, port)

	agent := hydra.CreateClient(t, mcpURL, []string{"mcp"}, "eng")
	token := hydra.Token(t, agent, "mcp")
	agentDone := make(chan transcript, 1)
	go func() {
		agentDone <- runClientB(t, map[string]any{"transport": "http", "url": mcpURL,
			"headers": map[string]string{"Authorization": "Bearer " + token},
			"calls": []map[string]any{{"name": "query_db", "progress": true, "timeout_ms": 120000,
				"arguments": map[string]any{"resource": "shop", "sql": "UPDATE orders SET status = 'shipped' WHERE id = 4"}}}})
	}()

	// The signed webhook names the held call.
	var id string
	select {
	case p := <-deliveries:
		a, _ := p["approval"].(map[string]any)
		id, _ = a["id"].(string)
		if a["rule"] != "writes-need-a-dba" || id == "" {
			t.Fatalf("webhook payload: %v", p)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no webhook arrived for the held call")
	}

	// The DBA approves in the browser.
	ctx, cancel := testenv.Browser(t, chromium)
	defer cancel()
	card := "#approval-" + id
	if err := chromedp.Do(ctx,
		chromedp.Navigate(origin+"/ui/approvals"), // → login through Hydra → back to the page
		chromedp.WaitVisible(chromedp.CSS(card)),
	); err != nil {
		t.Fatalf("logging in and opening the approvals page: %v", err)
	}
	if page := text(t, ctx, card); !strings.Contains(page, "UPDATE") || !strings.Contains(page, agent.ID) {
		t.Errorf("the approval card does not show the call and requester:\n%s", page)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(card+" textarea[name=reason]"), "refund confirmed"),
		chromedp.Click(chromedp.CSS(card+` button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
	); err != nil {
		t.Fatalf("approving: %v", err)
	}

	// The agent's held call completes.
	var tr transcript
	select {
	case tr = <-agentDone:
	case <-time.After(60 * time.Second):
		t.Fatal("the held call did not complete after the approval")
	}
	r := tr.Results[0]
	if r.IsError || r.ProtocolError != nil {
		t.Fatalf("the approved call: %+v", r)
	}
	if len(r.Progress) == 0 || !strings.Contains(r.Progress[0], "waiting for approval from dba") {
		t.Errorf("progress while held: %q", r.Progress)
	}
	// Order 4 is refunded in the seed data: shipped is the approved call's doing.
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 4"); len(got) != 1 || got[0] != "shipped" {
		t.Errorf("order 4 = %v, want shipped", got)
	}

	// The transcript shows every step, and the chain verifies.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(origin+"/ui/approvals/"+id),
		chromedp.WaitVisible(chromedp.CSS(".links a")),
		chromedp.Click(chromedp.CSS(".links a")),
		chromedp.WaitVisible(chromedp.CSS(".badge.chain-ok")),
	); err != nil {
		t.Fatalf("opening the transcript: %v", err)
	}
	page := text(t, ctx, "main")
	for _, want := range []string{"Hash chain verified", "Call received", "Policy decided: approve", "writes-need-a-dba",
		"Approval requested", "Credential lease minted", "readwrite", "Result returned"} {
		if !strings.Contains(page, want) {
			t.Errorf("transcript page lacks %q:\n%s", want, page)
		}
	}
}
