package mcpserver

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// kindTool is a tool of one resource kind; nothing here runs it.
type kindTool struct{ name, kind string }

func (t kindTool) Name() string                 { return t.name }
func (t kindTool) Kind() string                 { return t.kind }
func (t kindTool) Description() string          { return "a " + t.kind + " tool" }
func (t kindTool) InputSchema() json.RawMessage { return json.RawMessage(`{"type":"object"}`) }
func (t kindTool) ReadOnly() bool               { return true }
func (t kindTool) Decode(json.RawMessage) (tools.Args, error) {
	return nil, tools.ErrInvalidArguments
}
func (t kindTool) Facts(tools.Args) (policy.Facts, error) { return policy.Facts{}, nil }
func (t kindTool) Execute(context.Context, tools.Target, tools.Args) (*tools.Output, error) {
	return nil, tools.ErrRefused
}
func (t kindTool) Render(*tools.Output) (any, string) { return nil, "" }

func stateWith(t *testing.T, kinds ...string) *broker.State {
	t.Helper()
	pol, err := policy.Parse([]byte("rules: []\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]tools.Resource{}
	for _, k := range kinds {
		spec := tools.ResourceSpec{Name: k + "-1", Kind: k, Grants: map[string]tools.Grant{"g": {TTL: time.Minute}}}
		res[spec.Name] = broker.NewUnavailable(spec, "a test stand-in")
	}
	return &broker.State{Policy: pol, Resources: res, Masking: engine, Limits: tools.Limits{MaxRows: 1, MaxBytes: 1, Timeout: time.Second}}
}

// The tools on offer are those of the kinds configured (and list_resources
// and approval_status always); a reload that changes them tells connected
// clients with notifications/tools/list_changed, and one that does not
// stays quiet.
func TestToolsFollowTheConfiguredKinds(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://:memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	var b *broker.Broker
	leases, err := lease.New(lease.Config{Store: st, Resolve: func(name string) (tools.Resource, bool) {
		r, ok := b.State().Resources[name]
		return r, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	b, err = broker.New(broker.Config{
		Tools:    []tools.Tool{kindTool{"query_thing", "postgres"}, kindTool{"run_thing", "ssh"}, kindTool{"get_thing", "kubernetes"}},
		Recorder: rec, Leases: leases,
	}, stateWith(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	srv := New(b, func(context.Context) (policy.Identity, error) { return policy.Identity{Subject: "t"}, nil }, "test", nil)

	c, err := client.NewInProcessClient(srv.MCP())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	changed := 0
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationToolsListChanged) {
			mu.Lock()
			changed++
			mu.Unlock()
		}
	})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	init, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ProtocolVersion: mcp.LATEST_PROTOCOL_VERSION, ClientInfo: mcp.Implementation{Name: "t", Version: "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if init.Capabilities.Tools == nil || !init.Capabilities.Tools.ListChanged {
		t.Errorf("the server must declare tools.listChanged: %+v", init.Capabilities.Tools)
	}
	listed := func() []string {
		t.Helper()
		res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tl := range res.Tools {
			names = append(names, tl.Name)
		}
		slices.Sort(names)
		return names
	}
	notified := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := changed
			mu.Unlock()
			if n == want || time.Now().After(deadline) {
				if n != want {
					t.Errorf("tools/list_changed notifications: %d, want %d", n, want)
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if got, want := listed(), []string{"approval_status", "list_resources", "query_thing"}; !slices.Equal(got, want) {
		t.Errorf("with only a postgres resource: tools %v, want %v", got, want)
	}

	b.Swap(stateWith(t, "postgres", "ssh"))
	if !srv.Sync() {
		t.Error("Sync after adding an ssh resource reports no change")
	}
	notified(1)
	if got, want := listed(), []string{"approval_status", "list_resources", "query_thing", "run_thing"}; !slices.Equal(got, want) {
		t.Errorf("after the reload: tools %v, want %v", got, want)
	}

	b.Swap(stateWith(t, "ssh", "postgres"))
	if srv.Sync() {
		t.Error("Sync with the same kinds reports a change")
	}
	time.Sleep(100 * time.Millisecond)
	notified(1)

	b.Swap(stateWith(t))
	srv.Sync()
	notified(2)
	if got, want := listed(), []string{"approval_status", "list_resources"}; !slices.Equal(got, want) {
		t.Errorf("with no resources: tools %v, want %v", got, want)
	}
}
