package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

var printNow = time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)

func printedApprovals() []approval.Approval {
	created := printNow.Add(-10 * time.Second)
	return []approval.Approval{
		{
			ID: "0b6f2c1e-pending", CallID: "call-1", Requester: approval.Principal{Subject: "alice", Email: "alice@example.com"},
			Tool: "query_db", Resource: "shop", Rule: "writes-need-a-dba",
			Arguments: json.RawMessage(`{"resource":"shop","sql":"UPDATE orders SET status = 'lost'\nWHERE id = $1","params":[9007199254740993]}`),
			Approvers: policy.Approvers{Groups: []string{"dba"}, Min: 2}, State: approval.Pending,
			CreatedAt: created, ExpiresAt: printNow.Add(14*time.Minute + 50*time.Second),
			Decisions: []approval.Decision{{Approver: approval.Principal{Subject: "dora"}, Verdict: approval.Approve, Via: approval.ViaWeb, At: created.Add(4 * time.Second), Reason: "ticket OPS-1"}},
			URL:       "https://airlock.example.com/ui/approvals/0b6f2c1e-pending",
		},
		{
			ID: "5d1a-consumed", CallID: "call-2", Requester: approval.Principal{Subject: "bob"},
			Tool: "run_ssh", Resource: "web-1", Rule: "restarts-need-ops",
			Arguments: json.RawMessage(`{"resource":"web-1","command":"sudo systemctl restart nginx && journalctl -u nginx -n 50 --no-pager --since '10 minutes ago'"}`),
			Approvers: policy.Approvers{Groups: []string{"ops", "sre"}, Min: 1}, State: approval.Consumed,
			CreatedAt: printNow.Add(-time.Hour), ExpiresAt: printNow.Add(-45 * time.Minute),
			DecidedAt: printNow.Add(-59 * time.Minute), ConsumedAt: printNow.Add(-59*time.Minute + 1500*time.Millisecond), ConsumedBy: "call-3",
			Decisions: []approval.Decision{{Approver: approval.Principal{Subject: "olga"}, Verdict: approval.Approve, Via: approval.ViaCLILocal, At: printNow.Add(-59 * time.Minute)}},
		},
		{
			ID: "9e2-denied", CallID: "call-4", Requester: approval.Principal{Subject: "alice"},
			Tool: "query_db", Resource: "shop", Rule: "writes-need-a-dba",
			Arguments: json.RawMessage(`{"resource":"shop","sql":"DELETE FROM orders"}`),
			Approvers: policy.Approvers{Groups: []string{"dba"}, Min: 1}, State: approval.Denied,
			CreatedAt: printNow.Add(-2 * time.Minute), ExpiresAt: printNow.Add(13 * time.Minute), DecidedAt: printNow.Add(-90 * time.Second),
			Decisions: []approval.Decision{{Approver: approval.Principal{Subject: "dora"}, Verdict: approval.Deny, Via: approval.ViaAPI, At: printNow.Add(-90 * time.Second), Reason: "no WHERE"}},
		},
	}
}

// approvals list and show print for people: durations as 10s, the SQL or
// command (shortened in the list, whole in show), the state, the decisions
// and who made them, numbers exactly as the call sent them.
func TestApprovalsPrintForPeople(t *testing.T) {
	list := printedApprovals()
	var b bytes.Buffer
	if err := writeApprovalList(&b, list, printNow); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "approvals_list.golden", b.String())
	var shown strings.Builder
	for _, a := range list {
		b.Reset()
		if err := writeApproval(&b, a, printNow); err != nil {
			t.Fatal(err)
		}
		shown.WriteString(b.String() + "----\n")
	}
	checkGolden(t, "approvals_show.golden", shown.String())
}

// localApprovalID is the one approval localApproval writes (ids are UUIDs).
const localApprovalID = "0193a1b2-0000-7000-8000-000000000001"

// localApproval writes a store with one pending approval, localApprovalID, and a
// config for it without OIDC; it returns the store's path and the config's.
func localApproval(t *testing.T) (db, cfg string) {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	db = filepath.Join(dir, "airlock.db")
	st, err := store.Open(ctx, "sqlite://"+db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, _, err := st.RequestApproval(ctx, store.Approval{
		ID: localApprovalID, Digest: "d-1", CallID: "call-1", Subject: "alice", Tool: "query_db", Resource: "shop",
		Arguments: []byte(`{"resource":"shop","sql":"UPDATE orders SET status = 'lost' WHERE id = 3"}`), Rule: "writes-need-a-dba", Rules: []byte(`[]`),
		ApproverGroups: []string{"dba"}, MinApprovers: 1, PolicyVersion: "pv", State: store.ApprovalPending,
		CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute),
	}, now); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg = filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:8080\nstore: sqlite://./airlock.db\nauth: {mode: none}\nresources: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return db, cfg
}

// Without OIDC, reading needs no name: list and show work on the store as
// it is (the help's own example), --json prints JSON; deciding still needs
// --as.
func TestApprovalsReadWithoutAs(t *testing.T) {
	_, cfg := localApproval(t)
	out, code := runCLI(t, "approvals", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, localApprovalID) || !strings.Contains(out, "UPDATE orders SET status = 'lost' WHERE id = 3") {
		t.Errorf("list without --as: exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, "approvals", "show", localApprovalID, "--config", cfg)
	if code != 0 || !strings.Contains(out, "Approval "+localApprovalID+": pending") || !strings.Contains(out, "SQL:") || !strings.Contains(out, "none yet") {
		t.Errorf("show without --as: exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, "approvals", "show", localApprovalID, "--json", "--config", cfg)
	var a approval.Approval
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.ID != localApprovalID || a.State != approval.Pending {
		t.Errorf("show --json: exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, "approvals", "approve", localApprovalID, "--config", cfg)
	if code == 0 || !strings.Contains(out, "--as NAME --groups") {
		t.Errorf("approve without --as: exit %d, want a refusal naming --as:\n%s", code, out)
	}
	out, code = runCLI(t, "approvals", "approve", localApprovalID, "--as", "dora", "--groups", "dba", "--config", cfg)
	if code != 0 || !strings.Contains(out, "now approved") {
		t.Errorf("approve --as dora: exit %d:\n%s", code, out)
	}
}

// A decision made with --as is stored in the transaction that records its
// approval.decided (red team 4d): when the event cannot be written (here a
// trigger stands in for a full disk), the CLI says so, fails, and leaves
// the approval pending; once the store is whole the same decision goes
// through and is recorded.
func TestApprovalsLocalDecisionIsStoredOnlyWithItsEvent(t *testing.T) {
	db, cfg := localApproval(t)
	ctx := context.Background()
	exec := func(q string) {
		t.Helper()
		st, err := store.Open(ctx, "sqlite://"+db)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := recorder.New(st.DB()); err != nil {
			t.Fatal(err)
		}
		if _, err := st.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TRIGGER fail_decided BEFORE INSERT ON transcript_events
		WHEN NEW.type = 'approval.decided' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`)
	out, code := runCLI(t, "approvals", "approve", localApprovalID, "--as", "dora", "--groups", "dba", "--config", cfg)
	if code == 0 || !strings.Contains(out, "could not be stored with its transcript event, so nothing changed") {
		t.Fatalf("approve with the transcript failing: exit %d, want a failure that says nothing changed:\n%s", code, out)
	}
	out, code = runCLI(t, "approvals", "show", localApprovalID, "--json", "--config", cfg)
	var a approval.Approval
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.State != approval.Pending || len(a.Decisions) != 0 {
		t.Fatalf("after the failed approve: exit %d, want the approval pending with no decision:\n%s", code, out)
	}

	exec(`DROP TRIGGER fail_decided`)
	if out, code = runCLI(t, "approvals", "approve", localApprovalID, "--as", "dora", "--groups", "dba", "--config", cfg); code != 0 || !strings.Contains(out, "now approved") {
		t.Fatalf("approve once the store is whole: exit %d:\n%s", code, out)
	}
	out, code = runCLI(t, "transcripts", "export", "--config", cfg)
	if code != 0 || strings.Count(out, `"type":"approval.decided"`) != 1 || !strings.Contains(out, `"via":"cli-local"`) {
		t.Fatalf("transcript after the approve: exit %d, want one approval.decided via cli-local:\n%s", code, out)
	}
}
