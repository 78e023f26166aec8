package web

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

func (f *fixture) append(t *testing.T, ev recorder.Event, data any) {
	t.Helper()
	ev.Data, _ = json.Marshal(data)
	if _, err := f.rec.Append(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

// The approval page shows the estimate the broker recorded, the commands
// of a run_ssh call with sudo and writes marked, and the requester's recent
// calls on the resource (theirs only, under the same issuer).
func TestApprovalPageShowsImpact(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "UPDATE orders SET status = 'refunded'", "call-held")
	who := recorder.Event{CallID: "call-held", Subject: alice.Subject, Issuer: alice.Issuer, Tool: "query_db", Resource: "orders"}
	ev := who
	ev.Type = typeCallPreviewed
	f.append(t, ev, map[string]any{"impact": tools.Impact{Kind: "explain", Role: "app_readwrite", Statement: "update", EstimatedRows: 4210, Tables: []string{"public.orders"}, Plan: "Update on orders  (cost=0.00..1.04 rows=0 width=0)\n  ->  Seq Scan on orders"}})
	f.recordCall(t, alice, "call-old", "s1", "allow", "")   // on orders: shown
	f.recordCall(t, other, "call-other", "s2", "allow", "") // same subject, other issuer: not shown
	f.recordCall(t, dave, "call-dave", "s3", "allow", "")   // someone else: not shown

	c, _ := f.login(t, bob)
	r := f.do(t, http.MethodGet, "/ui/approvals/"+a.ID, c, nil, nil)
	for _, want := range []string{"Estimated impact", "≈ 4210 rows", `class="rows many"`, "public.orders", "app_readwrite", "Seq Scan on orders",
		"Recent calls by the requester", "SELECT id, email FROM customers", "PostgreSQL reads", "no — every row"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("approval page lacks %q", want)
		}
	}
	if n := strings.Count(r.body, `<td class="stmt"`); n != 1 {
		t.Errorf("recent calls: %d rows, want alice's one", n)
	}

	// run_ssh: the commands from the facts policy saw.
	s := f.requestSSH(t, "sudo systemctl restart nginx && journalctl -u nginx > /tmp/log.txt", "call-ssh")
	ev = recorder.Event{CallID: "call-ssh", Subject: alice.Subject, Issuer: alice.Issuer, Tool: "run_ssh", Resource: "web-1", Type: recorder.TypeCallDecided}
	f.append(t, ev, map[string]any{"decision": policy.Decision{Effect: policy.Approve}, "facts": policy.Facts{Shell: &policy.Shell{
		Commands:    []policy.Command{{Program: "sudo", Args: []string{"systemctl", "restart", "nginx"}}, {Program: "journalctl", Args: []string{"-u", "nginx"}}},
		Programs:    []string{"sudo", "systemctl", "journalctl"},
		WritesFiles: []string{"/tmp/log.txt"}, UsesSudo: true, HasRedirect: true,
	}}})
	r = f.do(t, http.MethodGet, "/ui/approvals/"+s.ID, c, nil, nil)
	for _, want := range []string{"Commands the shell will run", `<li class="sudo">sudo systemctl restart nginx<span class="tag sudo">sudo</span></li>`,
		"<li class=\"\">journalctl -u nginx</li>", `<code class="tag writes">/tmp/log.txt</code>`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("run_ssh approval page lacks %q\n%s", want, r.body)
		}
	}
	if strings.Contains(r.body, "Estimated impact") {
		t.Error("an estimate for a run_ssh call")
	}
}

// requestSSH creates alice's approval for a run_ssh command; it asks for dba.
func (f *fixture) requestSSH(t *testing.T, command, callID string) approval.Approval {
	t.Helper()
	args, _ := json.Marshal(map[string]any{"resource": "web-1", "command": command})
	sum := sha256.Sum256(args)
	a, _, err := f.m.Request(context.Background(), approval.RequestInput{
		Requester: alice, Tool: "run_ssh", Resource: "web-1", Arguments: args, ArgumentsDigest: sum[:],
		Decision: policy.Decision{Effect: policy.Approve, Rule: "restarts-need-a-dba", Approvers: &policy.Approvers{Groups: []string{"dba"}, Min: 1}, Grant: "operator", PolicyVersion: "pv1"},
		CallID:   callID,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}
