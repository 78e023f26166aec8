package mcpserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// writeTool is a tool whose every call policy holds for approval.
type writeTool struct{}

type writeArgs struct {
	Resource string `json:"resource"`
}

func (a writeArgs) ResourceName() string { return a.Resource }
func (a writeArgs) Canonical() json.RawMessage {
	b, _ := json.Marshal(a)
	return b
}

func (writeTool) Name() string                 { return "write_thing" }
func (writeTool) Kind() string                 { return "thing" }
func (writeTool) Description() string          { return "a write" }
func (writeTool) InputSchema() json.RawMessage { return json.RawMessage(`{"type":"object"}`) }
func (writeTool) ReadOnly() bool               { return false }
func (writeTool) Decode(raw json.RawMessage) (tools.Args, error) {
	var a writeArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, tools.ErrInvalidArguments
	}
	return a, nil
}
func (writeTool) Facts(tools.Args) (policy.Facts, error) { return policy.Facts{}, nil }
func (writeTool) Execute(context.Context, tools.Target, tools.Args) (*tools.Output, error) {
	return &tools.Output{Table: &tools.Table{Columns: []tools.Column{{Name: "n"}}, Rows: [][]any{{int64(1)}}}}, nil
}
func (writeTool) Render(out *tools.Output) (any, string) {
	return map[string]any{"rows": out.Table.Rows}, "1 row"
}

type thingCred struct{}

func (thingCred) Handle() string       { return "h" }
func (thingCred) String() string       { return "[REDACTED]" }
func (thingCred) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

type thingResource struct{ spec tools.ResourceSpec }

func (r thingResource) Spec() tools.ResourceSpec { return r.spec }
func (thingResource) Mint(context.Context, tools.MintRequest) (tools.Credential, error) {
	return thingCred{}, nil
}
func (thingResource) Revoke(context.Context, tools.LeaseRef) error { return nil }
func (thingResource) Orphans(context.Context) ([]string, error)    { return nil, nil }
func (thingResource) Reusable() bool                               { return true }
func (thingResource) Close()                                       {}

const heldPolicy = `
rules:
  - name: writes-need-a-dba
    when: tool == "write_thing"
    effect: approve
    approvers: {groups: [dba]}
    grant: g
`

// heldServer is an MCP server whose write_thing calls are held for
// approval by a manager on a real SQLite store, waiting wait.
type heldServer struct {
	srv       *Server
	approvals *approval.Manager
}

func newHeldServer(t *testing.T, wait time.Duration) *heldServer {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(heldPolicy), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := approval.New(approval.Config{
		Store: st, Wait: wait, Expire: time.Hour,
		PollInterval: 10 * time.Millisecond, ProgressInterval: 30 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(ctx)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Close(ctx)
	})
	var b *broker.Broker
	leases, err := lease.New(lease.Config{Store: st, Resolve: func(name string) (tools.Resource, bool) {
		r, ok := b.State().Resources[name]
		return r, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := thingResource{spec: tools.ResourceSpec{Name: "thing-1", Kind: "thing", Grants: map[string]tools.Grant{"g": {TTL: time.Minute}}}}
	b, err = broker.New(broker.Config{Tools: []tools.Tool{writeTool{}}, Recorder: rec, Leases: leases, Approvals: m}, &broker.State{
		Policy: pol, Resources: map[string]tools.Resource{"thing-1": res}, Masking: engine,
		Limits: tools.Limits{MaxRows: 10, MaxBytes: 1 << 20, Timeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	requester := policy.Identity{Subject: "alice", Groups: []string{"eng"}}
	srv := New(b, func(context.Context) (policy.Identity, error) { return requester, nil }, "test", nil)
	t.Cleanup(srv.Close)
	return &heldServer{srv: srv, approvals: m}
}

// connect starts an in-process client and counts the progress
// notifications it receives.
func (h *heldServer) connect(t *testing.T) (*client.Client, func() int) {
	t.Helper()
	ctx := context.Background()
	c, err := client.NewInProcessClient(h.srv.MCP())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	progress := 0
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationProgress) {
			mu.Lock()
			progress++
			mu.Unlock()
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ProtocolVersion: mcp.LATEST_PROTOCOL_VERSION, ClientInfo: mcp.Implementation{Name: "t", Version: "1"}}}); err != nil {
		t.Fatal(err)
	}
	return c, func() int { mu.Lock(); defer mu.Unlock(); return progress }
}

func heldCall(token mcp.ProgressToken) mcp.CallToolRequest {
	req := mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "write_thing", Arguments: map[string]any{"resource": "thing-1"}}}
	if token != nil {
		req.Params.Meta = &mcp.Meta{ProgressToken: token}
	}
	return req
}

// A held call tells the client what it waits for only when the client
// asked, with a progress token; a client that did not gets no notification
// it never asked for, and both hear "pending" with the approval id.
func TestProgressOnlyWithAToken(t *testing.T) {
	h := newHeldServer(t, 300*time.Millisecond)
	ctx := context.Background()

	c, progress := h.connect(t)
	res, err := c.CallTool(ctx, heldCall(nil))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := res.StructuredContent.(map[string]any); !res.IsError || m["outcome"] != "pending" || m["approval_id"] == "" {
		t.Fatalf("want pending with an approval id, got %+v", res)
	}
	time.Sleep(50 * time.Millisecond)
	if n := progress(); n != 0 {
		t.Errorf("a call without a progress token got %d progress notifications", n)
	}

	c2, progress2 := h.connect(t)
	if _, err := c2.CallTool(ctx, heldCall("tok-1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for progress2() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := progress2(); n < 2 {
		t.Errorf("a call with a progress token got %d progress notifications, want several over 300ms", n)
	}
}
