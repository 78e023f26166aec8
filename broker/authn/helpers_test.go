package authn_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/authn"
)

// b64 is base64url without padding, as JWS uses.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRS256 signs claims with key as a compact JWS.
func signRS256(t testing.TB, key *rsa.PrivateKey, kid string, claims any) string {
	t.Helper()
	return signRS256Raw(t, key, mustJSON(t, map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid}), mustJSON(t, claims))
}

func signRS256Raw(t testing.TB, key *rsa.PrivateKey, header, payload []byte) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// signHS256 is the algorithm-confusion forgery: HMAC with a "secret" that
// is public (the provider's public key).
func signHS256(t testing.TB, secret []byte, kid string, payload []byte) string {
	t.Helper()
	input := b64(mustJSON(t, map[string]string{"alg": "HS256", "typ": "JWT", "kid": kid})) + "." + b64(payload)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

// unsigned is an "alg":"none" token.
func unsigned(t testing.TB, kid string, payload []byte) string {
	t.Helper()
	return b64(mustJSON(t, map[string]string{"alg": "none", "typ": "JWT", "kid": kid})) + "." + b64(payload) + "."
}

// jwtParts decodes a token's header and payload.
func jwtParts(t testing.TB, tok string) (header map[string]any, payload []byte) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		t.Fatal(err)
	}
	payload, err = base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return header, payload
}

// withClaims returns payload with claims changed.
func withClaims(t testing.TB, payload []byte, set map[string]any) []byte {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		c[k] = v
	}
	return mustJSON(t, c)
}

// providerPublicKeyPEM fetches the provider's first RSA key from its JWKS
// and encodes it as PEM, the bytes an HS256 confusion attack uses as secret.
func providerPublicKeyPEM(t testing.TB, jwksURL string) []byte {
	t.Helper()
	resp, err := http.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kty, N, E string
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, _ := base64.RawURLEncoding.DecodeString(k.N)
		e, _ := base64.RawURLEncoding.DecodeString(k.E)
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	t.Fatal("no RSA key in the provider's JWKS")
	return nil
}

// localIdP is a minimal OIDC discovery + JWKS server with a key held by the
// test, for claims a real provider will not produce (another issuer, odd
// types, missing exp).
type localIdP struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	kid string
}

var (
	localKeyOnce sync.Once
	localKey     *rsa.PrivateKey
)

func newLocalIdP(t testing.TB) *localIdP {
	t.Helper()
	localKeyOnce.Do(func() {
		var err error
		if localKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	idp := &localIdP{key: localKey, kid: "local-1"}
	mux := http.NewServeMux()
	idp.srv = httptest.NewServer(mux)
	t.Cleanup(idp.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                idp.Issuer(),
			"jwks_uri":                              idp.srv.URL + "/jwks",
			"authorization_endpoint":                idp.srv.URL + "/auth",
			"token_endpoint":                        idp.srv.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		pub := idp.key.PublicKey
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{{
			"kty": "RSA", "use": "sig", "alg": "RS256", "kid": idp.kid,
			"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	})
	return idp
}

func (idp *localIdP) Issuer() string { return idp.srv.URL + "/" }

func (idp *localIdP) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return signRS256(t, idp.key, idp.kid, claims)
}

// claims returns valid claims for audience, to be changed per test.
func (idp *localIdP) claims(audience string, now time.Time) map[string]any {
	return map[string]any{
		"iss": idp.Issuer(), "sub": "alice", "aud": []string{audience},
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"jti": "jti-1", "groups": []string{"eng"}, "email": "alice@example.com",
		"scp": []string{"mcp:tools"},
	}
}

// logBuffer is a concurrency-safe log sink for checking what was logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// startVerifier starts a verifier and waits until it has discovered the provider.
func startVerifier(t testing.TB, cfg authn.OIDCConfig, opts ...authn.Option) *authn.Verifier {
	t.Helper()
	if err := cfg.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	v := authn.NewVerifier(cfg, append([]authn.Option{authn.WithLogger(quietLogger())}, opts...)...)
	v.Start(context.Background())
	t.Cleanup(v.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return v
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
