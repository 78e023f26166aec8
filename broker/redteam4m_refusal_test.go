package broker

import (
	"context"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/internal/sqldialect"
	"github.com/airlock-mcp/airlock/policy"
)

// Red team 4m: which consume-hook errors are "expected refusals"
// (hookRefusal: neither logged as a transcript failure nor counted)?
// docs/approvals.md names two: the approval expired, or another call
// used it just before. The broker also treats ErrNotFound, ErrDenied and
// ErrNotApproved so. None of those can happen to an approval the call
// has just read as approved: the store never deletes an approval, and
// only a pending one can be decided. Seen at consume, they mean the
// store is not what it was a moment before (restored from a backup, a
// failover to a standby that had not caught up, a row edited by hand):
// a real store failure that is now hidden from the log and the metric,
// and the agent is told the approval "was already used by another call",
// which is false.
//
// The log and metric part is new with this change (before it, every
// consume-hook error was logged and counted); the message is older.
func TestRedTeam4mConsumeOfVanishedApprovalIsAFailure(t *testing.T) {
	rt4mVanished(t, func(t *testing.T, r *atomicRig, res Result, before float64) {
		if n := r.recordFailures(t); n == before {
			t.Errorf("record failures = %v: an approval that vanished from under its call is not counted as a store failure", n)
		}
		if !strings.Contains(r.log.String(), "recording transcript events failed") {
			t.Errorf("nothing was logged of an approval that vanished from under its call")
		}
	})
}

// The agent of such a call is told the approval "was already used by
// another call": no other call used it.
func TestRedTeam4mConsumeOfVanishedApprovalIsNotToldUsed(t *testing.T) {
	rt4mVanished(t, func(t *testing.T, r *atomicRig, res Result, before float64) {
		if strings.Contains(res.Text, "already used by another call") {
			t.Errorf("the agent was told %q (%s): no other call used it", res.Text, outcome(res))
		}
	})
}

func rt4mVanished(t *testing.T, check func(t *testing.T, r *atomicRig, res Result, before float64)) {
	dora := policy.Identity{Subject: "dora", Groups: []string{"dba"}}
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			db := r.st.DB()
			q := sqldialect.Of(db).Rebind
			for _, c := range []struct {
				name, args string
				meanwhile  func(t *testing.T, id string)
			}{
				{"deleted", `{"resource":"db1","query":"write vanished"}`, func(t *testing.T, id string) {
					// The store lost the approval (restored from an older
					// backup, a standby promoted before it had it).
					for _, s := range []string{`DELETE FROM approval_decisions WHERE approval_id = ?`, `DELETE FROM approvals WHERE id = ?`} {
						if _, err := db.ExecContext(context.Background(), q(s), id); err != nil {
							t.Fatal(err)
						}
					}
				}},
				{"back-to-pending", `{"resource":"db1","query":"write rewound"}`, func(t *testing.T, id string) {
					// The store holds it as it was before its decision.
					for _, s := range []string{`DELETE FROM approval_decisions WHERE approval_id = ?`, `UPDATE approvals SET state = 'pending', decided_at = NULL WHERE id = ?`} {
						if _, err := db.ExecContext(context.Background(), q(s), id); err != nil {
							t.Fatal(err)
						}
					}
				}},
			} {
				t.Run(c.name, func(t *testing.T) {
					id := approvalID(t, r.call(c.args))
					if _, err := r.am.Decide(context.Background(), id, dora, approval.Approve, "ok", approval.ViaWeb); err != nil {
						t.Fatal(err)
					}
					before := r.recordFailures(t)
					r.gate.afterOpen = func(a approval.Approval, found bool) {
						if found && a.State == approval.Approved {
							c.meanwhile(t, a.ID)
						}
					}
					defer func() { r.gate.afterOpen = nil }()
					res := r.call(c.args)
					if !res.IsError {
						t.Fatalf("the call ran on an approval the store no longer holds as approved: %q", res.Text)
					}
					check(t, r, res, before)
				})
			}
		})
	}
}
