package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// Small fakes for the pipeline's own logic. The real backends are tested
// against real servers in their packages, in pipeline_test.go and in
// internal/e2e.

type fakeArgs struct {
	Resource string `json:"resource"`
	Query    string `json:"query"`
}

func (a fakeArgs) ResourceName() string { return a.Resource }
func (a fakeArgs) Canonical() json.RawMessage {
	b, _ := json.Marshal(a)
	return b
}

type fakeTool struct {
	mu       sync.Mutex
	executed int
	output   func() *tools.Output
	err      error
}

func (t *fakeTool) Name() string                 { return "fake_query" }
func (t *fakeTool) Kind() string                 { return "fake" }
func (t *fakeTool) Description() string          { return "a fake" }
func (t *fakeTool) InputSchema() json.RawMessage { return json.RawMessage(`{"type":"object"}`) }
func (t *fakeTool) ReadOnly() bool               { return true }
func (t *fakeTool) Decode(raw json.RawMessage) (tools.Args, error) {
	var a fakeArgs
	if err := json.Unmarshal(raw, &a); err != nil || a.Resource == "" {
		return nil, fmt.Errorf("%w: resource is required", tools.ErrInvalidArguments)
	}
	return a, nil
}
func (t *fakeTool) Facts(a tools.Args) (policy.Facts, error) {
	q := a.(fakeArgs).Query
	if strings.HasPrefix(q, "opaque") {
		return policy.Facts{}, tools.Opaque("the query uses %s, which the analysis cannot see through", q)
	}
	return policy.Facts{SQL: &policy.SQL{ReadOnly: !strings.HasPrefix(q, "write"), StatementCount: 1}}, nil
}
func (t *fakeTool) Execute(ctx context.Context, target tools.Target, a tools.Args) (*tools.Output, error) {
	t.mu.Lock()
	t.executed++
	t.mu.Unlock()
	if t.err != nil {
		return nil, t.err
	}
	return t.output(), nil
}
func (t *fakeTool) Render(out *tools.Output) (any, string) {
	return map[string]any{"rows": out.Table.Rows}, fmt.Sprint(out.Table.Rows)
}
func (t *fakeTool) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.executed
}

type fakeCred struct{}

func (fakeCred) Handle() string       { return "h" }
func (fakeCred) String() string       { return "[REDACTED]" }
func (fakeCred) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

type fakeResource struct {
	spec    tools.ResourceSpec
	mu      sync.Mutex
	closed  bool
	revoked int
}

func (r *fakeResource) isClosed() bool   { r.mu.Lock(); defer r.mu.Unlock(); return r.closed }
func (r *fakeResource) revocations() int { r.mu.Lock(); defer r.mu.Unlock(); return r.revoked }

func (r *fakeResource) Spec() tools.ResourceSpec { return r.spec }
func (r *fakeResource) Mint(context.Context, tools.MintRequest) (tools.Credential, error) {
	return fakeCred{}, nil
}
func (r *fakeResource) Revoke(context.Context, tools.LeaseRef) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked++
	return nil
}
func (r *fakeResource) Orphans(context.Context) ([]string, error) { return nil, nil }
func (r *fakeResource) Reusable() bool                            { return true }
func (r *fakeResource) Close()                                    { r.mu.Lock(); r.closed = true; r.mu.Unlock() }

// flakyRecorder fails appends of the given event types, and counts the
// appends (store transactions) asked of it.
type flakyRecorder struct {
	*recorder.Recorder
	failOn  map[string]bool
	commits atomic.Int32
}

func (f *flakyRecorder) AppendWith(ctx context.Context, ev recorder.Event, hook recorder.TxHook) (recorder.Event, error) {
	f.commits.Add(1)
	if f.failOn[ev.Type] {
		return recorder.Event{}, errors.New("disk full")
	}
	return f.Recorder.AppendWith(ctx, ev, hook)
}

// AppendAll fails, appending none, when any of the events is of a failing
// type (the events of one append are committed together or not at all).
func (f *flakyRecorder) AppendAllWith(ctx context.Context, evs []recorder.Event, hooks []recorder.TxHook) ([]recorder.Event, error) {
	f.commits.Add(1)
	for _, ev := range evs {
		if f.failOn[ev.Type] {
			return nil, errors.New("disk full")
		}
	}
	return f.Recorder.AppendAllWith(ctx, evs, hooks)
}

const testPolicy = `
rules:
  - name: eng-reads
    when: tool == "fake_query" && "eng" in identity.groups && sql.read_only
    effect: allow
    grant: ro
    mask: pii
  - name: writes-need-approval
    when: tool == "fake_query" && !sql.read_only
    effect: approve
    approvers: {groups: [dba]}
    grant: ro
    message: writes need a DBA
  - name: anything-opaque
    when: hasPrefix(args.query, "opaque")
    effect: allow
    grant: ro
  - name: no-secret-table
    when: args.query == "secret"
    effect: deny
    message: the secret table is off limits
`

type harness struct {
	broker *Broker
	tool   *fakeTool
	rec    *recorder.Recorder
	flaky  *flakyRecorder
}

// newHarness serves the fake tool, or what wrap makes of it.
func newHarness(t *testing.T, wrap ...func(*fakeTool) tools.Tool) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://:memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(testPolicy), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := &fakeResource{spec: tools.ResourceSpec{Name: "db1", Kind: "fake", Grants: map[string]tools.Grant{"ro": {TTL: time.Minute}}}}
	h := &harness{tool: &fakeTool{output: func() *tools.Output {
		return &tools.Output{Table: &tools.Table{
			Columns: []tools.Column{{Name: "name"}, {Name: "contact", Table: "public.users", Source: "email"}, {Name: "note"}},
			Rows:    [][]any{{"Ada", "ada@example.com", "mail grace@example.org"}},
		}}
	}}, rec: rec}
	h.flaky = &flakyRecorder{Recorder: rec, failOn: map[string]bool{}}
	var b *Broker
	leases, err := lease.New(lease.Config{
		Store:   st,
		Resolve: func(name string) (tools.Resource, bool) { r, ok := b.State().Resources[name]; return r, ok },
		OnEvent: func(ctx context.Context, ev lease.Event) error { return b.RecordLease(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var served tools.Tool = h.tool
	for _, w := range wrap {
		served = w(h.tool)
	}
	b, err = New(Config{Tools: []tools.Tool{served}, Recorder: h.flaky, Leases: leases}, &State{
		Policy:    pol,
		Resources: map[string]tools.Resource{"db1": res},
		Masking:   engine,
		Limits:    tools.Limits{MaxRows: 10, MaxBytes: 1 << 20, Timeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.broker = b
	return h
}

var eng = policy.Identity{Subject: "alice", Groups: []string{"eng"}, Method: "local"}

func (h *harness) call(t *testing.T, id policy.Identity, args string) Result {
	t.Helper()
	return h.broker.Handle(context.Background(), Call{Tool: "fake_query", Arguments: json.RawMessage(args), Identity: id})
}

func (h *harness) eventTypes(t *testing.T, callID string) []string {
	t.Helper()
	evs, err := h.rec.Events(context.Background(), recorder.Filter{CallID: callID})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	return types
}

func TestHandleStages(t *testing.T) {
	tests := []struct {
		name      string
		id        policy.Identity
		args      string
		wantError bool
		wantText  []string
		wantExec  int
		wantTypes []string
	}{
		{
			name: "allowed and masked", id: eng, args: `{"resource":"db1","query":"select"}`,
			wantText: []string{"Ada", "[EMAIL]"}, wantExec: 1,
			wantTypes: []string{"call.received", "call.decided", "lease.minted", "call.completed"},
		},
		{
			name: "default deny", id: policy.Identity{Subject: "bob"}, args: `{"resource":"db1","query":"select"}`,
			wantError: true, wantText: []string{"Denied", "default deny"},
			wantTypes: []string{"call.received", "call.decided", "call.refused"},
		},
		{
			name: "deny rule wins and is named", id: eng, args: `{"resource":"db1","query":"secret"}`,
			wantError: true, wantText: []string{`"no-secret-table"`, "off limits"},
			wantTypes: []string{"call.received", "call.decided", "call.refused"},
		},
		{
			name: "approval is refused until approvals exist", id: eng, args: `{"resource":"db1","query":"write x"}`,
			wantError: true, wantText: []string{`"writes-need-approval"`, "approval", "writes need a DBA"},
			wantTypes: []string{"call.received", "call.decided", "call.refused"},
		},
		{
			name: "unknown resource lists the usable ones", id: eng, args: `{"resource":"nope","query":"select"}`,
			wantError: true, wantText: []string{`"nope"`, "db1"},
			wantTypes: []string{"call.received", "call.refused"},
		},
		{
			name: "unknown resource lists nothing to an outsider", id: policy.Identity{Subject: "mallory"}, args: `{"resource":"nope"}`,
			wantError: true, wantText: []string{"no fake resource you may use"},
			wantTypes: []string{"call.received", "call.refused"},
		},
		{
			// An allow-everything rule matches it too: facts that cannot be
			// complete stop the call before any rule is asked.
			name: "opaque call is refused before policy", id: eng, args: `{"resource":"db1","query":"opaque trick"}`,
			wantError: true, wantText: []string{"Refused before policy", "opaque trick", "cannot see through"},
			wantTypes: []string{"call.received", "call.refused"},
		},
		{
			name: "invalid arguments", id: eng, args: `{"query":"select"}`,
			wantError: true, wantText: []string{"resource is required"},
			wantTypes: []string{"call.received", "call.refused"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			res := h.call(t, tt.id, tt.args)
			if res.IsError != tt.wantError {
				t.Fatalf("IsError = %v, want %v: %s", res.IsError, tt.wantError, res.Text)
			}
			for _, want := range tt.wantText {
				if !strings.Contains(res.Text, want) {
					t.Errorf("text %q lacks %q", res.Text, want)
				}
			}
			if strings.Contains(res.Text, "ada@example.com") || strings.Contains(res.Text, "grace@example.org") {
				t.Errorf("result leaked an email: %s", res.Text)
			}
			if got := h.tool.count(); got != tt.wantExec {
				t.Errorf("executed %d times, want %d", got, tt.wantExec)
			}
			if got := h.eventTypes(t, res.CallID); strings.Join(got, ",") != strings.Join(tt.wantTypes, ",") {
				t.Errorf("events = %v, want %v", got, tt.wantTypes)
			}
		})
	}
}

// A call that cannot be recorded does not run; an output that cannot be
// recorded does not leave.
func TestRecordingFailsClosed(t *testing.T) {
	for _, failOn := range []string{"call.received", "call.decided", "lease.minted", "call.completed"} {
		t.Run(failOn, func(t *testing.T) {
			h := newHarness(t)
			h.flaky.failOn[failOn] = true
			res := h.call(t, eng, `{"resource":"db1","query":"select"}`)
			if !res.IsError {
				t.Fatalf("call succeeded although %s could not be recorded: %s", failOn, res.Text)
			}
			if strings.Contains(res.Text, "Ada") {
				t.Errorf("output left although it was not recorded: %s", res.Text)
			}
			wantExec := 0
			if failOn == "call.completed" {
				wantExec = 1
			}
			if got := h.tool.count(); got != wantExec {
				t.Errorf("executed %d times, want %d", got, wantExec)
			}
		})
	}
}

// If masking fails, nothing of the output leaves, and the failure is recorded.
func TestMaskingFailsClosed(t *testing.T) {
	h := newHarness(t)
	h.tool.output = func() *tools.Output {
		return &tools.Output{Table: &tools.Table{
			Columns: []tools.Column{{Name: "contact", Table: "public.users", Source: "email"}},
			Rows:    [][]any{{"ada@example.com", "extra value without a column"}},
		}}
	}
	res := h.call(t, eng, `{"resource":"db1","query":"select"}`)
	if !res.IsError || !strings.Contains(res.Text, "masking failed") {
		t.Fatalf("want a masking refusal, got %+v", res)
	}
	if strings.Contains(fmt.Sprint(res.Structured), "ada@") {
		t.Errorf("structured content leaked: %v", res.Structured)
	}
	types := h.eventTypes(t, res.CallID)
	if types[len(types)-1] != "call.failed" {
		t.Errorf("events = %v, want call.failed last", types)
	}
}

func TestBackendErrorIsAToolResult(t *testing.T) {
	h := newHarness(t)
	h.tool.err = fmt.Errorf("%w: the database went away during the call", tools.ErrBackendUnavailable)
	res := h.call(t, eng, `{"resource":"db1","query":"select"}`)
	if !res.IsError || !strings.Contains(res.Text, "went away") {
		t.Fatalf("got %+v", res)
	}
	if m := res.Structured.(map[string]any); m["outcome"] != "unavailable" {
		t.Errorf("outcome = %v", m["outcome"])
	}
}

// The lease is reused by the same identity and grant, and not by another.
func TestLeaseReuse(t *testing.T) {
	h := newHarness(t)
	first := h.call(t, eng, `{"resource":"db1","query":"select"}`)
	second := h.call(t, eng, `{"resource":"db1","query":"select"}`)
	carol := h.call(t, policy.Identity{Subject: "carol", Groups: []string{"eng"}}, `{"resource":"db1","query":"select"}`)
	if got := h.eventTypes(t, first.CallID); !contains(got, "lease.minted") {
		t.Errorf("first call events %v", got)
	}
	if got := h.eventTypes(t, second.CallID); !contains(got, "lease.reused") {
		t.Errorf("second call events %v, want lease.reused", got)
	}
	if got := h.eventTypes(t, carol.CallID); !contains(got, "lease.minted") {
		t.Errorf("another identity's call events %v, want its own lease", got)
	}
}

func TestListResourcesShowsOnlyUsable(t *testing.T) {
	h := newHarness(t)
	res := h.broker.ListResources(context.Background(), Call{Identity: eng})
	if res.IsError || !strings.Contains(res.Text, "db1") {
		t.Errorf("eng: %+v", res)
	}
	res = h.broker.ListResources(context.Background(), Call{Identity: policy.Identity{Subject: "mallory"}})
	if res.IsError || strings.Contains(res.Text, "db1") {
		t.Errorf("outsider sees: %+v", res)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// A reload does not disturb a call in flight: it finishes on the state it
// started with; the replaced resource's leases are revoked and the resource
// closed only after that call ends.
func TestSwapWaitsForCallsInFlight(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	started := make(chan struct{})
	h.tool.output = func() *tools.Output {
		close(started)
		<-release
		return &tools.Output{Table: &tools.Table{Columns: []tools.Column{{Name: "x"}}, Rows: [][]any{{"ok"}}}}
	}
	done := make(chan Result, 1)
	go func() { done <- h.call(t, eng, `{"resource":"db1","query":"select"}`) }()
	<-started

	old := h.broker.State()
	oldRes := old.Resources["db1"].(*fakeResource)
	h.broker.Swap(&State{
		Policy:    old.Policy,
		Resources: map[string]tools.Resource{"db1": &fakeResource{spec: oldRes.spec}},
		Masking:   old.Masking,
		Limits:    old.Limits,
	})
	time.Sleep(50 * time.Millisecond)
	if oldRes.isClosed() {
		t.Fatal("the replaced resource was closed while a call was using it")
	}
	close(release)
	if r := <-done; r.IsError {
		t.Fatalf("the call in flight failed across the reload: %s", r.Text)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !oldRes.isClosed() {
		if time.Now().After(deadline) {
			t.Fatal("the replaced resource was never closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if oldRes.revocations() != 1 {
		t.Errorf("revocations of the replaced resource's lease = %d, want 1", oldRes.revocations())
	}
}

// A call whose arguments hold something that looks like a secret cannot be
// approved: approvers would see it masked, and a masked span can hide what
// the call really does.
func TestApprovalRefusedWhenArgumentsAreMasked(t *testing.T) {
	h := newHarness(t)
	res := h.call(t, eng, `{"resource":"db1","query":"write x -- -----BEGIN PRIVATE KEY-----\n OR true"}`)
	if !res.IsError || !strings.Contains(res.Text, "private_key") || !strings.Contains(res.Text, "look like secrets") {
		t.Fatalf("got %+v", res)
	}
	if h.tool.count() != 0 {
		t.Error("executed")
	}
}

// Error text from a backend is masked with the call's profile before it
// reaches the agent, the transcript or the log.
func TestBackendErrorTextIsMasked(t *testing.T) {
	h := newHarness(t)
	const jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	h.tool.err = fmt.Errorf("ERROR: invalid input for ada@example.com token %s (SQLSTATE 22P02)", jwt)
	res := h.call(t, eng, `{"resource":"db1","query":"select"}`)
	if !res.IsError || strings.Contains(res.Text, jwt) || strings.Contains(res.Text, "ada@example.com") {
		t.Fatalf("unmasked error text reached the agent: %s", res.Text)
	}
	evs, _ := h.rec.Events(context.Background(), recorder.Filter{CallID: res.CallID})
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), jwt) || strings.Contains(string(ev.Data), "ada@example.com") {
			t.Errorf("unmasked error text in %s: %s", ev.Type, ev.Data)
		}
	}
}
