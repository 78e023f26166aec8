package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
)

const webhookSecret = "e2e-webhook-secret-0123456789abcdef"

// webhookReceiver is a receiver in the test: it verifies every delivery's
// signature and hands the payload on.
func webhookReceiver(t *testing.T) (*httptest.Server, <-chan map[string]any) {
	got := make(chan map[string]any, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := approval.VerifyWebhook([]byte(webhookSecret), r.Header, body, time.Now()); err != nil {
			t.Errorf("webhook signature does not verify: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var payload map[string]any
		if err := json.Unmarshal(body, &payload); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		got <- payload
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func (d *demo) withApprovals(t *testing.T, hookURL, wait string) {
	t.Helper()
	cfg, _ := os.ReadFile(d.config)
	approvals := fmt.Sprintf("public_url: http://127.0.0.1:8080/mcp\napprovals:\n  wait: %s\n  expire: 5m\n  webhooks:\n    - url: %s\n      secret_env: E2E_WEBHOOK_SECRET\n", wait, hookURL)
	os.WriteFile(d.config, []byte(strings.Replace(string(cfg), "approvals: {wait: 1s, expire: 5m}\n", approvals, 1)), 0o600)
}

func approvalsCLI(t *testing.T, d *demo, args ...string) (string, error) {
	cmd := exec.Command(airlockBin, append([]string{"approvals", "--config", d.config}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A write held for a DBA: the agent's call waits (with progress), a signed
// webhook tells the approvers, refused attempts (the requester, someone
// outside the group) are recorded, a DBA approves from another process, and
// the held call completes — once.
func TestApprovalReleasesHeldCall(t *testing.T) {
	d := newDemo(t, "127.0.0.1:0")
	hook, deliveries := webhookReceiver(t)
	d.withApprovals(t, hook.URL, "60s")
	env := map[string]string{"E2E_ADMIN_DSN": d.pg.DSN("shop"), "E2E_WEBHOOK_SECRET": webhookSecret}

	approverDone := make(chan string, 1)
	go func() {
		var payload map[string]any
		select {
		case payload = <-deliveries:
		case <-time.After(45 * time.Second):
			approverDone <- "no webhook arrived"
			return
		}
		inner, _ := payload["approval"].(map[string]any)
		id, _ := inner["id"].(string)
		if id == "" {
			approverDone <- fmt.Sprintf("webhook without id: %v", payload)
			return
		}
		raw, _ := json.Marshal(payload)
		if strings.Contains(string(raw), webhookSecret) || !strings.Contains(string(raw), "writes-need-a-dba") {
			approverDone <- fmt.Sprintf("webhook payload: %s", raw)
			return
		}
		if out, err := approvalsCLI(t, d, "approve", id, "--as", "e2e-agent", "--groups", "dba"); err == nil {
			approverDone <- "the requester approved their own call: " + out
			return
		}
		if out, err := approvalsCLI(t, d, "approve", id, "--as", "mallory", "--groups", "eng"); err == nil {
			approverDone <- "an approver outside dba approved: " + out
			return
		}
		if out, err := approvalsCLI(t, d, "approve", id, "--as", "dora", "--groups", "dba", "--reason", "ticket OPS-1"); err != nil {
			approverDone <- fmt.Sprintf("dora could not approve: %v: %s", err, out)
			return
		}
		approverDone <- ""
	}()

	update := call{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "UPDATE orders SET status = 'shipped' WHERE id = 3"}, Progress: true}
	tr := runClient(t, map[string]any{"transport": "stdio", "command": airlockBin, "args": []string{"stdio", "--config", d.config}, "env": env,
		"calls": []call{update}})
	if msg := <-approverDone; msg != "" {
		t.Fatal(msg)
	}
	r := tr.Results[0]
	if r.IsError {
		t.Fatalf("the approved call did not complete: %s", r.Text)
	}
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 3"); len(got) != 1 || got[0] != "shipped" {
		t.Errorf("order 3 status = %v, want shipped", got)
	}
	if len(r.Progress) == 0 || !strings.Contains(r.Progress[0], "waiting for approval from dba") {
		t.Errorf("progress notifications: %q", r.Progress)
	}

	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", d.config).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"approval.requested"`, `"approval.refused"`, `"self_approval"`, `"not_approver"`, `"approval.decided"`, `"cli-local"`, `"dora"`, `"approval.consumed"`, `"approval.webhook_delivered"`} {
		if !strings.Contains(string(export), want) {
			t.Errorf("transcript lacks %s", want)
		}
	}
	if out, err := exec.Command(airlockBin, "transcripts", "verify", "--config", d.config).CombinedOutput(); err != nil {
		t.Errorf("verify: %v %s", err, out)
	}
}

// Undecided within approvals.wait: a pending result with the id; the same
// call made again after approval proceeds; changed arguments need a new one.
func TestApprovalPendingThenRetry(t *testing.T) {
	d := newDemo(t, "127.0.0.1:0")
	hook, deliveries := webhookReceiver(t)
	d.withApprovals(t, hook.URL, "1s")
	env := map[string]string{"E2E_ADMIN_DSN": d.pg.DSN("shop"), "E2E_WEBHOOK_SECRET": webhookSecret}
	run := func(calls ...call) transcript {
		return runClient(t, map[string]any{"transport": "stdio", "command": airlockBin, "args": []string{"stdio", "--config", d.config}, "env": env, "calls": calls})
	}
	update := call{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "UPDATE orders SET status = 'lost' WHERE id = 5"}}

	first := run(update).Results[0]
	id, _ := first.StructuredContent["approval_id"].(string)
	if !first.IsError || first.StructuredContent["outcome"] != "pending" || id == "" || !strings.Contains(first.Text, "approval_status") {
		t.Fatalf("want a pending result with an id, got %+v", first)
	}
	select {
	case <-deliveries:
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook")
	}
	status := run(call{Name: "approval_status", Arguments: map[string]any{"id": id}}).Results[0]
	if status.IsError || !strings.Contains(status.Text, "pending") {
		t.Errorf("approval_status: %+v", status)
	}
	if out, err := approvalsCLI(t, d, "approve", id, "--as", "dora", "--groups", "dba"); err != nil {
		t.Fatalf("approve: %v %s", err, out)
	}
	// The same call again proceeds; a changed one needs its own approval;
	// the approval is used once.
	changed := call{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "UPDATE orders SET status = 'lost' WHERE id = 6"}}
	tr := run(update, changed, update)
	if r := tr.Results[0]; r.IsError {
		t.Fatalf("the approved call did not run: %s", r.Text)
	}
	if r := tr.Results[1]; !r.IsError || r.StructuredContent["outcome"] != "pending" || r.StructuredContent["approval_id"] == id {
		t.Errorf("changed arguments must need a new approval: %+v", r)
	}
	if r := tr.Results[2]; !r.IsError || r.StructuredContent["approval_id"] == id {
		t.Errorf("an approval must be used once: %+v", r)
	}
	if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id IN (5, 6) ORDER BY id"); strings.Join(got, ",") != "lost,shipped" {
		t.Errorf("statuses = %v, want lost,shipped (order 6 untouched)", got)
	}
	// Deciding a consumed approval is refused.
	if out, err := approvalsCLI(t, d, "deny", id, "--as", "dora2", "--groups", "dba"); err == nil {
		t.Errorf("a decision on a consumed approval was accepted: %s", out)
	}
}
