package mcpserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/broker/approval"
)

// Protocol 2026-07-28 in front of mcp-go (protocol.go) and task status
// notifications (taskstatus.go), through raw JSON-RPC over both transports
// against a real mcp-go server and approvals on a real SQLite store. The
// real clients of each generation (mcp-go's client, the TypeScript SDK)
// drive the same flows end to end in internal/e2e.

// modernParams adds the _meta a 2026-07-28 request carries to params.
func modernParams(params map[string]any) map[string]any {
	params["_meta"] = map[string]any{
		mcp.MetaKeyProtocolVersion:    mcp.ProtocolVersion20260728,
		mcp.MetaKeyClientCapabilities: map[string]any{},
		mcp.MetaKeyClientInfo:         map[string]any{"name": "raw", "version": "1"},
	}
	return params
}

func modernTaskCall(id int, resource string) []byte {
	return request(id, "tools/call", modernParams(map[string]any{"name": "write_thing", "arguments": map[string]any{"resource": resource}, "task": map[string]any{}}))
}

func modernTaskOp(id int, method, taskID string) []byte {
	return request(id, method, modernParams(map[string]any{"taskId": taskID}))
}

// modern posts body as user the way a 2026-07-28 client does: no session,
// Mcp-Protocol-Version, and the Mcp-Method and Mcp-Name the body calls for,
// which headers then changes (an empty value removes the header).
func (d *taskDoor) modern(t *testing.T, user string, body []byte, headers map[string]string) (int, rpc) {
	t.Helper()
	var msg struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Test-User", user)
	req.Header.Set(mcp.HeaderProtocolVersion, mcp.ProtocolVersion20260728)
	for k, v := range mcp.StandardHeaders(mcp.ProtocolVersion20260728, mcp.MCPMethod(msg.Method), msg.Params) {
		req.Header.Set(k, v)
	}
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
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
	if resp.Header.Get(mcp.HeaderSessionID) != "" {
		t.Errorf("a 2026-07-28 request got a session id")
	}
	return resp.StatusCode, out
}

// A 2026-07-28 task-augmented tools/call is airlock's task, not mcp-go's:
// its id is the approval's, its state the store's, and the task completes
// with the call's result once approved. (Before, mcp-go made a task of its
// own, under an id no approval had.)
func TestModernTaskIsTheApproval(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	ctx := context.Background()

	status, r := d.modern(t, "alice", modernTaskCall(1, "thing-1"), nil)
	if status != http.StatusOK {
		t.Fatalf("status %d: %+v", status, r.Error)
	}
	created := r.task(t)
	a, err := d.h.approvals.Get(ctx, created.TaskId)
	if err != nil || a.State != approval.Pending || a.Requester.Subject != "alice" {
		t.Fatalf("the 2026-07-28 task %s is not alice's pending approval: %+v %v", created.TaskId, a, err)
	}
	if created.Status != mcp.TaskStatusWorking || !strings.Contains(created.StatusMessage, "waiting for approval "+created.TaskId+" by dba") {
		t.Errorf("created task: %+v", created)
	}
	var decorated struct {
		ResultType string         `json:"resultType"`
		Meta       map[string]any `json:"_meta"`
	}
	_ = json.Unmarshal(r.Result, &decorated)
	if info, _ := decorated.Meta[mcp.MetaKeyServerInfo].(map[string]any); decorated.ResultType != "complete" || info["name"] != "airlock" {
		t.Errorf("a 2026-07-28 result without resultType or serverInfo: %s", r.Result)
	}
	if _, again := d.modern(t, "alice", modernTaskCall(2, "thing-1"), nil); again.task(t).TaskId != created.TaskId {
		t.Errorf("the same call made again is another task: %s", again.Result)
	}
	if _, got := d.modern(t, "alice", modernTaskOp(3, "tasks/get", created.TaskId), nil); got.task(t).Status != mcp.TaskStatusWorking {
		t.Errorf("tasks/get while pending: %s", got.Result)
	}
	// Stateless, yet only the requester sees the task.
	if status, other := d.modern(t, "mallory", modernTaskOp(4, "tasks/get", created.TaskId), nil); status != http.StatusBadRequest || other.Error == nil || other.Error.Code != mcp.INVALID_PARAMS {
		t.Errorf("mallory's tasks/get: %d %+v %s", status, other.Error, other.Result)
	}
	// 2026-07-28 has no tasks/list: mcp-go refuses it.
	if status, list := d.modern(t, "alice", request(5, "tasks/list", modernParams(map[string]any{})), nil); status != http.StatusNotFound || list.Error == nil || list.Error.Code != mcp.METHOD_NOT_FOUND {
		t.Errorf("tasks/list on 2026-07-28: %d %+v", status, list.Error)
	}

	if _, err := d.h.approvals.Decide(ctx, created.TaskId, dora, approval.Approve, "", approval.ViaAPI); err != nil {
		t.Fatal(err)
	}
	// Polling alone completes the task: airlock runs the approved call.
	var done mcp.Task
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, got := d.modern(t, "alice", modernTaskOp(6, "tasks/get", created.TaskId), nil); got.task(t).Status.IsTerminal() {
			done = got.task(t)
			break
		}
	}
	if done.Status != mcp.TaskStatusCompleted || done.StatusMessage != "1 row" {
		t.Fatalf("the approved task: %+v", done)
	}
	if a, _ := d.h.approvals.Get(ctx, created.TaskId); a.State != approval.Consumed {
		t.Errorf("the approval after the run: %s, want consumed", a.State)
	}
	_, res := d.modern(t, "alice", modernTaskOp(7, "tasks/result", created.TaskId), nil)
	tr := res.toolResult(t)
	related, _ := tr.Meta[mcp.RelatedTaskMetaKey].(map[string]any)
	if tr.IsError || tr.text() != "1 row" || related["taskId"] != created.TaskId {
		t.Errorf("tasks/result: %+v", tr)
	}
}

// Over HTTP a 2026-07-28 request whose Mcp-Method or Mcp-Name disagree with
// its body, or that lacks what that generation requires, is refused before
// anything runs, with mcp-go's codes; a plain call and a task call alike.
func TestModernHeaderChecks(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	ctx := context.Background()
	plain := request(1, "tools/call", modernParams(map[string]any{"name": "write_thing", "arguments": map[string]any{"resource": "thing-1"}}))
	noCaps := request(1, "tools/call", map[string]any{"name": "write_thing", "arguments": map[string]any{"resource": "thing-1"}, "task": map[string]any{},
		"_meta": map[string]any{mcp.MetaKeyProtocolVersion: mcp.ProtocolVersion20260728}})
	for _, c := range []struct {
		name    string
		body    []byte
		headers map[string]string
		code    int
		want    string
	}{
		{"task call, Mcp-Name of another tool", modernTaskCall(1, "thing-1"), map[string]string{mcp.HeaderName: "list_resources"}, mcp.HEADER_MISMATCH, `Mcp-Name: header value "list_resources" does not match body value "write_thing"`},
		{"task call, Mcp-Method of another method", modernTaskCall(1, "thing-1"), map[string]string{mcp.HeaderMethod: "tools/list"}, mcp.HEADER_MISMATCH, `Mcp-Method: header value "tools/list" does not match body value "tools/call"`},
		{"task call without Mcp-Name", modernTaskCall(1, "thing-1"), map[string]string{mcp.HeaderName: ""}, mcp.HEADER_MISMATCH, "Mcp-Name: missing required header"},
		{"task call without Mcp-Method", modernTaskCall(1, "thing-1"), map[string]string{mcp.HeaderMethod: ""}, mcp.HEADER_MISMATCH, "Mcp-Method: missing required header"},
		{"task call without Mcp-Protocol-Version", modernTaskCall(1, "thing-1"), map[string]string{mcp.HeaderProtocolVersion: ""}, mcp.HEADER_MISMATCH, "Mcp-Protocol-Version header is required"},
		{"task call, header version of the other generation", modernTaskCall(1, "thing-1"), map[string]string{mcp.HeaderProtocolVersion: mcp.ProtocolVersion20251125}, mcp.HEADER_MISMATCH, "does not match request"},
		{"task call without client capabilities", noCaps, nil, mcp.INVALID_PARAMS, mcp.MetaKeyClientCapabilities},
		{"task call with Last-Event-ID", modernTaskCall(1, "thing-1"), map[string]string{mcp.HeaderLastEventID: "1"}, mcp.HEADER_MISMATCH, "Last-Event-ID is not supported"},
		{"tasks/get, Mcp-Method of another method", modernTaskOp(1, "tasks/get", "x"), map[string]string{mcp.HeaderMethod: "tasks/cancel"}, mcp.HEADER_MISMATCH, "Mcp-Method"},
		{"plain call, Mcp-Name of another tool", plain, map[string]string{mcp.HeaderName: "list_resources"}, mcp.HEADER_MISMATCH, "Mcp-Name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, r := d.modern(t, "alice", c.body, c.headers)
			if status != http.StatusBadRequest || r.Error == nil || r.Error.Code != c.code || !strings.Contains(r.Error.Message, c.want) {
				t.Errorf("got %d %+v %s, want 400 %d %q", status, r.Error, r.Result, c.code, c.want)
			}
		})
	}
	if held, err := d.h.approvals.List(ctx, approval.ListFilter{}); err != nil || len(held) != 0 {
		t.Errorf("refused requests left approvals behind: %d %v", len(held), err)
	}
	// The same requests with true headers go through.
	if status, r := d.modern(t, "alice", modernTaskCall(2, "thing-1"), nil); status != http.StatusOK || r.task(t).Status != mcp.TaskStatusWorking {
		t.Errorf("a true task call: %d %s", status, r.Result)
	}
}

// stdioPeer is a client's end of ServeStdio: responses by id, and the
// notifications/tasks/status it receives, in order.
type stdioPeer struct {
	in      io.WriteCloser
	mu      sync.Mutex
	replies map[string]chan rpc
	notes   chan mcp.Task
	bad     chan string
}

func startStdioPeer(t *testing.T, h *heldServer) *stdioPeer {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.srv.ServeStdio(ctx, inR, outW); outW.Close() }()
	p := &stdioPeer{in: inW, replies: map[string]chan rpc{}, notes: make(chan mcp.Task, 32), bad: make(chan string, 8)}
	t.Cleanup(func() {
		inW.Close()
		cancel()
		<-served
	})
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var msg struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
				Params json.RawMessage `json:"params"`
				rpc
			}
			if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
				p.bad <- sc.Text()
				continue
			}
			switch {
			case len(msg.ID) > 0:
				var id int
				_ = json.Unmarshal(msg.ID, &id)
				p.reply(id) <- msg.rpc
			case msg.Method == mcp.MethodNotificationTasksStatus:
				var task mcp.Task
				_ = json.Unmarshal(msg.Params, &task)
				p.notes <- task
			}
		}
	}()
	return p
}

func (p *stdioPeer) reply(id int) chan rpc {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := fmt.Sprint(id)
	if p.replies[k] == nil {
		p.replies[k] = make(chan rpc, 1)
	}
	return p.replies[k]
}

func (p *stdioPeer) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

func (p *stdioPeer) await(t *testing.T, id int) rpc {
	t.Helper()
	select {
	case r := <-p.reply(id):
		return r
	case s := <-p.bad:
		t.Fatalf("a line out is not JSON: %q", s)
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer to request %d", id)
	}
	return rpc{}
}

// note returns the next status notification.
func (p *stdioPeer) note(t *testing.T) mcp.Task {
	t.Helper()
	select {
	case task := <-p.notes:
		return task
	case <-time.After(10 * time.Second):
		t.Fatal("no notifications/tasks/status")
	}
	return mcp.Task{}
}

// A held call's session hears of each change of its task's status:
// approved → working (the call is running) → completed with its result;
// denied → failed with the reason; cancelled → cancelled. A stateless
// 2026-07-28 task call, on no session, hears nothing (its client polls).
func TestTaskStatusNotifications(t *testing.T) {
	h := newHeldServer(t, time.Minute)
	ctx := context.Background()
	p := startStdioPeer(t, h)
	p.send(t, initializeBody(1, "t"))
	p.await(t, 1)
	p.send(t, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))

	p.send(t, taskCall(2, "thing-1"))
	approved := p.await(t, 2).task(t)
	if _, err := h.approvals.Decide(ctx, approved.TaskId, dora, approval.Approve, "", approval.ViaCLILocal); err != nil {
		t.Fatal(err)
	}
	if n := p.note(t); n.TaskId != approved.TaskId || n.Status != mcp.TaskStatusWorking || !strings.Contains(n.StatusMessage, "approved by dora; the call is running") {
		t.Errorf("first notification after approval: %+v", n)
	}
	if n := p.note(t); n.TaskId != approved.TaskId || n.Status != mcp.TaskStatusCompleted || n.StatusMessage != "1 row" || n.CreatedAt == "" || n.TTL == nil {
		t.Errorf("second notification after approval: %+v", n)
	}
	p.send(t, taskOp(3, "tasks/result", approved.TaskId))
	if res := p.await(t, 3).toolResult(t); res.IsError || res.text() != "1 row" {
		t.Errorf("tasks/result after the run: %+v", res)
	}

	p.send(t, taskCall(4, "thing-1"))
	denied := p.await(t, 4).task(t)
	if _, err := h.approvals.Decide(ctx, denied.TaskId, dora, approval.Deny, "not today", approval.ViaWeb); err != nil {
		t.Fatal(err)
	}
	if n := p.note(t); n.TaskId != denied.TaskId || n.Status != mcp.TaskStatusFailed || !strings.Contains(n.StatusMessage, "denied by dora: not today") {
		t.Errorf("notification after denial: %+v", n)
	}

	p.send(t, taskCall(5, "thing-1"))
	withdrawn := p.await(t, 5).task(t)
	p.send(t, taskOp(6, "tasks/cancel", withdrawn.TaskId))
	if got := p.await(t, 6).task(t); got.Status != mcp.TaskStatusCancelled {
		t.Errorf("tasks/cancel: %+v", got)
	}
	if n := p.note(t); n.TaskId != withdrawn.TaskId || n.Status != mcp.TaskStatusCancelled {
		t.Errorf("notification after cancel: %+v", n)
	}

	p.send(t, modernTaskCall(7, "thing-1"))
	stateless := p.await(t, 7).task(t)
	if a, err := h.approvals.Get(ctx, stateless.TaskId); err != nil || a.State != approval.Pending {
		t.Fatalf("a 2026-07-28 task over stdio is not a pending approval: %+v %v", a, err)
	}
	if _, err := h.approvals.Decide(ctx, stateless.TaskId, dora, approval.Approve, "", approval.ViaCLILocal); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if a, _ := h.approvals.Get(ctx, stateless.TaskId); a.State == approval.Consumed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the approved 2026-07-28 task did not run")
		}
	}
	select {
	case n := <-p.notes:
		t.Errorf("a stateless task was notified: %+v", n)
	case <-time.After(200 * time.Millisecond):
	}
}

// Past maxWatchers a held call is not watched: approved, its task reads
// completed (it does not claim a run nobody makes), and tasks/result runs
// the call, as after a restart but with the arguments still here.
func TestUnwatchedTaskRunsOnResult(t *testing.T) {
	d := startTaskDoor(t, newHeldServer(t, time.Minute))
	ctx := context.Background()
	d.srv.tasks.mu.Lock()
	d.srv.tasks.maxWatch = 0
	d.srv.tasks.mu.Unlock()

	task := d.post(t, "alice", taskCall(2, "thing-1")).task(t)
	if _, err := d.h.approvals.Decide(ctx, task.TaskId, dora, approval.Approve, "", approval.ViaAPI); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := d.post(t, "alice", taskOp(3, "tasks/get", task.TaskId)).task(t); got.Status != mcp.TaskStatusCompleted {
		t.Errorf("an unwatched approved task: %+v", got)
	}
	if a, _ := d.h.approvals.Get(ctx, task.TaskId); a.State != approval.Approved {
		t.Fatalf("an unwatched task's call ran before anyone asked: %s", a.State)
	}
	if res := d.post(t, "alice", taskOp(4, "tasks/result", task.TaskId)).toolResult(t); res.IsError || res.text() != "1 row" {
		t.Errorf("tasks/result: %+v", res)
	}
	if a, _ := d.h.approvals.Get(ctx, task.TaskId); a.State != approval.Consumed {
		t.Errorf("after tasks/result the approval is %s, want consumed", a.State)
	}
}
