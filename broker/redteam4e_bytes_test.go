package broker

import (
	"context"
	"errors"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
)

// Red team 4e, attack 1 (what the event says): a reason, or an approver's
// name, with bytes the transcript cannot hold as they are. The event was
// written from the decision as given: json.Marshal turned invalid UTF-8 in
// the reason into U+FFFD, and RecordApprovalEvent appended an event whose
// subject it could not record "mended" (quoted). The store kept the bytes
// as given (SQLite), so the event said something the store did not hold;
// or could not keep them (PostgreSQL's text), and the approver was told
// ErrUnrecorded, "try again", for a decision that could never be stored.
// A web form's reason is bytes (r.PostForm does not check UTF-8), and so
// is the CLI's --reason. Such a decision is now refused as invalid (400),
// and nothing is stored.
func TestRedTeam4eReasonAndNameBytes(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			st := rt4eOpen(t, be.url(t))
			r := rt4eNewReplica(t, st, nil)
			for _, c := range []struct {
				name   string
				who    policy.Identity
				reason string
			}{
				{"reason invalid UTF-8", rt4eApprover(1), "ok \xff\xfe"},
				{"reason NUL", rt4eApprover(2), "ok \x00 then"},
				{"subject NUL (Manager API)", policy.Identity{Subject: "dora\x00", Issuer: "https://idp.example.com", Groups: []string{"dba"}}, "ok"},
				{"subject invalid UTF-8 (Manager API)", policy.Identity{Subject: "dora\xff", Issuer: "https://idp.example.com", Groups: []string{"dba"}}, "ok"},
			} {
				id := rt4eHold(t, r.am, 1)
				_, err := r.am.Decide(ctx, id, c.who, approval.Approve, c.reason, approval.ViaWeb)
				a, gerr := st.Approval(ctx, id)
				if gerr != nil {
					t.Fatal(gerr)
				}
				evs := rt4eEvents(t, r.rec, id, approval.EventDecided)
				t.Logf("%s: Decide = %v (HTTP %d); stored decisions %d, events %d", c.name, err, approval.HTTPStatus(err), len(a.Decisions), len(evs))
				if !errors.Is(err, approval.ErrInvalid) || approval.HTTPStatus(err) != 400 || len(a.Decisions) != 0 || len(evs) != 0 {
					t.Errorf("%s: Decide = %v with %d decisions stored and %d events; want ErrInvalid (400) and nothing stored", c.name, err, len(a.Decisions), len(evs))
				}
			}
		})
	}
}
