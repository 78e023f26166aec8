package authn

import (
	"errors"
	"fmt"
	"strings"
)

// Reasons a token is refused, in VerifyError.Reason and in logs.
const (
	ReasonExpired     = "expired"
	ReasonNotYetValid = "not_yet_valid"
	ReasonAudience    = "audience"
	ReasonIssuer      = "issuer"
	ReasonSignature   = "signature"
	ReasonAlgorithm   = "algorithm"
	ReasonMalformed   = "malformed"
	ReasonClaims      = "claims"
	ReasonUnavailable = "unavailable"
	// ReasonScope: the token is valid but lacks a required scope; Err is a
	// *ScopeError. HTTP answers 403, not 401.
	ReasonScope = "insufficient_scope"
)

var (
	// ErrNoToken: no bearer token was presented.
	ErrNoToken = errors.New("no bearer token")
	// ErrNotReady: the provider's discovery document has not been fetched yet.
	ErrNotReady = errors.New("identity provider not reached yet")
	// ErrNotLoggedIn: CachedToken found no cached token.
	ErrNotLoggedIn = errors.New("not logged in: run `airlock login`")
)

// VerifyError is why a token was refused. Its message never contains the token.
type VerifyError struct {
	Reason string
	Err    error
}

func (e *VerifyError) Error() string {
	if e.Err == nil {
		return "token refused: " + e.Reason
	}
	return fmt.Sprintf("token refused (%s): %v", e.Reason, e.Err)
}

func (e *VerifyError) Unwrap() error { return e.Err }

func refuse(reason string, format string, args ...any) *VerifyError {
	return &VerifyError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ScopeError lists the required scopes a token was not granted.
type ScopeError struct {
	Required []string
	Missing  []string
}

func (e *ScopeError) Error() string {
	return "missing scope " + strings.Join(e.Missing, " ")
}

// UnavailableError says the provider cannot be reached, so no token can be
// verified.
type UnavailableError struct {
	Issuer string
	Err    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("identity provider %s is unreachable; calls are refused until it answers (%v)", e.Issuer, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// ReasonOf returns the refusal reason of err, or "" when err is not a
// *VerifyError.
func ReasonOf(err error) string {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return ""
}
