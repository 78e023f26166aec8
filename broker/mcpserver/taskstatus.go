package mcpserver

// A held call's task, watched from its creation to its end (tasks.go):
//
//	tools/call + task ─→ held ─→ watch: waits for the approval's decision (store, every replica)
//	                                ├─ approved ─→ run: the call runs here once → completed | failed
//	                                ├─ denied | expired ─→ failed, the reason in statusMessage
//	                                └─ withdrawn (tasks/cancel) ─→ cancelled
//
// At each change of the task's status (or of its message: "approved, the
// call is running" is working too) the session the call came on gets
// notifications/tasks/status with the task as tasks/get would return it
// (protocol 2025-11-25, "Task Status Notification"), when the session can
// receive one: over stdio at once; over streamable HTTP on the session's
// event stream (GET) or on a response being streamed. A stateless request
// of protocol 2026-07-28 belongs to no session and gets none: its client
// polls tasks/get. Clients must not rely on the notification, and need not:
// tasks/get says the same.

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
)

const (
	// watchRetry is how long a watcher waits after the store failed it.
	watchRetry = time.Second
	// maxWatchers bounds the held calls watched at once: each rereads its
	// approval every approvals poll interval (decisions made by another
	// process, such as the CLI on the store, are seen no other way). A
	// held call past it is not watched: its task still completes when its
	// client asks (tasks/result runs the approved call), without
	// notifications.
	maxWatchers = 200
)

// watch follows held call e until its approval leaves pending, tells its
// session, and runs the call once approved (the retry that consumes the
// approval), so that the task completes with the real result without its
// client having to ask first.
func (t *tasks) watch(e *taskEntry) {
	t.mu.Lock()
	if t.closed || t.watching >= t.maxWatch {
		t.mu.Unlock()
		return
	}
	t.watching++
	e.watched = true
	t.watchers.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.watchers.Done()
		defer func() {
			t.mu.Lock()
			t.watching--
			e.watched = false
			t.mu.Unlock()
		}()
		a, ok := t.awaitDecision(e)
		if !ok {
			return
		}
		if a.State == approval.Approved {
			e.run.Lock()
			defer e.run.Unlock()
			if t.run(t.ctx, e, a, e.who, e.session) != nil {
				return // run told the session: working, then its end
			}
		}
		t.changed(e, a)
	}()
}

// awaitDecision waits until e's approval is no longer pending, and returns
// it; false when the watch ends first (close, or the approval gone).
func (t *tasks) awaitDecision(e *taskEntry) (approval.Approval, bool) {
	for {
		wait := max(e.decideBy.Sub(t.now())+time.Second, time.Second)
		a, err := t.srv.broker.AwaitApproval(t.ctx, e.id, wait)
		switch {
		case t.ctx.Err() != nil, errors.Is(err, approval.ErrNotFound):
			return approval.Approval{}, false
		case err != nil:
			if t.now().After(e.decideBy.Add(taskRetention)) {
				return approval.Approval{}, false
			}
			select {
			case <-t.ctx.Done():
				return approval.Approval{}, false
			case <-time.After(watchRetry):
			}
			continue
		case a.State != approval.Pending:
			return a, true
		}
	}
}

// run runs approved held call e, whose approval is a, as who, once: the
// call's result, the one kept if it already ran here, or nil when its
// arguments are not here (it was made before a restart, or on another
// replica). The caller holds e.run.
func (t *tasks) run(ctx context.Context, e *taskEntry, a approval.Approval, who policy.Identity, sessionID string) *mcp.CallToolResult {
	if e == nil {
		return nil
	}
	if r := t.resultOf(e); r != nil {
		return r
	}
	t.mu.Lock()
	args := e.args
	e.args = nil
	e.running = args != nil
	t.mu.Unlock()
	if args == nil {
		return nil
	}
	t.changed(e, a)
	res := t.srv.broker.Handle(ctx, broker.Call{Tool: e.tool, Arguments: args, Identity: who, SessionID: sessionID, NoWait: true})
	r := toMCP(res)
	t.setResult(e, r)
	t.changed(e, a)
	return r
}

// notice is what a status notification of task says, to send each once.
func notice(task mcp.Task) string { return string(task.Status) + "\x00" + task.StatusMessage }

// changed tells e's session of its task's status, as a (its approval, as
// last read) gives it, unless that was the last thing said.
func (t *tasks) changed(e *taskEntry, a approval.Approval) {
	if e == nil {
		return
	}
	task := t.task(e, a)
	t.mu.Lock()
	session := e.notify
	same := e.notified == notice(task)
	e.notified = notice(task)
	t.mu.Unlock()
	if session == "" || same {
		return
	}
	raw, err := json.Marshal(task)
	if err != nil {
		return
	}
	var params map[string]any
	if json.Unmarshal(raw, &params) != nil {
		return
	}
	// A session that is gone, or whose channel is full, misses it: the
	// client polls tasks/get all the same.
	_ = t.srv.mcp.SendNotificationToSpecificClient(session, mcp.MethodNotificationTasksStatus, params)
}
