package broker_test

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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/approval/webhook"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
	"github.com/airlock-mcp/airlock/tools/postgres"
)

const heldPolicy = `
rules:
  - name: writes-need-a-dba
    when: tool == "query_db" && !sql.read_only
    effect: approve
    approvers: {groups: [dba], min: 1}
    grant: readwrite
`

// held is a broker whose query_db writes are held for a DBA, with a
// webhook receiver and the broker's metrics on their own registry.
type held struct {
	pg       *testenv.Postgres
	broker   *broker.Broker
	rec      *recorder.Recorder
	approval *approval.Manager
	reg      *prometheus.Registry

	mu       sync.Mutex
	payloads []webhook.Payload
}

func newHeld(t *testing.T) *held {
	t.Helper()
	ctx := context.Background()
	h := &held{pg: testenv.PostgreSQL(t), reg: prometheus.NewRegistry()}
	h.pg.Exec(t, "CREATE DATABASE shop")
	seed, err := os.ReadFile(filepath.Join("..", "examples", "demo", "seed.sql"))
	if err != nil {
		t.Fatal(err)
	}
	h.pg.ExecDB(t, "shop", string(seed))
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var p webhook.Payload
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		h.mu.Lock()
		h.payloads = append(h.payloads, p)
		h.mu.Unlock()
	}))
	t.Cleanup(hook.Close)

	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if h.rec, err = recorder.New(st.DB()); err != nil {
		t.Fatal(err)
	}
	res, err := postgres.NewKind().Open(tools.ResourceSpec{
		Name: "shop", Kind: "postgres", AdminDSNEnv: "DSN",
		Grants: map[string]tools.Grant{
			"readwrite": {Roles: []string{"shop_writer"}, TTL: 5 * time.Minute, Access: tools.AccessReadWrite},
		},
	}, mapEnv{"DSN": h.pg.DSN("shop")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	pol, err := policy.Parse([]byte(heldPolicy), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := masking.New(masking.DefaultConfig(), nil)
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
	h.approval, err = approval.New(approval.Config{
		Store: st, PublicURL: "https://airlock.example.com/mcp", Wait: 100 * time.Millisecond, Expire: 15 * time.Minute,
		PollInterval: 10 * time.Millisecond,
		Webhooks:     []approval.WebhookConfig{{URL: hook.URL, Secret: approval.Secret("0123456789abcdef0123")}},
		OnEvent:      func(ctx context.Context, ev approval.Event) error { return b.RecordApproval(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.approval.Start(ctx)
	t.Cleanup(func() { _ = h.approval.Close(context.Background()) })
	b, err = broker.New(broker.Config{
		Tools: postgres.Tools(), Recorder: h.rec, Leases: leases, Approvals: h.approval, Metrics: broker.NewMetrics(h.reg),
		Logger: slog.New(slog.DiscardHandler),
	}, &broker.State{
		Policy: pol, Resources: map[string]tools.Resource{"shop": res}, Masking: engine,
		Limits: tools.Limits{MaxRows: 1000, MaxBytes: 1 << 20, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.broker = b
	return h
}

var writer = policy.Identity{Subject: "agent-1", Groups: []string{"eng"}, Method: "local"}

func (h *held) call(t *testing.T, sql string) broker.Result {
	t.Helper()
	args, _ := json.Marshal(map[string]any{"resource": "shop", "sql": sql})
	return h.broker.Handle(context.Background(), broker.Call{Tool: "query_db", Arguments: args, Identity: writer})
}

func (h *held) webhooks(t *testing.T, n int) []webhook.Payload {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		got := append([]webhook.Payload(nil), h.payloads...)
		h.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type previewData struct {
	Impact      *tools.Impact `json:"impact"`
	Unavailable string        `json:"unavailable"`
}

// previewed is the call.previewed event of a call.
func (h *held) previewed(t *testing.T, callID string) (previewData, bool) {
	t.Helper()
	evs, err := h.rec.Events(context.Background(), recorder.Filter{CallID: callID, Type: broker.TypeCallPreviewed})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		return previewData{}, false
	}
	var d previewData
	if err := json.Unmarshal(evs[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	return d, true
}

// A held write is explained for its approvers, never run: the estimate is
// in the transcript and in the webhook, and the table is unchanged.
func TestHeldWriteIsPreviewed(t *testing.T) {
	h := newHeld(t)
	before := h.pg.Query(t, "shop", "SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM orders")
	r := h.call(t, "UPDATE orders SET status = 'cancelled' WHERE status <> 'shipped'")
	if m, _ := r.Structured.(map[string]any); m["outcome"] != "pending" {
		t.Fatalf("not held: %+v", r)
	}
	d, ok := h.previewed(t, r.CallID)
	if !ok || d.Impact == nil {
		t.Fatalf("no preview recorded: %+v", d)
	}
	if d.Impact.Kind != "explain" || d.Impact.Role != "shop_writer" || d.Impact.Statement != "update" ||
		d.Impact.EstimatedRows < 1 || len(d.Impact.Tables) != 1 || d.Impact.Tables[0] != "public.orders" || !strings.Contains(d.Impact.Plan, "Update on orders") {
		t.Errorf("impact: %+v", d.Impact)
	}
	got := h.webhooks(t, 1)
	if len(got) != 1 {
		t.Fatalf("webhooks: %d", len(got))
	}
	var wh previewData
	if err := json.Unmarshal(got[0].Approval.Impact, &wh); err != nil || wh.Impact == nil || wh.Impact.EstimatedRows != d.Impact.EstimatedRows || wh.Impact.Tables[0] != "public.orders" {
		t.Errorf("webhook impact: %s (%v)", got[0].Approval.Impact, err)
	}
	if after := h.pg.Query(t, "shop", "SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM orders"); after[0] != before[0] {
		t.Fatalf("the preview changed orders:\n%s\n%s", before[0], after[0])
	}

	// What cannot be explained says why, and is held all the same.
	r = h.call(t, "UPDATE orders SET status = 'x' WHERE id = 1; DELETE FROM orders WHERE id = 2")
	if d, ok := h.previewed(t, r.CallID); !ok || d.Impact != nil || !strings.Contains(d.Unavailable, "single statement") {
		t.Errorf("two statements: %+v", d)
	}
}

// The approval metrics: the pending gauge reads the store, decisions count
// by verdict and via, the time to decision is observed once the approval
// is settled, webhook deliveries count by outcome.
func TestApprovalMetrics(t *testing.T) {
	h := newHeld(t)
	if n := h.pending(t); n != 0 {
		t.Fatalf("pending before any call: %v", n)
	}
	r := h.call(t, "DELETE FROM orders WHERE id = 1")
	id, _ := r.Structured.(map[string]any)["approval_id"].(string)
	h.call(t, "DELETE FROM orders WHERE id = 2")
	if n := h.pending(t); n != 2 {
		t.Errorf("pending: %v, want 2", n)
	}
	h.webhooks(t, 2)
	dora := policy.Identity{Subject: "dora", Groups: []string{"dba"}}
	if _, err := h.approval.Decide(context.Background(), id, dora, approval.Approve, "ok", approval.ViaWeb); err != nil {
		t.Fatal(err)
	}
	if n := h.pending(t); n != 1 {
		t.Errorf("pending after a decision: %v, want 1", n)
	}
	want := map[string]float64{
		`airlock_approval_decisions_total{verdict="approve",via="api"}`:       0,
		`airlock_approval_decisions_total{verdict="approve",via="cli-local"}`: 0,
		`airlock_approval_decisions_total{verdict="approve",via="web"}`:       1,
		`airlock_approval_decisions_total{verdict="deny",via="api"}`:          0,
		`airlock_approval_decisions_total{verdict="deny",via="cli-local"}`:    0,
		`airlock_approval_decisions_total{verdict="deny",via="web"}`:          0,
		`airlock_approval_webhook_deliveries_total{outcome="delivered"}`:      2,
		`airlock_approval_webhook_deliveries_total{outcome="failed"}`:         0,
		`airlock_approval_webhook_deliveries_total{outcome="retried"}`:        0,
		`airlock_approval_time_to_decision_seconds_count`:                     1,
	}
	if err := waitFor(func() error {
		got := h.samples(t)
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// samples flattens the gathered counters and histogram counts:
// name{label="value",...} → value.
func (h *held) samples(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// pending is what the airlock_approvals_pending gauge reads now.
func (h *held) pending(t *testing.T) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "airlock_approvals_pending" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("airlock_approvals_pending is not served")
	return 0
}

// waitFor retries f for a few seconds (webhooks are delivered
// asynchronously).
func waitFor(f func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
