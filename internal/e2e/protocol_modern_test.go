package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Protocol 2026-07-28 through a real client of that generation: mcp-go's
// own client package (v1.2.1), which discovers (server/discover) instead of
// initializing and sends every request stateless, with its protocol version
// and capabilities in _meta and, over HTTP, the Mcp-Method and Mcp-Name
// headers. Against a real `airlock serve` and `airlock stdio` on a real
// PostgreSQL: list tools, a plain query_db call, a held call as a task whose
// id is the approval's → approved with the CLI → the task completes with the
// rows; denied → failed with the reason; cancelled → the approval withdrawn.
// The 2025-11-25 generation is TestTasksThroughTypeScriptSDK's.

// modernClient is mcp-go's client connected to airlock over one transport.
type modernClient struct {
	c  *client.Client
	id atomic.Int64
}

// headers go with every HTTP request (a bearer token).
func startModernClient(t *testing.T, transportName string, d *demo, port int, headers map[string]string) *modernClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		c   *client.Client
		err error
	)
	if transportName == "stdio" {
		c, err = client.NewStdioMCPClient(airlockBin, []string{"E2E_ADMIN_DSN=" + d.pg.DSN("shop")}, "stdio", "--config", d.config)
	} else {
		c, err = client.NewStreamableHttpClient(fmt.Sprintf("http://127.0.0.1:%d/mcp", port), transport.WithHTTPHeaders(headers))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ClientInfo: mcp.Implementation{Name: "airlock-e2e-modern", Version: "1.0.0"},
	}}); err != nil {
		t.Fatalf("initialize (server/discover): %v", err)
	}
	if got := c.ProtocolVersion(); got != mcp.ProtocolVersion20260728 {
		t.Fatalf("mcp-go's client negotiated %q, want %s", got, mcp.ProtocolVersion20260728)
	}
	if c.GetSessionId() != "" {
		t.Errorf("a 2026-07-28 connection has session %q", c.GetSessionId())
	}
	return &modernClient{c: c}
}

// callAsTask makes a task-augmented tools/call. mcp-go's client has no
// method for one (CallTool decodes a CallToolResult, and a task is not
// one), so the request goes through the same client's transport, with the
// _meta and headers the client puts on every request of this generation.
func (m *modernClient) callAsTask(t *testing.T, name string, args map[string]any) mcp.Task {
	t.Helper()
	params := map[string]any{
		"name": name, "arguments": args, "task": map[string]any{"ttl": 60000},
		"_meta": map[string]any{
			mcp.MetaKeyProtocolVersion:    m.c.ProtocolVersion(),
			mcp.MetaKeyClientCapabilities: map[string]any{},
			mcp.MetaKeyClientInfo:         mcp.Implementation{Name: "airlock-e2e-modern", Version: "1.0.0"},
		},
	}
	raw, _ := json.Marshal(params)
	header := http.Header{}
	for k, v := range mcp.StandardHeaders(m.c.ProtocolVersion(), mcp.MethodToolsCall, raw) {
		header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := m.c.GetTransport().SendRequest(ctx, transport.JSONRPCRequest{
		JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(1000 + m.id.Add(1)),
		Method: string(mcp.MethodToolsCall), Params: params, Header: header,
	})
	if err != nil {
		t.Fatalf("task-augmented tools/call: %v", err)
	}
	if resp.Error != nil {
		t.Fatalf("task-augmented tools/call: %d %s", resp.Error.Code, resp.Error.Message)
	}
	var created struct {
		ResultType string   `json:"resultType"`
		Task       mcp.Task `json:"task"`
	}
	if err := json.Unmarshal(resp.Result, &created); err != nil || created.Task.TaskId == "" {
		t.Fatalf("not a task: %s", resp.Result)
	}
	if created.ResultType != string(mcp.ResultTypeComplete) {
		t.Errorf("resultType %q on a 2026-07-28 result", created.ResultType)
	}
	return created.Task
}

// waitTerminal polls tasks/get, as mcp-go's client does, until the task ends.
func (m *modernClient) waitTerminal(t *testing.T, id string) *mcp.GetTaskResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, err := m.c.WaitForTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: id}}, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("waiting for task %s: %v", id, err)
	}
	return got
}

func TestProtocolModernThroughMCPGoClient(t *testing.T) {
	for _, name := range []string{"stdio", "http"} {
		t.Run(name, func(t *testing.T) {
			port := testenv.FreePort(t)
			d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
			if name == "http" {
				startServe(t, d, port)
			}
			m := startModernClient(t, name, d, port, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			decide := func(args ...string) {
				t.Helper()
				if out, err := approvalsCLI(t, d, append(args, "--as", "dora", "--groups", "dba")...); err != nil {
					t.Fatalf("approvals %v: %v %s", args, err, out)
				}
			}
			state := func(id string) string {
				t.Helper()
				out, err := approvalsCLI(t, d, "show", id, "--json")
				if err != nil {
					t.Fatalf("approvals show: %v %s", err, out)
				}
				var a struct {
					State string `json:"state"`
				}
				if err := json.Unmarshal([]byte(out), &a); err != nil {
					t.Fatalf("approvals show --json: %s", out)
				}
				return a.State
			}

			if caps := m.c.GetServerCapabilities(); caps.Tasks == nil || caps.Tools == nil {
				t.Errorf("server/discover capabilities lack tools or tasks: %+v", caps)
			}
			tools, err := m.c.ListTools(ctx, mcp.ListToolsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, tl := range tools.Tools {
				if tl.Name == "query_db" {
					found = tl.Execution != nil && tl.Execution.TaskSupport == mcp.TaskSupportOptional
				}
			}
			if !found {
				t.Errorf("tools/list lacks query_db with taskSupport optional: %+v", tools.Tools)
			}

			// A plain call, stateless.
			res, err := m.c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "query_db",
				Arguments: map[string]any{"resource": "shop", "sql": "SELECT id, status FROM orders WHERE id = 1"}}})
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError || !strings.Contains(textOf(res.Content), "1 row") {
				t.Fatalf("plain query_db: %+v", res)
			}

			// held → task (the approval) → approved → completed with the rows.
			task := m.callAsTask(t, "query_db", update("UPDATE orders SET status = 'shipped' WHERE id = 3 RETURNING id, status"))
			if task.Status != mcp.TaskStatusWorking || !strings.Contains(task.StatusMessage, "waiting for approval "+task.TaskId+" by dba") {
				t.Fatalf("created task: %+v", task)
			}
			if got := state(task.TaskId); got != "pending" {
				t.Fatalf("the task id is not a pending approval: %s", got)
			}
			if got, err := m.c.GetTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: task.TaskId}}); err != nil || got.Status != mcp.TaskStatusWorking {
				t.Fatalf("tasks/get while pending: %+v %v", got, err)
			}
			decide("approve", task.TaskId)
			done := m.waitTerminal(t, task.TaskId)
			if done.Status != mcp.TaskStatusCompleted || !strings.Contains(done.StatusMessage, "shipped") {
				t.Fatalf("the approved task: %+v", done.Task)
			}
			result, err := m.c.TaskResult(ctx, mcp.TaskResultRequest{Params: mcp.TaskResultParams{TaskId: task.TaskId}})
			if err != nil {
				t.Fatal(err)
			}
			if result.IsError || !strings.Contains(textOf(result.Content), "shipped") {
				t.Fatalf("tasks/result: %+v", result)
			}
			if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 3"); len(got) != 1 || got[0] != "shipped" {
				t.Errorf("order 3 status = %v, want shipped", got)
			}
			if got := state(task.TaskId); got != "consumed" {
				t.Errorf("approval after the run: %s, want consumed", got)
			}

			// denied → failed with the reason.
			denied := m.callAsTask(t, "query_db", update("UPDATE orders SET status = 'lost' WHERE id = 4"))
			decide("deny", denied.TaskId, "--reason", "not on a Friday")
			failed := m.waitTerminal(t, denied.TaskId)
			if failed.Status != mcp.TaskStatusFailed || !strings.Contains(failed.StatusMessage, "denied by dora: not on a Friday") {
				t.Errorf("a denied task: %+v", failed.Task)
			}

			// cancelled → the approval withdrawn.
			withdrawn := m.callAsTask(t, "query_db", update("UPDATE orders SET status = 'lost' WHERE id = 5"))
			cancelled, err := m.c.CancelTask(ctx, mcp.CancelTaskRequest{Params: mcp.CancelTaskParams{TaskId: withdrawn.TaskId}})
			if err != nil || cancelled.Status != mcp.TaskStatusCancelled {
				t.Errorf("tasks/cancel: %+v %v", cancelled, err)
			}
			if got := state(withdrawn.TaskId); got != "denied" {
				t.Errorf("the cancelled task's approval: %s, want denied (withdrawn)", got)
			}
			if got := d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id IN (4, 5) ORDER BY id"); strings.Contains(strings.Join(got, ","), "lost") {
				t.Errorf("a denied or cancelled call ran: %v", got)
			}
		})
	}
}

// Identity on the stateless generation: with OIDC (a real Ory Hydra),
// every request carries and is checked for its own bearer token; a task is
// its requester's alone, though no session ties the requests together.
func TestProtocolModernOIDC(t *testing.T) {
	hydra := testenv.Hydra(t)
	port := testenv.FreePort(t)
	mcpURL := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	cfg, _ := os.ReadFile(d.config)
	oidc := fmt.Sprintf("auth:\n  mode: oidc\n  oidc:\n    issuer: %s\n    audience: %s\n    required_scopes: [mcp]\npublic_url: %s\n", hydra.Issuer(), mcpURL, mcpURL)
	if err := os.WriteFile(d.config, []byte(strings.Replace(string(cfg), "auth: {mode: none}\n", oidc, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, d, port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// No token: refused before mcp-go, as on the other generation.
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, _ := http.NewRequest(http.MethodPost, mcpURL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(mcp.HeaderProtocolVersion, mcp.ProtocolVersion20260728)
	req.Header.Set(mcp.HeaderMethod, "tools/list")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a 2026-07-28 request without a token: %d, want 401", resp.StatusCode)
	}

	ada := hydra.CreateClient(t, mcpURL, []string{"mcp"}, "eng")
	bob := hydra.CreateClient(t, mcpURL, []string{"mcp"}, "eng")
	mine := startModernClient(t, "http", d, port, map[string]string{"Authorization": "Bearer " + hydra.Token(t, ada, "mcp")})
	other := startModernClient(t, "http", d, port, map[string]string{"Authorization": "Bearer " + hydra.Token(t, bob, "mcp")})

	res, err := mine.c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "query_db",
		Arguments: map[string]any{"resource": "shop", "sql": "SELECT name, email FROM customers ORDER BY id LIMIT 2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if text := textOf(res.Content); res.IsError || !strings.Contains(text, "Ada Lovelace") || strings.Contains(text, "ada@example.com") {
		t.Errorf("a plain call with a token: %+v", res)
	}
	task := mine.callAsTask(t, "query_db", update("UPDATE orders SET status = 'lost' WHERE id = 8"))
	if task.Status != mcp.TaskStatusWorking || !strings.Contains(task.StatusMessage, "waiting for approval "+task.TaskId+" by dba") {
		t.Fatalf("created task: %+v", task)
	}
	if got, err := other.c.GetTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: task.TaskId}}); err == nil {
		t.Errorf("another subject read the task: %+v", got)
	}
	if got, err := other.c.CancelTask(ctx, mcp.CancelTaskRequest{Params: mcp.CancelTaskParams{TaskId: task.TaskId}}); err == nil {
		t.Errorf("another subject cancelled the task: %+v", got)
	}
	if got, err := mine.c.GetTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: task.TaskId}}); err != nil || got.Status != mcp.TaskStatusWorking {
		t.Errorf("the requester's tasks/get: %+v %v", got, err)
	}
	if got, err := mine.c.CancelTask(ctx, mcp.CancelTaskRequest{Params: mcp.CancelTaskParams{TaskId: task.TaskId}}); err != nil || got.Status != mcp.TaskStatusCancelled {
		t.Errorf("the requester's tasks/cancel: %+v %v", got, err)
	}
	// The transcript has the approval, requested and withdrawn by the
	// token's subject.
	srv.stop(t)
	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", d.config).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{task.TaskId, `"subject":"` + ada.ID + `"`, `"approval.withdrawn"`} {
		if !strings.Contains(string(export), want) {
			t.Errorf("the transcript lacks %s", want)
		}
	}
}

// Over HTTP, a 2026-07-28 request whose Mcp-Name names another tool than
// its body is refused before anything runs, plain or as a task.
func TestProtocolModernHeaderMismatch(t *testing.T) {
	port := testenv.FreePort(t)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	startServe(t, d, port)
	for _, task := range []bool{false, true} {
		params := map[string]any{"name": "query_db", "arguments": update("UPDATE orders SET status = 'lost' WHERE id = 7"),
			"_meta": map[string]any{mcp.MetaKeyProtocolVersion: mcp.ProtocolVersion20260728, mcp.MetaKeyClientCapabilities: map[string]any{}}}
		if task {
			params["task"] = map[string]any{}
		}
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/mcp", port), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set(mcp.HeaderProtocolVersion, mcp.ProtocolVersion20260728)
		req.Header.Set(mcp.HeaderMethod, "tools/call")
		req.Header.Set(mcp.HeaderName, "list_resources") // a gateway would let this through as a read
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct {
			Error *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &out)
		if resp.StatusCode != http.StatusBadRequest || out.Error == nil || out.Error.Code != mcp.HEADER_MISMATCH ||
			!strings.Contains(out.Error.Message, `Mcp-Name: header value "list_resources" does not match body value "query_db"`) {
			t.Errorf("task=%v: %d %s, want 400 and -32020 naming Mcp-Name", task, resp.StatusCode, b)
		}
	}
	if out, err := approvalsCLI(t, d, "list"); err != nil || strings.Contains(out, "query_db") {
		t.Errorf("a refused request left an approval: %v %s", err, out)
	}
}

func textOf(content []mcp.Content) string {
	var parts []string
	for _, c := range content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}
