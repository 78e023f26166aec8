package authn

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// MCP session header: assigned by the server in the response to initialize,
// sent by the client on every later request of that session.
const sessionHeader = "Mcp-Session-Id"

// sessionIdleTTL is how long a session binding is kept after its last use.
const sessionIdleTTL = 24 * time.Hour

// ResourceServer makes airlock's Streamable HTTP endpoint an OAuth 2.1
// resource server, as the MCP authorization specification (2025-11-25)
// requires: bearer tokens on every request, RFC 9728 protected resource
// metadata, RFC 8707 audience binding, insufficient_scope challenges, and MCP
// sessions bound to the subject that opened them.
type ResourceServer struct {
	verifier     *Verifier
	logger       *slog.Logger
	resource     string // the public URL of the MCP endpoint
	metadataPath string
	metadataURL  string
	metadata     []byte

	mu       sync.Mutex
	sessions map[string]sessionBinding
	now      func() time.Time
}

type sessionBinding struct {
	principal string // issuer + "\x00" + subject
	lastSeen  time.Time
}

// ProtectedResourceMetadata is the RFC 9728 document.
type ProtectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// NewResourceServer returns a resource server for the MCP endpoint at
// publicURL (such as https://airlock.example.com/mcp), whose tokens v
// verifies. scopesSupported is published in the metadata; the verifier's
// required scopes are added to it.
func NewResourceServer(v *Verifier, publicURL string, scopesSupported []string, logger *slog.Logger) (*ResourceServer, error) {
	if v == nil {
		return nil, errors.New("authn: nil verifier")
	}
	if logger == nil {
		logger = slog.Default()
	}
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("public_url %q is not an absolute URL", publicURL)
	}
	if u.Scheme != "https" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("public_url %q: OAuth needs https except on loopback", publicURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("public_url %q: a resource URL has no query or fragment", publicURL)
	}
	cfg := v.Config()
	if cfg.Audience != publicURL {
		logger.Warn("auth.oidc.audience differs from public_url: clients following the protected resource metadata will ask for tokens that airlock refuses unless the provider maps them",
			"audience", cfg.Audience, keyResource, publicURL)
	}
	// RFC 9728 §3.1: the well-known segment goes between host and path.
	path := "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.EscapedPath(), "/")
	origin := u.Scheme + "://" + u.Host
	scopes := append([]string(nil), scopesSupported...)
	for _, s := range cfg.RequiredScopes {
		if !contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	md, err := json.MarshalIndent(ProtectedResourceMetadata{
		Resource:               publicURL,
		AuthorizationServers:   []string{cfg.Issuer},
		ScopesSupported:        scopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "Airlock",
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return &ResourceServer{
		verifier:     v,
		logger:       logger,
		resource:     publicURL,
		metadataPath: path,
		metadataURL:  origin + path,
		metadata:     md,
		sessions:     map[string]sessionBinding{},
		now:          time.Now,
	}, nil
}

// MetadataPath is where MetadataHandler is to be mounted, derived from the
// public URL's path: "/.well-known/oauth-protected-resource/mcp".
func (rs *ResourceServer) MetadataPath() string { return rs.metadataPath }

// MetadataURL is the absolute URL of the metadata, as named in challenges.
func (rs *ResourceServer) MetadataURL() string { return rs.metadataURL }

// MetadataHandler serves the RFC 9728 protected resource metadata. It is
// public (no token) and readable cross-origin, as browser-based MCP clients
// fetch it.
func (rs *ResourceServer) MetadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(rs.metadata)
		}
	})
}

// Middleware authenticates every request before next sees it: a verified
// identity is put in the request context (IdentityFromContext); anything
// else is answered here with the status and challenge the specification
// asks for, and logged with its reason (never the token).
func (rs *ResourceServer) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			// A CORS preflight carries no credentials, so it is answered
			// here and never reaches next without an identity. Bearer
			// tokens (not cookies) make any origin safe to allow.
			preflight(w)
			return
		}
		raw, err := bearerToken(r)
		if err != nil {
			rs.refuseRequest(w, r, err, "")
			return
		}
		id, err := rs.verifier.Verify(r.Context(), raw)
		if err != nil {
			rs.refuseRequest(w, r, err, raw)
			return
		}
		principal := id.Issuer + "\x00" + id.Subject
		if sid := r.Header.Get(sessionHeader); sid != "" {
			if !rs.sessionAllows(sid, principal) {
				rs.refuseRequest(w, r, errSessionSubject, raw)
				return
			}
		}
		sw := &sessionWriter{ResponseWriter: w, rs: rs, principal: principal, requestSession: r.Header.Get(sessionHeader), method: r.Method}
		next.ServeHTTP(sw, r.WithContext(WithIdentity(r.Context(), id)))
		sw.finish()
	})
}

func preflight(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID")
	h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// errors answered by the middleware before or beside verification.
var (
	errQueryToken     = errors.New("access tokens in the query string are refused; send Authorization: Bearer")
	errMalformedAuthz = errors.New("malformed Authorization header; want `Bearer <token>`")
	errSessionSubject = errors.New("this MCP session was opened by another subject")
)

// bearerToken extracts the token from the Authorization header, the only
// bearer method airlock accepts (RFC 6750 §2.1).
func bearerToken(r *http.Request) (string, error) {
	if r.URL.Query().Has("access_token") {
		return "", errQueryToken
	}
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", ErrNoToken
	case 1:
	default:
		return "", errMalformedAuthz
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errMalformedAuthz
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t,\"") {
		return "", errMalformedAuthz
	}
	return token, nil
}

// refuseRequest answers a refused request and logs one line saying why.
func (rs *ResourceServer) refuseRequest(w http.ResponseWriter, r *http.Request, err error, raw string) {
	status, challenge, desc := rs.classify(err)
	attrs := []any{
		keyStatus, status,
		keyReason, refusalReason(err),
		keyMethod, r.Method,
		keyPath, r.URL.Path,
		keyRemote, r.RemoteAddr,
		keyError, desc,
	}
	if raw != "" {
		attrs = append(attrs, keyTokenFP, Fingerprint(raw))
	}
	if sid := r.Header.Get(sessionHeader); sid != "" {
		attrs = append(attrs, keySession, Fingerprint(sid))
	}
	var se *ScopeError
	if errors.As(err, &se) {
		attrs = append(attrs, keyMissing, se.Missing)
	}
	level := slog.LevelInfo
	if status == http.StatusForbidden || status == http.StatusServiceUnavailable {
		level = slog.LevelWarn
	}
	rs.logger.Log(r.Context(), level, "request refused", attrs...)

	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"error":             oauthError(status, err),
		"error_description": desc,
	})
}

// classify maps a refusal to its status, WWW-Authenticate challenge and a
// description safe to show (it never contains the token).
func (rs *ResourceServer) classify(err error) (status int, challenge, desc string) {
	md := fmt.Sprintf("resource_metadata=%q", rs.metadataURL)
	var se *ScopeError
	var ue *UnavailableError
	switch {
	case errors.Is(err, ErrNoToken):
		// RFC 6750 §3.1: no error code when no credentials were sent.
		return http.StatusUnauthorized, "Bearer " + md + rs.scopeParam(), "an access token is required"
	case errors.Is(err, errQueryToken):
		return http.StatusBadRequest, fmt.Sprintf("Bearer %s, error=\"invalid_request\", error_description=%q", md, err.Error()), err.Error()
	case errors.Is(err, errMalformedAuthz):
		return http.StatusUnauthorized, fmt.Sprintf("Bearer %s, error=\"invalid_request\", error_description=%q", md, err.Error()), err.Error()
	case errors.Is(err, errSessionSubject):
		return http.StatusForbidden, "", err.Error()
	case errors.As(err, &se):
		return http.StatusForbidden,
			fmt.Sprintf("Bearer error=\"insufficient_scope\", scope=%q, %s, error_description=%q", strings.Join(se.Required, " "), md, se.Error()),
			se.Error()
	case errors.As(err, &ue):
		return http.StatusServiceUnavailable, "", ue.Error()
	}
	desc = "invalid token"
	if reason := ReasonOf(err); reason != "" {
		desc = "invalid token: " + strings.ReplaceAll(reason, "_", " ")
	}
	return http.StatusUnauthorized, fmt.Sprintf("Bearer %s, error=\"invalid_token\", error_description=%q", md, desc), desc
}

// scopeParam is the scope hint the MCP specification asks for in the 401
// challenge, when scopes are required.
func (rs *ResourceServer) scopeParam() string {
	req := rs.verifier.Config().RequiredScopes
	if len(req) == 0 {
		return ""
	}
	return fmt.Sprintf(", scope=%q", strings.Join(req, " "))
}

func refusalReason(err error) string {
	switch {
	case errors.Is(err, ErrNoToken):
		return "no_token"
	case errors.Is(err, errQueryToken):
		return "query_token"
	case errors.Is(err, errMalformedAuthz):
		return "malformed_header"
	case errors.Is(err, errSessionSubject):
		return "session_subject"
	}
	if r := ReasonOf(err); r != "" {
		return r
	}
	return "unknown"
}

func oauthError(status int, err error) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request"
	case http.StatusForbidden:
		if errors.Is(err, errSessionSubject) {
			return "access_denied"
		}
		return "insufficient_scope"
	case http.StatusServiceUnavailable:
		return "temporarily_unavailable"
	}
	if errors.Is(err, ErrNoToken) {
		return "unauthorized"
	}
	if errors.Is(err, errMalformedAuthz) {
		return "invalid_request"
	}
	return "invalid_token"
}

// sessionAllows reports whether principal may use session sid. A session
// airlock has not seen assigned passes: the MCP server answers it (404).
func (rs *ResourceServer) sessionAllows(sid, principal string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	b, ok := rs.sessions[sid]
	if !ok {
		return true
	}
	if b.principal != principal {
		return false
	}
	b.lastSeen = rs.now()
	rs.sessions[sid] = b
	return true
}

// bindSession records that principal opened session sid.
func (rs *ResourceServer) bindSession(sid, principal string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := rs.now()
	if _, exists := rs.sessions[sid]; !exists {
		for id, b := range rs.sessions { // prune idle bindings as new ones come
			if now.Sub(b.lastSeen) > sessionIdleTTL {
				delete(rs.sessions, id)
			}
		}
	}
	if b, exists := rs.sessions[sid]; exists && b.principal != principal {
		return // never rebind a session to someone else
	}
	rs.sessions[sid] = sessionBinding{principal: principal, lastSeen: now}
}

func (rs *ResourceServer) endSession(sid string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.sessions, sid)
}

// sessionWriter watches the response for a newly assigned session ID.
type sessionWriter struct {
	http.ResponseWriter
	rs             *ResourceServer
	principal      string
	requestSession string
	method         string
	status         int
}

func (w *sessionWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		if sid := w.Header().Get(sessionHeader); sid != "" && code < 300 {
			w.rs.bindSession(sid, w.principal)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *sessionWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *sessionWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *sessionWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijacking not supported")
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *sessionWriter) finish() {
	if w.method == http.MethodDelete && w.requestSession != "" && w.status < 300 {
		w.rs.endSession(w.requestSession)
	}
}

func contains(ss []string, s string) bool {
	for _, e := range ss {
		if e == s {
			return true
		}
	}
	return false
}
