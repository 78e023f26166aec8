package broker_test

import (
	"context"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/recorder"
)

// A held call that the agent retries finds its approval: the retries share
// it, and only the first call is previewed (one EXPLAIN per approval, not
// one per retry).
func TestRetriesOfAHeldCallArePreviewedOnce(t *testing.T) {
	h := newHeld(t)
	const sql = "UPDATE orders SET status = 'cancelled' WHERE id = 3"
	var ids []string
	for range 3 {
		r := h.call(t, sql)
		m, _ := r.Structured.(map[string]any)
		if m["outcome"] != "pending" {
			t.Fatalf("not held: %+v", r)
		}
		ids = append(ids, m["approval_id"].(string))
		if _, ok := h.previewed(t, r.CallID); ok != (len(ids) == 1) {
			t.Errorf("call %d: previewed = %v, want only the first call previewed", len(ids), ok)
		}
	}
	if ids[1] != ids[0] || ids[2] != ids[0] {
		t.Fatalf("retries got approvals %v, want one", ids)
	}
	evs, err := h.rec.Events(context.Background(), recorder.Filter{Type: broker.TypeCallPreviewed})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Errorf("%d call.previewed events for one approval, want 1", len(evs))
	}
	if got := h.webhooks(t, 1); len(got) != 1 {
		t.Errorf("webhooks: %d, want 1", len(got))
	}
}
