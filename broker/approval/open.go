package approval

import (
	"context"
	"fmt"
)

// Open returns the approval Request would give this call without creating
// one: an approved, unconsumed, unexpired approval with the same digest, else
// a pending one. ok is false when there is neither, and Request would create
// a new approval. The broker asks first so that a retry of a held call does
// not redo the work done for a new approval (its impact preview).
func (m *Manager) Open(ctx context.Context, in RequestInput) (_ Approval, ok bool, err error) {
	if err := in.check(); err != nil {
		return Approval{}, false, err
	}
	now := m.cfg.Clock()
	digest := Digest(in.Requester, in.Tool, in.Resource, in.ArgumentsDigest, in.Decision.PolicyVersion)
	r, ok, err := m.cfg.Store.OpenApproval(ctx, digest, now)
	if err != nil {
		return Approval{}, false, fmt.Errorf("looking up the call's approval: %w", err)
	}
	if !ok {
		return Approval{}, false, nil
	}
	return m.fromRecord(r, now), true, nil
}
