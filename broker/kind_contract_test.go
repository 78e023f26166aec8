package broker_test

// The test of the tool contract: a kind that exists only in this file —
// its facts type, its resource settings and grant keys, its tool — goes
// through the real config loading (strict, with lines), the real policy
// (typed rules on its facts), a policy case file, and the real broker
// pipeline: transcript, approval, webhook. Nothing outside this file knows
// the kind "gizmo".

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/approval/webhook"
	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
	"github.com/airlock-mcp/airlock/tools/postgres"
)

// gizmoFacts is what policy reads of a gizmo call, as gizmo.action, ...
type gizmoFacts struct {
	Action   string   `expr:"action" json:"action"`
	Path     string   `expr:"path" json:"path"`
	Segments []string `expr:"segments" json:"segments"`
	ReadOnly bool     `expr:"read_only" json:"read_only"`
	Size     int      `expr:"size" json:"size"`
}

// gizmoSettings are a gizmo resource's own keys; gizmoGrant a grant's.
type gizmoSettings struct {
	Endpoint string   `yaml:"endpoint"`
	Actions  []string `yaml:"actions"`
	Options  *struct {
		Retries int           `yaml:"retries"`
		Timeout time.Duration `yaml:"timeout"`
	} `yaml:"options"`
}

type gizmoGrant struct {
	Scopes []string `yaml:"scopes"`
}

// The kind's whole registration, as its package's init would do it.
func init() {
	policy.RegisterFacts("gizmo", gizmoFacts{})
	tools.RegisterSettings("gizmo", gizmoSettings{}, gizmoGrant{})
}

type gizmoKind struct{}

func (gizmoKind) Name() string { return "gizmo" }

func (gizmoKind) Open(spec tools.ResourceSpec, env tools.Environment) (tools.Resource, error) {
	for _, f := range spec.ForeignSettings("gizmo") {
		return nil, fmt.Errorf("resource %s: %s: not a gizmo setting (it is %s)", spec.Name, f.Key, f.OwnerPhrase())
	}
	r := &gizmoResource{spec: spec, grants: map[string]gizmoGrant{}}
	if err := spec.DecodeSettings(&r.settings); err != nil {
		return nil, fmt.Errorf("resource %s: %w", spec.Name, err)
	}
	for name, g := range spec.Grants {
		for _, f := range g.ForeignSettings("gizmo") {
			return nil, fmt.Errorf("resource %s: grants.%s.%s: not a gizmo grant setting (it is %s)", spec.Name, name, f.Key, f.OwnerPhrase())
		}
		var gs gizmoGrant
		if err := g.DecodeSettings(&gs); err != nil {
			return nil, fmt.Errorf("resource %s: grants.%s.%w", spec.Name, name, err)
		}
		r.grants[name] = gs
	}
	return r, nil
}

type gizmoResource struct {
	spec     tools.ResourceSpec
	settings gizmoSettings
	grants   map[string]gizmoGrant
}

type gizmoCred struct{ scopes []string }

func (c gizmoCred) Handle() string                { return "gizmo-token" }
func (gizmoCred) String() string                  { return "[REDACTED]" }
func (gizmoCred) LogValue() slog.Value            { return slog.StringValue("[REDACTED]") }
func (r *gizmoResource) Spec() tools.ResourceSpec { return r.spec }
func (r *gizmoResource) Mint(_ context.Context, req tools.MintRequest) (tools.Credential, error) {
	return gizmoCred{scopes: r.grants[req.GrantName].Scopes}, nil
}
func (r *gizmoResource) Revoke(context.Context, tools.LeaseRef) error { return nil }
func (r *gizmoResource) Orphans(context.Context) ([]string, error)    { return nil, nil }
func (r *gizmoResource) Reusable() bool                               { return true }
func (r *gizmoResource) Close()                                       {}

type gizmoArgs struct {
	Resource string `json:"resource"`
	Action   string `json:"action"`
	Path     string `json:"path"`
	Size     int    `json:"size,omitempty"`
}

func (a gizmoArgs) ResourceName() string { return a.Resource }
func (a gizmoArgs) Canonical() json.RawMessage {
	b, _ := json.Marshal(a)
	return b
}

type gizmoTool struct{}

func (gizmoTool) Name() string                 { return "gizmo_call" }
func (gizmoTool) Kind() string                 { return "gizmo" }
func (gizmoTool) Description() string          { return "act on a gizmo" }
func (gizmoTool) InputSchema() json.RawMessage { return json.RawMessage(`{"type":"object"}`) }
func (gizmoTool) ReadOnly() bool               { return false }
func (gizmoTool) Decode(raw json.RawMessage) (tools.Args, error) {
	var a gizmoArgs
	if err := json.Unmarshal(raw, &a); err != nil || a.Resource == "" || a.Action == "" {
		return nil, fmt.Errorf("%w: resource and action are required", tools.ErrInvalidArguments)
	}
	return a, nil
}
func (gizmoTool) Facts(args tools.Args) (policy.Facts, error) {
	a := args.(gizmoArgs)
	if strings.Contains(a.Path, "%") {
		return policy.Facts{}, tools.Opaque("the path %q is percent-encoded, which the analysis does not decode", a.Path)
	}
	return policy.FactsOf("gizmo", gizmoFacts{
		Action: a.Action, Path: a.Path, Segments: strings.FieldsFunc(a.Path, func(r rune) bool { return r == '/' }),
		ReadOnly: a.Action == "read", Size: a.Size,
	}), nil
}

// CheckResource: an action the resource does not list is refused by the
// resource's own settings, before facts and policy (tools.ResourceChecker).
func (gizmoTool) CheckResource(spec tools.ResourceSpec, args tools.Args) error {
	var st gizmoSettings
	if err := spec.DecodeSettings(&st); err != nil {
		return err
	}
	if a := args.(gizmoArgs); !slices.Contains(st.Actions, a.Action) {
		return fmt.Errorf("%w: resource %s takes the actions %s, not %s", tools.ErrRefused, spec.Name, strings.Join(st.Actions, ", "), a.Action)
	}
	return nil
}

func (gizmoTool) Execute(_ context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	r := target.Resource.(*gizmoResource)
	cred := target.Credential.(gizmoCred)
	a := args.(gizmoArgs)
	return &tools.Output{Streams: &tools.Streams{Stdout: fmt.Sprintf("%s %s%s with scopes %s (retries %d, timeout %s)",
		a.Action, r.settings.Endpoint, a.Path, strings.Join(cred.scopes, ","), r.settings.Options.Retries, r.settings.Options.Timeout)}}, nil
}
func (gizmoTool) Render(out *tools.Output) (any, string) {
	return map[string]any{"stdout": out.Streams.Stdout}, out.Streams.Stdout
}

const gizmoConfig = `auth: {mode: none}
policy: policy.yaml
resources:
  - name: widgets
    kind: gizmo
    labels: {env: prod}
    endpoint: https://gizmo.example.com
    actions: [read, write, delete]
    options: {retries: 3, timeout: 5s}
    grants:
      reader: {scopes: [gizmo.read], ttl: 5m}
      writer: {scopes: [gizmo.read, gizmo.write], ttl: 2m}
`

const gizmoPolicy = `rules:
  - name: no-deletes
    when: tool == "gizmo_call" && gizmo.action == "delete"
    effect: deny
    message: gizmos are never deleted through agents
  - name: big-writes-need-ops
    when: tool == "gizmo_call" && !gizmo.read_only && (gizmo.size > 100 || resource.labels.env == "prod")
    effect: approve
    approvers: {groups: [ops]}
    grant: writer
  - name: eng-reads-public
    when: tool == "gizmo_call" && gizmo.read_only && "eng" in identity.groups && gizmo.segments[0] == "public"
    effect: allow
    grant: reader
`

const gizmoCases = `config: airlock.yaml
policy: policy.yaml
cases:
  - name: eng reads a public gizmo
    identity: {subject: alice, groups: [eng]}
    tool: gizmo_call
    resource: widgets
    args: {action: read, path: /public/a}
    expect: {effect: allow, rule: eng-reads-public, grant: reader}
  - name: private reads are denied by default
    identity: {subject: alice, groups: [eng]}
    tool: gizmo_call
    resource: widgets
    args: {action: read, path: /private/a}
    expect: {effect: deny, default_deny: true}
  - name: deletes are denied
    identity: {subject: alice, groups: [eng]}
    tool: gizmo_call
    resource: widgets
    args: {action: delete, path: /public/a}
    expect: {effect: deny, rule: no-deletes}
  - name: writes on prod are held
    identity: {subject: alice, groups: [eng]}
    tool: gizmo_call
    resource: widgets
    args: {action: write, path: /public/a}
    expect: {effect: approve, rule: big-writes-need-ops, grant: writer}
  - name: encoded paths are refused before policy
    tool: gizmo_call
    resource: widgets
    args: {action: read, path: /public/%2e%2e/x}
    expect: {effect: refused, reason: percent-encoded}
  - name: an action the resource does not take is refused before policy
    identity: {subject: alice, groups: [eng]}
    tool: gizmo_call
    resource: widgets
    args: {action: paint, path: /public/a}
    expect: {effect: refused, reason: "takes the actions read, write, delete, not paint"}
  - name: facts stated by the kind's name
    identity: {subject: bob, groups: [eng]}
    tool: gizmo_call
    resource: widgets
    facts: {gizmo: {action: read, path: /public/b, segments: [public, b], read_only: true, size: 0}}
    expect: {effect: allow, rule: eng-reads-public}
`

// writeFiles writes the config, policy and case file into a directory.
func writeGizmoFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The config names the kind and its settings flat, as for any kind; policy
// test cases run against it as `airlock policy test` runs them.
func TestNewKindCasesRunThroughItsTool(t *testing.T) {
	dir := writeGizmoFiles(t, map[string]string{"airlock.yaml": gizmoConfig, "policy.yaml": gizmoPolicy, "gizmo.cases.yaml": gizmoCases})
	cfg, err := config.Load(filepath.Join(dir, "airlock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "gizmo.cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	file, err := policy.ParseCaseFile(data, filepath.Join(dir, "gizmo.cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(file.Policy)
	if err != nil {
		t.Fatal(err)
	}
	results := policy.RunCases(pol, file.Cases, func(c policy.Case) (policy.Input, error) {
		return tools.CaseInput(gizmoTool{}, c, &cfg.Resources[0])
	})
	if len(results) != 7 {
		t.Fatalf("%d results", len(results))
	}
	for _, r := range results {
		if !r.Pass {
			t.Error(r)
		}
	}
}

// The file is checked against the kind's settings as strictly as against
// the built-in kinds': an unknown key, a wrong type, a grant key of the
// kind on another kind's grant, each with its line.
func TestNewKindConfigIsStrict(t *testing.T) {
	text := `auth: {mode: none}
policy: policy.yaml
resources:
  - name: widgets
    kind: gizmo
    endpiont: https://gizmo.example.com
    options: {retries: many}
    grants:
      reader: {scopes: gizmo.read, ttl: 5m}
  - name: shop
    kind: postgres
    admin_dsn_env: DSN
    endpoint: https://gizmo.example.com
    grants:
      ro: {roles: [r], scopes: [x], ttl: 5m}
`
	dir := writeGizmoFiles(t, map[string]string{"airlock.yaml": text, "policy.yaml": gizmoPolicy})
	_, errs := config.Check(filepath.Join(dir, "airlock.yaml"))
	var got []string
	for _, e := range errs {
		got = append(got, strings.TrimPrefix(e.Error(), filepath.Join(dir, "airlock.yaml")))
	}
	want := []string{
		`:6: resources[0].endpiont: unknown key (did you mean "endpoint"?); valid keys in resources[0]: name, kind, description, labels, grants, mask, endpoint, actions, options`,
		`:7: resources[0].options.retries: must be a whole number, not "many"`,
		`:9: resources[0].grants.reader.scopes: must be a list such as [a, b], not "gizmo.read"`,
		`:13: resources[1].endpoint: is a gizmo setting, not valid for kind postgres; postgres resources take admin_dsn_env | admin_dsn_file and connect_host`,
		`:15: resources[1].grants.ro.scopes: is a gizmo grant setting, not valid for kind postgres; postgres grants take roles, access and ttl`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The kind's own Open refuses the same through DecodeSettings, for
	// specs that do not come from a file; a built-in kind's Open refuses
	// the new kind's keys, naming their owner.
	_, err := gizmoKind{}.Open(tools.ResourceSpec{Name: "w", Kind: "gizmo", Settings: tools.Settings{"endpiont": "x"}}, nil)
	if err == nil || !strings.Contains(err.Error(), `endpiont: unknown key (did you mean "endpoint"?)`) {
		t.Errorf("Open: %v", err)
	}
	_, err = postgres.NewKind().Open(tools.ResourceSpec{Name: "shop", Kind: "postgres", AdminDSNEnv: "DSN",
		Settings: tools.Settings{"endpoint": "https://gizmo.example.com"},
		Grants:   map[string]tools.Grant{"ro": {Roles: []string{"r"}, TTL: time.Minute}}}, mapEnv{"DSN": "host=/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), "endpoint is a gizmo setting, not valid for kind postgres") {
		t.Errorf("postgres Open: %v", err)
	}
}

// The whole pipeline with the new kind: its facts decide, are recorded in
// the transcript and read back as facts; its settings and grant keys reach
// its resource; a held call reaches the approvers' webhook.
func TestNewKindThroughTheBroker(t *testing.T) {
	ctx := context.Background()
	dir := writeGizmoFiles(t, map[string]string{"airlock.yaml": gizmoConfig, "policy.yaml": gizmoPolicy})
	cfg, err := config.Load(filepath.Join(dir, "airlock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	state, err := broker.BuildState(cfg, map[string]tools.Kind{"gizmo": gizmoKind{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if down := state.Unavailable(); len(down) > 0 {
		t.Fatalf("unavailable: %v", down)
	}

	var mu sync.Mutex
	var payloads []webhook.Payload
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var p webhook.Payload
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		payloads = append(payloads, p)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)

	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	var b *broker.Broker
	leases, err := lease.New(lease.Config{
		Store:   st,
		Resolve: func(name string) (tools.Resource, bool) { r, ok := b.State().Resources[name]; return r, ok },
		OnEvent: func(ctx context.Context, ev lease.Event) error { return b.RecordLease(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leases.Close(context.Background()) })
	approvals, err := approval.New(approval.Config{
		Store: st, PublicURL: "https://airlock.example.com/mcp", Wait: 50 * time.Millisecond, Expire: 15 * time.Minute,
		PollInterval: 10 * time.Millisecond,
		Webhooks:     []approval.WebhookConfig{{URL: hook.URL, Secret: approval.Secret("0123456789abcdef0123")}},
		OnEvent:      func(ctx context.Context, ev approval.Event) error { return b.RecordApproval(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	approvals.Start(ctx)
	t.Cleanup(func() { _ = approvals.Close(context.Background()) })
	b, err = broker.New(broker.Config{Tools: []tools.Tool{gizmoTool{}}, Recorder: rec, Leases: leases, Approvals: approvals}, state)
	if err != nil {
		t.Fatal(err)
	}

	alice := policy.Identity{Subject: "alice", Groups: []string{"eng"}, Method: "local"}
	call := func(args string) broker.Result {
		return b.Handle(ctx, broker.Call{Tool: "gizmo_call", Arguments: json.RawMessage(args), Identity: alice})
	}
	decided := func(callID string) (policy.Facts, policy.Decision) {
		t.Helper()
		evs, err := rec.Events(ctx, recorder.Filter{CallID: callID, Type: recorder.TypeCallDecided})
		if err != nil || len(evs) != 1 {
			t.Fatalf("call.decided of %s: %v %v", callID, evs, err)
		}
		// As the web approval page reads them.
		var d struct {
			Facts    policy.Facts    `json:"facts"`
			Decision policy.Decision `json:"decision"`
		}
		if err := json.Unmarshal(evs[0].Data, &d); err != nil {
			t.Fatal(err)
		}
		return d.Facts, d.Decision
	}

	// Allowed: the rule on its facts decides; the settings and the grant's
	// scopes reached the resource and its credential.
	res := call(`{"resource":"widgets","action":"read","path":"/public/a"}`)
	if res.IsError || res.Text != "read https://gizmo.example.com/public/a with scopes gizmo.read (retries 3, timeout 5s)" {
		t.Fatalf("allowed call: %+v", res)
	}
	facts, d := decided(res.CallID)
	name, v, ok := facts.Registered()
	if !ok || name != "gizmo" || d.Rule != "eng-reads-public" {
		t.Fatalf("recorded facts %q %#v %v, decision %+v", name, v, ok, d)
	}
	if want := (gizmoFacts{Action: "read", Path: "/public/a", Segments: []string{"public", "a"}, ReadOnly: true}); fmt.Sprint(v) != fmt.Sprint(want) {
		t.Errorf("recorded facts %+v, want %+v", v, want)
	}
	evs, err := rec.Events(ctx, recorder.Filter{CallID: res.CallID, Type: recorder.TypeCallDecided})
	if err != nil || !strings.Contains(string(evs[0].Data), `"facts":{"gizmo":{"action":"read","path":"/public/a","read_only":true,"segments":["public","a"],"size":0}}`) {
		t.Errorf("call.decided data: %s %v", evs[0].Data, err)
	}

	// Denied by a rule on its facts, with its message.
	res = call(`{"resource":"widgets","action":"delete","path":"/public/a"}`)
	if !res.IsError || !strings.Contains(res.Text, `"no-deletes"`) || !strings.Contains(res.Text, "never deleted") {
		t.Fatalf("delete: %+v", res)
	}

	// Refused before policy when the kind cannot see through the call.
	res = call(`{"resource":"widgets","action":"read","path":"/public/%2e%2e/x"}`)
	if !res.IsError || !strings.Contains(res.Text, "Refused before policy") {
		t.Fatalf("opaque: %+v", res)
	}

	// Refused by the resource's own settings, before facts and policy: no
	// call.decided.
	res = call(`{"resource":"widgets","action":"paint","path":"/public/a"}`)
	if m, _ := res.Structured.(map[string]any); !res.IsError || m["outcome"] != "refused" || !strings.Contains(res.Text, "takes the actions read, write, delete, not paint") {
		t.Fatalf("an action the resource does not take: %+v", res)
	}
	if evs, err := rec.Events(ctx, recorder.Filter{CallID: res.CallID, Type: recorder.TypeCallDecided}); err != nil || len(evs) != 0 {
		t.Errorf("a call the resource refused reached policy: %v %v", evs, err)
	}

	// Held for approval: the approvers' webhook names the rule and shows
	// the call.
	res = call(`{"resource":"widgets","action":"write","path":"/public/a","size":5}`)
	if m, _ := res.Structured.(map[string]any); !res.IsError || m["outcome"] != "pending" {
		t.Fatalf("write: %+v", res)
	}
	if _, d := decided(res.CallID); d.Rule != "big-writes-need-ops" || d.Grant != "writer" {
		t.Errorf("write decision %+v", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(payloads)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(payloads) != 1 {
		t.Fatalf("%d webhook deliveries", len(payloads))
	}
	p := payloads[0].Approval
	if p.Tool != "gizmo_call" || p.Resource != "widgets" || p.Rule != "big-writes-need-ops" || !strings.Contains(string(p.Arguments), `"action":"write"`) {
		t.Errorf("webhook payload %+v", p)
	}
}
