package approval

import (
	"context"
	"errors"
	"fmt"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
)

// ViaWithdrawn is the Via of the decision a requester makes when they
// withdraw their own pending approval (an MCP client cancelling the task of
// a held call). The store has no state of its own for it: a withdrawal is a
// deny by the requester, whom no other path lets decide their own request.
const ViaWithdrawn = "withdrawn"

// EventWithdrawn is the Config.OnEvent type of a withdrawal. It is not an
// approver's decision (EventDecided), so decision metrics do not count it.
const EventWithdrawn = "approval.withdrawn"

// Withdraw withdraws pending approval id on behalf of its requester: it is
// denied, with a decision by the requester via ViaWithdrawn and reason, and
// can no longer be decided or used. Anyone but the requester gets
// ErrForbidden; an approval that is not pending gets ErrExpired, ErrConsumed,
// ErrDenied or ErrApproved with the approval as it is.
func (m *Manager) Withdraw(ctx context.Context, id string, requester policy.Identity, reason string) (Approval, error) {
	if len(reason) > maxReason {
		return Approval{}, fmt.Errorf("%w: reason is longer than %d bytes", ErrInvalid, maxReason)
	}
	if !recordable(reason) {
		return Approval{}, fmt.Errorf("%w: the reason must be UTF-8 text without NUL characters", ErrInvalid)
	}
	a, err := m.settle(ctx, id, decision{
		d: store.ApprovalDecision{
			Subject: requester.Subject, Issuer: requester.Issuer, Email: requester.Email,
			Verdict: string(Deny), Reason: reason, Via: ViaWithdrawn,
		},
		check: func(a Approval) error {
			if requester.Subject == "" || !a.Requester.Is(requester) {
				return fmt.Errorf("approval %s: %w", id, ErrForbidden)
			}
			return nil
		},
		event: func(a Approval, next State) Event {
			return Event{
				Type: EventWithdrawn, ApprovalID: id, CallID: a.CallID,
				Subject: requester.Subject, Issuer: requester.Issuer, Tool: a.Tool, Resource: a.Resource,
				Data: map[string]any{"reason": reason, "via": ViaWithdrawn, "state": next},
			}
		},
	})
	switch {
	case errors.Is(err, ErrForbidden):
		return Approval{}, err
	case errors.Is(err, ErrAlreadyDecided):
		// Only a withdrawal is the requester's decision, and it denies.
		return a, fmt.Errorf("approval %s: %w", id, stateError(a.State))
	case err != nil:
		return a, err
	}
	m.cfg.Notifier.Publish(id)
	m.cfg.Logger.Info("approval withdrawn", "approval_id", id, "requester", requester.Subject)
	return a, nil
}

// Withdrawn reports whether a was withdrawn by its requester (Withdraw):
// denied, by a decision of the requester themself.
func (a Approval) Withdrawn() bool {
	// Only Withdraw writes ViaWithdrawn (Decide refuses it), so any such
	// decision is the requester's withdrawal, wherever replicas' clocks
	// put it among the others.
	if a.State != Denied {
		return false
	}
	for _, d := range a.Decisions {
		if d.Via == ViaWithdrawn {
			return true
		}
	}
	return false
}
