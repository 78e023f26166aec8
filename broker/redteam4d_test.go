package broker

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4d: a decision was committed in a transaction of its own before
// its approval.decided was appended, and a store error at that moment (a
// lost connection, a statement timeout, a full disk, the append timeout;
// here a trigger that fails only that event's insert) was only logged:
// Decide reported success, the approval was approved, and the call it
// approved ran with no approval.decided in the transcript. The decision is
// now written in the transaction that appends its event, so neither is
// stored, and the approver is told.
func TestRedTeam4dApprovalDecisionIsStoredOnlyWithItsEvent(t *testing.T) {
	for _, backend := range []struct {
		name string
		open func(t *testing.T) (*store.Store, func(t *testing.T, typ string), func(t *testing.T))
	}{
		{"sqlite", func(t *testing.T) (*store.Store, func(*testing.T, string), func(*testing.T)) {
			st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
			if err != nil {
				t.Fatal(err)
			}
			exec := func(t *testing.T, q string) {
				t.Helper()
				if _, err := st.DB().Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			fail := func(t *testing.T, typ string) {
				exec(t, `CREATE TRIGGER rt4d_fail BEFORE INSERT ON transcript_events
					WHEN NEW.type = '`+typ+`' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`)
			}
			mend := func(t *testing.T) { exec(t, `DROP TRIGGER rt4d_fail`) }
			return st, fail, mend
		}},
		{"postgres", func(t *testing.T) (*store.Store, func(*testing.T, string), func(*testing.T)) {
			pg := testenv.PostgreSQL(t)
			pg.Exec(t, "CREATE DATABASE rt4d ENCODING 'UTF8' TEMPLATE template0")
			q := url.Values{"host": {pg.SocketDir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}
			st, err := store.Open(context.Background(), "postgres://postgres@/rt4d?"+q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			fail := func(t *testing.T, typ string) {
				pg.ExecDB(t, "rt4d", `CREATE FUNCTION rt4d_fail() RETURNS trigger LANGUAGE plpgsql AS $$
					BEGIN IF NEW.type = '`+typ+`' THEN RAISE EXCEPTION 'store unavailable'; END IF; RETURN NEW; END $$;
					CREATE TRIGGER rt4d_fail BEFORE INSERT ON transcript_events FOR EACH ROW EXECUTE FUNCTION rt4d_fail();`)
			}
			mend := func(t *testing.T) {
				pg.ExecDB(t, "rt4d", `DROP TRIGGER rt4d_fail ON transcript_events; DROP FUNCTION rt4d_fail()`)
			}
			return st, fail, mend
		}},
	} {
		t.Run(backend.name, func(t *testing.T) {
			ctx := context.Background()
			st, fail, mend := backend.open(t)
			t.Cleanup(func() { st.Close() })
			b, rec, am := rt4cBroker(t, st, true)
			dora := policy.Identity{Subject: "dora", Groups: []string{"dba"}}
			args := json.RawMessage(`{"resource":"db1","query":"write x"}`)
			hold := func(t *testing.T) string {
				t.Helper()
				r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
				id, _ := r.Structured.(map[string]any)["approval_id"].(string)
				if id == "" {
					t.Fatalf("not held: %s", r.Text)
				}
				return id
			}
			untouched := func(t *testing.T, id string) {
				t.Helper()
				a, err := am.Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if a.State != approval.Pending || len(a.Decisions) != 0 {
					t.Fatalf("approval %s is %s with %d decisions after a decision that could not be recorded, want pending with none", id, a.State, len(a.Decisions))
				}
				if r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true}); !strings.Contains(r.Text, "Held for approval") {
					t.Fatalf("the call was not held again: %s", r.Text)
				}
			}
			id := hold(t)

			fail(t, approval.EventDecided)
			_, err := am.Decide(ctx, id, dora, approval.Approve, "ok", approval.ViaWeb)
			if !errors.Is(err, approval.ErrUnrecorded) {
				t.Fatalf("Decide with approval.decided unrecordable = %v, want ErrUnrecorded", err)
			}
			mend(t)
			untouched(t, id)

			fail(t, approval.EventWithdrawn)
			if _, err := am.Withdraw(ctx, id, eng, "changed my mind"); !errors.Is(err, approval.ErrUnrecorded) {
				t.Fatalf("Withdraw with approval.withdrawn unrecordable = %v, want ErrUnrecorded", err)
			}
			mend(t)
			untouched(t, id)

			// The store is back: the same approver decides, and the call runs.
			a, err := am.Decide(ctx, id, dora, approval.Approve, "ok", approval.ViaWeb)
			if err != nil || a.State != approval.Approved {
				t.Fatalf("Decide after the store recovered = %s, %v; want approved", a.State, err)
			}
			if r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true}); r.IsError {
				t.Fatalf("approved call refused: %s", r.Text)
			}

			evs, err := rec.Events(ctx, recorder.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			var decided, refused []string
			for _, ev := range evs {
				var d struct {
					ApprovalID string `json:"approval_id"`
					State      string `json:"state"`
					Reason     string `json:"reason"`
				}
				if err := json.Unmarshal(ev.Data, &d); err != nil || d.ApprovalID != id {
					continue
				}
				switch ev.Type {
				case approval.EventDecided, approval.EventWithdrawn:
					decided = append(decided, ev.Type+":"+d.State)
				case approval.EventRefused:
					refused = append(refused, d.Reason)
				}
			}
			if strings.Join(decided, ",") != "approval.decided:approved" {
				t.Errorf("decision events for %s = %v, want only the decision that was stored", id, decided)
			}
			if strings.Join(refused, ",") != "unrecorded" {
				t.Errorf("approval.refused reasons for %s = %v, want the one unrecorded decision", id, refused)
			}
			if rep, err := rec.Verify(ctx); err != nil || !rep.OK {
				t.Fatalf("transcript does not verify: %+v, %v", rep, err)
			}
		})
	}
}
