package main

import (
	"testing"

	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/mcpserver"
)

// The embedded defaults of the http block are mcpserver's own defaults, so
// that the numbers docs/config.md explains are the ones a server without a
// config gets.
func TestHTTPDefaultsAgree(t *testing.T) {
	cfg, err := config.Parse([]byte("auth: {mode: none}\n"), "airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.HTTP
	for _, c := range []struct {
		key       string
		got, want int64
	}{
		{"http.max_sessions", int64(h.MaxSessions), mcpserver.DefaultMaxSessions},
		{"http.max_sessions_per_identity", int64(h.MaxSessionsPerIdentity), mcpserver.DefaultMaxSessionsPerIdentity},
		{"http.session_idle_timeout", int64(h.SessionIdleTimeout), int64(mcpserver.DefaultSessionIdleTimeout)},
		{"http.max_request_bytes", h.MaxRequestBytes, mcpserver.DefaultMaxRequestBytes},
		{"http.max_initialize_bytes", h.MaxInitializeBytes, mcpserver.DefaultMaxInitializeBytes},
	} {
		if c.got != c.want {
			t.Errorf("%s: the embedded default is %d, mcpserver's %d", c.key, c.got, c.want)
		}
	}
	if h.MaxAPIRequestBytes != 64<<10 {
		t.Errorf("http.max_api_request_bytes = %d, want 65536", h.MaxAPIRequestBytes)
	}
}
