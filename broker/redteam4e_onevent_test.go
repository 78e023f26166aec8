package broker

import (
	"context"
	"errors"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
)

// Red team 4e, attack 6: a caller's own Config.OnEvent that does not keep
// the contract (run Write in the transaction that appends the event, and
// return its error). settle notices Write not run, and reads the approval
// back after OnEvent, so whatever OnEvent does, the approver is told what
// the store holds. (Write committed outside the event's transaction leaves
// a decision without its event: the contract is what prevents that, and
// airlock's own OnEvents, broker.RecordApproval and the CLI's, keep it.)
func TestRedTeam4eOnEventThatBreaksTheContract(t *testing.T) {
	ctx := context.Background()
	st := rt4eOpen(t, "sqlite://"+t.TempDir()+"/airlock.db")
	for _, c := range []struct {
		name    string
		onEvent func(st *store.Store) func(context.Context, approval.Event) error
	}{
		{"returns nil without running Write", func(*store.Store) func(context.Context, approval.Event) error {
			return func(context.Context, approval.Event) error { return nil }
		}},
		{"runs Write in a transaction of its own, then its append fails", func(st *store.Store) func(context.Context, approval.Event) error {
			return func(ctx context.Context, ev approval.Event) error {
				if ev.Write == nil {
					return nil
				}
				if err := st.InTx(ctx, ev.Write); err != nil {
					return err
				}
				return errors.New("transcript unavailable")
			}
		}},
		{"runs Write in a transaction it rolls back, returns nil", func(st *store.Store) func(context.Context, approval.Event) error {
			return func(ctx context.Context, ev approval.Event) error {
				if ev.Write == nil {
					return nil
				}
				tx, err := st.DB().BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				_ = ev.Write(ctx, tx)
				return tx.Rollback()
			}
		}},
		{"nil (the default: no transcript)", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := approval.Config{Store: st, PublicURL: "https://airlock.example.com/mcp"}
			if c.onEvent != nil {
				cfg.OnEvent = c.onEvent(st)
			}
			am, err := approval.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			id := rt4eHold(t, am, 2)
			_, derr := am.Decide(ctx, id, rt4eApprover(1), approval.Approve, "ok", approval.ViaAPI)
			a, err := st.Approval(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("Decide = %v; the store holds %d decisions", derr, len(a.Decisions))
			if (derr == nil) != (len(a.Decisions) == 1) {
				t.Errorf("the approver was told %v; the store holds %d decisions", derr, len(a.Decisions))
			}
		})
	}
}
