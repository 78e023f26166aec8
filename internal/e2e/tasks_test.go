package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Held calls as MCP tasks, through the official TypeScript SDK's task client
// (tasks.mjs), over stdio and over streamable HTTP: held → task (id = the
// approval's) → approved with the CLI → the stream's tasks/result returns
// the rows; denied → failed with the reason; cancelled → the approval is
// withdrawn; airlock restarted while pending → after approval, tasks/get
// says completed and tasks/result says to call again, which then runs.

// taskEvent is one line tasks.mjs prints.
type taskEvent struct {
	Event string `json:"event"`
	Op    string `json:"op"`
	Task  struct {
		TaskID        string `json:"taskId"`
		Status        string `json:"status"`
		StatusMessage string `json:"statusMessage"`
	} `json:"task"`
	Tasks []struct {
		TaskID string `json:"taskId"`
		Status string `json:"status"`
	} `json:"tasks"`
	Tools []struct {
		Name      string         `json:"name"`
		Execution map[string]any `json:"execution"`
	} `json:"tools"`
	Capabilities map[string]any `json:"capabilities"`
	Result       struct {
		IsError           bool           `json:"isError"`
		Text              string         `json:"text"`
		StructuredContent map[string]any `json:"structuredContent"`
		Meta              map[string]any `json:"meta"`
	} `json:"result"`
	Error *struct {
		Code    *int   `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// taskClient is a running tasks.mjs: its events arrive as it prints them.
type taskClient struct {
	events chan taskEvent
	done   chan error
}

func startTaskClient(t *testing.T, plan map[string]any) *taskClient {
	t.Helper()
	c, _ := runTaskScript(t, "tasks.mjs", plan, 3*time.Minute, nil, false)
	return c
}

// runTaskScript runs one of this directory's TypeScript SDK task clients
// (tasks.mjs or a wrapper of it) on plan, with env added to the
// environment, and follows the JSON lines it prints. With stdin, the
// returned writer is the script's standard input (closed when t ends).
func runTaskScript(t *testing.T, script string, plan map[string]any, timeout time.Duration, env []string, stdin bool) (*taskClient, io.WriteCloser) {
	t.Helper()
	nodeBin := node(t)
	raw, _ := json.Marshal(plan)
	planFile := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(planFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, nodeBin, filepath.Join(repoRoot(t), "internal", "e2e", script), planFile)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	var in io.WriteCloser
	if stdin {
		var err error
		if in, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &taskClient{events: make(chan taskEvent, 64), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var ev taskEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("%s printed a line that is not JSON: %q", script, sc.Text())
				continue
			}
			c.events <- ev
		}
		close(c.events)
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if in != nil {
			_ = in.Close()
		}
		if t.Failed() {
			t.Logf("%s stderr (airlock's log over stdio):\n%s", script, lastLines(stderr.String(), 60))
		}
	})
	return c, in
}

// next returns the next event that is not a taskStatus of a working task.
func (c *taskClient) next(t *testing.T) taskEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("tasks.mjs ended (%v) before the event the test waits for", <-c.done)
			}
			if ev.Event == "taskStatus" && ev.Task.Status == "working" {
				continue
			}
			return ev
		case <-time.After(90 * time.Second):
			t.Fatal("tasks.mjs printed nothing for 90s")
		}
	}
}

// expect returns the next event, which must be of kind want.
func (c *taskClient) expect(t *testing.T, want string) taskEvent {
	t.Helper()
	ev := c.next(t)
	if ev.Event != want {
		t.Fatalf("tasks.mjs: got %s %+v, want %s", ev.Event, ev, want)
	}
	return ev
}

func (c *taskClient) finish(t *testing.T) {
	t.Helper()
	c.expect(t, "done")
	if err := <-c.done; err != nil {
		t.Fatalf("tasks.mjs exited: %v", err)
	}
}

// taskTransport connects tasks.mjs to airlock over stdio or over HTTP (an
// airlock serve that restart stops and starts again on the same store).
type taskTransport struct {
	name    string
	d       *demo
	plan    func(steps ...map[string]any) map[string]any
	restart func(t *testing.T)
}

func newTaskTransports(t *testing.T, name string) taskTransport {
	t.Helper()
	tt := taskTransport{name: name}
	if name == "stdio" {
		tt.d = newDemo(t, "127.0.0.1:0")
		env := map[string]string{"E2E_ADMIN_DSN": tt.d.pg.DSN("shop")}
		tt.plan = func(steps ...map[string]any) map[string]any {
			return map[string]any{"transport": "stdio", "command": airlockBin, "args": []string{"stdio", "--config", tt.d.config}, "env": env, "steps": steps}
		}
		tt.restart = func(*testing.T) {} // each client starts its own airlock stdio
		return tt
	}
	port := testenv.FreePort(t)
	tt.d = newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	srv := startServe(t, tt.d, port)
	tt.plan = func(steps ...map[string]any) map[string]any {
		return map[string]any{"transport": "http", "url": fmt.Sprintf("http://127.0.0.1:%d/mcp", port), "steps": steps}
	}
	tt.restart = func(t *testing.T) {
		srv.stop(t)
		srv = startServe(t, tt.d, port)
	}
	return tt
}

func update(sql string) map[string]any {
	return map[string]any{"resource": "shop", "sql": sql}
}

func TestTasksThroughTypeScriptSDK(t *testing.T) {
	for _, name := range []string{"stdio", "http"} {
		t.Run(name, func(t *testing.T) {
			tt := newTaskTransports(t, name)
			d := tt.d
			approve := func(id string, verdict ...string) {
				t.Helper()
				args := []string{"approve", id, "--as", "dora", "--groups", "dba"}
				if len(verdict) > 0 {
					args = append([]string{verdict[0], id, "--as", "dora", "--groups", "dba"}, verdict[1:]...)
				}
				if out, err := approvalsCLI(t, d, args...); err != nil {
					t.Fatalf("approvals %v: %v %s", args, err, out)
				}
			}
			showState := func(id string) string {
				t.Helper()
				out, err := approvalsCLI(t, d, "show", id, "--json")
				if err != nil {
					t.Fatalf("approvals show: %v %s", err, out)
				}
				var a struct {
					State     string `json:"state"`
					Decisions []struct {
						Via string `json:"via"`
					} `json:"decisions"`
				}
				if err := json.Unmarshal([]byte(out), &a); err != nil {
					t.Fatalf("approvals show --json: %s", out)
				}
				if n := len(a.Decisions); n > 0 {
					return a.State + "/" + a.Decisions[n-1].Via
				}
				return a.State
			}

			// held → task → approved → the stream's tasks/result returns the rows.
			c := startTaskClient(t, tt.plan(map[string]any{"op": "stream", "name": "query_db",
				"arguments": update("UPDATE orders SET status = 'shipped' WHERE id = 3 RETURNING id, status")}))
			connected := c.expect(t, "connected")
			if tasks, _ := connected.Capabilities["tasks"].(map[string]any); tasks == nil || tasks["requests"] == nil {
				t.Errorf("the server does not advertise tasks: %v", connected.Capabilities)
			}
			tools := c.expect(t, "tools")
			for _, tl := range tools.Tools {
				if tl.Name == "query_db" && tl.Execution["taskSupport"] != "optional" {
					t.Errorf("query_db execution = %v, want taskSupport optional", tl.Execution)
				}
			}
			created := c.expect(t, "taskCreated")
			id := created.Task.TaskID
			if created.Task.Status != "working" || !strings.Contains(created.Task.StatusMessage, "waiting for approval "+id+" by dba") {
				t.Fatalf("created task: %+v", created.Task)
			}
			if got := showState(id); got != "pending" {
				t.Fatalf("the task id is not a pending approval: %s", got)
			}
			approve(id)
			if ev := c.next(t); ev.Event != "taskStatus" || ev.Task.Status != "completed" {
				t.Fatalf("after approval: %+v", ev)
			}
			res := c.expect(t, "result")
			if res.Result.IsError || !strings.Contains(res.Result.Text, "shipped") {
				t.Fatalf("the approved task's result: %+v", res.Result)
			}
			if related, _ := res.Result.Meta["io.modelcontextprotocol/related-task"].(map[string]any); related["taskId"] != id {
				t.Errorf("result _meta: %v", res.Result.Meta)
			}
			c.finish(t)
			if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 3"); len(got) != 1 || got[0] != "shipped" {
				t.Errorf("order 3 status = %v, want shipped", got)
			}
			if got := showState(id); !strings.HasPrefix(got, "consumed") {
				t.Errorf("approval after the run: %s, want consumed", got)
			}

			// denied → failed, the reason in statusMessage.
			c = startTaskClient(t, tt.plan(map[string]any{"op": "stream", "name": "query_db",
				"arguments": update("UPDATE orders SET status = 'lost' WHERE id = 4")}))
			c.expect(t, "connected")
			c.expect(t, "tools")
			denied := c.expect(t, "taskCreated").Task.TaskID
			approve(denied, "deny", "--reason", "not on a Friday")
			failed := c.next(t)
			if failed.Event != "taskStatus" || failed.Task.Status != "failed" || !strings.Contains(failed.Task.StatusMessage, "denied by dora: not on a Friday") {
				t.Fatalf("a denied task: %+v", failed)
			}
			if ev := c.expect(t, "error"); !strings.Contains(ev.Error.Message, "Task "+denied+" failed") {
				t.Errorf("the SDK's error: %+v", ev.Error)
			}
			c.finish(t)

			// cancelled → the approval is withdrawn, and cannot be approved.
			c = startTaskClient(t, tt.plan(map[string]any{"op": "stream", "name": "query_db", "cancel": true,
				"arguments": update("UPDATE orders SET status = 'lost' WHERE id = 5")}))
			c.expect(t, "connected")
			c.expect(t, "tools")
			withdrawn := c.expect(t, "taskCreated").Task.TaskID
			if ev := c.expect(t, "cancelled"); ev.Task.Status != "cancelled" {
				t.Errorf("tasks/cancel answered %+v", ev.Task)
			}
			if ev := c.next(t); ev.Event != "taskStatus" || ev.Task.Status != "cancelled" {
				t.Errorf("after cancel: %+v", ev)
			}
			c.expect(t, "error") // "Task … was cancelled"
			c.finish(t)
			if got := showState(withdrawn); got != "denied/withdrawn" {
				t.Errorf("the cancelled task's approval: %s, want denied/withdrawn", got)
			}
			if out, err := approvalsCLI(t, d, "approve", withdrawn, "--as", "dora", "--groups", "dba"); err == nil {
				t.Errorf("a withdrawn approval was approved: %s", out)
			}

			// airlock restarted while pending: the task survives; after approval
			// tasks/get says completed and tasks/result says to call again,
			// and the call made again runs under the approval.
			held := update("UPDATE orders SET status = 'returned' WHERE id = 6 RETURNING id, status")
			c = startTaskClient(t, tt.plan(map[string]any{"op": "create", "name": "query_db", "arguments": held}))
			c.expect(t, "connected")
			c.expect(t, "tools")
			pending := c.expect(t, "taskCreated").Task.TaskID
			c.finish(t)
			tt.restart(t)
			approve(pending)
			c = startTaskClient(t, tt.plan(
				map[string]any{"op": "get", "taskId": pending},
				map[string]any{"op": "list"},
				map[string]any{"op": "result", "taskId": pending},
				map[string]any{"op": "call", "name": "query_db", "arguments": held},
			))
			c.expect(t, "connected")
			c.expect(t, "tools")
			if ev := c.expect(t, "task"); ev.Task.Status != "completed" {
				t.Errorf("tasks/get after the restart: %+v", ev.Task)
			}
			listed := c.expect(t, "list")
			found := false
			for _, tk := range listed.Tasks {
				found = found || tk.TaskID == pending
			}
			if !found {
				t.Errorf("tasks/list after the restart lacks %s: %+v", pending, listed.Tasks)
			}
			again := c.expect(t, "result")
			if !again.Result.IsError || !strings.Contains(again.Result.Text, "call query_db again with the same arguments") {
				t.Errorf("tasks/result after the restart: %+v", again.Result)
			}
			ran := c.expect(t, "result")
			if ran.Result.IsError || !strings.Contains(ran.Result.Text, "returned") {
				t.Errorf("the call made again: %+v", ran.Result)
			}
			c.finish(t)
			if got := showState(pending); !strings.HasPrefix(got, "consumed") {
				t.Errorf("the restarted task's approval: %s, want consumed", got)
			}
			if out, err := exec.Command(airlockBin, "transcripts", "verify", "--config", d.config).CombinedOutput(); err != nil {
				t.Errorf("verify: %v %s", err, out)
			}
			export, _ := exec.Command(airlockBin, "transcripts", "export", "--config", d.config).CombinedOutput()
			if !strings.Contains(string(export), `"approval.withdrawn"`) {
				t.Error("the transcript lacks approval.withdrawn")
			}
		})
	}
}
