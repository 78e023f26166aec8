package broker

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

// withApprovals gives the harness an approval manager on a real SQLite
// file store in dir (several managers on one dir act as separate processes),
// and moves the harness's transcript onto that store, as airlock serve
// wires them: a held call's approval is stored in the transaction that
// appends its approval.requested.
func (h *harness) withApprovals(t *testing.T, dir string, wait time.Duration) (*approval.Manager, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(dir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	h.rec, h.flaky.Recorder = rec, rec
	m, err := approval.New(approval.Config{
		Store: st, Wait: wait, Expire: 15 * time.Minute,
		PollInterval: 10 * time.Millisecond, ProgressInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Close(ctx)
	})
	h.broker.cfg.Approvals = m
	return m, st
}

func pendingApprovals(t *testing.T, st *store.Store) []store.Approval {
	t.Helper()
	list, err := st.ListApprovals(context.Background(), store.ApprovalFilter{State: "pending"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func approvalID(t *testing.T, r Result) string {
	t.Helper()
	m, _ := r.Structured.(map[string]any)
	id, _ := m["approval_id"].(string)
	if !r.IsError || m["outcome"] != "pending" || id == "" {
		t.Fatalf("want a pending result with an approval id, got %+v", r)
	}
	return id
}

// Retries of a held call, one after another, after the client gave up
// (cancelled), and all at once from several processes on one store, share
// one pending approval: approvers never see the same call twice.
func TestRetriesShareOnePendingApproval(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t)
	_, st := h.withApprovals(t, dir, 20*time.Millisecond)
	const write = `{"resource":"db1","query":"write x"}`

	first := approvalID(t, h.call(t, eng, write))
	if again := approvalID(t, h.call(t, eng, write)); again != first {
		t.Fatalf("a retry got approval %s, want %s", again, first)
	}

	// The client gives up mid-wait (its request is cancelled); its retry
	// still finds the pending approval.
	ctx, cancel := context.WithCancel(context.Background())
	h.broker.cfg.Approvals.(*approval.Manager).Close(context.Background())
	h.withApprovals(t, dir, time.Minute)
	done := make(chan Result, 1)
	waiting := make(chan struct{})
	var once sync.Once
	go func() {
		// Wait tells progress as it starts waiting: the call is then held.
		progress := func(string) { once.Do(func() { close(waiting) }) }
		done <- h.broker.Handle(ctx, Call{Tool: "fake_query", Arguments: json.RawMessage(write), Identity: eng, Progress: progress})
	}()
	<-waiting
	cancel()
	if got := approvalID(t, <-done); got != first {
		t.Fatalf("the cancelled call got approval %s, want %s", got, first)
	}

	// Many retries at once, through brokers on separate managers over the
	// same store file (separate processes, as the CLI or another replica).
	others := make([]*harness, 3)
	for i := range others {
		others[i] = newHarness(t)
		others[i].withApprovals(t, dir, 20*time.Millisecond)
	}
	ids := make(chan string, 12)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := others[i%len(others)].broker.Handle(context.Background(), Call{Tool: "fake_query", Arguments: json.RawMessage(write), Identity: eng})
			if m, _ := r.Structured.(map[string]any); m != nil {
				id, _ := m["approval_id"].(string)
				ids <- id
			}
		}()
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		if id != first {
			t.Errorf("a concurrent retry got approval %q, want %s", id, first)
		}
	}
	if list := pendingApprovals(t, st); len(list) != 1 {
		t.Errorf("%d pending approvals for one call, want 1", len(list))
	}
}
