package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Held calls as MCP tasks across replicas: two airlock serve processes on
// one PostgreSQL store, behind what a load balancer would be (one public
// URL, the OIDC audience of both), with identities from a real Ory Hydra.
// A request may land on either replica; each verifies its token itself.
//
//   - 2026-07-28 (mcp-go's client, stateless): a held write made as a task on
//     A; tasks/get on B is the same task (id = approval id, working, naming
//     the approvers) for the same subject, and another subject is told there
//     is no such task (get, result, cancel). Approved through B's JSON API,
//     A's watcher runs the call once; tasks/get on B reads completed;
//     tasks/result on A returns the rows; tasks/result on B names the call
//     that used the approval and says it ran elsewhere, without running it.
//     The row changed once (a non-idempotent UPDATE), one call.completed.
//   - tasks/cancel on B withdraws an approval held on A: the task is
//     cancelled on both, A's watcher ends without running the call, the
//     approval can no longer be approved.
//   - 2025-11-25 (the TypeScript SDK, a session per replica): the task made
//     on A's session is read on B's own session, approved, run by A's
//     watcher though A's client has gone, and B's tasks/result answers as
//     above.
func TestTasksAcrossReplicas(t *testing.T) {
	hydra := testenv.Hydra(t)
	// The URL of the load balancer in front of both replicas: what agents
	// and approvers use, and the audience of their tokens (on loopback, as
	// OAuth over http requires; nothing listens there: the test picks the
	// replica itself).
	publicURL := fmt.Sprintf("http://127.0.0.1:%d/mcp", testenv.FreePort(t))
	oidc := fmt.Sprintf("auth:\n  mode: oidc\n  oidc:\n    issuer: %s\n    audience: %s\n    required_scopes: [mcp]\npublic_url: %s\n", hydra.Issuer(), publicURL, publicURL)
	rs := newReplicaSetWith(t, 2, func(cfg string) string {
		return strings.Replace(cfg, "auth: {mode: none}\n", oidc, 1)
	})
	portA, portB := rs.ports[0], rs.ports[1]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	ada := hydra.CreateClient(t, publicURL, []string{"mcp"}, "eng")
	bob := hydra.CreateClient(t, publicURL, []string{"mcp"}, "eng")
	dora := hydra.CreateClient(t, publicURL, []string{"mcp"}, "dba")
	adaToken, bobToken := hydra.Token(t, ada, "mcp"), hydra.Token(t, bob, "mcp")
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	adaA := startModernClient(t, "http", rs.d, portA, bearer(adaToken))
	adaB := startModernClient(t, "http", rs.d, portB, bearer(adaToken))
	bobB := startModernClient(t, "http", rs.d, portB, bearer(bobToken))

	// approveOnB is dora deciding through replica B's JSON API.
	approveOnB := func(id string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/api/approvals/%s/approve", portB, id),
			strings.NewReader(`{"reason":"approved on replica B"}`))
		req.Header.Set("Authorization", "Bearer "+hydra.Token(t, dora, "mcp"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /api/approvals/%s/approve on replica B: %d %s", id, resp.StatusCode, b)
		}
	}
	// stored is the approval as the store has it: state, who used it, and
	// the last decision's via.
	stored := func(id string) (state, consumedBy, via string) {
		t.Helper()
		row := rs.d.pg.Query(t, "airlock", `SELECT a.state || ' ' || coalesce(nullif(a.consumed_by, ''), '-') || ' ' ||
			coalesce((SELECT d.via FROM approval_decisions d WHERE d.approval_id = a.id ORDER BY d.decided_at DESC LIMIT 1), '-')
			FROM approvals a WHERE a.id = $1`, id)
		if len(row) != 1 {
			t.Fatalf("approval %s in the store: %v", id, row)
		}
		f := strings.Fields(row[0])
		return f[0], f[1], f[2]
	}
	awaitConsumed := func(id string) string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if state, by, _ := stored(id); state == "consumed" {
				return by
			} else if time.Now().After(deadline) {
				t.Fatalf("approval %s is %s 30s after its approval: replica A's watcher did not run the call", id, state)
			}
		}
	}
	amount := func(order int) string {
		t.Helper()
		got := rs.d.pg.Query(t, "shop", "SELECT amount::text FROM orders WHERE id = $1", order)
		if len(got) != 1 {
			t.Fatalf("order %d: %v", order, got)
		}
		return got[0]
	}
	plusOne := func(s string) string {
		t.Helper()
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return strconv.FormatFloat(f+1, 'f', 2, 64)
	}

	// 1. Held on A, read on B.
	before3 := amount(3)
	task := adaA.callAsTask(t, "query_db", update("UPDATE orders SET amount = amount + 1 WHERE id = 3 RETURNING id, amount"))
	id := task.TaskId
	if task.Status != mcp.TaskStatusWorking || !strings.Contains(task.StatusMessage, "waiting for approval "+id+" by dba") {
		t.Fatalf("the task made on A: %+v", task)
	}
	if state, _, _ := stored(id); state != "pending" {
		t.Fatalf("the task id is not a pending approval in the store: %s", state)
	}
	onB, err := adaB.c.GetTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: id}})
	if err != nil {
		t.Fatalf("tasks/get on B: %v", err)
	}
	if onB.TaskId != id || onB.Status != mcp.TaskStatusWorking || !strings.Contains(onB.StatusMessage, "waiting for approval "+id+" by dba") {
		t.Errorf("tasks/get on B: %+v, want task %s working, waiting for dba", onB.Task, id)
	}
	if got, err := bobB.c.GetTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: id}}); err == nil || !strings.Contains(err.Error(), "no task "+id+" of yours") {
		t.Errorf("another subject's tasks/get on B: %+v %v, want no such task", got, err)
	}
	if got, err := bobB.c.TaskResult(ctx, mcp.TaskResultRequest{Params: mcp.TaskResultParams{TaskId: id}}); err == nil {
		t.Errorf("another subject's tasks/result on B: %+v", got)
	}
	if got, err := bobB.c.CancelTask(ctx, mcp.CancelTaskRequest{Params: mcp.CancelTaskParams{TaskId: id}}); err == nil {
		t.Errorf("another subject's tasks/cancel on B: %+v", got)
	}
	if state, _, _ := stored(id); state != "pending" {
		t.Fatalf("after another subject's requests the approval is %s, want pending", state)
	}
	if got := amount(3); got != before3 {
		t.Fatalf("order 3 changed before any decision: %s → %s", before3, got)
	}

	// 2. Decided on B; A's watcher runs the call, once.
	approveOnB(id)
	callID := awaitConsumed(id)
	if _, _, via := stored(id); via != "api" {
		t.Errorf("decision via %q, want api (replica B's JSON API)", via)
	}
	done, err := adaB.c.GetTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: id}})
	if err != nil || done.Status != mcp.TaskStatusCompleted || !strings.Contains(done.StatusMessage, "used by call "+callID) {
		t.Errorf("tasks/get on B after the run: %+v %v, want completed, used by call %s", done, err, callID)
	}
	rows, err := adaA.c.TaskResult(ctx, mcp.TaskResultRequest{Params: mcp.TaskResultParams{TaskId: id}})
	if err != nil || rows.IsError || !strings.Contains(textOf(rows.Content), plusOne(before3)) {
		t.Fatalf("tasks/result on A: %+v %v, want the row with amount %s", rows, err, plusOne(before3))
	}
	elsewhere, err := adaB.c.TaskResult(ctx, mcp.TaskResultRequest{Params: mcp.TaskResultParams{TaskId: id}})
	if err != nil {
		t.Fatalf("tasks/result on B: %v", err)
	}
	text := textOf(elsewhere.Content)
	t.Logf("tasks/result on B: %s", text)
	if !elsewhere.IsError || !strings.Contains(text, "used by call "+callID+", which ran on another replica") ||
		!strings.Contains(text, "in the transcript under call "+callID) || !strings.Contains(text, "does not run again") || strings.Contains(text, "call query_db again") {
		t.Errorf("tasks/result on B: %q, want it to name call %s, say it ran on another replica and is in the transcript, and not to ask for the call again", text, callID)
	}
	if got, want := amount(3), plusOne(before3); got != want {
		t.Errorf("order 3 amount = %s after one approved +1 (was %s), want %s: the call ran %s", got, before3, want, map[bool]string{true: "twice", false: "not once"}[got != before3])
	}

	// 3. Cancelled on B: the approval held on A is withdrawn, A's watcher
	// ends, the call never runs.
	before5 := amount(5)
	held := adaA.callAsTask(t, "query_db", update("UPDATE orders SET amount = amount + 1 WHERE id = 5"))
	cancelled, err := adaB.c.CancelTask(ctx, mcp.CancelTaskRequest{Params: mcp.CancelTaskParams{TaskId: held.TaskId}})
	if err != nil || cancelled.Status != mcp.TaskStatusCancelled {
		t.Fatalf("tasks/cancel on B: %+v %v", cancelled, err)
	}
	if state, _, via := stored(held.TaskId); state != "denied" || via != "withdrawn" {
		t.Errorf("the cancelled task's approval: %s via %s, want denied via withdrawn", state, via)
	}
	onA, err := adaA.c.GetTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: held.TaskId}})
	if err != nil || onA.Status != mcp.TaskStatusCancelled {
		t.Errorf("tasks/get on A after the cancel on B: %+v %v, want cancelled", onA, err)
	}
	withdrawn, err := adaA.c.TaskResult(ctx, mcp.TaskResultRequest{Params: mcp.TaskResultParams{TaskId: held.TaskId}})
	if err != nil || !withdrawn.IsError || !strings.Contains(textOf(withdrawn.Content), "withdrawn") {
		t.Errorf("tasks/result on A after the cancel on B: %+v %v, want the withdrawal", withdrawn, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/api/approvals/%s/approve", portA, held.TaskId), strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+hydra.Token(t, dora, "mcp"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("approving the withdrawn approval on A: %v %v, want 409", resp, err)
	} else {
		resp.Body.Close()
	}
	time.Sleep(time.Second) // A's watcher would have run it by now
	if got := amount(5); got != before5 {
		t.Errorf("order 5 amount %s → %s: the cancelled call ran", before5, got)
	}
	if state, by, _ := stored(held.TaskId); state != "denied" || by != "-" {
		t.Errorf("the withdrawn approval is %s, used by %s", state, by)
	}

	// 4. 2025-11-25 through the TypeScript SDK: a session on each replica.
	// The task is made on A's session (the client then leaves), read on B's
	// own session, approved; A's watcher runs it.
	before6 := amount(6)
	tsPlan := func(port int, steps ...map[string]any) map[string]any {
		return map[string]any{"transport": "http", "url": fmt.Sprintf("http://127.0.0.1:%d/mcp", port), "steps": steps}
	}
	c := startBearerTaskClient(t, adaToken, tsPlan(portA, map[string]any{"op": "create", "name": "query_db",
		"arguments": update("UPDATE orders SET amount = amount + 1 WHERE id = 6 RETURNING id, amount")}))
	c.expect(t, "connected")
	c.expect(t, "tools")
	legacy := c.expect(t, "taskCreated").Task
	c.finish(t)
	if legacy.Status != "working" || !strings.Contains(legacy.StatusMessage, "waiting for approval "+legacy.TaskID+" by dba") {
		t.Fatalf("the task made on A's session: %+v", legacy)
	}
	c = startBearerTaskClient(t, adaToken, tsPlan(portB, map[string]any{"op": "get", "taskId": legacy.TaskID}))
	c.expect(t, "connected")
	c.expect(t, "tools")
	if ev := c.expect(t, "task"); ev.Task.TaskID != legacy.TaskID || ev.Task.Status != "working" || !strings.Contains(ev.Task.StatusMessage, "by dba") {
		t.Errorf("tasks/get on B's own session: %+v, want task %s working", ev.Task, legacy.TaskID)
	}
	c.finish(t)
	c = startBearerTaskClient(t, bobToken, tsPlan(portB, map[string]any{"op": "get", "taskId": legacy.TaskID}))
	c.expect(t, "connected")
	c.expect(t, "tools")
	if ev := c.expect(t, "error"); ev.Error == nil || !strings.Contains(ev.Error.Message, "no task "+legacy.TaskID+" of yours") {
		t.Errorf("another subject's tasks/get on B's session: %+v", ev)
	}
	c.finish(t)
	approveOnB(legacy.TaskID)
	legacyCall := awaitConsumed(legacy.TaskID)
	c = startBearerTaskClient(t, adaToken, tsPlan(portB,
		map[string]any{"op": "get", "taskId": legacy.TaskID},
		map[string]any{"op": "result", "taskId": legacy.TaskID}))
	c.expect(t, "connected")
	c.expect(t, "tools")
	if ev := c.expect(t, "task"); ev.Task.Status != "completed" || !strings.Contains(ev.Task.StatusMessage, "used by call "+legacyCall) {
		t.Errorf("tasks/get on B's session after the run on A: %+v", ev.Task)
	}
	if ev := c.expect(t, "result"); !ev.Result.IsError || !strings.Contains(ev.Result.Text, "used by call "+legacyCall+", which ran on another replica") {
		t.Errorf("tasks/result on B's session: %+v", ev.Result)
	}
	c.finish(t)
	if got, want := amount(6), plusOne(before6); got != want {
		t.Errorf("order 6 amount = %s (was %s), want %s", got, before6, want)
	}

	// The one chain: each approved task's call completed exactly once, and
	// the cancelled one's approval was withdrawn.
	for _, p := range rs.procs {
		p.stop(t)
	}
	if out, err := exec.Command(airlockBin, "transcripts", "verify", "--config", rs.cfgs[1].config).CombinedOutput(); err != nil {
		t.Errorf("transcripts verify: %v %s", err, out)
	}
	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", rs.cfgs[1].config).Output()
	if err != nil {
		t.Fatalf("transcripts export: %v", err)
	}
	completed := map[string]int{}
	withdrawnEvents := 0
	sc := bufio.NewScanner(strings.NewReader(string(export)))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Type   string `json:"type"`
			CallID string `json:"call_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case "call.completed":
			completed[ev.CallID]++
		case "approval.withdrawn":
			withdrawnEvents++
		}
	}
	for _, call := range []string{callID, legacyCall} {
		if completed[call] != 1 {
			t.Errorf("call %s has %d call.completed events, want 1", call, completed[call])
		}
	}
	if withdrawnEvents != 1 {
		t.Errorf("%d approval.withdrawn events, want 1", withdrawnEvents)
	}
}

// startBearerTaskClient is startTaskClient through tasks_bearer.mjs: the
// TypeScript SDK's client sending token on every HTTP request.
func startBearerTaskClient(t *testing.T, token string, plan map[string]any) *taskClient {
	t.Helper()
	c, _ := runTaskScript(t, "tasks_bearer.mjs", plan, 2*time.Minute, []string{"AIRLOCK_E2E_TOKEN=" + token}, false)
	return c
}
