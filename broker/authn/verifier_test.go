package authn_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/policy"
)

const resourceURL = "http://127.0.0.1:8080/mcp"

// TestVerifyHydra runs the accept and refuse cases against a real provider
// (Ory Hydra): real discovery, real JWKS, real RS256 access tokens.
func TestVerifyHydra(t *testing.T) {
	h := testenv.Hydra(t)
	scopes := []string{"mcp:tools", "mcp:admin"}

	eng := h.CreateClient(t, resourceURL, scopes, "eng", "dba")
	good := h.Token(t, eng, "mcp:tools")
	goodHeader, goodPayload := jwtParts(t, good)
	kid, _ := goodHeader["kid"].(string)

	other := h.CreateClient(t, "https://other.example.com/mcp", scopes, "eng")
	otherAudience := h.Token(t, other, "mcp:tools")

	groupsString := h.Token(t, h.CreateClientSpec(t, testenv.ClientSpec{Audience: []string{resourceURL}, Scopes: scopes, Claims: map[string]any{"groups": "eng"}}), "mcp:tools")
	groupsNumber := h.Token(t, h.CreateClientSpec(t, testenv.ClientSpec{Audience: []string{resourceURL}, Scopes: scopes, Claims: map[string]any{"groups": 42}}), "mcp:tools")
	groupsMixed := h.Token(t, h.CreateClientSpec(t, testenv.ClientSpec{Audience: []string{resourceURL}, Scopes: scopes, Claims: map[string]any{"groups": []any{"eng", 7}}}), "mcp:tools")
	emailNumber := h.Token(t, h.CreateClientSpec(t, testenv.ClientSpec{Audience: []string{resourceURL}, Scopes: scopes, Claims: map[string]any{"email": 1}}), "mcp:tools")
	keycloakStyle := h.Token(t, h.CreateClientSpec(t, testenv.ClientSpec{Audience: []string{resourceURL}, Scopes: scopes,
		Claims: map[string]any{"realm_access": map[string]any{"roles": []string{"ops"}}, "email": "ci@example.com"}}), "mcp:tools")

	// A token from a second, independent provider instance, for our audience.
	h2 := testenv.Hydra(t)
	foreignProvider := h2.Token(t, h2.CreateClient(t, resourceURL, scopes, "eng"), "mcp:tools")

	// The same claims signed by a key the provider never published, under its kid.
	strangerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	strangerHeader := mustJSON(t, map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})

	// The signature of the good token over different claims.
	goodSig := good[strings.LastIndexByte(good, '.')+1:]
	tamperedPayload := withClaims(t, goodPayload, map[string]any{"groups": []string{"eng", "admin"}})
	tampered := good[:strings.IndexByte(good, '.')] + "." + b64(tamperedPayload) + "." + goodSig

	base := authn.OIDCConfig{Issuer: h.Issuer(), Audience: resourceURL}
	now := time.Now()

	tests := []struct {
		name       string
		token      string
		cfg        func(*authn.OIDCConfig)
		clock      time.Time
		wantReason string
		check      func(t *testing.T, id policy.Identity)
	}{
		{name: "valid token with groups", token: good, check: func(t *testing.T, id policy.Identity) {
			if id.Subject != eng.ID || !slices.Equal(id.Groups, []string{"eng", "dba"}) || id.TokenID == "" ||
				id.Method != "oidc" || id.Issuer != h.Issuer() {
				t.Errorf("identity = %+v", id)
			}
			if id.Claims["client_id"] != eng.ID {
				t.Errorf("claims = %v", id.Claims)
			}
		}},
		{name: "groups by dotted path", token: keycloakStyle, cfg: func(c *authn.OIDCConfig) { c.GroupsClaim = "realm_access.roles" },
			check: func(t *testing.T, id policy.Identity) {
				if !slices.Equal(id.Groups, []string{"ops"}) || id.Email != "ci@example.com" {
					t.Errorf("identity = %+v", id)
				}
			}},
		{name: "within clock skew after exp", token: good, clock: now.Add(time.Hour + 10*time.Second)},
		{name: "expired", token: good, clock: now.Add(time.Hour + time.Minute), wantReason: authn.ReasonExpired},
		{name: "not yet valid", token: good, clock: now.Add(-time.Minute), wantReason: authn.ReasonNotYetValid},
		{name: "token for another resource", token: otherAudience, wantReason: authn.ReasonAudience},
		{name: "configured for another resource", token: good, cfg: func(c *authn.OIDCConfig) { c.Audience = "https://airlock.example.com/mcp" }, wantReason: authn.ReasonAudience},
		{name: "signature tampered", token: tampered, wantReason: authn.ReasonSignature},
		{name: "alg none", token: unsigned(t, kid, goodPayload), wantReason: authn.ReasonAlgorithm},
		{name: "HS256 with the provider's public key", token: signHS256(t, providerPublicKeyPEM(t, h.JWKSURL()), kid, goodPayload), wantReason: authn.ReasonAlgorithm},
		{name: "key never published, same kid", token: signRS256Raw(t, strangerKey, strangerHeader, goodPayload), wantReason: authn.ReasonSignature},
		{name: "another provider instance", token: foreignProvider, wantReason: authn.ReasonSignature},
		{name: "algorithm not configured", token: good, cfg: func(c *authn.OIDCConfig) { c.Algorithms = []string{"ES256"} }, wantReason: authn.ReasonAlgorithm},
		{name: "groups is a string", token: groupsString, wantReason: authn.ReasonClaims},
		{name: "groups is a number", token: groupsNumber, wantReason: authn.ReasonClaims},
		{name: "groups holds a number", token: groupsMixed, wantReason: authn.ReasonClaims},
		{name: "email is a number", token: emailNumber, wantReason: authn.ReasonClaims},
		{name: "missing required scope", token: good, cfg: func(c *authn.OIDCConfig) { c.RequiredScopes = []string{"mcp:tools", "mcp:admin"} }, wantReason: authn.ReasonScope},
		{name: "required scope granted", token: good, cfg: func(c *authn.OIDCConfig) { c.RequiredScopes = []string{"mcp:tools"} }},
		{name: "garbage", token: "not-a-token", wantReason: authn.ReasonMalformed},
		{name: "JWE-shaped", token: "a.b.c.d.e", wantReason: authn.ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			var opts []authn.Option
			if !tt.clock.IsZero() {
				clock := tt.clock
				opts = append(opts, authn.WithClock(func() time.Time { return clock }))
			}
			v := startVerifier(t, cfg, opts...)
			id, err := v.Verify(context.Background(), tt.token)
			checkVerify(t, tt.token, id, err, tt.wantReason)
			if err == nil && tt.check != nil {
				tt.check(t, id)
			}
		})
	}
}

func checkVerify(t *testing.T, token string, id policy.Identity, err error, wantReason string) {
	t.Helper()
	if wantReason == "" {
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		return
	}
	var ve *authn.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("Verify error = %v (%T), want *VerifyError %s; identity %+v", err, err, wantReason, id)
	}
	if ve.Reason != wantReason {
		t.Fatalf("reason = %q (%v), want %q", ve.Reason, err, wantReason)
	}
	if len(token) > 20 && strings.Contains(err.Error(), token[len(token)-20:]) {
		t.Fatalf("error contains the token: %v", err)
	}
	if id.Subject != "" {
		t.Fatalf("refused token still gave identity %+v", id)
	}
}

// TestVerifyKeyRotation: a token signed with a key the provider adds after
// airlock cached its key set is accepted (the key set is fetched again for
// the unknown kid).
func TestVerifyKeyRotation(t *testing.T) {
	h := testenv.Hydra(t)
	c := h.CreateClient(t, resourceURL, []string{"mcp:tools"}, "eng")
	v := startVerifier(t, authn.OIDCConfig{Issuer: h.Issuer(), Audience: resourceURL})

	before := h.Token(t, c, "mcp:tools")
	if _, err := v.Verify(context.Background(), before); err != nil {
		t.Fatal(err)
	}
	h.RotateKeys(t)
	after := h.Token(t, c, "mcp:tools")
	hb, _ := jwtParts(t, before)
	ha, _ := jwtParts(t, after)
	if hb["kid"] == ha["kid"] {
		t.Fatalf("rotation did not change the signing key (kid %v)", ha["kid"])
	}
	if _, err := v.Verify(context.Background(), after); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if _, err := v.Verify(context.Background(), before); err != nil {
		t.Fatalf("token signed with the old, still published key: %v", err)
	}
}

// TestVerifyLocalKey covers claims a real provider does not issue, with a
// key the test holds and serves through discovery.
func TestVerifyLocalKey(t *testing.T) {
	idp := newLocalIdP(t)
	now := time.Now()
	v := startVerifier(t, authn.OIDCConfig{Issuer: idp.Issuer(), Audience: resourceURL, RequiredScopes: []string{"mcp:tools"}},
		authn.WithClock(func() time.Time { return now }))

	change := func(set map[string]any, drop ...string) map[string]any {
		c := idp.claims(resourceURL, now)
		for k, v := range set {
			c[k] = v
		}
		for _, k := range drop {
			delete(c, k)
		}
		return c
	}
	tests := []struct {
		name       string
		claims     map[string]any
		wantReason string
		wantGroups []string
	}{
		{name: "valid", claims: change(nil), wantGroups: []string{"eng"}},
		{name: "aud as a string", claims: change(map[string]any{"aud": resourceURL}), wantGroups: []string{"eng"}},
		{name: "scope as RFC 9068 string", claims: change(map[string]any{"scope": "openid mcp:tools"}, "scp"), wantGroups: []string{"eng"}},
		{name: "no groups claim", claims: change(nil, "groups"), wantGroups: nil},
		{name: "groups null", claims: change(map[string]any{"groups": nil}), wantGroups: nil},
		{name: "wrong issuer", claims: change(map[string]any{"iss": "https://evil.example.com/"}), wantReason: authn.ReasonIssuer},
		{name: "issuer without trailing slash", claims: change(map[string]any{"iss": strings.TrimSuffix(idp.Issuer(), "/")}), wantReason: authn.ReasonIssuer},
		{name: "no aud", claims: change(nil, "aud"), wantReason: authn.ReasonAudience},
		{name: "aud of numbers", claims: change(map[string]any{"aud": []int{1}}), wantReason: authn.ReasonAudience},
		{name: "no exp", claims: change(nil, "exp"), wantReason: authn.ReasonClaims},
		{name: "exp as a string", claims: change(map[string]any{"exp": "tomorrow"}), wantReason: authn.ReasonClaims},
		{name: "expired beyond skew", claims: change(map[string]any{"exp": now.Add(-31 * time.Second).Unix()}), wantReason: authn.ReasonExpired},
		{name: "expired within skew", claims: change(map[string]any{"exp": now.Add(-29 * time.Second).Unix()}), wantGroups: []string{"eng"}},
		{name: "nbf in the future", claims: change(map[string]any{"nbf": now.Add(time.Minute).Unix()}), wantReason: authn.ReasonNotYetValid},
		{name: "iat in the future", claims: change(map[string]any{"iat": now.Add(time.Minute).Unix()}), wantReason: authn.ReasonNotYetValid},
		{name: "no subject", claims: change(nil, "sub"), wantReason: authn.ReasonClaims},
		{name: "subject not a string", claims: change(map[string]any{"sub": 12}), wantReason: authn.ReasonClaims},
		{name: "groups an object", claims: change(map[string]any{"groups": map[string]any{"a": 1}}), wantReason: authn.ReasonClaims},
		{name: "no scope", claims: change(nil, "scp"), wantReason: authn.ReasonScope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := idp.sign(t, tt.claims)
			id, err := v.Verify(context.Background(), tok)
			checkVerify(t, tok, id, err, tt.wantReason)
			if err == nil && !slices.Equal(id.Groups, tt.wantGroups) {
				t.Errorf("groups = %v, want %v", id.Groups, tt.wantGroups)
			}
		})
	}

	t.Run("scope error names the missing scope", func(t *testing.T) {
		_, err := v.Verify(context.Background(), idp.sign(t, change(map[string]any{"scp": []string{"other"}})))
		var se *authn.ScopeError
		if !errors.As(err, &se) || !slices.Equal(se.Missing, []string{"mcp:tools"}) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCheckAndSetDefaults(t *testing.T) {
	tests := []struct {
		name    string
		cfg     authn.OIDCConfig
		wantErr string
	}{
		{name: "defaults", cfg: authn.OIDCConfig{Issuer: "https://idp.example.com/", Audience: "https://airlock.example.com/mcp"}},
		{name: "no issuer", cfg: authn.OIDCConfig{Audience: "x"}, wantErr: "auth.oidc.issuer"},
		{name: "no audience", cfg: authn.OIDCConfig{Issuer: "https://idp.example.com/"}, wantErr: "auth.oidc.audience"},
		{name: "plain http issuer", cfg: authn.OIDCConfig{Issuer: "http://idp.example.com/", Audience: "a"}, wantErr: "auth.oidc.issuer"},
		{name: "HS256", cfg: authn.OIDCConfig{Issuer: "https://i/", Audience: "a", Algorithms: []string{"RS256", "HS256"}}, wantErr: `auth.oidc.algorithms: "HS256" is refused`},
		{name: "none", cfg: authn.OIDCConfig{Issuer: "https://i/", Audience: "a", Algorithms: []string{"none"}}, wantErr: `auth.oidc.algorithms: "none" is refused`},
		{name: "unknown alg", cfg: authn.OIDCConfig{Issuer: "https://i/", Audience: "a", Algorithms: []string{"RS1"}}, wantErr: "auth.oidc.algorithms"},
		{name: "negative skew", cfg: authn.OIDCConfig{Issuer: "https://i/", Audience: "a", ClockSkew: -time.Second}, wantErr: "auth.oidc.clock_skew"},
		{name: "bad scope", cfg: authn.OIDCConfig{Issuer: "https://i/", Audience: "a", RequiredScopes: []string{"a b"}}, wantErr: "auth.oidc.required_scopes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := cfg.CheckAndSetDefaults()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.GroupsClaim != "groups" || cfg.SubjectClaim != "sub" || cfg.EmailClaim != "email" ||
					cfg.ClockSkew != 30*time.Second || !slices.Contains(cfg.Algorithms, "EdDSA") || slices.Contains(cfg.Algorithms, "HS256") {
					t.Errorf("defaults = %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// BenchmarkVerify measures verifying an RS256 token with the keys cached.
func BenchmarkVerify(b *testing.B) {
	idp := newLocalIdP(b)
	v := startVerifier(b, authn.OIDCConfig{Issuer: idp.Issuer(), Audience: resourceURL})
	tok := idp.sign(b, idp.claims(resourceURL, time.Now()))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
