package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// A held call's new approval is stored in the transaction that appends its
// approval.requested (with the approval's webhook deliveries), and the
// webhooks are told only once that is committed. These tests run the
// broker on real stores (SQLite and PostgreSQL), with the transcript on
// the approvals' store as airlock serve wires them.

// atomicRig is a broker (rt4cBroker's fake tool) on st with an approval
// manager that has one webhook, a clock the test can move, its log and
// its metrics.
type atomicRig struct {
	b     *Broker
	rec   *recorder.Recorder
	st    *store.Store
	am    *approval.Manager
	gate  *gatedApprovals
	fault *faultRecorder
	skew  atomic.Int64 // added to the approval manager's clock
	hits  atomic.Int32 // webhook deliveries received
	log   *lockedLog
	reg   *prometheus.Registry
}

func newAtomicRig(t *testing.T, st *store.Store) *atomicRig {
	t.Helper()
	b, rec, _ := rt4cBroker(t, st, false)
	r := &atomicRig{b: b, rec: rec, st: st, log: &lockedLog{}, reg: prometheus.NewRegistry()}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { r.hits.Add(1) }))
	t.Cleanup(hook.Close)
	am, err := approval.New(approval.Config{
		Store: st, PublicURL: "https://airlock.example.com/mcp", Wait: 50 * time.Millisecond, Expire: 15 * time.Minute,
		PollInterval: 10 * time.Millisecond,
		Webhooks:     []approval.WebhookConfig{{URL: hook.URL, Secret: approval.Secret("0123456789abcdef0123")}},
		// Deliveries leave only when the approval's creator announces
		// them (an hour is longer than any test here).
		WebhookPoll: time.Hour,
		Clock:       func() time.Time { return time.Now().Add(time.Duration(r.skew.Load())) },
		OnEvent:     func(ctx context.Context, ev approval.Event) error { return b.RecordApproval(ctx, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	am.Start(context.Background())
	t.Cleanup(func() { _ = am.Close(context.Background()) })
	r.am = am
	r.gate = &gatedApprovals{Manager: am}
	r.fault = &faultRecorder{Recorder: rec}
	b.cfg.Approvals = r.gate
	b.cfg.Recorder = r.fault
	b.cfg.Logger = slog.New(slog.NewTextHandler(r.log, nil))
	b.cfg.Metrics = NewMetrics(r.reg)
	return r
}

func (r *atomicRig) call(args string) Result {
	return r.b.Handle(context.Background(), Call{Tool: "fake_query", Arguments: json.RawMessage(args), Identity: eng, NoWait: true})
}

// recordFailures reads airlock_transcript_write_failures_total.
func (r *atomicRig) recordFailures(t *testing.T) float64 {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "airlock_transcript_write_failures_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no airlock_transcript_write_failures_total metric")
	return 0
}

// counts returns the approvals (any state) and webhook deliveries stored.
func (r *atomicRig) counts(t *testing.T) (approvals, deliveries int) {
	t.Helper()
	ctx := context.Background()
	list, err := r.st.ListApprovals(ctx, store.ApprovalFilter{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ds, err := r.st.Deliveries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	return len(list), len(ds)
}

// requestedEvent is one approval.requested event.
type requestedEvent struct {
	CallID     string
	ApprovalID string `json:"approval_id"`
	Created    bool   `json:"created"`
	State      string `json:"state"`
}

func (r *atomicRig) requested(t *testing.T) []requestedEvent {
	t.Helper()
	evs, err := r.rec.Events(context.Background(), recorder.Filter{Type: recorder.TypeApprovalRequested, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]requestedEvent, 0, len(evs))
	for _, ev := range evs {
		q := requestedEvent{CallID: ev.CallID}
		if err := json.Unmarshal(ev.Data, &q); err != nil {
			t.Fatal(err)
		}
		out = append(out, q)
	}
	return out
}

// types are the event types recorded for a call, in order.
func (r *atomicRig) types(t *testing.T, callID string) []string {
	t.Helper()
	evs, err := r.rec.Events(context.Background(), recorder.Filter{CallID: callID})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// gatedApprovals is the approval manager with afterOpen, when set, run
// after each Open (the broker's look-up before it creates an approval).
type gatedApprovals struct {
	*approval.Manager
	afterOpen func(a approval.Approval, found bool)
}

func (g *gatedApprovals) Open(ctx context.Context, in approval.RequestInput) (approval.Approval, bool, error) {
	a, ok, err := g.Manager.Open(ctx, in)
	if err == nil && g.afterOpen != nil {
		g.afterOpen(a, ok)
	}
	return a, ok, err
}

// faultRecorder appends on the real recorder. For an append that holds an
// approval.requested with a hook, afterHook (when set) runs in its
// transaction after the hook, and its error fails the append; lose
// reports the outcome of such an append unknown once it is committed.
type faultRecorder struct {
	*recorder.Recorder
	afterHook func(ctx context.Context, tx *sql.Tx) error
	lose      bool
}

func (f *faultRecorder) AppendWith(ctx context.Context, ev recorder.Event, hook recorder.TxHook) (recorder.Event, error) {
	evs, err := f.AppendAllWith(ctx, []recorder.Event{ev}, []recorder.TxHook{hook})
	if err != nil {
		return recorder.Event{}, err
	}
	return evs[0], nil
}

func (f *faultRecorder) AppendAllWith(ctx context.Context, evs []recorder.Event, hooks []recorder.TxHook) ([]recorder.Event, error) {
	hooks = slices.Clone(hooks)
	faulted := false
	for i, ev := range evs {
		if ev.Type != recorder.TypeApprovalRequested || i >= len(hooks) || hooks[i] == nil {
			continue
		}
		faulted = true
		if after, hook := f.afterHook, hooks[i]; after != nil {
			hooks[i] = func(ctx context.Context, tx *sql.Tx) error {
				if err := hook(ctx, tx); err != nil {
					return err
				}
				return after(ctx, tx)
			}
		}
	}
	out, err := f.Recorder.AppendAllWith(ctx, evs, hooks)
	if err == nil && faulted && f.lose {
		return nil, fmt.Errorf("recording %s: the answer to the commit was lost: %w", recorder.TypeApprovalRequested, recorder.ErrOutcomeUnknown)
	}
	return out, err
}

// lockedLog is a log that goroutines write at once.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func outcome(r Result) string {
	m, _ := r.Structured.(map[string]any)
	o, _ := m["outcome"].(string)
	return o
}

// A fault in the transaction after the approval's insert (the disk fills
// as the event is committed) leaves neither the approval, nor its
// webhook delivery, nor its approval.requested; no webhook is told, and
// the call is refused. The same call once the fault has passed creates
// the approval, announced, with its event.
func TestHeldCallApprovalCommitsWithItsEvent(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			var inserted atomic.Int32
			r.fault.afterHook = func(ctx context.Context, tx *sql.Tx) error {
				// The hook stored the approval and its delivery in this
				// transaction, then the transaction fails.
				var approvals, deliveries int
				if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM approvals`).Scan(&approvals); err != nil {
					return err
				}
				if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM webhook_outbox`).Scan(&deliveries); err != nil {
					return err
				}
				if approvals == 1 && deliveries == 1 {
					inserted.Add(1)
				}
				return errors.New("the disk filled up as the approval was recorded")
			}
			const args = `{"resource":"db1","query":"write x"}`
			res := r.call(args)
			if !res.IsError || outcome(res) != "failed" || !strings.Contains(res.Text, "no approval was created") {
				t.Fatalf("the call with its approval's commit failing was told %q (%s), want a failure saying no approval was created", res.Text, outcome(res))
			}
			if inserted.Load() == 0 {
				t.Fatal("the approval and its delivery were never written in the event's transaction")
			}
			if a, d := r.counts(t); a != 0 || d != 0 {
				t.Fatalf("after the failed commit: %d approvals, %d deliveries stored; want none", a, d)
			}
			if got := r.requested(t); len(got) != 0 {
				t.Fatalf("after the failed commit the transcript holds approval.requested %+v; want none", got)
			}
			if types := r.types(t, res.CallID); len(types) == 0 || types[len(types)-1] != "call.refused" {
				t.Fatalf("the call's events are %v, want them to end with call.refused", types)
			}
			if n := r.recordFailures(t); n != 1 {
				t.Errorf("record failures = %v, want 1 (a real one)", n)
			}
			time.Sleep(200 * time.Millisecond)
			if n := r.hits.Load(); n != 0 {
				t.Fatalf("a webhook was told %d times of an approval that does not exist", n)
			}

			r.fault.afterHook = nil
			res = r.call(args)
			id := approvalID(t, res)
			if a, d := r.counts(t); a != 1 || d != 1 {
				t.Fatalf("after the call: %d approvals, %d deliveries stored; want 1 and 1", a, d)
			}
			got := r.requested(t)
			if len(got) != 1 || got[0].ApprovalID != id || !got[0].Created || got[0].CallID != res.CallID || got[0].State != "pending" {
				t.Fatalf("approval.requested events %+v, want one, created, for %s by call %s", got, id, res.CallID)
			}
			waitFor(t, "the webhook to be told", func() bool { return r.hits.Load() == 1 })
		})
	}
}

// A commit whose answer is lost (recorder.ErrOutcomeUnknown) refuses the
// call saying whether the approval was created is not known, and tells
// no webhook; calling again finds the approval, which was committed.
func TestHeldCallApprovalOutcomeUnknown(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			// The webhook's workers first look at the outbox as they start;
			// past that they send only when woken (announced). A first
			// approval, announced and delivered, shows they are past it.
			digest := sha256.Sum256([]byte("warm-up"))
			warm, created, err := r.am.Request(ctx, approval.RequestInput{
				Requester: eng, Tool: "fake_query", Resource: "db1", ArgumentsDigest: digest[:], CallID: "warm-up",
				Decision: policy.Decision{Effect: policy.Approve, Rule: "warm-up", Approvers: &policy.Approvers{Groups: []string{"dba"}}},
			})
			if err != nil || !created {
				t.Fatalf("Request = %v, created %v", err, created)
			}
			waitFor(t, "the first approval's delivery", func() bool {
				ds, err := r.st.Deliveries(ctx, "")
				return err == nil && len(ds) == 1 && ds[0].Done()
			})
			time.Sleep(100 * time.Millisecond)
			r.hits.Store(0)

			r.fault.lose = true
			const args = `{"resource":"db1","query":"write x"}`
			res := r.call(args)
			if !res.IsError || outcome(res) != "failed" || !strings.Contains(res.Text, "whether that approval exists is not known") ||
				!strings.Contains(res.Text, "approval_status") {
				t.Fatalf("the call whose commit's answer was lost was told %q (%s)", res.Text, outcome(res))
			}
			r.fault.lose = false
			var list []store.Approval
			for _, a := range pendingApprovals(t, r.st) {
				if a.ID != warm.ID {
					list = append(list, a)
				}
			}
			if len(list) != 1 || !strings.Contains(res.Text, list[0].ID) {
				t.Fatalf("%d approvals for the call; the refusal %q should name the one committed", len(list), res.Text)
			}
			again := r.call(args)
			if id := approvalID(t, again); id != list[0].ID {
				t.Fatalf("calling again got approval %s, want %s", id, list[0].ID)
			}
			got := r.requested(t)
			if len(got) != 2 || got[1].CallID != again.CallID || got[1].Created {
				t.Fatalf("approval.requested events %+v; want the committed one and the retry's, not created", got)
			}
			time.Sleep(200 * time.Millisecond)
			if n := r.hits.Load(); n != 0 {
				t.Fatalf("a webhook was told %d times by a call that was refused", n)
			}
		})
	}
}

// Identical held calls at the same moment, each having found no approval,
// share one: one creates it (created true), the others find it in their
// transaction, which rolls back, and record approval.requested for it
// (created false). Nothing of that is a transcript failure.
func TestConcurrentHeldCallsShareOneApproval(t *testing.T) {
	const callers, rounds = 3, 4
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			for round := range rounds {
				var opened sync.WaitGroup
				opened.Add(callers)
				r.gate.afterOpen = func(_ approval.Approval, found bool) {
					if found {
						t.Error("a caller found the approval before any was created")
					}
					opened.Done()
					opened.Wait() // every caller looked, and found none
				}
				args := fmt.Sprintf(`{"resource":"db1","query":"write x%d"}`, round)
				results := make(chan Result, callers)
				for range callers {
					go func() { results <- r.call(args) }()
				}
				ids := map[string]bool{}
				calls := map[string]bool{}
				for range callers {
					res := <-results
					ids[approvalID(t, res)] = true
					calls[res.CallID] = true
				}
				if len(ids) != 1 {
					t.Fatalf("round %d: the callers got approvals %v, want one", round, ids)
				}
				created := 0
				for _, q := range r.requested(t) {
					if !calls[q.CallID] {
						continue
					}
					delete(calls, q.CallID)
					if !ids[q.ApprovalID] {
						t.Errorf("round %d: call %s recorded approval %s, not the one it was given", round, q.CallID, q.ApprovalID)
					}
					if q.Created {
						created++
					}
				}
				if len(calls) != 0 || created != 1 {
					t.Fatalf("round %d: %d calls recorded no approval.requested, %d recorded one created; want 0 and 1", round, len(calls), created)
				}
			}
			r.gate.afterOpen = nil
			if a, d := r.counts(t); a != rounds || d != rounds {
				t.Fatalf("%d approvals and %d deliveries for %d calls, want %d of each", a, d, rounds, rounds)
			}
			if n := r.recordFailures(t); n != 0 {
				t.Errorf("record failures = %v, want 0: an approval another call created first is no failure", n)
			}
			if log := r.log.String(); strings.Contains(log, "recording transcript events failed") {
				t.Errorf("the log reports a transcript failure:\n%s", log)
			}
			waitFor(t, "each approval's webhook", func() bool { return r.hits.Load() == rounds })
		})
	}
}

// An approval that expires, or is used by another call, between the
// call's look-up and its use is refused (approval_expired, approval_used)
// by the consume hook: an expected refusal, not a transcript failure, so
// neither logged as one nor counted.
func TestConsumeRefusalIsNoRecordFailure(t *testing.T) {
	dora := policy.Identity{Subject: "dora", Groups: []string{"dba"}}
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			for _, c := range []struct {
				name, args, outcome string
				meanwhile           func(t *testing.T, a approval.Approval)
			}{
				{"expired", `{"resource":"db1","query":"write expired"}`, "approval_expired", func(t *testing.T, a approval.Approval) {
					r.skew.Store(int64(16 * time.Minute))
				}},
				{"used", `{"resource":"db1","query":"write used"}`, "approval_used", func(t *testing.T, a approval.Approval) {
					if err := r.am.Consume(context.Background(), a.ID, "another-call"); err != nil {
						t.Errorf("consuming %s from another call: %v", a.ID, err)
					}
				}},
			} {
				t.Run(c.name, func(t *testing.T) {
					r.skew.Store(0)
					id := approvalID(t, r.call(c.args))
					if _, err := r.am.Decide(context.Background(), id, dora, approval.Approve, "ok", approval.ViaWeb); err != nil {
						t.Fatal(err)
					}
					r.gate.afterOpen = func(a approval.Approval, found bool) {
						if found && a.State == approval.Approved {
							c.meanwhile(t, a)
						}
					}
					defer func() { r.gate.afterOpen = nil }()
					res := r.call(c.args)
					if outcome(res) != c.outcome || !strings.Contains(res.Text, id) {
						t.Fatalf("the call was told %q (%s), want %s for %s", res.Text, outcome(res), c.outcome, id)
					}
					types := r.types(t, res.CallID)
					if all := strings.Join(types, " "); strings.Contains(all, "approval.consumed") ||
						(!strings.HasSuffix(all, "call.failed") && !strings.HasSuffix(all, "call.refused")) {
						t.Fatalf("the refused call's events are %v, want no approval.consumed and a final refusal", types)
					}
					if n := r.recordFailures(t); n != 0 {
						t.Errorf("record failures = %v, want 0", n)
					}
					if log := r.log.String(); strings.Contains(log, "recording transcript events failed") {
						t.Errorf("the log reports a transcript failure:\n%s", log)
					}
				})
			}
		})
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
