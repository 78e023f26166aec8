package authn

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// OIDCConfig is the `auth.oidc` section of airlock's configuration.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as it appears in the iss
	// claim and in discovery (a trailing slash matters).
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audience is airlock's resource URL (its public /mcp URL). A token must
	// list it in aud (RFC 8707 audience binding).
	Audience string `yaml:"audience" json:"audience"`
	// GroupsClaim is a dotted path to an array of strings: "groups",
	// "realm_access.roles". A claim whose name itself contains dots (such as
	// "https://example.com/groups") is looked up whole first.
	GroupsClaim string `yaml:"groups_claim" json:"groups_claim"`
	// SubjectClaim and EmailClaim are dotted paths to strings.
	SubjectClaim string `yaml:"subject_claim" json:"subject_claim"`
	EmailClaim   string `yaml:"email_claim" json:"email_claim"`
	// RequiredScopes must all be granted (scope or scp claim).
	RequiredScopes []string `yaml:"required_scopes" json:"required_scopes"`
	// Algorithms are the signing algorithms accepted. Only asymmetric ones
	// may be listed: none and HS* are always refused.
	Algorithms []string `yaml:"algorithms" json:"algorithms"`
	// ClockSkew is the leeway allowed on exp, nbf and iat.
	ClockSkew time.Duration `yaml:"clock_skew" json:"clock_skew"`
}

// asymmetricAlgorithms are the JWS algorithms that may be configured. Listed
// in the order used as the default.
var asymmetricAlgorithms = []string{
	"RS256", "ES256", "EdDSA", "PS256",
	"RS384", "RS512", "PS384", "PS512", "ES384", "ES512",
}

// Defaults for OIDCConfig.
const (
	DefaultGroupsClaim  = "groups"
	DefaultSubjectClaim = "sub"
	DefaultEmailClaim   = "email"
	DefaultClockSkew    = 30 * time.Second
	maxClockSkew        = 5 * time.Minute
)

// CheckAndSetDefaults validates the configuration and fills in defaults.
// Errors name the configuration key at fault.
func (c *OIDCConfig) CheckAndSetDefaults() error {
	if c.Issuer == "" {
		return errors.New("auth.oidc.issuer is required")
	}
	if err := checkURL(c.Issuer); err != nil {
		return fmt.Errorf("auth.oidc.issuer: %w", err)
	}
	if c.Audience == "" {
		return errors.New("auth.oidc.audience is required (airlock's public /mcp URL)")
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if c.SubjectClaim == "" {
		c.SubjectClaim = DefaultSubjectClaim
	}
	if c.EmailClaim == "" {
		c.EmailClaim = DefaultEmailClaim
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = slices.Clone(asymmetricAlgorithms)
	}
	for _, alg := range c.Algorithms {
		if err := checkAlgorithm(alg); err != nil {
			return fmt.Errorf("auth.oidc.algorithms: %w", err)
		}
	}
	for _, s := range c.RequiredScopes {
		if s == "" || strings.ContainsAny(s, " \t\n\"\\") {
			return fmt.Errorf("auth.oidc.required_scopes: %q is not a valid scope", s)
		}
	}
	switch {
	case c.ClockSkew == 0:
		c.ClockSkew = DefaultClockSkew
	case c.ClockSkew < 0:
		return fmt.Errorf("auth.oidc.clock_skew: %s is negative", c.ClockSkew)
	case c.ClockSkew > maxClockSkew:
		return fmt.Errorf("auth.oidc.clock_skew: %s is more than %s", c.ClockSkew, maxClockSkew)
	}
	return nil
}

func checkAlgorithm(alg string) error {
	switch {
	case slices.Contains(asymmetricAlgorithms, alg):
		return nil
	case strings.EqualFold(alg, "none"), strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return fmt.Errorf("%q is refused: only asymmetric algorithms (RS*, PS*, ES*, EdDSA) are allowed", alg)
	default:
		return fmt.Errorf("%q is not a known algorithm (one of %s)", alg, strings.Join(asymmetricAlgorithms, ", "))
	}
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q: plain http is allowed for loopback only", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}
