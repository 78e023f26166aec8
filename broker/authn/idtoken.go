package authn

import "github.com/airlock-mcp/airlock/policy"

// IdentityFromClaims maps the claims of a token that has already been
// verified (an ID token checked by go-oidc, say, for the web UI's login) to
// a policy.Identity with the same claim rules as access tokens: cfg's
// SubjectClaim, EmailClaim and GroupsClaim (defaults when empty), the
// issuer from iss and the token id from jti. A person who logs in to the
// web UI and the same person calling through an access token so get the
// same subject, issuer and groups, which is what approvals compare.
//
// It checks nothing but the claims' shapes: signature, issuer, audience,
// expiry and nonce are the caller's job.
func IdentityFromClaims(cfg OIDCConfig, claims map[string]any) (policy.Identity, error) {
	if cfg.SubjectClaim == "" {
		cfg.SubjectClaim = DefaultSubjectClaim
	}
	if cfg.EmailClaim == "" {
		cfg.EmailClaim = DefaultEmailClaim
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = DefaultGroupsClaim
	}
	v := &Verifier{cfg: cfg}
	return v.identity(claims)
}
