package mcpserver

// Attacks on the 2026-07-28 path and the task layer, each against a real
// mcp-go server behind airlock's front and approvals on a real SQLite store
// (newHeldServer, startTaskDoor). Each test names what it tries; the ones
// that found something say what was wrong before.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
)

// postModernRaw posts body with the 2026-07-28 headers given (and only
// those) and returns the status and the body.
func (d *taskDoor) postModernRaw(t *testing.T, user string, body []byte, headers map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Test-User", user)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// pendingOf returns the pending approvals of user.
func pendingOf(t *testing.T, h *heldServer, user string) []approval.Approval {
	t.Helper()
	all, err := h.approvals.List(context.Background(), approval.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []approval.Approval
	for _, a := range all {
		if a.Requester.Subject == user && a.State == approval.Pending {
			out = append(out, a)
		}
	}
	return out
}

// Finding (medium): one caller could push every other caller's tasks out of
// memory. The task table was bounded only for all callers together, the
// entry due to expire soonest dropped first, so mallory making many cheap
// task calls (each refused at once) evicted alice's earlier task: her
// tasks/get then answered "no task of yours" and a held call's kept
// arguments were lost. Now each caller is bounded on their own as well, and
// past that bound loses their own oldest task.
func TestRedteamTaskFloodKeepsOthersTasks(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	d.srv.tasks.maxKeep, d.srv.tasks.maxOwned = 8, 3

	alice := d.post(t, "alice", taskCall(2, "nowhere")).task(t)
	var mine []string
	for i := range 10 {
		mine = append(mine, d.post(t, "mallory", taskCall(10+i, "nowhere")).task(t).TaskId)
	}
	if r := d.post(t, "alice", taskOp(3, "tasks/get", alice.TaskId)); r.Error != nil {
		t.Errorf("alice's task after mallory's flood: %d %s", r.Error.Code, r.Error.Message)
	}
	// mallory keeps her newest, up to her own bound.
	if r := d.post(t, "mallory", taskOp(4, "tasks/get", mine[len(mine)-1])); r.Error != nil {
		t.Errorf("mallory's newest task: %s", r.Error.Message)
	}
	if r := d.post(t, "mallory", taskOp(5, "tasks/get", mine[0])); r.Error == nil {
		t.Errorf("mallory's oldest task is still kept past her bound: %s", r.Result)
	}
	d.srv.tasks.mu.Lock()
	n := len(d.srv.tasks.entries)
	d.srv.tasks.mu.Unlock()
	if n > 4 {
		t.Errorf("%d tasks kept, want at most alice's 1 and mallory's 3", n)
	}
}

// Held: mallory can neither read, await nor cancel alice's held task in
// protocol 2026-07-28 (stateless: identity is all there is), and her
// attempts leave the approval pending.
func TestRedteamModernOtherIdentityTask(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	ctx := context.Background()
	_, r := d.modern(t, "alice", modernTaskCall(1, "thing-1"), nil)
	task := r.task(t)
	for i, m := range []string{"tasks/get", "tasks/result", "tasks/cancel"} {
		status, got := d.modern(t, "mallory", modernTaskOp(10+i, m, task.TaskId), nil)
		if got.Error == nil || got.Error.Code != mcp.INVALID_PARAMS || status != http.StatusBadRequest {
			t.Errorf("mallory's %s of alice's task: %d %+v %s", m, status, got.Error, got.Result)
		}
		if got.Error != nil && strings.Contains(got.Error.Message, "alice") {
			t.Errorf("mallory's %s names the owner: %s", m, got.Error.Message)
		}
	}
	// The same over 2025-11-25 on mallory's own session.
	for i, m := range []string{"tasks/get", "tasks/result", "tasks/cancel"} {
		if got := d.post(t, "mallory", taskOp(20+i, m, task.TaskId)); got.Error == nil {
			t.Errorf("mallory's legacy %s of alice's task: %s", m, got.Result)
		}
	}
	// tasks/list shows mallory none of alice's.
	if got := d.post(t, "mallory", request(30, "tasks/list", map[string]any{})); got.Error != nil || strings.Contains(string(got.Result), task.TaskId) {
		t.Errorf("mallory's tasks/list: %+v %s", got.Error, got.Result)
	}
	if a, err := d.h.approvals.Get(ctx, task.TaskId); err != nil || a.State != approval.Pending {
		t.Errorf("alice's approval after mallory's attempts: %+v %v", a, err)
	}
}

// Held: a 2026-07-28 body cannot carry a method past the Mcp-Method
// header. A JSON-RPC batch is no request at all (mcp-go answers a parse
// error and runs nothing); "method" twice is read as the last one by the
// header check and by mcp-go alike; header values are compared exactly
// (case and padding); a body whose _meta names another version than the
// header is refused.
func TestRedteamModernSmuggling(t *testing.T) {
	h := newHeldServer(t, time.Minute)
	d := startTaskDoor(t, h)
	call := modernTaskCall(1, "thing-1")
	var msg struct {
		Params json.RawMessage `json:"params"`
	}
	_ = json.Unmarshal(call, &msg)
	name := mcp.StandardHeaders(mcp.ProtocolVersion20260728, mcp.MethodToolsCall, msg.Params)[mcp.HeaderName]
	std := func(method string) map[string]string {
		return map[string]string{mcp.HeaderProtocolVersion: mcp.ProtocolVersion20260728, mcp.HeaderMethod: method, mcp.HeaderName: name}
	}

	// A batch with a task-augmented call in it.
	status, body := d.postModernRaw(t, "alice", []byte("["+string(call)+"]"), std("tools/call"))
	if bytes.Contains(body, []byte(`"task"`)) || bytes.Contains(body, []byte(`"taskId"`)) {
		t.Errorf("a batch made a task: %d %s", status, body)
	}

	// "method" twice, the header naming the first: the last is what runs,
	// and the header check sees that one.
	dup := bytes.Replace(call, []byte(`"method":"tools/call"`), []byte(`"method":"tools/list","method":"tools/call"`), 1)
	if !bytes.Contains(dup, []byte(`"method":"tools/list","method":"tools/call"`)) {
		t.Fatalf("no duplicate key in %s", dup)
	}
	status, body = d.postModernRaw(t, "alice", dup, std("tools/list"))
	if status != http.StatusBadRequest || !bytes.Contains(body, []byte(fmt.Sprint(mcp.HEADER_MISMATCH))) {
		t.Errorf("duplicate method, header naming the first: %d %s", status, body)
	}
	// The other way round, the call is a tools/list that mcp-go answers.
	dup2 := bytes.Replace(call, []byte(`"method":"tools/call"`), []byte(`"method":"tools/call","method":"tools/list"`), 1)
	status, body = d.postModernRaw(t, "alice", dup2, std("tools/call"))
	if status != http.StatusBadRequest || bytes.Contains(body, []byte(`"task"`)) {
		t.Errorf("duplicate method, header naming the first (tools/call): %d %s", status, body)
	}

	for _, hv := range []map[string]string{
		{mcp.HeaderMethod: "TOOLS/CALL"},
		{mcp.HeaderMethod: "tools/get"},
		{mcp.HeaderProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION},
		{mcp.HeaderProtocolVersion: ""},
		{mcp.HeaderName: ""},
	} {
		hs := std("tools/call")
		for k, v := range hv {
			hs[k] = v
		}
		if hs[mcp.HeaderProtocolVersion] == "" {
			delete(hs, mcp.HeaderProtocolVersion)
		}
		if hs[mcp.HeaderName] == "" {
			delete(hs, mcp.HeaderName)
		}
		status, body := d.postModernRaw(t, "alice", call, hs)
		if status != http.StatusBadRequest || bytes.Contains(body, []byte(`"task"`)) {
			t.Errorf("headers %v: %d %s, want 400 and no task", hv, status, body)
		}
	}
	// A body naming 2025-11-25 in _meta under a 2026-07-28 header.
	legacyMeta := bytes.Replace(call, []byte(mcp.ProtocolVersion20260728), []byte(mcp.LATEST_LEGACY_PROTOCOL_VERSION), 1)
	if status, body := d.postModernRaw(t, "alice", legacyMeta, std("tools/call")); status != http.StatusBadRequest || bytes.Contains(body, []byte(`"task"`)) {
		t.Errorf("_meta 2025-11-25 under a 2026-07-28 header: %d %s", status, body)
	}
	// A notification (no id) of a task-augmented call is answered by no
	// one and asks for nothing.
	var note map[string]any
	_ = json.Unmarshal(call, &note)
	delete(note, "id")
	nb, _ := json.Marshal(note)
	if status, body := d.postModernRaw(t, "alice", nb, std("tools/call")); bytes.Contains(body, []byte(`"task"`)) {
		t.Errorf("a notification made a task: %d %s", status, body)
	}
	time.Sleep(50 * time.Millisecond)
	if got := pendingOf(t, h, "alice"); len(got) != 0 {
		t.Errorf("%d approvals requested by refused or smuggled calls: %+v", len(got), got)
	}
}

// Held: a task-augmented call of a tool that is not held runs through
// policy as a plain call does (a refused one is a failed task, nothing ran),
// and list_resources as a task is refused (-32601) in both generations.
func TestRedteamTaskOfToolsNotHeld(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	status, r := d.modern(t, "alice", request(1, "tools/call", modernParams(map[string]any{"name": "list_resources", "arguments": map[string]any{}, "task": map[string]any{}})), nil)
	if status != http.StatusNotFound || r.Error == nil || r.Error.Code != mcp.METHOD_NOT_FOUND {
		t.Errorf("list_resources as a 2026-07-28 task: %d %+v %s", status, r.Error, r.Result)
	}
	if r := d.post(t, "alice", request(2, "tools/call", map[string]any{"name": "list_resources", "arguments": map[string]any{}, "task": map[string]any{}})); r.Error == nil || r.Error.Code != mcp.METHOD_NOT_FOUND {
		t.Errorf("list_resources as a 2025-11-25 task: %+v %s", r.Error, r.Result)
	}
	// A tool nobody offers, as a task.
	if _, r := d.modern(t, "alice", request(3, "tools/call", modernParams(map[string]any{"name": "drop_everything", "arguments": map[string]any{}, "task": map[string]any{}})), nil); r.Error == nil {
		t.Errorf("an unknown tool as a task: %s", r.Result)
	}
	// "task": null is no task: mcp-go runs the plain call, which waits for
	// the approval as any held call does (here: the wait of the held
	// server, then pending) and is never mcp-go's own task.
	_, r = d.modern(t, "alice", request(4, "tools/call", modernParams(map[string]any{"name": "write_thing", "arguments": map[string]any{"resource": "nowhere"}, "task": nil})), nil)
	if strings.Contains(string(r.Result), `"task"`) {
		t.Errorf(`"task": null made a task: %s`, r.Result)
	}
}

// Held: a cancelled (withdrawn) held task is never run by its watcher,
// even when an approver approves after it; tasks/result says withdrawn.
func TestRedteamCancelledTaskNeverRuns(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	ctx := context.Background()
	_, r := d.modern(t, "alice", modernTaskCall(1, "thing-1"), nil)
	task := r.task(t)
	_, c := d.modern(t, "alice", modernTaskOp(2, "tasks/cancel", task.TaskId), nil)
	if c.task(t).Status != mcp.TaskStatusCancelled {
		t.Fatalf("cancel: %s", c.Result)
	}
	if _, err := d.h.approvals.Decide(ctx, task.TaskId, dora, approval.Approve, "", approval.ViaAPI); err == nil {
		t.Errorf("a withdrawn approval could still be approved")
	}
	time.Sleep(100 * time.Millisecond)
	if a, _ := d.h.approvals.Get(ctx, task.TaskId); a.State == approval.Consumed || a.ConsumedBy != "" {
		t.Errorf("the withdrawn call ran: %+v", a)
	}
	_, res := d.modern(t, "alice", modernTaskOp(3, "tasks/result", task.TaskId), nil)
	if tr := res.toolResult(t); !tr.IsError || tr.Structured["outcome"] != "approval_withdrawn" {
		t.Errorf("tasks/result of a cancelled task: %+v", tr)
	}
}

// Finding (medium): tasks/result on a pending approval waits for its
// decision (up to a minute, rereading the store), and a 2026-07-28 request
// holds no session, so no cap bounded how many one caller kept waiting at
// once: each a goroutine polling the store. Now a caller has at most
// maxWaits such waits at once; past that, tasks/result answers "still
// pending" at once, as it does when a wait runs out.
func TestRedteamResultWaitsBounded(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	d.srv.tasks.resultWait = 3 * time.Second
	d.srv.tasks.maxWaits = 1
	_, r := d.modern(t, "alice", modernTaskCall(1, "thing-1"), nil)
	task := r.task(t)

	first := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(modernTaskOp(2, "tasks/result", task.TaskId)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("X-Test-User", "alice")
		req.Header.Set(mcp.HeaderProtocolVersion, mcp.ProtocolVersion20260728)
		for k, v := range mcp.StandardHeaders(mcp.ProtocolVersion20260728, mcp.MethodTasksResult, json.RawMessage(`{"taskId":"`+task.TaskId+`"}`)) {
			req.Header.Set(k, v)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		first <- time.Since(start)
	}()
	waitFor(t, "the first tasks/result to wait", 2*time.Second, func() bool {
		d.srv.tasks.mu.Lock()
		defer d.srv.tasks.mu.Unlock()
		return d.srv.tasks.waits[ownerOf(policy.Identity{Subject: "alice", Issuer: "https://idp.test/"})] == 1
	})
	start := time.Now()
	_, second := d.modern(t, "alice", modernTaskOp(3, "tasks/result", task.TaskId), nil)
	if took := time.Since(start); took > time.Second {
		t.Errorf("the second tasks/result waited %s while the first waited", took)
	}
	if tr := second.toolResult(t); !tr.IsError || tr.Structured["outcome"] != "pending" {
		t.Errorf("the second tasks/result: %+v", tr)
	}
	if took := <-first; took < 2*time.Second {
		t.Errorf("the first tasks/result did not wait: %s", took)
	}
	d.srv.tasks.mu.Lock()
	left := len(d.srv.tasks.waits)
	d.srv.tasks.mu.Unlock()
	if left != 0 {
		t.Errorf("%d callers still counted as waiting after their waits ended", left)
	}
}

// Held: a held task call and the same call made plainly (waiting in
// mcp-go's handler) race for one approval once it is approved: the call
// runs once. The watcher and the plain call's retry both try to use the
// approval; the store lets one, and the other is held anew.
func TestRedteamApprovalRunsOnceUnderRace(t *testing.T) {
	// The loser is held anew and waits this long before it answers pending.
	h := newHeldServer(t, 2*time.Second)
	d := startTaskDoor(t, h)
	ctx := context.Background()
	task := d.post(t, "alice", taskCall(2, "thing-1")).task(t)
	plain := make(chan []byte, 1)
	body := request(3, "tools/call", map[string]any{"name": "write_thing", "arguments": map[string]any{"resource": "thing-1"}})
	resp := d.raw(t, "alice", body) // the session exists: raw is safe here
	go func() {
		b, _ := io.ReadAll(resp.Body)
		plain <- b
	}()
	time.Sleep(200 * time.Millisecond) // the plain call is waiting
	if _, err := h.approvals.Decide(ctx, task.TaskId, dora, approval.Approve, "", approval.ViaAPI); err != nil {
		t.Fatal(err)
	}
	var plainBody []byte
	select {
	case plainBody = <-plain:
	case <-time.After(20 * time.Second):
		t.Fatal("the plain call did not answer")
	}
	var done mcp.Task
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got := d.post(t, "alice", taskOp(4, "tasks/get", task.TaskId)).task(t); got.Status.IsTerminal() {
			done = got
			break
		}
	}
	ran := strings.Count(string(plainBody), `1 row`)
	if done.Status == mcp.TaskStatusCompleted && done.StatusMessage == "1 row" {
		ran++
	}
	if ran != 1 {
		t.Errorf("the approved call ran %d times: plain %s; task %+v", ran, plainBody, done)
	}
}
