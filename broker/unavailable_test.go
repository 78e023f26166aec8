package broker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// fakeKind opens resources of kind "fake" whose secret variable is set.
type fakeKind struct{}

func (fakeKind) Name() string { return "fake" }
func (fakeKind) Open(spec tools.ResourceSpec, env tools.Environment) (tools.Resource, error) {
	if v, ok := env.Getenv(spec.AdminDSNEnv); !ok || v == "" {
		return nil, errors.New("invalid fake resource configuration: resource " + spec.Name + ": admin_dsn_env: environment variable " + spec.AdminDSNEnv + " is not set")
	}
	return &fakeResource{spec: spec}, nil
}

// One resource whose secret is missing does not stop the others: it is in
// the state as unavailable, with the setting and the reason; list_resources
// names it so; its calls are refused with the reason and never run; the
// other resource serves.
func TestUnavailableResource(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("UNAVAILABLE_TEST_DB1", "set")
	os.Unsetenv("UNAVAILABLE_TEST_DB2")
	grants := map[string]tools.Grant{"ro": {TTL: time.Minute}}
	cfg := &config.Config{
		Dir: dir, Source: filepath.Join(dir, "airlock.yaml"), Policy: "policy.yaml", Masking: masking.DefaultConfig(),
		Limits: config.Limits{MaxRows: 10, MaxBytes: 1 << 20, Timeout: time.Second},
		Resources: []tools.ResourceSpec{
			{Name: "db1", Kind: "fake", AdminDSNEnv: "UNAVAILABLE_TEST_DB1", Grants: grants},
			{Name: "db2", Kind: "fake", AdminDSNEnv: "UNAVAILABLE_TEST_DB2", Description: "the second", Grants: grants},
		},
	}
	state, err := BuildState(cfg, map[string]tools.Kind{"fake": fakeKind{}}, nil)
	if err != nil {
		t.Fatalf("one unopenable resource must not fail the state: %v", err)
	}
	down := state.Unavailable()
	if len(down) != 1 || down["db2"] != "admin_dsn_env: environment variable UNAVAILABLE_TEST_DB2 is not set" {
		t.Fatalf("unavailable = %q", down)
	}

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
	var b *Broker
	leases, err := lease.New(lease.Config{Store: st, Resolve: func(name string) (tools.Resource, bool) { r, ok := b.State().Resources[name]; return r, ok },
		OnEvent: func(ctx context.Context, ev lease.Event) error { return b.RecordLease(ctx, ev) }})
	if err != nil {
		t.Fatal(err)
	}
	tool := &fakeTool{output: func() *tools.Output {
		return &tools.Output{Table: &tools.Table{Columns: []tools.Column{{Name: "n"}}, Rows: [][]any{{1}}}}
	}}
	b, err = New(Config{Tools: []tools.Tool{tool}, Recorder: rec, Leases: leases}, state)
	if err != nil {
		t.Fatal(err)
	}

	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(`{"resource":"db2","query":"select"}`), Identity: eng})
	if !r.IsError || !strings.Contains(r.Text, "Resource db2 is unavailable") || !strings.Contains(r.Text, "UNAVAILABLE_TEST_DB2 is not set") {
		t.Errorf("a call to the unavailable resource: %+v", r)
	}
	if m, _ := r.Structured.(map[string]any); m["outcome"] != "unavailable" {
		t.Errorf("outcome = %v", r.Structured)
	}
	if tool.count() != 0 {
		t.Error("a call to an unavailable resource ran")
	}
	if r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(`{"resource":"db1","query":"select"}`), Identity: eng}); r.IsError {
		t.Errorf("the other resource must serve: %s", r.Text)
	}

	list := b.ListResources(ctx, Call{Identity: eng})
	raw, _ := json.Marshal(list.Structured)
	var got struct{ Resources []ResourceInfo }
	if err := json.Unmarshal(raw, &got); err != nil || len(got.Resources) != 2 {
		t.Fatalf("list_resources: %s (%v)", raw, err)
	}
	if got.Resources[0].Unavailable != "" || !strings.Contains(got.Resources[1].Unavailable, "UNAVAILABLE_TEST_DB2") {
		t.Errorf("list_resources: %s", raw)
	}
	if !strings.Contains(list.Text, "db2 (fake): the second [tools: fake_query] UNAVAILABLE: admin_dsn_env: environment variable UNAVAILABLE_TEST_DB2 is not set.") {
		t.Errorf("list_resources text:\n%s", list.Text)
	}
	if offered := b.OfferedTools(); len(offered) != 1 || offered[0].Name() != "fake_query" {
		t.Errorf("offered tools = %v", offered)
	}

	// A reload where the variable is now set opens it (an unavailable
	// stand-in is never carried over).
	t.Setenv("UNAVAILABLE_TEST_DB2", "set")
	next, err := BuildState(cfg, map[string]tools.Kind{"fake": fakeKind{}}, b.State())
	if err != nil || len(next.Unavailable()) != 0 {
		t.Fatalf("reload: %v, unavailable %v", err, next.Unavailable())
	}
}
