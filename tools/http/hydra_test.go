package httpkind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/tools"
)

// introspect asks Hydra's admin API whether a token is active.
func introspect(t testing.TB, h *testenv.HydraInstance, token string) map[string]any {
	t.Helper()
	resp, err := http.PostForm(h.AdminURL()+"/admin/oauth2/introspect", url.Values{"token": {token}})
	if err != nil {
		t.Fatalf("introspecting: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("introspection answer: %v", err)
	}
	return out
}

// protectedAPI is a target that accepts only tokens Hydra says are active,
// and answers with what Hydra says about them (client, scope, audience).
func protectedAPI(t testing.TB, h *testenv.HydraInstance) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, `{"error":"no token"}`, http.StatusUnauthorized)
			return
		}
		info := introspect(t, h, tok)
		w.Header().Set("Content-Type", "application/json")
		if info["active"] != true {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"inactive token"}`)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"path": r.URL.Path, "client_id": info["client_id"], "scope": info["scope"], "aud": info["aud"],
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestHydraClientCredentials runs http_request against a target that checks
// each token with real Ory Hydra, with tokens Hydra mints for the lease:
// the grant's scopes and audience reach the token, the token is cached for
// the lease, and revoking the lease revokes it at Hydra.
func TestHydraClientCredentials(t *testing.T) {
	h := testenv.Hydra(t)
	target := protectedAPI(t, h)
	client := h.CreateClientSpec(t, testenv.ClientSpec{Audience: []string{target.URL}, Scopes: []string{"orders.read", "orders.write"}})
	env := mapEnv{vars: map[string]string{"HYDRA_SECRET": client.Secret}}
	r := open(t, env, fmt.Sprintf(`
name: orders-api
base_url: %s
methods: [GET, POST]
auth:
  type: oauth2_client_credentials
  token_url: %s
  revocation_url: %soauth2/revoke
  client_id: %s
  client_secret_env: HYDRA_SECRET
grants:
  reader: {ttl: 10m, scopes: [orders.read], audience: ["%s"]}
  writer: {ttl: 5m, scopes: [orders.write], audience: ["%s"]}
  greedy: {ttl: 5m, scopes: [orders.admin], audience: ["%s"]}
`, target.URL, h.TokenURL(), h.Issuer(), client.ID, target.URL, target.URL, target.URL))

	reader := mint(t, r, "reader")
	token := reader.Secret().Reveal()
	if token == "" {
		t.Fatal("no token minted")
	}
	for i := range 3 {
		out, err := call(t, r, reader, testLimits, `{"resource": "orders-api", "method": "GET", "path": "/orders/7"}`)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		res, text := maskAndRender(t, masking.DefaultConfig(), "default", out)
		body, _ := res.Body.(map[string]any)
		if res.Status != 200 || body["client_id"] != client.ID || body["scope"] != "orders.read" || body["path"] != "/orders/7" {
			t.Fatalf("call %d: the target saw %d %v", i, res.Status, res.Body)
		}
		if aud, _ := body["aud"].([]any); !slices.Contains(aud, any(target.URL)) {
			t.Errorf("token audience %v, want %s", body["aud"], target.URL)
		}
		mustNotContain(t, "result", text+fmt.Sprint(res), token, client.Secret)
	}
	if n := reader.Fetches(); n != 1 {
		t.Errorf("the lease fetched %d tokens for 3 calls, want 1 (cached for the lease)", n)
	}
	for _, s := range []string{fmt.Sprint(reader), fmt.Sprintf("%#v", reader), reader.String()} {
		mustNotContain(t, "printed credential", s, token, client.Secret)
	}
	js, _ := json.Marshal(reader)
	mustNotContain(t, "credential JSON", string(js), token)

	writer := mint(t, r, "writer")
	out, err := call(t, r, writer, testLimits, `{"resource": "orders-api", "method": "POST", "path": "/orders", "body": {"item": "book"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if body := out.Objects[0].(map[string]any); body["scope"] != "orders.write" {
		t.Errorf("writer token scope %v", body["scope"])
	}

	_, err = r.Mint(context.Background(), tools.MintRequest{LeaseID: "greedy-1", GrantName: "greedy"})
	if !errors.Is(err, ErrTokenEndpoint) || !strings.Contains(err.Error(), "invalid_scope") {
		t.Errorf("a grant the client may not have: %v", err)
	}
	if err != nil {
		mustNotContain(t, "mint error", err.Error(), client.Secret)
	}

	// Lease end: the token is revoked at Hydra, and the credential is dead.
	if got := introspect(t, h, token); got["active"] != true {
		t.Fatalf("token inactive before revocation: %v", got)
	}
	if err := r.Revoke(context.Background(), tools.LeaseRef{LeaseID: reader.leaseIDForTest()}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if got := introspect(t, h, token); got["active"] != false {
		t.Errorf("token still active after the lease was revoked: %v", got)
	}
	if _, err := call(t, r, reader, testLimits, `{"resource": "orders-api", "method": "GET", "path": "/orders/7"}`); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("call with a revoked lease: %v", err)
	}
	// Revoking again (a lease already gone) is not an error.
	if err := r.Revoke(context.Background(), tools.LeaseRef{LeaseID: reader.leaseIDForTest()}); err != nil {
		t.Errorf("second Revoke: %v", err)
	}

	// A token that expires before its lease is replaced, and both are
	// revoked at the lease's end.
	var skew atomic.Int64
	clocked := open(t, env, fmt.Sprintf(`
name: orders-api
base_url: %s
auth: {type: oauth2_client_credentials, token_url: %s, revocation_url: %soauth2/revoke, client_id: %s, client_secret_env: HYDRA_SECRET}
grants:
  reader: {ttl: 10m, scopes: [orders.read], audience: ["%s"]}
`, target.URL, h.TokenURL(), h.Issuer(), client.ID, target.URL), WithClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }))
	lease := mint(t, clocked, "reader")
	first := lease.Secret().Reveal()
	skew.Store(int64(2 * time.Hour)) // past Hydra's 1 h token lifespan
	out, err = call(t, clocked, lease, testLimits, `{"resource": "orders-api", "method": "GET", "path": "/orders/1"}`)
	if err != nil || out.Extra["status"] != http.StatusOK {
		t.Fatalf("call after the token expired: %v %v", err, out)
	}
	second := lease.Secret().Reveal()
	if lease.Fetches() != 2 || second == first {
		t.Errorf("fetches %d; token replaced: %v", lease.Fetches(), second != first)
	}
	if err := clocked.Revoke(context.Background(), tools.LeaseRef{LeaseID: lease.leaseIDForTest()}); err != nil {
		t.Fatal(err)
	}
	for i, tok := range []string{first, second} {
		if got := introspect(t, h, tok); got["active"] != false {
			t.Errorf("token %d still active after the lease was revoked", i+1)
		}
	}
}

// TestHydraAdminAndPublicAPI uses Hydra's own APIs as HTTP services: the
// admin API (creating an OAuth2 client, whose secret in the answer is
// masked by a field rule) and the public API (discovery, JWKS).
func TestHydraAdminAndPublicAPI(t *testing.T) {
	h := testenv.Hydra(t)
	admin := open(t, mapEnv{}, fmt.Sprintf(`
name: hydra-admin
base_url: %s
methods: [GET, POST, DELETE]
path_prefixes: [/admin/clients]
grants:
  operator: {ttl: 10m}
`, h.AdminURL()))
	public := open(t, mapEnv{}, fmt.Sprintf(`
name: hydra-public
base_url: %s
grants:
  reader: {ttl: 10m}
`, strings.TrimSuffix(h.Issuer(), "/")))
	cfg := masking.DefaultConfig()
	cfg.Profiles["oauth-admin"] = masking.ProfileConfig{
		Fields:    []string{"client_secret", "metadata.*"},
		Detectors: []string{"email", "jwt", "private_key"},
	}

	cred := mint(t, admin, "operator")
	out, err := call(t, admin, cred, testLimits, `{"resource": "hydra-admin", "method": "POST", "path": "/admin/clients",
		"body": {"client_name": "made-by-airlock", "grant_types": ["client_credentials"], "scope": "a.read",
		         "contacts": ["owner@example.com"], "metadata": {"cost_center": "cc-4711"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	raw := out.Objects[0].(map[string]any)
	secret, _ := raw["client_secret"].(string)
	id, _ := raw["client_id"].(string)
	if out.Extra["status"] != http.StatusCreated || secret == "" || id == "" {
		t.Fatalf("create client: %v %v", out.Extra["status"], raw)
	}
	res, text := maskAndRender(t, cfg, "oauth-admin", out)
	body := res.Body.(map[string]any)
	if body["client_secret"] == secret || body["client_secret"] == nil {
		t.Errorf("client_secret not masked: %v", body["client_secret"])
	}
	mustNotContain(t, "rendered result", text, secret, "cc-4711", "owner@example.com")
	mustContain(t, "rendered result", text, "HTTP 201 Created", "made-by-airlock", id)

	out, err = call(t, admin, cred, testLimits, fmt.Sprintf(`{"resource": "hydra-admin", "method": "GET", "path": "/admin/clients/%s"}`, id))
	if err != nil || out.Extra["status"] != http.StatusOK || out.Objects[0].(map[string]any)["client_name"] != "made-by-airlock" {
		t.Fatalf("get client: %v %v", err, out)
	}
	if _, err := call(t, admin, cred, testLimits, `{"resource": "hydra-admin", "method": "GET", "path": "/admin/keys/hydra.jwt.access-token"}`); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("a path outside path_prefixes: %v", err)
	}
	out, err = call(t, admin, cred, testLimits, fmt.Sprintf(`{"resource": "hydra-admin", "method": "DELETE", "path": "/admin/clients/%s"}`, id))
	if err != nil || out.Extra["status"] != http.StatusNoContent {
		t.Fatalf("delete client: %v %v", err, out)
	}

	pc := mint(t, public, "reader")
	out, err = call(t, public, pc, testLimits, `{"resource": "hydra-public", "method": "GET", "path": "/.well-known/openid-configuration"}`)
	if err != nil {
		t.Fatal(err)
	}
	if d := out.Objects[0].(map[string]any); d["issuer"] != h.Issuer() {
		t.Errorf("discovery issuer %v, want %s", d["issuer"], h.Issuer())
	}
	out, err = call(t, public, pc, testLimits, `{"resource": "hydra-public", "method": "GET", "path": "/.well-known/jwks.json"}`)
	if err != nil {
		t.Fatal(err)
	}
	if keys, _ := out.Objects[0].(map[string]any)["keys"].([]any); len(keys) == 0 {
		t.Errorf("JWKS without keys: %v", out.Objects[0])
	}
	// Hydra's token endpoint refuses a GET: the status comes back as a
	// result the agent can read, not as a failure of airlock.
	out, err = call(t, public, pc, testLimits, `{"resource": "hydra-public", "method": "GET", "path": "/oauth2/token"}`)
	if err != nil || num(out.Extra["status"]) < 400 {
		t.Errorf("GET /oauth2/token: %v %v", err, out.Extra)
	}
}
