package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
)

// What the MCP task layer (broker/mcpserver/tasks.go) needs of approvals to
// follow a held call as a task: the approval of the task, read by its
// requester only, a bounded wait for its decision, and its withdrawal. The
// call itself always runs through Handle.

// ErrNotRequester: the approval exists, but the caller did not request it.
var ErrNotRequester = errors.New("the approval was requested by someone else")

// ApprovalWithdrawer is what Approvals implements (approval.Manager does)
// when a requester may withdraw a pending approval.
type ApprovalWithdrawer interface {
	Withdraw(ctx context.Context, id string, requester policy.Identity, reason string) (approval.Approval, error)
}

// RequestedApproval returns approval id if requester (same subject and
// issuer) requested it; an approver who may see it is refused here.
func (b *Broker) RequestedApproval(ctx context.Context, id string, requester policy.Identity) (approval.Approval, error) {
	if b.cfg.Approvals == nil {
		return approval.Approval{}, approval.ErrNotFound
	}
	a, err := b.cfg.Approvals.Status(ctx, id, requester)
	if err != nil {
		return approval.Approval{}, err
	}
	if !a.Requester.Is(requester) {
		return approval.Approval{}, fmt.Errorf("approval %s: %w", id, ErrNotRequester)
	}
	return a, nil
}

// AwaitApproval waits up to wait for approval id to leave pending, and
// returns it as it then is. The caller checked who asks.
func (b *Broker) AwaitApproval(ctx context.Context, id string, wait time.Duration) (approval.Approval, error) {
	if b.cfg.Approvals == nil {
		return approval.Approval{}, approval.ErrNotFound
	}
	return b.cfg.Approvals.Wait(ctx, id, wait, nil)
}

// WithdrawApproval withdraws requester's pending approval id (see
// approval.Manager.Withdraw); the withdrawal is recorded as an approval
// event.
func (b *Broker) WithdrawApproval(ctx context.Context, id string, requester policy.Identity, reason string) (approval.Approval, error) {
	w, ok := b.cfg.Approvals.(ApprovalWithdrawer)
	if !ok {
		return approval.Approval{}, errors.New("this airlock's approvals cannot be withdrawn")
	}
	return w.Withdraw(ctx, id, requester, reason)
}

// ApprovalLister is what Approvals implements (approval.Manager does) when
// approvals can be listed.
type ApprovalLister interface {
	List(ctx context.Context, f approval.ListFilter) ([]approval.Approval, error)
}

// RequestedApprovals returns the approvals requester requested (not those
// they may decide), pending ones first, then the most recent, at most limit.
func (b *Broker) RequestedApprovals(ctx context.Context, requester policy.Identity, limit int) ([]approval.Approval, error) {
	l, ok := b.cfg.Approvals.(ApprovalLister)
	if !ok {
		return nil, nil
	}
	viewer := policy.Identity{Subject: requester.Subject, Issuer: requester.Issuer}
	list, err := l.List(ctx, approval.ListFilter{Viewer: &viewer, Limit: limit})
	if err != nil {
		return nil, err
	}
	mine := list[:0]
	for _, a := range list {
		if a.Requester.Is(requester) {
			mine = append(mine, a)
		}
	}
	return mine, nil
}
