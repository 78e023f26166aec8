package broker

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4e, outside the claim: Consume is stored in a statement of its
// own, and approval.consumed is appended after it. When that append fails
// the call is refused (it does not run), but the approval stays consumed
// by the call: the store holds a use of the approval that no event
// records, and the approvers' decision is spent.
func TestRedTeam4eConsumeStoredWithoutItsEvent(t *testing.T) {
	ctx := context.Background()
	st := rt4eOpen(t, "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	b, rec, am := rt4cBroker(t, st, true)
	args := json.RawMessage(`{"resource":"db1","query":"write x"}`)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	id, _ := r.Structured.(map[string]any)["approval_id"].(string)
	if id == "" {
		t.Fatalf("not held: %s", r.Text)
	}
	if _, err := am.Decide(ctx, id, policy.Identity{Subject: "dora", Groups: []string{"dba"}}, approval.Approve, "ok", approval.ViaWeb); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec(`CREATE TRIGGER rt4e_consumed BEFORE INSERT ON transcript_events
		WHEN NEW.type = 'approval.consumed' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`); err != nil {
		t.Fatal(err)
	}
	r = b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	if _, err := st.DB().Exec(`DROP TRIGGER rt4e_consumed`); err != nil {
		t.Fatal(err)
	}
	a, err := st.Approval(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := rec.Events(ctx, recorder.Filter{Type: "approval.consumed"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("call: %s; approval %s (consumed by %q); approval.consumed events: %d", strings.SplitN(r.Text, "\n", 2)[0], a.State, a.ConsumedBy, len(evs))
	if a.State == "consumed" && len(evs) == 0 {
		t.Errorf("approval %s is stored consumed by %s, and no approval.consumed records it", id, a.ConsumedBy)
	}
}
