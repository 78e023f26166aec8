package broker

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// rt4cBroker is the fake tool's broker on st, with approvals when withApprovals.
func rt4cBroker(t *testing.T, st *store.Store, withApprovals bool) (*Broker, *recorder.Recorder, *approval.Manager) {
	t.Helper()
	ctx := context.Background()
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
	var b *Broker
	leases, err := lease.New(lease.Config{
		Store:   st,
		Resolve: func(name string) (tools.Resource, bool) { r, ok := b.State().Resources[name]; return r, ok },
		OnEvent: func(ctx context.Context, ev lease.Event) error { return b.RecordLease(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var am *approval.Manager
	if withApprovals {
		am, err = approval.New(approval.Config{
			Store: st, PublicURL: "https://airlock.example.com/mcp", Wait: 50 * time.Millisecond, Expire: 15 * time.Minute,
			PollInterval: 10 * time.Millisecond,
			OnEvent:      func(ctx context.Context, ev approval.Event) error { return b.RecordApproval(ctx, ev) },
		})
		if err != nil {
			t.Fatal(err)
		}
		am.Start(ctx)
		t.Cleanup(func() { _ = am.Close(context.Background()) })
	}
	cfg := Config{Tools: []tools.Tool{&fakeTool{output: func() *tools.Output {
		return &tools.Output{Table: &tools.Table{Columns: []tools.Column{{Name: "n"}}, Rows: [][]any{{1}}}}
	}}}, Recorder: rec, Leases: leases}
	if am != nil {
		cfg.Approvals = am
	}
	b, err = New(cfg, &State{
		Policy: pol, Resources: map[string]tools.Resource{"db1": res}, Masking: engine,
		Limits: tools.Limits{MaxRows: 10, MaxBytes: 1 << 20, Timeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, rec, am
}

// Red team 4c: an approver whose subject the recorder refuses as it stands
// (a NUL: an OIDC token's sub "dora\u0000", or invalid UTF-8 given to the
// CLI's --as) decided an approval: the decision was stored and the call it
// approved ran, but approval.decided was never recorded (RecordApprovalEvent
// appended it unmended, and the approval manager only logs the failure).
// Such tokens and --as names are now refused where they come in, and an
// approval or lease event the recorder refuses is appended mended.
func TestRedTeam4cApprovalDecisionWithUnrecordableApproverIsRecorded(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://:memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, rec, am := rt4cBroker(t, st, true)
	args := json.RawMessage(`{"resource":"db1","query":"write x"}`)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	id, _ := r.Structured.(map[string]any)["approval_id"].(string)
	if id == "" {
		t.Fatalf("not held: %s", r.Text)
	}
	dora := policy.Identity{Subject: "dora\x00", Groups: []string{"dba"}}
	if _, err := am.Decide(ctx, id, dora, approval.Approve, "ok", approval.ViaWeb); err != nil {
		t.Logf("decision refused: %v", err) // refusing it would be fine; it must be recorded either way
	}
	r2 := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	t.Logf("second call told: %s", r2.Text)
	evs, err := rec.Events(ctx, recorder.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	t.Logf("transcript: %v", types)
	found := false
	for _, ev := range evs {
		if strings.HasPrefix(ev.Type, "approval.") && ev.Type != "approval.requested" && ev.Type != "approval.consumed" && strings.Contains(string(ev.Data), id) {
			found = true
		}
	}
	if !found {
		t.Errorf("the approver's decision on %s (second call: error=%v) left no approval.decided or approval.refused event", id, r2.IsError)
	}
}

// Red team 4c: on a PostgreSQL store whose database was not UTF8 (EUC_JP
// here; store.Open took it, and the connection's client_encoding was the
// database's), a call whose arguments held UTF-8 the database read as an
// invalid byte sequence left no transcript event at all, and the agent
// was told the store is unavailable, which it was not. store.Open now
// refuses such a database, naming its encoding.
func TestRedTeam4cNonUTF8PostgresStoreIsRefused(t *testing.T) {
	ctx := context.Background()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE rt4c ENCODING 'EUC_JP' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
	q := url.Values{"host": {pg.SocketDir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}
	st, err := store.Open(ctx, "postgres://postgres@/rt4c?"+q.Encode())
	if err != nil {
		if !strings.Contains(err.Error(), "encoding") {
			t.Fatal(err)
		}
		return // refusing such a store up front, saying why, is the fix
	}
	t.Cleanup(func() { st.Close() })
	b, rec, _ := rt4cBroker(t, st, false)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(`{"resource":"db1","query":"select '日本'"}`), Identity: eng})
	t.Logf("agent was told: %s", r.Text)
	evs, err := rec.Events(ctx, recorder.Filter{CallID: r.CallID})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		t.Errorf("the call left no transcript event (told %q)", r.Text)
	}
}
