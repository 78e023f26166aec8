package config

import (
	"strings"
	"testing"
	"time"
)

func TestHTTPDefaultsAndOverrides(t *testing.T) {
	cfg, err := Parse([]byte(valid), "airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := HTTP{MaxSessions: 1000, MaxSessionsPerIdentity: 100, SessionIdleTimeout: 10 * time.Minute,
		MaxRequestBytes: 1 << 20, MaxInitializeBytes: 16 << 10, MaxAPIRequestBytes: 64 << 10}
	if h := cfg.HTTP; h.MaxSessions != want.MaxSessions || h.MaxSessionsPerIdentity != want.MaxSessionsPerIdentity ||
		h.SessionIdleTimeout != want.SessionIdleTimeout || h.MaxRequestBytes != want.MaxRequestBytes ||
		h.MaxInitializeBytes != want.MaxInitializeBytes || h.MaxAPIRequestBytes != want.MaxAPIRequestBytes || len(h.AllowedOrigins) != 0 {
		t.Errorf("http defaults = %+v, want %+v", h, want)
	}
	cfg, err = Parse([]byte(valid+"http: {max_sessions: 20, session_idle_timeout: 30s, allowed_origins: [\"https://agents.example.com:8443\"]}\n"), "airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Lowering max_sessions alone lowers the per-identity cap with it.
	if h := cfg.HTTP; h.MaxSessions != 20 || h.MaxSessionsPerIdentity != 20 || h.SessionIdleTimeout != 30*time.Second || h.AllowedOrigins[0] != "https://agents.example.com:8443" {
		t.Errorf("http overrides = %+v", h)
	}
}

// Every bound of the http block is checked, with the key and its line.
func TestHTTPErrors(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       []string
	}{
		{"zero sessions", "http: {max_sessions: 0}\n", []string{"http.max_sessions", "positive", ":10"}},
		{"zero per identity", "http: {max_sessions_per_identity: 0}\n", []string{"http.max_sessions_per_identity", "positive"}},
		{"short idle timeout", "http: {session_idle_timeout: 10ms}\n", []string{"http.session_idle_timeout", "at least 1s"}},
		{"negative body", "http: {max_request_bytes: -1}\n", []string{"http.max_request_bytes", "positive"}},
		{"initialize above body", "http: {max_request_bytes: 1000, max_initialize_bytes: 2000}\n", []string{"http.max_initialize_bytes", "more than http.max_request_bytes (1000)"}},
		{"zero api", "http: {max_api_request_bytes: 0}\n", []string{"http.max_api_request_bytes", "positive"}},
		{"wildcard origin", "http: {allowed_origins: [\"*\"]}\n", []string{"http.allowed_origins[0]", "name each origin"}},
		{"origin with a path", "http: {allowed_origins: [https://ok.example.com, https://a.example.com/mcp]}\n", []string{"http.allowed_origins[1]", "path"}},
		{"origin without scheme", "http: {allowed_origins: [a.example.com]}\n", []string{"http.allowed_origins[0]", "not an http or https origin"}},
		{"unknown key", "http: {max_connections: 5}\n", []string{"max_connections"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(valid+tt.yaml), "airlock.yaml")
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n"); n != 0 {
				t.Errorf("want one error, got:\n%s", err)
			}
		})
	}
}
