package authn_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/internal/testenv"
)

const metadataURL = "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"

// fakeMCP stands in for the MCP handler: it assigns a session on a request
// without one (initialize) and answers with the caller's subject.
func fakeMCP() http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := authn.IdentityFromContext(r.Context())
		if !ok {
			http.Error(w, "no identity", http.StatusInternalServerError)
			return
		}
		if r.Header.Get("Mcp-Session-Id") == "" {
			w.Header().Set("Mcp-Session-Id", fmt.Sprintf("session-%d", n.Add(1)))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"subject": id.Subject, "groups": id.Groups})
	})
}

type server struct {
	url  string
	rs   *authn.ResourceServer
	logs *logBuffer
}

func newServer(t *testing.T, v *authn.Verifier, scopes ...string) server {
	t.Helper()
	logger, logs := newLogger(t)
	rs, err := authn.NewResourceServer(v, resourceURL, scopes, logger)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(rs.MetadataPath(), rs.MetadataHandler())
	mux.Handle("/mcp", rs.Middleware(fakeMCP()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return server{url: srv.URL, rs: rs, logs: logs}
}

type response struct {
	status    int
	challenge string
	session   string
	body      string
}

func (s server) do(t *testing.T, method, path string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize"}`))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"),
		session: resp.Header.Get("Mcp-Session-Id"), body: string(body)}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestMiddlewareHydra(t *testing.T) {
	h := testenv.Hydra(t)
	v := startVerifier(t, authn.OIDCConfig{Issuer: h.Issuer(), Audience: resourceURL, RequiredScopes: []string{"mcp:tools"}})
	s := newServer(t, v, "mcp:tools", "mcp:admin")

	alice := h.CreateClient(t, resourceURL, []string{"mcp:tools", "other"}, "eng")
	good := h.Token(t, alice, "mcp:tools")
	noScope := h.Token(t, alice, "other")
	_, payload := jwtParts(t, good)
	tampered := good[:strings.IndexByte(good, '.')] + "." + b64(withClaims(t, payload, map[string]any{"groups": []string{"admin"}})) + good[strings.LastIndexByte(good, '.'):]

	tests := []struct {
		name          string
		method        string
		path          string
		header        http.Header
		wantStatus    int
		wantChallenge string // exact; "" means none
		wantReason    string // in the log line; "" means no refusal
		token         string // must not appear in the logs
	}{
		{name: "valid", path: "/mcp", header: bearer(good), wantStatus: 200, token: good},
		{name: "CORS preflight is answered without reaching the handler", path: "/mcp", method: http.MethodOptions, wantStatus: 204},
		{name: "no token", path: "/mcp", wantStatus: 401, wantReason: "no_token",
			wantChallenge: `Bearer resource_metadata="` + metadataURL + `", scope="mcp:tools"`},
		{name: "token in the query string", path: "/mcp?access_token=" + good, wantStatus: 400, wantReason: "query_token", token: good,
			wantChallenge: `Bearer resource_metadata="` + metadataURL + `", error="invalid_request", error_description="access tokens in the query string are refused; send Authorization: Bearer"`},
		{name: "query string token beside a header", path: "/mcp?access_token=x", header: bearer(good), wantStatus: 400, wantReason: "query_token", token: good,
			wantChallenge: `Bearer resource_metadata="` + metadataURL + `", error="invalid_request", error_description="access tokens in the query string are refused; send Authorization: Bearer"`},
		{name: "basic scheme", path: "/mcp", header: http.Header{"Authorization": {"Basic YTpi"}}, wantStatus: 401, wantReason: "malformed_header",
			wantChallenge: `Bearer resource_metadata="` + metadataURL + `", error="invalid_request", error_description="malformed Authorization header; want ` + "`Bearer <token>`" + `"`},
		{name: "bearer without token", path: "/mcp", header: http.Header{"Authorization": {"Bearer "}}, wantStatus: 401, wantReason: "malformed_header",
			wantChallenge: `Bearer resource_metadata="` + metadataURL + `", error="invalid_request", error_description="malformed Authorization header; want ` + "`Bearer <token>`" + `"`},
		{name: "two tokens", path: "/mcp", header: http.Header{"Authorization": {"Bearer " + good, "Bearer " + good}}, wantStatus: 401, wantReason: "malformed_header", token: good,
			wantChallenge: `Bearer resource_metadata="` + metadataURL + `", error="invalid_request", error_description="malformed Authorization header; want ` + "`Bearer <token>`" + `"`},
		{name: "tampered", path: "/mcp", header: bearer(tampered), wantStatus: 401, wantReason: "signature", token: tampered,
			wantChallenge: `Bearer resource_metadata="` + metadataURL + `", error="invalid_token", error_description="invalid token: signature"`},
		{name: "garbage", path: "/mcp", header: bearer("abc.def.ghi"), wantStatus: 401, wantReason: "malformed", token: "abc.def.ghi",
			wantChallenge: `Bearer resource_metadata="` + metadataURL + `", error="invalid_token", error_description="invalid token: malformed"`},
		{name: "missing scope", path: "/mcp", header: bearer(noScope), wantStatus: 403, wantReason: "insufficient_scope", token: noScope,
			wantChallenge: `Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="` + metadataURL + `", error_description="missing scope mcp:tools"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.logs.String())
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			resp := s.do(t, method, tt.path, tt.header)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", resp.status, resp.body, tt.wantStatus)
			}
			if resp.challenge != tt.wantChallenge {
				t.Errorf("WWW-Authenticate =\n  %s\nwant\n  %s", resp.challenge, tt.wantChallenge)
			}
			logs := s.logs.String()[before:]
			if tt.wantReason != "" && !strings.Contains(logs, `"reason":"`+tt.wantReason+`"`) {
				t.Errorf("log has no reason %q: %s", tt.wantReason, logs)
			}
			if tt.token != "" && (strings.Contains(logs, tt.token) || strings.Contains(resp.body, tt.token)) {
				t.Errorf("the token leaked into the log or the response")
			}
			if tt.wantStatus == 200 && !strings.Contains(resp.body, alice.ID) {
				t.Errorf("handler saw no identity: %s", resp.body)
			}
		})
	}

	t.Run("no token, no required scopes: the exact challenge", func(t *testing.T) {
		v := startVerifier(t, authn.OIDCConfig{Issuer: h.Issuer(), Audience: resourceURL})
		s := newServer(t, v)
		resp := s.do(t, http.MethodPost, "/mcp", nil)
		want := `Bearer resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"`
		if resp.status != 401 || resp.challenge != want {
			t.Fatalf("got %d %q, want 401 %q", resp.status, resp.challenge, want)
		}
	})

	t.Run("protected resource metadata", func(t *testing.T) {
		if got := s.rs.MetadataPath(); got != "/.well-known/oauth-protected-resource/mcp" {
			t.Fatalf("MetadataPath = %q", got)
		}
		resp := s.do(t, http.MethodGet, s.rs.MetadataPath(), nil)
		if resp.status != 200 {
			t.Fatalf("status %d", resp.status)
		}
		var md map[string]any
		if err := json.Unmarshal([]byte(resp.body), &md); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"resource":                 resourceURL,
			"authorization_servers":    []any{h.Issuer()},
			"scopes_supported":         []any{"mcp:tools", "mcp:admin"},
			"bearer_methods_supported": []any{"header"},
		}
		for k, w := range want {
			if fmt.Sprint(md[k]) != fmt.Sprint(w) {
				t.Errorf("%s = %v, want %v", k, md[k], w)
			}
		}
	})

	t.Run("session bound to its subject", func(t *testing.T) {
		bob := h.CreateClient(t, resourceURL, []string{"mcp:tools"}, "eng")
		bobToken := h.Token(t, bob, "mcp:tools")

		opened := s.do(t, http.MethodPost, "/mcp", bearer(good))
		if opened.status != 200 || opened.session == "" {
			t.Fatalf("initialize: %d, session %q", opened.status, opened.session)
		}
		withSession := func(tok, sid string) http.Header {
			h := bearer(tok)
			h.Set("Mcp-Session-Id", sid)
			return h
		}
		if r := s.do(t, http.MethodPost, "/mcp", withSession(good, opened.session)); r.status != 200 {
			t.Fatalf("owner on its session: %d %s", r.status, r.body)
		}
		before := len(s.logs.String())
		r := s.do(t, http.MethodPost, "/mcp", withSession(bobToken, opened.session))
		if r.status != 403 {
			t.Fatalf("another subject on the session: %d %s", r.status, r.body)
		}
		if logs := s.logs.String()[before:]; !strings.Contains(logs, `"reason":"session_subject"`) || strings.Contains(logs, opened.session+`"`) {
			t.Errorf("log: %s", logs)
		}
		// A new token of the owner (another jti) is still the owner.
		if r := s.do(t, http.MethodPost, "/mcp", withSession(h.Token(t, alice, "mcp:tools"), opened.session)); r.status != 200 {
			t.Fatalf("owner with a fresh token: %d %s", r.status, r.body)
		}
		// Once the owner ends the session, its ID is bound to no one (the MCP
		// server answers 404 for it).
		if r := s.do(t, http.MethodDelete, "/mcp", withSession(good, opened.session)); r.status != 200 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if r := s.do(t, http.MethodPost, "/mcp", withSession(bobToken, opened.session)); r.status != 200 {
			t.Fatalf("after delete: %d %s", r.status, r.body)
		}
		// Bob opens his own.
		if r := s.do(t, http.MethodPost, "/mcp", bearer(bobToken)); r.status != 200 || r.session == opened.session {
			t.Fatalf("bob's own session: %d %q", r.status, r.session)
		}
	})
}

// TestUnreachableIssuer: airlock starts before its provider. It is not ready,
// refuses calls saying why, and becomes ready once the provider answers.
func TestUnreachableIssuer(t *testing.T) {
	port := testenv.FreePort(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d/", port)
	v := authn.NewVerifier(authn.OIDCConfig{Issuer: issuer, Audience: resourceURL},
		authn.WithDiscoveryBackoff(50*time.Millisecond, 200*time.Millisecond),
		authn.WithLogger(quietLogger()))
	if ok, why := v.Ready(); ok || !strings.Contains(why, "has not been contacted") {
		t.Fatalf("before Start: %v %q", ok, why)
	}
	v.Start(context.Background())
	t.Cleanup(v.Close)
	s := newServer(t, v)

	wantMsg := "identity provider " + issuer + " is unreachable; calls are refused until it answers"
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, why := v.Ready()
		if ok {
			t.Fatal("ready with no provider")
		}
		if strings.Contains(why, wantMsg) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ready reason = %q, want it to contain %q", why, wantMsg)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp := s.do(t, http.MethodPost, "/mcp", bearer("a.b.c"))
	if resp.status != http.StatusServiceUnavailable || !strings.Contains(resp.body, wantMsg) {
		t.Fatalf("call while unreachable: %d %s", resp.status, resp.body)
	}
	_, err := v.Verify(context.Background(), "a.b.c")
	if authn.ReasonOf(err) != authn.ReasonUnavailable || !strings.Contains(err.Error(), wantMsg) {
		t.Fatalf("Verify while unreachable: %v", err)
	}

	h := testenv.HydraWith(t, testenv.HydraOptions{PublicPort: port})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, why := v.Ready(); !ok || why != "" {
		t.Fatalf("Ready = %v %q", ok, why)
	}
	c := h.CreateClient(t, resourceURL, nil, "eng")
	if r := s.do(t, http.MethodPost, "/mcp", bearer(h.Token(t, c))); r.status != 200 {
		t.Fatalf("after the provider came up: %d %s", r.status, r.body)
	}
}
