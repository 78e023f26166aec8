package authn

import (
	"errors"
	"strings"
	"testing"
)

// Red team 4c: a verified token whose subject held a NUL ("dora\u0000")
// gave an identity the transcript could not record as it was: an
// approval decided under it was stored, and its approval.decided was not.
// Such a token is refused, saying which claim.
func TestIdentityRefusesNULInRecordedClaims(t *testing.T) {
	v := &Verifier{cfg: OIDCConfig{SubjectClaim: "sub"}}
	if _, err := v.identity(map[string]any{"sub": "dora", "iss": "https://idp", "jti": "t1"}); err != nil {
		t.Fatalf("a plain identity: %v", err)
	}
	for _, claims := range []map[string]any{
		{"sub": "dora\x00", "iss": "https://idp"},
		{"sub": "dora", "iss": "https://idp\x00"},
		{"sub": "dora", "iss": "https://idp", "jti": "t\x001"},
	} {
		_, err := v.identity(claims)
		var r *VerifyError
		if !errors.As(err, &r) || !strings.Contains(err.Error(), "contains a NUL character") {
			t.Errorf("identity(%q) = %v, want a refusal naming the NUL", claims, err)
		}
	}
}
