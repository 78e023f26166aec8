package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// http_request end to end: the TypeScript SDK client, airlock over stdio
// with the example HTTP policy, a client-credentials token minted from real
// Ory Hydra for the lease, and a target that accepts only tokens Hydra's
// introspection says are active (and answers with what Hydra says about
// them). The token never reaches the agent; the customer's email in the
// answer is masked by the pii profile's field rule.
func TestHTTPRequestThroughTypeScriptSDK(t *testing.T) {
	h := testenv.Hydra(t)
	var mu sync.Mutex
	var seen []string // tokens the target received
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		seen = append(seen, tok)
		mu.Unlock()
		resp, err := http.PostForm(h.AdminURL()+"/admin/oauth2/introspect", url.Values{"token": {tok}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var info map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&info)
		w.Header().Set("Content-Type", "application/json")
		if info["active"] != true {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": "inactive token"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"order": strings.TrimPrefix(r.URL.Path, "/api/v1/orders/"), "customer": map[string]any{"email": "ann@example.com", "tier": "gold"},
			"token_client": info["client_id"], "token_scope": info["scope"], "token_aud": info["aud"],
		})
	}))
	defer target.Close()
	client := h.CreateClientSpec(t, testenv.ClientSpec{Audience: []string{target.URL + "/"}, Scopes: []string{"orders.read", "orders.write"}})

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(client.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`policy: %s
store: sqlite://./airlock.db
auth: {mode: none}
approvals: {wait: 1s, expire: 5m}
identity: {subject: e2e-agent, groups: [eng]}
masking:
  profiles:
    pii:
      fields: ["customer.email"]
      detectors: [jwt, bearer_token, email]
resources:
  - name: orders-api
    kind: http
    description: orders API behind Hydra tokens
    base_url: %s/api
    methods: [GET, POST]
    auth:
      type: oauth2_client_credentials
      token_url: %s
      revocation_url: %soauth2/revoke
      client_id: %s
      client_secret_file: %s
    grants:
      reader: {ttl: 10m, scopes: [orders.read], audience: ["%s/"]}
      writer: {ttl: 5m, scopes: [orders.read, orders.write], audience: ["%s/"]}
`, filepath.Join(repoRoot(t), "examples", "policies", "http.yaml"), target.URL, h.TokenURL(), h.Issuer(), client.ID, secretFile, target.URL, target.URL)
	config := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	tr := runClient(t, map[string]any{
		"transport": "stdio", "command": airlockBin, "args": []string{"stdio", "--config", config},
		"calls": []call{
			{Name: "list_resources", Arguments: map[string]any{}},
			{Name: "http_request", Arguments: map[string]any{"resource": "orders-api", "method": "GET", "path": "/v1/orders/7"}},
			{Name: "http_request", Arguments: map[string]any{"resource": "orders-api", "method": "GET", "path": "/v1/orders/8", "query": map[string]any{"expand": "items"}}},
			{Name: "http_request", Arguments: map[string]any{"resource": "orders-api", "method": "GET", "path": "/v1/admin/users"}},
			{Name: "http_request", Arguments: map[string]any{"resource": "orders-api", "method": "GET", "path": "https://evil.example/v1/orders"}},
			{Name: "http_request", Arguments: map[string]any{"resource": "orders-api", "method": "GET", "path": "/v1/orders", "headers": map[string]any{"Authorization": "Bearer mine"}}},
			{Name: "http_request", Arguments: map[string]any{"resource": "orders-api", "method": "POST", "path": "/v1/orders", "body": map[string]any{"item": "book"}}},
		},
	})
	listed := false
	for _, tool := range tr.Tools {
		listed = listed || tool.Name == "http_request"
	}
	if !listed {
		t.Error("tools/list lacks http_request")
	}
	if len(tr.Results) != 7 {
		t.Fatalf("got %d results: %+v", len(tr.Results), tr.Results)
	}
	if lr := tr.Results[0]; lr.IsError || !strings.Contains(lr.Text, "orders-api") || !strings.Contains(lr.Text, "http_request") {
		t.Errorf("list_resources: %+v", lr)
	}
	r := tr.Results[1:]
	if len(r) != 6 {
		t.Fatalf("got %d results: %+v", len(r), r)
	}
	for i, res := range r {
		if res.ProtocolError != nil {
			t.Fatalf("call %d: protocol error %s", i, res.ProtocolError.Message)
		}
	}
	for i := range 2 {
		body, _ := r[i].StructuredContent["body"].(map[string]any)
		if r[i].IsError || r[i].StructuredContent["status"] != float64(200) || body["token_client"] != client.ID || body["token_scope"] != "orders.read" {
			t.Fatalf("call %d: the target did not accept a reader token: %+v", i, r[i])
		}
		if aud, _ := body["token_aud"].([]any); len(aud) != 1 || aud[0] != target.URL+"/" {
			t.Errorf("call %d: token audience %v", i, body["token_aud"])
		}
		if strings.Contains(r[i].Text, "ann@example.com") || !strings.Contains(r[i].Text, `"tier": "gold"`) {
			t.Errorf("call %d: masking: %s", i, r[i].Text)
		}
	}
	if !r[2].IsError || !strings.Contains(r[2].Text, "no-admin-endpoints") {
		t.Errorf("admin endpoint: %+v", r[2])
	}
	if !r[3].IsError || !strings.Contains(r[3].Text, "absolute URL") {
		t.Errorf("absolute URL: %+v", r[3])
	}
	if !r[4].IsError || !strings.Contains(r[4].Text, "Authorization is refused") {
		t.Errorf("agent Authorization: %+v", r[4])
	}
	if !r[5].IsError || r[5].StructuredContent["outcome"] != "pending" || !strings.Contains(r[5].Text, "engineers-writes-need-finance") {
		t.Errorf("a write waits for finance: %+v", r[5])
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != seen[1] {
		t.Errorf("the target saw %d tokens (want one token, reused for the lease's two calls)", len(seen))
	}
	all, _ := json.Marshal(tr)
	for _, tok := range seen {
		if strings.Contains(string(all), tok) {
			t.Error("the minted token reached the agent")
		}
	}
	if strings.Contains(string(all), client.Secret) {
		t.Error("the client secret reached the agent")
	}
	// airlock revoked its leases when it stopped: Hydra no longer accepts the token.
	if len(seen) > 0 {
		resp, err := http.PostForm(h.AdminURL()+"/admin/oauth2/introspect", url.Values{"token": {seen[0]}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var info map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&info)
		if info["active"] != false {
			t.Errorf("the lease's token is still active after airlock stopped: %v", info)
		}
	}
}
