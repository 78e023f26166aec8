package authn

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Log attribute keys, constant so that log queries stay stable.
const (
	keyIssuer   = "issuer"
	keyJWKS     = "jwks_uri"
	keyAttempt  = "attempt"
	keyRetryIn  = "retry_in"
	keyError    = "error"
	keyReason   = "reason"
	keyStatus   = "status"
	keyTokenFP  = "token_fp"
	keySubject  = "subject"
	keySession  = "session_fp"
	keyRemote   = "remote"
	keyMethod   = "method"
	keyPath     = "path"
	keyMissing  = "missing_scopes"
	keyResource = "resource"
)

// lookup finds a claim by dotted path. A top-level claim whose name is the
// whole path (such as "https://example.com/groups") wins over traversal.
func lookup(c map[string]any, path string) (any, bool) {
	if v, ok := c[path]; ok {
		return v, true
	}
	var cur any = c
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// stringClaim returns the string at path; absent or null is "", any other
// type is a claims error.
func stringClaim(c map[string]any, path string) (string, error) {
	v, ok := lookup(c, path)
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", refuse(ReasonClaims, "claim %q is a %s, want a string", path, jsonType(v))
	}
	return s, nil
}

// stringsClaim returns the array of strings at path; absent or null is
// empty, anything else (a string, a number, an array holding a non-string)
// is a claims error.
func stringsClaim(c map[string]any, path string) ([]string, error) {
	v, ok := lookup(c, path)
	if !ok || v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, refuse(ReasonClaims, "claim %q is a %s, want an array of strings", path, jsonType(v))
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, refuse(ReasonClaims, "claim %q[%d] is a %s, want a string", path, i, jsonType(e))
		}
		out = append(out, s)
	}
	return out, nil
}

// audience reads aud: a string or an array of strings.
func audience(v any) ([]string, bool) {
	switch a := v.(type) {
	case string:
		return []string{a}, true
	case []any:
		out := make([]string, 0, len(a))
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// numericDate reads a NumericDate claim (seconds since the epoch).
func numericDate(c map[string]any, name string) (time.Time, bool, error) {
	v, ok := c[name]
	if !ok || v == nil {
		return time.Time{}, false, nil
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false, refuse(ReasonClaims, "%s is a %s, want a number", name, jsonType(v))
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// grantedScopes reads the scopes a token grants: "scope" (RFC 9068, a
// space-separated string) and "scp" (Hydra, Okta, Entra: an array, or a
// string).
func grantedScopes(c map[string]any) []string {
	var out []string
	for _, name := range []string{"scope", "scp"} {
		switch v := c[name].(type) {
		case string:
			out = append(out, strings.Fields(v)...)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func missingScopes(required, granted []string) []string {
	have := make(map[string]bool, len(granted))
	for _, s := range granted {
		have[s] = true
	}
	var missing []string
	for _, s := range required {
		if !have[s] {
			missing = append(missing, s)
		}
	}
	return missing
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
