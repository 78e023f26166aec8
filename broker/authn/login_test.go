package authn_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/internal/testenv"
)

func rewriteCacheExpiry(t *testing.T, path string, expiry time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	c["token"].(map[string]any)["expiry"] = expiry.Format(time.RFC3339Nano)
	if err := os.WriteFile(path, mustJSON(t, c), 0o600); err != nil {
		t.Fatal(err)
	}
}

func checkCacheFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode = %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("cache dir mode = %v, want 0700", di.Mode().Perm())
	}
}

// TestLoginClientCredentialsHydra: a machine identity logs in against a real
// provider; the token verifies; the cache serves it and renews it before expiry.
func TestLoginClientCredentialsHydra(t *testing.T) {
	h := testenv.Hydra(t)
	c := h.CreateClient(t, resourceURL, []string{"mcp:tools"}, "ci")
	v := startVerifier(t, authn.OIDCConfig{Issuer: h.Issuer(), Audience: resourceURL, RequiredScopes: []string{"mcp:tools"}})

	cfg := authn.LoginConfig{
		Issuer: h.Issuer(), ClientID: c.ID, ClientSecret: c.Secret,
		Scopes: []string{"mcp:tools"}, Audience: resourceURL,
		CachePath: filepath.Join(t.TempDir(), "airlock", "token.json"),
	}
	ctx := context.Background()
	if _, err := authn.CachedToken(ctx, cfg); !errors.Is(err, authn.ErrNotLoggedIn) {
		t.Fatalf("before login: %v", err)
	}
	tok, err := authn.Login(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkCacheFile(t, cfg.CachePath)
	id, err := v.Verify(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("login token: %v", err)
	}
	if id.Subject != c.ID || !id.InGroup("ci") {
		t.Errorf("identity = %+v", id)
	}

	cached, err := authn.CachedToken(ctx, cfg)
	if err != nil || cached.AccessToken != tok.AccessToken {
		t.Fatalf("cached: %v (same token: %v)", err, cached != nil && cached.AccessToken == tok.AccessToken)
	}

	rewriteCacheExpiry(t, cfg.CachePath, time.Now().Add(30*time.Second))
	renewed, err := authn.CachedToken(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.AccessToken == tok.AccessToken {
		t.Fatal("a token 30 s from expiry was not renewed")
	}
	if _, err := v.Verify(ctx, renewed.AccessToken); err != nil {
		t.Fatalf("renewed token: %v", err)
	}
	checkCacheFile(t, cfg.CachePath)
	if again, _ := authn.CachedToken(ctx, cfg); again == nil || again.AccessToken != renewed.AccessToken {
		t.Fatal("the renewed token was not cached")
	}

	other := cfg
	other.Audience = "https://other.example.com/mcp"
	if _, err := authn.CachedToken(ctx, other); !errors.Is(err, authn.ErrNotLoggedIn) {
		t.Fatalf("cache for another audience: %v", err)
	}
}

// fakeDeviceAS is a minimal authorization server for the device grant,
// which Hydra v2.3 does not offer.
type fakeDeviceAS struct {
	srv   *httptest.Server
	mu    sync.Mutex
	polls int
	forms []map[string]string
}

func newFakeDeviceAS(t *testing.T) *fakeDeviceAS {
	as := &fakeDeviceAS{}
	mux := http.NewServeMux()
	as.srv = httptest.NewServer(mux)
	t.Cleanup(as.srv.Close)
	issuer := as.srv.URL + "/"
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": issuer, "jwks_uri": as.srv.URL + "/jwks",
			"authorization_endpoint":        as.srv.URL + "/auth",
			"token_endpoint":                as.srv.URL + "/token",
			"device_authorization_endpoint": as.srv.URL + "/device",
		})
	})
	mux.HandleFunc("/device", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		as.record(r)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"device_code": "dev-123", "user_code": "WDJB-MJHT",
			"verification_uri": as.srv.URL + "/activate", "expires_in": 60, "interval": 1,
		})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		as.record(r)
		w.Header().Set("Content-Type", "application/json")
		as.mu.Lock()
		defer as.mu.Unlock()
		switch r.Form.Get("grant_type") {
		case "urn:ietf:params:oauth:grant-type:device_code":
			as.polls++
			if as.polls == 1 {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"error":"authorization_pending"}`))
				return
			}
			_, _ = w.Write([]byte(`{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1"}`))
		case "refresh_token":
			if r.Form.Get("refresh_token") != "rt-1" {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
				return
			}
			_, _ = w.Write([]byte(`{"access_token":"at-2","token_type":"Bearer","expires_in":3600}`))
		default:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		}
	})
	return as
}

func (as *fakeDeviceAS) record(r *http.Request) {
	m := map[string]string{}
	for k := range r.Form {
		m[k] = r.Form.Get(k)
	}
	as.mu.Lock()
	as.forms = append(as.forms, m)
	as.mu.Unlock()
}

func TestLoginDeviceGrant(t *testing.T) {
	as := newFakeDeviceAS(t)
	var out bytes.Buffer
	cfg := authn.LoginConfig{
		Issuer: as.srv.URL + "/", ClientID: "airlock-cli", Scopes: []string{"mcp:tools"},
		Audience: resourceURL, Out: &out,
		CachePath: filepath.Join(t.TempDir(), "airlock", "token.json"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := authn.Login(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "at-1" || tok.RefreshToken != "rt-1" {
		t.Fatalf("token = %+v", tok)
	}
	if !strings.Contains(out.String(), "WDJB-MJHT") || !strings.Contains(out.String(), as.srv.URL+"/activate") {
		t.Errorf("instructions = %q", out.String())
	}
	checkCacheFile(t, cfg.CachePath)
	as.mu.Lock()
	first := as.forms[0]
	as.mu.Unlock()
	if first["resource"] != resourceURL || !strings.Contains(first["scope"], "offline_access") {
		t.Errorf("device authorization request = %v", first)
	}

	rewriteCacheExpiry(t, cfg.CachePath, time.Now().Add(time.Minute))
	refreshed, err := authn.CachedToken(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if refreshed.AccessToken != "at-2" {
		t.Fatalf("refreshed = %+v", refreshed)
	}
	if again, err := authn.CachedToken(ctx, cfg); err != nil || again.AccessToken != "at-2" || again.RefreshToken != "rt-1" {
		t.Fatalf("after refresh: %+v %v", again, err)
	}
}

func TestAuthenticateStdio(t *testing.T) {
	h := testenv.Hydra(t)
	c := h.CreateClient(t, resourceURL, []string{"mcp:tools"}, "ci")
	logger, logs := newLogger(t)
	cfg := authn.OIDCConfig{Issuer: h.Issuer(), Audience: resourceURL}
	if err := cfg.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	v := authn.NewVerifier(cfg, authn.WithLogger(logger))
	v.Start(context.Background()) // not waited for: AuthenticateStdio waits
	t.Cleanup(v.Close)
	ctx := context.Background()
	good := h.Token(t, c, "mcp:tools")

	t.Setenv(authn.TokenEnv, good)
	id, err := v.AuthenticateStdio(ctx, "")
	if err != nil || id.Subject != c.ID || id.Method != "oidc" {
		t.Fatalf("from env: %+v %v", id, err)
	}

	file := filepath.Join(t.TempDir(), "token")
	other := h.CreateClient(t, "https://other.example.com/mcp", nil)
	wrong := h.Token(t, other)
	if err := os.WriteFile(file, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = v.AuthenticateStdio(ctx, file) // the file wins over the env
	if authn.ReasonOf(err) != authn.ReasonAudience {
		t.Fatalf("from file: %v", err)
	}
	if l := logs.String(); !strings.Contains(l, `"reason":"audience"`) || !strings.Contains(l, authn.Fingerprint(wrong)) || strings.Contains(l, wrong) {
		t.Errorf("log: %s", l)
	}

	t.Setenv(authn.TokenEnv, "")
	if _, err := v.AuthenticateStdio(ctx, ""); !errors.Is(err, authn.ErrNoToken) {
		t.Fatalf("no token: %v", err)
	}
}
