package authn

import (
	"context"

	"github.com/airlock-mcp/airlock/policy"
)

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id policy.Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFromContext returns the identity the middleware (or the stdio
// entry point) established.
func IdentityFromContext(ctx context.Context) (policy.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(policy.Identity)
	return id, ok
}
