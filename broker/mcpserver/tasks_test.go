package mcpserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
)

// The task layer is tested through both of its fronts, against a real
// mcp-go server behind them and approvals on a real SQLite store
// (newHeldServer): raw JSON-RPC over streamable HTTP (each request as its
// header's X-Test-User) and over stdio (as alice). The official TypeScript
// SDK's task client drives the same flows end to end in internal/e2e.

var dora = policy.Identity{Subject: "dora", Issuer: "https://idp.test/", Groups: []string{"dba"}}

// taskIdentity is identityFromHeader, with dora in the approver group dba.
func taskIdentity(ctx context.Context) (policy.Identity, error) {
	id, err := identityFromHeader(ctx)
	if id.Subject == dora.Subject {
		id.Groups = dora.Groups
	}
	return id, err
}

// rpc is one JSON-RPC response as a test reads it.
type rpc struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (r rpc) task(t *testing.T) mcp.Task {
	t.Helper()
	if r.Error != nil {
		t.Fatalf("JSON-RPC error %d: %s", r.Error.Code, r.Error.Message)
	}
	var task mcp.Task
	if err := json.Unmarshal(r.Result, &task); err != nil || task.TaskId == "" {
		var created struct {
			Task mcp.Task `json:"task"`
		}
		if err := json.Unmarshal(r.Result, &created); err != nil || created.Task.TaskId == "" {
			t.Fatalf("not a task: %s", r.Result)
		}
		return created.Task
	}
	return task
}

// toolResult is a tools/call or tasks/result answer.
type toolResult struct {
	Content []struct {
		Text string `json:"text"`
	} `json:"content"`
	Structured map[string]any `json:"structuredContent"`
	IsError    bool           `json:"isError"`
	Meta       map[string]any `json:"_meta"`
}

func (r rpc) toolResult(t *testing.T) toolResult {
	t.Helper()
	if r.Error != nil {
		t.Fatalf("JSON-RPC error %d: %s", r.Error.Code, r.Error.Message)
	}
	var tr toolResult
	if err := json.Unmarshal(r.Result, &tr); err != nil {
		t.Fatalf("not a tool result: %s", r.Result)
	}
	return tr
}

func (tr toolResult) text() string {
	var parts []string
	for _, c := range tr.Content {
		parts = append(parts, c.Text)
	}
	return strings.Join(parts, "\n")
}

func request(id int, method string, params any) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	return b
}

func taskCall(id int, resource string) []byte {
	return request(id, "tools/call", map[string]any{"name": "write_thing", "arguments": map[string]any{"resource": resource}, "task": map[string]any{"ttl": 60000}})
}

func taskOp(id int, method, taskID string) []byte {
	return request(id, method, map[string]any{"taskId": taskID})
}

// taskDoor is a held server's HTTP front on a real listener, with an
// initialized session per user.
type taskDoor struct {
	h        *heldServer
	srv      *Server
	url      string
	sessions map[string]string
}

func startTaskDoor(t *testing.T, h *heldServer) *taskDoor {
	t.Helper()
	srv := New(h.srv.broker, taskIdentity, "test", nil)
	t.Cleanup(srv.Close)
	hh, err := srv.HTTPHandler(HTTPConfig{Authenticate: byHeader, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", hh)
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hh.Shutdown(ctx)
		_ = hs.Shutdown(ctx)
	})
	return &taskDoor{h: h, srv: srv, url: "http://" + ln.Addr().String() + "/mcp", sessions: map[string]string{}}
}

// post sends one JSON-RPC message as user on their session (opened on
// first use) and returns the response, from a JSON or an event-stream body.
func (d *taskDoor) post(t *testing.T, user string, body []byte) rpc {
	t.Helper()
	if _, ok := d.sessions[user]; !ok {
		d.sessions[user] = ""
		r := d.raw(t, user, initializeBody(1, "t"))
		d.sessions[user] = r.Header.Get("Mcp-Session-Id")
		d.raw(t, user, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	}
	resp := d.raw(t, user, body)
	b, _ := io.ReadAll(resp.Body)
	if i := bytes.Index(b, []byte("data: ")); bytes.HasPrefix(bytes.TrimSpace(b), []byte("event:")) && i >= 0 {
		b = b[i+len("data: "):]
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			b = b[:j]
		}
	}
	var out rpc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%d %q: not a JSON-RPC response", resp.StatusCode, b)
	}
	return out
}

func (d *taskDoor) raw(t *testing.T, user string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Test-User", user)
	if sid := d.sessions[user]; sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The server says it takes tasks, and which tools may be called as one.
func TestTasksAdvertised(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	resp := d.raw(t, "alice", initializeBody(1, "t"))
	var init struct {
		Result struct {
			Capabilities mcp.ServerCapabilities `json:"capabilities"`
		} `json:"result"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &init); err != nil {
		t.Fatalf("initialize: %s", b)
	}
	tc := init.Result.Capabilities.Tasks
	if tc == nil || tc.Cancel == nil || tc.List == nil || tc.Requests == nil || tc.Requests.Tools == nil || tc.Requests.Tools.Call == nil {
		t.Fatalf("initialize does not advertise tasks for tools/call, list and cancel: %s", b)
	}
	var list struct {
		Tools []mcp.Tool `json:"tools"`
	}
	r := d.post(t, "alice", request(2, "tools/list", map[string]any{}))
	if err := json.Unmarshal(r.Result, &list); err != nil {
		t.Fatal(err)
	}
	for _, tl := range list.Tools {
		want := mcp.TaskSupport("")
		if tl.Name == "write_thing" {
			want = mcp.TaskSupportOptional
		}
		got := mcp.TaskSupport("")
		if tl.Execution != nil {
			got = tl.Execution.TaskSupport
		}
		if got != want {
			t.Errorf("%s: taskSupport %q, want %q", tl.Name, got, want)
		}
	}
	// A tool without task support, called as a task, is mcp-go's to refuse.
	r = d.post(t, "alice", request(3, "tools/call", map[string]any{"name": "list_resources", "arguments": map[string]any{}, "task": map[string]any{}}))
	if r.Error == nil || r.Error.Code != mcp.METHOD_NOT_FOUND {
		t.Errorf("list_resources as a task: %+v %s, want -32601", r.Error, r.Result)
	}
}

// held → task (id = approval id, working, who decides) → approved →
// completed → tasks/result runs the call once and returns its rows; only the
// requester sees the task.
func TestTaskHeldThenApprovedOverHTTP(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	ctx := context.Background()

	created := d.post(t, "alice", taskCall(2, "thing-1")).task(t)
	if created.Status != mcp.TaskStatusWorking || !strings.Contains(created.StatusMessage, "waiting for approval "+created.TaskId+" by dba") {
		t.Fatalf("created task: %+v", created)
	}
	a, err := d.h.approvals.Get(ctx, created.TaskId)
	if err != nil || a.State != approval.Pending || a.Requester.Subject != "alice" {
		t.Fatalf("the task id is not alice's pending approval: %+v %v", a, err)
	}
	if created.TTL == nil || *created.TTL < time.Hour.Milliseconds() || created.PollInterval == nil {
		t.Errorf("ttl %v, pollInterval %v: want at least the approval's life, and an interval", created.TTL, created.PollInterval)
	}
	// The same call again is the same task, not a second approval.
	if again := d.post(t, "alice", taskCall(3, "thing-1")).task(t); again.TaskId != created.TaskId {
		t.Errorf("the same call made again got task %s, want %s", again.TaskId, created.TaskId)
	}
	if got := d.post(t, "alice", taskOp(4, "tasks/get", created.TaskId)).task(t); got.Status != mcp.TaskStatusWorking {
		t.Errorf("tasks/get while pending: %+v", got)
	}
	// Someone else — even an approver — neither sees nor cancels it.
	for i, user := range []string{"mallory", "dora"} {
		for j, op := range []string{"tasks/get", "tasks/cancel", "tasks/result"} {
			r := d.post(t, user, taskOp(10+i*3+j, op, created.TaskId))
			if r.Error == nil || r.Error.Code != mcp.INVALID_PARAMS {
				t.Errorf("%s %s: %s %+v, want -32602", user, op, r.Result, r.Error)
			}
		}
	}
	if a, _ := d.h.approvals.Get(ctx, created.TaskId); a.State != approval.Pending {
		t.Fatalf("after others' attempts the approval is %s", a.State)
	}

	// tasks/result blocks while pending, and runs the call once approved.
	done := make(chan rpc, 1)
	go func() { done <- d.post(t, "alice", taskOp(20, "tasks/result", created.TaskId)) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("tasks/result answered before a decision: %s", r.Result)
	default:
	}
	if _, err := d.h.approvals.Decide(ctx, created.TaskId, dora, approval.Approve, "ok", approval.ViaAPI); err != nil {
		t.Fatal(err)
	}
	var res toolResult
	select {
	case r := <-done:
		res = r.toolResult(t)
	case <-time.After(10 * time.Second):
		t.Fatal("tasks/result did not answer after the approval")
	}
	if res.IsError || res.text() != "1 row" {
		t.Fatalf("tasks/result: %+v", res)
	}
	related, _ := res.Meta[mcp.RelatedTaskMetaKey].(map[string]any)
	if related["taskId"] != created.TaskId || res.Meta["airlock/call_id"] == nil {
		t.Errorf("tasks/result _meta: %v", res.Meta)
	}
	a, _ = d.h.approvals.Get(ctx, created.TaskId)
	if a.State != approval.Consumed || a.ConsumedBy != res.Meta["airlock/call_id"] {
		t.Errorf("approval after the run: %s by %s, want consumed by the call %v", a.State, a.ConsumedBy, res.Meta["airlock/call_id"])
	}
	if got := d.post(t, "alice", taskOp(21, "tasks/get", created.TaskId)).task(t); got.Status != mcp.TaskStatusCompleted {
		t.Errorf("tasks/get after the run: %+v", got)
	}
	// Asked again, the same result: the call does not run twice.
	if again := d.post(t, "alice", taskOp(22, "tasks/result", created.TaskId)).toolResult(t); again.Meta["airlock/call_id"] != res.Meta["airlock/call_id"] {
		t.Errorf("a second tasks/result ran the call again: %v", again.Meta)
	}
	if r := d.post(t, "alice", taskOp(23, "tasks/cancel", created.TaskId)); r.Error == nil || r.Error.Code != mcp.INVALID_PARAMS || !strings.Contains(r.Error.Message, "terminal status 'completed'") {
		t.Errorf("cancelling a completed task: %+v", r.Error)
	}
	list := d.post(t, "alice", request(24, "tasks/list", map[string]any{}))
	if !strings.Contains(string(list.Result), created.TaskId) {
		t.Errorf("tasks/list lacks the task: %s", list.Result)
	}
	if other := d.post(t, "mallory", request(25, "tasks/list", map[string]any{})); strings.Contains(string(other.Result), created.TaskId) {
		t.Errorf("mallory's tasks/list shows alice's task: %s", other.Result)
	}
}

// denied → failed, with who and why in statusMessage and in tasks/result;
// a second call (a new approval) cancelled → the approval is withdrawn.
func TestTaskDeniedAndCancelledOverHTTP(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	ctx := context.Background()

	first := d.post(t, "alice", taskCall(2, "thing-1")).task(t)
	if _, err := d.h.approvals.Decide(ctx, first.TaskId, dora, approval.Deny, "use the staging copy", approval.ViaWeb); err != nil {
		t.Fatal(err)
	}
	got := d.post(t, "alice", taskOp(3, "tasks/get", first.TaskId)).task(t)
	if got.Status != mcp.TaskStatusFailed || !strings.Contains(got.StatusMessage, "denied by dora: use the staging copy") {
		t.Errorf("a denied task: %+v", got)
	}
	res := d.post(t, "alice", taskOp(4, "tasks/result", first.TaskId)).toolResult(t)
	if !res.IsError || !strings.Contains(res.text(), "denied by dora: use the staging copy") || res.Structured["outcome"] != "approval_denied" {
		t.Errorf("tasks/result of a denied task: %+v", res)
	}

	second := d.post(t, "alice", taskCall(5, "thing-1")).task(t)
	if second.TaskId == first.TaskId || second.Status != mcp.TaskStatusWorking {
		t.Fatalf("a call after a denial: %+v", second)
	}
	cancelled := d.post(t, "alice", taskOp(6, "tasks/cancel", second.TaskId)).task(t)
	if cancelled.Status != mcp.TaskStatusCancelled {
		t.Errorf("tasks/cancel answered %+v", cancelled)
	}
	a, _ := d.h.approvals.Get(ctx, second.TaskId)
	if a.State != approval.Denied || !a.Withdrawn() || a.Decisions[0].Approver.Subject != "alice" {
		t.Errorf("the cancelled task's approval: %+v", a)
	}
	if _, err := d.h.approvals.Decide(ctx, second.TaskId, dora, approval.Approve, "", approval.ViaWeb); err == nil {
		t.Error("a withdrawn approval could still be approved")
	}
	if got := d.post(t, "alice", taskOp(7, "tasks/get", second.TaskId)).task(t); got.Status != mcp.TaskStatusCancelled {
		t.Errorf("tasks/get after cancel: %+v", got)
	}
	if r := d.post(t, "alice", taskOp(8, "tasks/cancel", second.TaskId)); r.Error == nil || r.Error.Code != mcp.INVALID_PARAMS {
		t.Errorf("cancelling twice: %+v", r.Error)
	}
}

// A call that is not held is a task that is already over: here a refusal
// (unknown resource), so failed with the reason, its result kept.
func TestTaskNotHeldIsTerminalAtOnce(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	task := d.post(t, "alice", taskCall(2, "nowhere")).task(t)
	if task.Status != mcp.TaskStatusFailed || !strings.Contains(task.StatusMessage, `Unknown resource "nowhere"`) {
		t.Fatalf("task of a refused call: %+v", task)
	}
	res := d.post(t, "alice", taskOp(3, "tasks/result", task.TaskId)).toolResult(t)
	if !res.IsError || res.Meta["airlock/call_id"] != task.TaskId {
		t.Errorf("tasks/result: %+v", res)
	}
	if r := d.post(t, "mallory", taskOp(4, "tasks/get", task.TaskId)); r.Error == nil {
		t.Errorf("mallory read alice's task: %s", r.Result)
	}
}

// After a restart the task is still there (it is the approval): once
// approved it reads completed, tasks/result says to call again, and the
// same call made again runs under the approval.
func TestTaskAfterRestart(t *testing.T) {
	h := newHeldServer(t, time.Minute)
	before := startTaskDoor(t, h)
	ctx := context.Background()
	task := before.post(t, "alice", taskCall(2, "thing-1")).task(t)

	before.srv.Close()           // the process ends: nothing follows the task any more
	after := startTaskDoor(t, h) // a new process: no task memory, same store
	if got := after.post(t, "alice", taskOp(3, "tasks/get", task.TaskId)).task(t); got.Status != mcp.TaskStatusWorking {
		t.Errorf("tasks/get after the restart, pending: %+v", got)
	}
	if _, err := h.approvals.Decide(ctx, task.TaskId, dora, approval.Approve, "", approval.ViaAPI); err != nil {
		t.Fatal(err)
	}
	if got := after.post(t, "alice", taskOp(4, "tasks/get", task.TaskId)).task(t); got.Status != mcp.TaskStatusCompleted {
		t.Errorf("tasks/get after the restart, approved: %+v", got)
	}
	res := after.post(t, "alice", taskOp(5, "tasks/result", task.TaskId)).toolResult(t)
	if !res.IsError || res.Structured["outcome"] != "call_again" || !strings.Contains(res.text(), "call write_thing again with the same arguments") {
		t.Fatalf("tasks/result after the restart: %+v", res)
	}
	if a, _ := h.approvals.Get(ctx, task.TaskId); a.State != approval.Approved {
		t.Fatalf("tasks/result without the arguments used the approval: %s", a.State)
	}
	plain := after.post(t, "alice", request(6, "tools/call", map[string]any{"name": "write_thing", "arguments": map[string]any{"resource": "thing-1"}})).toolResult(t)
	if plain.IsError || plain.text() != "1 row" {
		t.Fatalf("the call made again: %+v", plain)
	}
	if a, _ := h.approvals.Get(ctx, task.TaskId); a.State != approval.Consumed {
		t.Errorf("the call made again did not use the approval: %s", a.State)
	}
}

// Over stdio the filter answers task requests and passes the rest to
// mcp-go; every line out is one whole JSON-RPC message.
func TestTasksOverStdio(t *testing.T) {
	h := newHeldServer(t, time.Minute)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.srv.ServeStdio(ctx, inR, outW); outW.Close() }()
	t.Cleanup(func() {
		inW.Close()
		cancel()
		<-served
	})

	var mu sync.Mutex
	replies := map[string]chan rpc{}
	reply := func(id int) chan rpc {
		mu.Lock()
		defer mu.Unlock()
		k := fmt.Sprint(id)
		if replies[k] == nil {
			replies[k] = make(chan rpc, 1)
		}
		return replies[k]
	}
	bad := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var msg struct {
				ID json.RawMessage `json:"id"`
				rpc
			}
			if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
				bad <- sc.Text()
				continue
			}
			if len(msg.ID) > 0 {
				var id int
				_ = json.Unmarshal(msg.ID, &id)
				reply(id) <- msg.rpc
			}
		}
	}()
	send := func(b []byte) {
		if _, err := inW.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	await := func(id int) rpc {
		select {
		case r := <-reply(id):
			return r
		case s := <-bad:
			t.Fatalf("a line out is not JSON: %q", s)
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to request %d", id)
		}
		return rpc{}
	}

	send(initializeBody(1, "t"))
	await(1)
	send([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	send(taskCall(2, "thing-1"))
	task := await(2).task(t)
	if task.Status != mcp.TaskStatusWorking {
		t.Fatalf("created: %+v", task)
	}
	send(taskOp(3, "tasks/result", task.TaskId)) // blocks until decided
	for i := 10; i < 20; i++ {                   // meanwhile mcp-go answers the rest
		send(request(i, "ping", map[string]any{}))
		send(taskOp(100+i, "tasks/get", task.TaskId))
	}
	for i := 10; i < 20; i++ {
		if r := await(i); r.Error != nil {
			t.Errorf("ping: %+v", r.Error)
		}
		if got := await(100 + i).task(t); got.Status != mcp.TaskStatusWorking {
			t.Errorf("tasks/get: %+v", got)
		}
	}
	if _, err := h.approvals.Decide(context.Background(), task.TaskId, dora, approval.Approve, "", approval.ViaCLILocal); err != nil {
		t.Fatal(err)
	}
	if res := await(3).toolResult(t); res.IsError || res.text() != "1 row" {
		t.Fatalf("tasks/result over stdio: %+v", res)
	}
	h.srv.tasks.mu.Lock()
	defer h.srv.tasks.mu.Unlock()
	if got := h.srv.tasks.entries[task.TaskId]; got == nil || got.args != nil {
		t.Errorf("the arguments are still kept after the call ran")
	}
}
