package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// A real OIDC provider (Ory Hydra) issues tokens; the TypeScript SDK client
// sends them as Authorization: Bearer; airlock verifies them, policy sees
// the token's groups, and the transcript records the subject.
func TestOIDCThroughTypeScriptSDK(t *testing.T) {
	hydra := testenv.Hydra(t)
	port := testenv.FreePort(t)
	mcpURL := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	cfg, _ := os.ReadFile(d.config)
	oidc := fmt.Sprintf("auth:\n  mode: oidc\n  oidc:\n    issuer: %s\n    audience: %s\n    required_scopes: [mcp]\npublic_url: %s\n", hydra.Issuer(), mcpURL, mcpURL)
	os.WriteFile(d.config, []byte(strings.Replace(string(cfg), "auth: {mode: none}\n", oidc, 1)), 0o600)
	srv := startServe(t, d, port)

	engineer := hydra.CreateClient(t, mcpURL, []string{"mcp"}, "eng")
	sales := hydra.CreateClient(t, mcpURL, []string{"mcp"}, "sales")
	query := []call{{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "SELECT name, email FROM customers ORDER BY id LIMIT 2"}}}

	tr := runClient(t, map[string]any{"transport": "http", "url": mcpURL,
		"headers": map[string]string{"Authorization": "Bearer " + hydra.Token(t, engineer, "mcp")}, "calls": query})
	if r := tr.Results[0]; r.IsError || !strings.Contains(r.Text, "Ada Lovelace") || strings.Contains(r.Text, "ada@example.com") {
		t.Errorf("engineer's query: %+v", r)
	}
	tr = runClient(t, map[string]any{"transport": "http", "url": mcpURL,
		"headers": map[string]string{"Authorization": "Bearer " + hydra.Token(t, sales, "mcp")}, "calls": query})
	if r := tr.Results[0]; !r.IsError || !strings.Contains(r.Text, "Denied") {
		t.Errorf("sales is not in eng: want a denial, got %+v", r)
	}

	// No token: 401 with the challenge that points at the metadata.
	resp, err := http.Post(mcpURL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := fmt.Sprintf(`Bearer resource_metadata="http://127.0.0.1:%d/.well-known/oauth-protected-resource/mcp"`, port)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), want) {
		t.Errorf("no token: %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}
	meta := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/.well-known/oauth-protected-resource/mcp", port))
	if !strings.Contains(meta, hydra.Issuer()) || !strings.Contains(meta, `"header"`) {
		t.Errorf("protected resource metadata: %s", meta)
	}

	// The transcript names the verified subject and issuer, never the token.
	srv.stop(t)
	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", d.config).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(export), `"subject":"`+engineer.ID+`"`) || !strings.Contains(string(export), hydra.Issuer()) {
		t.Errorf("transcript lacks the subject %s and issuer:\n%s", engineer.ID, lastLines(string(export), 5))
	}
	if strings.Contains(string(export), "eyJ") {
		t.Error("a token-like value is in the transcript")
	}
}
