package mcpserver

// Held calls as MCP tasks (the tasks utility of protocol 2025-11-25, and the
// same requests made statelessly in protocol 2026-07-28 as mcp-go v1.2.1
// shapes them).
//
// mcp-go keeps tasks in its own memory under ids it makes up, so a task
// could not outlive the process nor be the approval it waits for. Airlock
// answers a task-augmented tools/call and tasks/get|result|cancel|list
// itself, in front of mcp-go on both transports (http.go, stdio.go) and in
// both generations (protocol.go checks a 2026-07-28 request as mcp-go
// would first):
//
//	tools/call + task ─→ broker.Handle (NoWait) ─┬─ held: task id = approval id, working; watched (taskstatus.go)
//	                                             └─ not held: task id = call id, completed | failed
//	tasks/get    ─→ the approval, read from the store: pending → working, approved → working while the
//	                call runs here, then completed, denied | expired → failed (reason in statusMessage),
//	                withdrawn → cancelled
//	tasks/result ─→ the call's result; approved and not run yet: broker.Handle again, the retry
//	                that consumes the approval; pending: waits for a decision, at most taskResultWait
//	                (and at most maxResultWaits such waits of one caller at once)
//	tasks/cancel ─→ withdraws the pending approval (a deny by the requester)
//	tasks/list   ─→ the caller's tasks (2025-11-25 only: 2026-07-28 has none, and mcp-go refuses it)
//
// Once a held call's approval is approved, the watcher runs the call here
// (the retry that consumes the approval) and keeps its result, so the task
// completes with the real result whether or not its client is still there.
// mcp-go drops tasks/result from 2026-07-28; airlock keeps answering it in
// that generation too, since a held call's result can be read no other way
// in the shape mcp-go's client speaks (its TaskResult method sends it).
//
// The task id of a held call is its approval's id and its state is the
// approval's, in the store: tasks/get works after a restart and on every
// replica. The call's exact arguments are kept only here, in memory (never
// in the store beside the masked transcript), until the call has run; when
// they are gone (a restart, another replica), tasks/result tells the agent
// that the approval stands and to call the tool again with the same
// arguments, and that retry consumes it; once the approval is used (by the
// watcher of the replica that took the call, or by that retry), tasks/result
// elsewhere names the call that used it and never runs it again. Only the identity that made the
// call (same subject and issuer as the approval's requester) may read,
// await or cancel its task, in either generation.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
)

const (
	// taskResultWait bounds how long tasks/result waits on a pending
	// approval before it answers "still pending": under the 60 s request
	// timeout of the TypeScript SDK (approval.DefaultWait).
	taskResultWait = approval.DefaultWait
	// taskPollInterval is the pollInterval suggested to clients, in ms.
	taskPollInterval = int64(1000)
	// taskRetention is how long a task that has its result keeps it here
	// (and, for a held call, how long after its approval expires its task
	// may still be read from memory).
	taskRetention = 10 * time.Minute
	// maxTasks bounds the tasks kept in memory, all callers together; past
	// it, the one due to be dropped soonest goes first.
	maxTasks = 10000
	// maxTasksPerOwner bounds those of one caller (issuer and subject):
	// past it, that caller's own task due to be dropped soonest goes, so
	// one caller's flood of calls does not push out everyone else's tasks.
	maxTasksPerOwner = maxTasks / 10
	// maxResultWaits bounds the tasks/result requests of one caller that
	// wait on a pending approval at once (each rereads the store until the
	// decision, for up to taskResultWait); past it, tasks/result answers
	// "still pending" at once. A 2026-07-28 request holds no session, so
	// the session caps do not bound these.
	maxResultWaits = 8
	// taskListLimit bounds the approvals tasks/list reads; taskPage is one
	// page of its answer.
	taskListLimit = 200
	taskPage      = 50
)

// taskEntry is what this process keeps of one task.
type taskEntry struct {
	id    string
	owner string // issuer and subject of the identity that made the call
	held  bool   // id is an approval's id
	tool  string
	who   policy.Identity // who made the call, for the run once approved
	// session is the MCP session the call came on, for the transcript of
	// its run.
	session string
	// notify is the session told of the task's status changes
	// (notifications/tasks/status): the 2025-11-25 session the call came
	// on; "" for a stateless request of protocol 2026-07-28.
	notify   string
	decideBy time.Time // the approval's expiry

	run sync.Mutex // one run of the held call at a time (watcher or tasks/result)

	// Guarded by tasks.mu.
	args     json.RawMessage     // exact arguments of a held call, until it runs
	result   *mcp.CallToolResult // the call's result, once it has one
	running  bool                // the approved call is running
	watched  bool                // a watcher follows it (taskstatus.go)
	notified string              // status and message last notified
	created  time.Time
	updated  time.Time
	expires  time.Time // when this entry may be dropped
}

// tasks is the task layer of a Server.
type tasks struct {
	srv        *Server
	now        func() time.Time
	resultWait time.Duration
	maxWatch   int // maxWatchers
	maxKeep    int // maxTasks
	maxOwned   int // maxTasksPerOwner
	maxWaits   int // maxResultWaits

	// ctx ends the watchers (one per held call made here, until its
	// approval is decided and, if approved, the call has run); close
	// cancels it and waits for them.
	ctx      context.Context
	stop     context.CancelFunc
	watchers sync.WaitGroup

	mu       sync.Mutex
	entries  map[string]*taskEntry
	swept    time.Time
	closed   bool
	watching int            // watchers running
	waits    map[string]int // tasks/result requests waiting, by owner
}

func newTasks(s *Server) *tasks {
	ctx, stop := context.WithCancel(context.Background())
	return &tasks{srv: s, now: time.Now, resultWait: taskResultWait, maxWatch: maxWatchers, maxKeep: maxTasks, maxOwned: maxTasksPerOwner, maxWaits: maxResultWaits, waits: map[string]int{}, entries: map[string]*taskEntry{}, ctx: ctx, stop: stop}
}

// close ends the watchers and waits for them: a held call whose approval
// comes later runs when its client asks (tasks/result), or is called again.
func (t *tasks) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.stop()
	t.watchers.Wait()
}

// rpcRequest is a JSON-RPC request as the task layer reads it.
type rpcRequest struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`

	gen generation // its protocol generation (protocol.go)
}

type taskCallParams struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Task      json.RawMessage `json:"task"`
}

type taskIDParams struct {
	TaskID string `json:"taskId"`
}

// claim reports whether the message is one the task layer answers: a
// request (it has an id) for tasks/get, tasks/result, tasks/cancel or
// tasks/list, or a tools/call with a task, of either protocol generation
// (headerVersion is the Mcp-Protocol-Version header over HTTP, "" over
// stdio). Protocol 2026-07-28 has no tasks/list: mcp-go refuses it as a
// method that generation removed. Anything else goes on to mcp-go.
func (t *tasks) claim(raw []byte, headerVersion string) (*rpcRequest, bool) {
	var req rpcRequest
	if json.Unmarshal(raw, &req) != nil || len(req.ID) == 0 || string(req.ID) == "null" {
		return nil, false
	}
	req.gen = generationOf(raw, headerVersion)
	switch mcp.MCPMethod(req.Method) {
	case mcp.MethodTasksList:
		return &req, !req.gen.modern
	case mcp.MethodTasksGet, mcp.MethodTasksResult, mcp.MethodTasksCancel:
		return &req, true
	case mcp.MethodToolsCall:
		var p taskCallParams
		if json.Unmarshal(req.Params, &p) != nil || len(p.Task) == 0 || string(p.Task) == "null" {
			return nil, false
		}
		return &req, true
	}
	return nil, false
}

// rpcError is a JSON-RPC error the task layer answers with.
type rpcError struct {
	code    int
	message string
}

// handle answers a request claim accepted, with a JSON-RPC response and,
// for HTTP, its status. sessionID names the MCP session it came on (for
// the transcript); header is the HTTP request's, nil over stdio. A request
// of protocol 2026-07-28 is first checked as mcp-go checks it.
func (t *tasks) handle(ctx context.Context, req *rpcRequest, sessionID string, header http.Header) ([]byte, int) {
	if req.gen.modern {
		if perr := checkModern(req.gen, req, header); perr != nil {
			return rpcErrorBody(req.ID, perr.code, perr.msg, perr.data), perr.status
		}
	}
	result, rerr := t.answer(ctx, req, sessionID)
	if rerr != nil {
		status := http.StatusOK
		if req.gen.modern {
			status = modernStatus(rerr.code)
		}
		return rpcErrorBody(req.ID, rerr.code, rerr.message, nil), status
	}
	if req.gen.modern {
		result = decorateModern(result, t.srv.info)
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": mcp.JSONRPC_VERSION, "id": req.ID, "result": result})
	if err != nil {
		return rpcErrorBody(req.ID, mcp.INTERNAL_ERROR, "the result could not be encoded", nil), http.StatusInternalServerError
	}
	return body, http.StatusOK
}

func rpcErrorBody(id json.RawMessage, code int, message string, data any) []byte {
	e := map[string]any{"code": code, "message": message}
	if data != nil {
		e["data"] = data
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": mcp.JSONRPC_VERSION, "id": id, "error": e})
	return body
}

func (t *tasks) answer(ctx context.Context, req *rpcRequest, sessionID string) (any, *rpcError) {
	who, err := t.srv.identity(ctx)
	if err != nil {
		return nil, &rpcError{mcp.INVALID_REQUEST, err.Error()}
	}
	t.sweep()
	if mcp.MCPMethod(req.Method) == mcp.MethodToolsCall {
		var p taskCallParams
		_ = json.Unmarshal(req.Params, &p) // claim decoded it
		switch {
		case t.srv.taskTool(p.Name):
			return t.call(ctx, who, p, sessionID, !req.gen.modern)
		case p.Name == broker.ListResourcesTool || p.Name == broker.ApprovalStatusTool:
			// mcp-go would run it as a plain call; the specification
			// asks for -32601 (its execution.taskSupport is absent).
			return nil, &rpcError{mcp.METHOD_NOT_FOUND, fmt.Sprintf("tool '%s' does not support task augmentation: call it without a task", p.Name)}
		default:
			return nil, &rpcError{mcp.INVALID_PARAMS, fmt.Sprintf("tool '%s' not found", p.Name)}
		}
	}
	if mcp.MCPMethod(req.Method) == mcp.MethodTasksList {
		var p struct {
			Cursor string `json:"cursor"`
		}
		if len(req.Params) > 0 && json.Unmarshal(req.Params, &p) != nil {
			return nil, &rpcError{mcp.INVALID_PARAMS, "tasks/list takes {\"cursor\": \"...\"}"}
		}
		return t.list(ctx, who, p.Cursor)
	}
	var p taskIDParams
	if json.Unmarshal(req.Params, &p) != nil || p.TaskID == "" {
		return nil, &rpcError{mcp.INVALID_PARAMS, req.Method + " takes {\"taskId\": \"...\"}"}
	}
	switch mcp.MCPMethod(req.Method) {
	case mcp.MethodTasksGet:
		e, a, rerr := t.lookup(ctx, p.TaskID, who)
		if rerr != nil {
			return nil, rerr
		}
		return t.task(e, a), nil
	case mcp.MethodTasksResult:
		return t.result(ctx, p.TaskID, who, sessionID)
	default:
		return t.cancel(ctx, p.TaskID, who)
	}
}

func ownerOf(id policy.Identity) string { return id.Issuer + "\x00" + id.Subject }

// call runs a task-augmented tools/call through the broker, exactly as a
// plain call but without waiting for an approval, and answers with its task.
// A held call's task is watched (watch) until its approval is decided; its
// session, when notify is set, is told of each status change.
func (t *tasks) call(ctx context.Context, who policy.Identity, p taskCallParams, sessionID string, notify bool) (any, *rpcError) {
	args := p.Arguments
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	res := t.srv.broker.Handle(ctx, broker.Call{Tool: p.Name, Arguments: args, Identity: who, SessionID: sessionID, NoWait: true})
	if id, ok := heldFor(res); ok {
		a, err := t.srv.broker.RequestedApproval(ctx, id, who)
		if err != nil {
			return nil, &rpcError{mcp.INTERNAL_ERROR, fmt.Sprintf("the call is held for approval %s, which could not be read back: %v", id, err)}
		}
		fresh := &taskEntry{
			id: id, owner: ownerOf(who), held: true, tool: p.Name, who: who, session: sessionID, args: slices.Clone(args),
			decideBy: a.ExpiresAt, created: a.CreatedAt, updated: a.CreatedAt, expires: a.ExpiresAt.Add(taskRetention),
		}
		if notify {
			fresh.notify = sessionID
		}
		e, isNew := t.keep(fresh)
		task := t.task(e, a)
		if isNew {
			t.mu.Lock()
			e.notified = notice(task) // the client has it in this answer
			t.mu.Unlock()
			t.watch(e)
		}
		return map[string]any{
			"task":  task,
			"_meta": map[string]any{mcp.ModelImmediateResponseMetaKey: task.StatusMessage},
		}, nil
	}
	now := t.now()
	e, _ := t.keep(&taskEntry{
		id: res.CallID, owner: ownerOf(who), tool: p.Name, result: toMCP(res),
		created: now, updated: now, expires: now.Add(taskRetention),
	})
	return map[string]any{"task": t.task(e, approval.Approval{})}, nil
}

// heldFor returns the approval a result says the call is held for.
func heldFor(r broker.Result) (string, bool) {
	m, ok := r.Structured.(map[string]any)
	if !r.IsError || !ok || m["outcome"] != "pending" {
		return "", false
	}
	id, ok := m["approval_id"].(string)
	return id, ok && id != ""
}

// keep stores e, or returns the entry already kept under its id (the same
// held call made again shares its approval, and so its task), given the
// newest arguments; fresh reports that e was stored.
func (t *tasks) keep(e *taskEntry) (kept *taskEntry, fresh bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.entries[e.id]; ok && old.owner == e.owner {
		if old.result == nil && !old.running && e.args != nil {
			old.args = e.args
		}
		return old, false
	}
	if len(t.entries) >= t.maxKeep {
		t.dropExpiredLocked(t.now())
	}
	owned := 0
	var firstOwned *taskEntry
	for _, x := range t.entries {
		if x.owner == e.owner {
			owned++
			if firstOwned == nil || x.expires.Before(firstOwned.expires) {
				firstOwned = x
			}
		}
	}
	switch {
	case owned >= t.maxOwned:
		// The caller's own oldest goes, never another caller's.
		delete(t.entries, firstOwned.id)
	case len(t.entries) >= t.maxKeep:
		var first *taskEntry
		for _, x := range t.entries {
			if first == nil || x.expires.Before(first.expires) {
				first = x
			}
		}
		delete(t.entries, first.id)
	}
	t.entries[e.id] = e
	return e, true
}

// sweep drops expired entries, at most once a minute.
func (t *tasks) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if now.Sub(t.swept) < time.Minute {
		return
	}
	t.swept = now
	t.dropExpiredLocked(now)
}

func (t *tasks) dropExpiredLocked(now time.Time) {
	for id, e := range t.entries {
		if !now.Before(e.expires) {
			delete(t.entries, id)
		}
	}
}

// lookup finds task id of who: the entry kept here (nil when none) and,
// for a held call, its approval as the store has it now. A task of someone
// else is answered as one that does not exist.
func (t *tasks) lookup(ctx context.Context, id string, who policy.Identity) (*taskEntry, approval.Approval, *rpcError) {
	notFound := &rpcError{mcp.INVALID_PARAMS, fmt.Sprintf("Failed to retrieve task: no task %s of yours (a task's result is kept for %s once it has one)", id, taskRetention)}
	t.mu.Lock()
	e := t.entries[id]
	if e != nil && e.owner != ownerOf(who) {
		e = nil
	}
	t.mu.Unlock()
	if e != nil && !e.held {
		return e, approval.Approval{}, nil
	}
	a, err := t.srv.broker.RequestedApproval(ctx, id, who)
	switch {
	case errors.Is(err, approval.ErrNotFound), errors.Is(err, approval.ErrForbidden), errors.Is(err, broker.ErrNotRequester):
		return nil, approval.Approval{}, notFound
	case err != nil:
		return nil, approval.Approval{}, &rpcError{mcp.INTERNAL_ERROR, fmt.Sprintf("Failed to retrieve task %s: %v", id, err)}
	}
	return e, a, nil
}

// task renders a task: from its result once it has one, else from its
// approval.
func (t *tasks) task(e *taskEntry, a approval.Approval) mcp.Task {
	var created, updated, expires time.Time
	var result *mcp.CallToolResult
	running := false
	if e != nil {
		t.mu.Lock()
		created, updated, expires, result = e.created, e.updated, e.expires, e.result
		// Approved with its arguments here and watched: the watcher runs
		// the call now, so it is not completed yet.
		running = e.running || e.watched && a.State == approval.Approved && e.args != nil
		t.mu.Unlock()
	}
	if a.ID != "" {
		created = a.CreatedAt
		for _, at := range []time.Time{a.DecidedAt, a.ConsumedAt} {
			if at.After(updated) {
				updated = at
			}
		}
		if exp := a.ExpiresAt.Add(taskRetention); exp.After(expires) {
			expires = exp
		}
	}
	if updated.Before(created) {
		updated = created
	}
	task := mcp.Task{CreatedAt: stamp(created), LastUpdatedAt: stamp(updated)}
	if e != nil {
		task.TaskId = e.id
	} else {
		task.TaskId = a.ID
	}
	ttl := expires.Sub(created).Milliseconds()
	task.TTL = &ttl
	if result != nil {
		task.Status, task.StatusMessage = mcp.TaskStatusCompleted, resultText(result)
		if result.IsError {
			task.Status = mcp.TaskStatusFailed
		}
		return task
	}
	task.Status, task.StatusMessage = approvalStatus(a)
	if running {
		task.Status, task.StatusMessage = mcp.TaskStatusWorking, fmt.Sprintf("approval %s was approved%s; the call is running", a.ID, deciders(a))
	}
	if task.Status == mcp.TaskStatusWorking {
		poll := taskPollInterval
		task.PollInterval = &poll
	}
	return task
}

func stamp(at time.Time) string { return at.UTC().Format("2006-01-02T15:04:05.000Z") }

func resultText(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return shorten(strings.Join(parts, "\n"), 2000)
}

// approvalStatus is the status of a held call's task that has not run,
// from its approval, with a sentence for the agent.
func approvalStatus(a approval.Approval) (mcp.TaskStatus, string) {
	switch a.State {
	case approval.Pending:
		msg := fmt.Sprintf("waiting for approval %s by %s (%d of %d approvals, until %s); the call has not run: once approved this task completes, and tasks/result runs the call and returns its result",
			a.ID, strings.Join(a.Approvers.Groups, " or "), a.Approvals(), max(a.Approvers.Min, 1), a.ExpiresAt.UTC().Format(time.RFC3339))
		if a.URL != "" {
			msg += "; approvers decide at " + a.URL
		}
		return mcp.TaskStatusWorking, msg
	case approval.Approved:
		return mcp.TaskStatusCompleted, fmt.Sprintf("approval %s was approved%s; tasks/result runs the call and returns its result", a.ID, deciders(a))
	case approval.Consumed:
		return mcp.TaskStatusCompleted, fmt.Sprintf("approval %s was approved%s and used by call %s", a.ID, deciders(a), a.ConsumedBy)
	case approval.Denied:
		if a.Withdrawn() {
			return mcp.TaskStatusCancelled, fmt.Sprintf("approval %s was withdrawn by its requester; the call was not run", a.ID)
		}
		return mcp.TaskStatusFailed, deniedText(a)
	default: // expired
		return mcp.TaskStatusFailed, fmt.Sprintf("Approval %s expired without a decision; the call was not run. Call %s again with the same arguments to request a new approval.", a.ID, a.Tool)
	}
}

func deciders(a approval.Approval) string {
	var who []string
	for _, d := range a.Decisions {
		if d.Verdict == approval.Approve {
			who = append(who, d.Approver.Subject)
		}
	}
	if len(who) == 0 {
		return ""
	}
	return " by " + strings.Join(who, ", ")
}

// deniedText says who denied approval a and why, as a held call that is
// denied while it waits says it (broker.approve).
func deniedText(a approval.Approval) string {
	who, why := "an approver", ""
	if n := len(a.Decisions); n > 0 {
		last := a.Decisions[n-1]
		who = last.Approver.Subject
		if last.Reason != "" {
			why = ": " + last.Reason
		}
	}
	return fmt.Sprintf("Approval %s was denied by %s%s; the call was not run.", a.ID, who, why)
}

// result answers tasks/result: the call's result once it has one; for an
// approved held call, the call run now through the broker (the retry that
// consumes the approval); for a pending one, a wait for the decision.
func (t *tasks) result(ctx context.Context, id string, who policy.Identity, sessionID string) (any, *rpcError) {
	e, a, rerr := t.lookup(ctx, id, who)
	if rerr != nil {
		return nil, rerr
	}
	if e != nil {
		if r := t.resultOf(e); r != nil {
			return withRelatedTask(r, id), nil
		}
	}
	// The wait holds no lock of the task: another tasks/result of it is
	// answered meanwhile (at once, past maxWaits), not queued behind it.
	if a.State == approval.Pending && t.startWait(who) {
		got, err := t.srv.broker.AwaitApproval(ctx, id, t.resultWait)
		t.endWait(who)
		if err != nil {
			if ctx.Err() != nil {
				return nil, &rpcError{mcp.INTERNAL_ERROR, "the request ended while waiting for the approval"}
			}
			return nil, &rpcError{mcp.INTERNAL_ERROR, fmt.Sprintf("waiting for approval %s failed: %v", id, err)}
		}
		a = got
	}
	if e != nil {
		// One run at a time (the watcher's or another tasks/result): wait
		// for it, and answer with its result.
		e.run.Lock()
		defer e.run.Unlock()
		if r := t.resultOf(e); r != nil {
			return withRelatedTask(r, id), nil
		}
	}
	var r *mcp.CallToolResult
	switch a.State {
	case approval.Pending:
		_, msg := approvalStatus(a)
		return withRelatedTask(toolError("pending", id, "Still "+msg+". Call tasks/result again, or poll tasks/get."), id), nil
	case approval.Approved:
		if r = t.run(ctx, e, a, who, sessionID); r == nil {
			return withRelatedTask(toolError("call_again", id, fmt.Sprintf(
				"Approval %s is approved and still stands (until %s), but this airlock no longer holds the call's arguments (it was restarted, or another replica took the call): call %s again with the same arguments and it runs under this approval.",
				id, a.ExpiresAt.UTC().Format(time.RFC3339), a.Tool)), id), nil
		}
	case approval.Consumed:
		// Its result is not here: the call ran on another replica (that
		// replica's watcher, or the call made again), or here before a
		// restart. It never runs a second time.
		r = toolError("approval_used", id, fmt.Sprintf("Approval %s was used by call %s, which ran on another replica (or on this one before a restart, or as the same call made again) and returned its result there; this airlock does not have that result, which is in the transcript under call %s, and the call does not run again.", id, a.ConsumedBy, a.ConsumedBy))
	default:
		_, msg := approvalStatus(a)
		outcome := "approval_" + string(a.State)
		if a.Withdrawn() {
			outcome = "approval_withdrawn"
		}
		r = toolError(outcome, id, msg)
	}
	return withRelatedTask(r, id), nil
}

// startWait reports whether who may wait on a pending approval now (under
// maxWaits at once), and counts the wait; endWait ends it.
func (t *tasks) startWait(who policy.Identity) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	owner := ownerOf(who)
	if t.waits[owner] >= t.maxWaits {
		return false
	}
	t.waits[owner]++
	return true
}

func (t *tasks) endWait(who policy.Identity) {
	t.mu.Lock()
	defer t.mu.Unlock()
	owner := ownerOf(who)
	if t.waits[owner]--; t.waits[owner] <= 0 {
		delete(t.waits, owner)
	}
}

func (t *tasks) resultOf(e *taskEntry) *mcp.CallToolResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	return e.result
}

// takeArgs hands out a held call's arguments once: they are dropped here
// when the call runs.
func (t *tasks) takeArgs(e *taskEntry) json.RawMessage {
	if e == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	args := e.args
	e.args = nil
	return args
}

func (t *tasks) setResult(e *taskEntry, r *mcp.CallToolResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e.result, e.running, e.updated, e.expires = r, false, now, now.Add(taskRetention)
}

// toolError is a refusal as a tool result, as the broker renders them.
func toolError(outcome, approvalID, text string) *mcp.CallToolResult {
	out := mcp.NewToolResultStructured(map[string]any{"outcome": outcome, "approval_id": approvalID, "reason": text}, text)
	out.IsError = true
	return out
}

// withRelatedTask returns a copy of r whose _meta names the task, as
// tasks/result must.
func withRelatedTask(r *mcp.CallToolResult, taskID string) *mcp.CallToolResult {
	out := *r
	fields := map[string]any{}
	if r.Meta != nil {
		for k, v := range r.Meta.AdditionalFields {
			fields[k] = v
		}
	}
	fields[mcp.RelatedTaskMetaKey] = mcp.RelatedTaskMeta(taskID)
	out.Meta = mcp.NewMetaFromMap(fields)
	return &out
}

// cancel answers tasks/cancel: a held call's pending approval is withdrawn.
func (t *tasks) cancel(ctx context.Context, id string, who policy.Identity) (any, *rpcError) {
	e, a, rerr := t.lookup(ctx, id, who)
	if rerr != nil {
		return nil, rerr
	}
	task := t.task(e, a)
	if task.Status.IsTerminal() {
		return nil, &rpcError{mcp.INVALID_PARAMS, fmt.Sprintf("Cannot cancel task: already in terminal status '%s'", task.Status)}
	}
	if a.State == approval.Approved || a.State == approval.Consumed {
		// working only because the approved call runs now (taskstatus.go)
		return nil, &rpcError{mcp.INVALID_PARAMS, fmt.Sprintf("Cannot cancel task: %s", task.StatusMessage)}
	}
	got, err := t.srv.broker.WithdrawApproval(ctx, id, who, "withdrawn by the requester (MCP tasks/cancel)")
	if err != nil {
		if got.ID != "" { // decided meanwhile
			task := t.task(e, got)
			return nil, &rpcError{mcp.INVALID_PARAMS, fmt.Sprintf("Cannot cancel task: already in terminal status '%s' (%s)", task.Status, task.StatusMessage)}
		}
		return nil, &rpcError{mcp.INTERNAL_ERROR, fmt.Sprintf("withdrawing approval %s failed: %v", id, err)}
	}
	t.takeArgs(e)
	t.changed(e, got)
	return t.task(e, got), nil
}

// list answers tasks/list: the caller's approvals (each a task, whether
// its call came as a task or not: tasks/get reads any of them), newest
// first, and the calls kept here that were not held. The cursor is the
// offset of the page.
func (t *tasks) list(ctx context.Context, who policy.Identity, cursor string) (any, *rpcError) {
	offset := 0
	if cursor != "" {
		n, err := strconv.Atoi(cursor)
		if err != nil || n < 0 || n > taskListLimit+maxTasks {
			return nil, &rpcError{mcp.INVALID_PARAMS, "Invalid cursor for tasks/list"}
		}
		offset = n
	}
	approvals, err := t.srv.broker.RequestedApprovals(ctx, who, taskListLimit)
	if err != nil {
		return nil, &rpcError{mcp.INTERNAL_ERROR, fmt.Sprintf("listing tasks failed: %v", err)}
	}
	owner := ownerOf(who)
	type item struct {
		task    mcp.Task
		created time.Time
	}
	var items []item
	seen := map[string]bool{}
	for _, a := range approvals {
		t.mu.Lock()
		e := t.entries[a.ID]
		t.mu.Unlock()
		if e != nil && e.owner != owner {
			e = nil
		}
		seen[a.ID] = true
		items = append(items, item{t.task(e, a), a.CreatedAt})
	}
	t.mu.Lock()
	var mine []*taskEntry
	for _, e := range t.entries {
		if e.owner == owner && !e.held && !seen[e.id] {
			mine = append(mine, e)
		}
	}
	t.mu.Unlock()
	for _, e := range mine {
		items = append(items, item{t.task(e, approval.Approval{}), e.created})
	}
	slices.SortStableFunc(items, func(x, y item) int { return y.created.Compare(x.created) })
	if offset > len(items) {
		return nil, &rpcError{mcp.INVALID_PARAMS, "Invalid cursor for tasks/list"}
	}
	end := min(offset+taskPage, len(items))
	out := map[string]any{"tasks": []mcp.Task{}}
	page := make([]mcp.Task, 0, end-offset)
	for _, it := range items[offset:end] {
		page = append(page, it.task)
	}
	out["tasks"] = page
	if end < len(items) {
		out["nextCursor"] = strconv.Itoa(end)
	}
	return out, nil
}
