package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// validateHTTP checks the http block: every bound positive and coherent,
// every allowed origin an origin. A per-identity cap above the total one is
// the total one (so that lowering max_sessions alone works).
func (c *Config) validateHTTP(fail func(key, format string, args ...any)) {
	h := &c.HTTP
	if h.MaxSessions <= 0 {
		fail("http.max_sessions", "must be a positive number of sessions")
	}
	if h.MaxSessionsPerIdentity <= 0 {
		fail("http.max_sessions_per_identity", "must be a positive number of sessions")
	} else if h.MaxSessions > 0 {
		h.MaxSessionsPerIdentity = min(h.MaxSessionsPerIdentity, h.MaxSessions)
	}
	if h.SessionIdleTimeout < time.Second {
		fail("http.session_idle_timeout", "must be a duration of at least 1s, such as 10m")
	}
	if h.MaxRequestBytes <= 0 {
		fail("http.max_request_bytes", "must be a positive number of bytes")
	}
	if h.MaxInitializeBytes <= 0 {
		fail("http.max_initialize_bytes", "must be a positive number of bytes")
	} else if h.MaxRequestBytes > 0 && h.MaxInitializeBytes > h.MaxRequestBytes {
		fail("http.max_initialize_bytes", "%d is more than http.max_request_bytes (%d)", h.MaxInitializeBytes, h.MaxRequestBytes)
	}
	if h.MaxAPIRequestBytes <= 0 {
		fail("http.max_api_request_bytes", "must be a positive number of bytes")
	}
	for i, o := range h.AllowedOrigins {
		if why := originProblem(o); why != "" {
			fail(fmt.Sprintf("http.allowed_origins[%d]", i), "%q %s; write scheme://host[:port], such as https://agents.example.com", o, why)
		}
	}
}

// originProblem says why s is not an origin as browsers send it in the
// Origin header, or "" if it is one.
func originProblem(s string) string {
	if s == "*" || s == "null" {
		return "is not allowed: name each origin"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "is not an http or https origin"
	case u.Host == "" || u.User != nil:
		return "has no host"
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#"):
		return "has a path, query or fragment, which an origin does not"
	}
	return ""
}
