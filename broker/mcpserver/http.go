package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/policy"
)

// Defaults of HTTPConfig, the same as the embedded config defaults (the http
// block; a test in cmd/airlock holds them together). docs/config.md gives
// the reason for each.
const (
	DefaultMaxSessions            = 1000
	DefaultMaxSessionsPerIdentity = 100
	DefaultSessionIdleTimeout     = 10 * time.Minute
	DefaultMaxRequestBytes        = 1 << 20
	DefaultMaxInitializeBytes     = 16 << 10
)

// maxHeartbeat is the longest an open event stream goes without a ping. A
// ping written keeps the stream's session from idling out, so it is also at
// most a third of the idle timeout.
const maxHeartbeat = 30 * time.Second

// HTTPConfig configures the streamable HTTP transport of a Server: what it
// accepts (request sizes, origins) and what it keeps (sessions, for how
// long). Zero values take the defaults.
type HTTPConfig struct {
	// MaxSessions bounds the MCP sessions kept at once, all callers
	// together; MaxSessionsPerIdentity those of one caller (issuer and
	// subject).
	MaxSessions            int
	MaxSessionsPerIdentity int
	// SessionIdleTimeout ends a session that made no request for this
	// long. An open event stream is pinged often enough never to idle out.
	SessionIdleTimeout time.Duration
	// MaxRequestBytes bounds one request body; MaxInitializeBytes one
	// initialize request, where all a session keeps from its client
	// (clientInfo, capabilities) comes from.
	MaxRequestBytes    int64
	MaxInitializeBytes int64

	// PublicURL (the configured public_url, may be empty) and Listen (the
	// address actually listened on) give airlock's own origins; a browser
	// may call from those and from AllowedOrigins (scheme://host[:port]).
	PublicURL      string
	Listen         string
	AllowedOrigins []string

	// Authenticate, if set, wraps the handler after the Origin check; the
	// identity it verifies must be in the request context by the time the
	// Server's IdentityFunc reads it.
	Authenticate func(http.Handler) http.Handler
	// ContextFunc adds to each MCP request's context what tool handlers
	// need from the HTTP request (the verified identity).
	ContextFunc server.HTTPContextFunc

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics
	Now        func() time.Time
}

// CheckAndSetDefaults validates the config and fills in defaults.
func (c *HTTPConfig) CheckAndSetDefaults() error {
	for _, b := range []struct {
		name string
		v    int64
	}{
		{"MaxSessions", int64(c.MaxSessions)}, {"MaxSessionsPerIdentity", int64(c.MaxSessionsPerIdentity)},
		{"SessionIdleTimeout", int64(c.SessionIdleTimeout)}, {"MaxRequestBytes", c.MaxRequestBytes},
		{"MaxInitializeBytes", c.MaxInitializeBytes},
	} {
		if b.v < 0 {
			return fmt.Errorf("mcpserver: %s is negative", b.name)
		}
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxSessionsPerIdentity == 0 {
		c.MaxSessionsPerIdentity = min(DefaultMaxSessionsPerIdentity, c.MaxSessions)
	}
	if c.MaxSessionsPerIdentity > c.MaxSessions {
		return fmt.Errorf("mcpserver: MaxSessionsPerIdentity (%d) is more than MaxSessions (%d)", c.MaxSessionsPerIdentity, c.MaxSessions)
	}
	if c.SessionIdleTimeout == 0 {
		c.SessionIdleTimeout = DefaultSessionIdleTimeout
	}
	if c.SessionIdleTimeout < time.Second {
		return fmt.Errorf("mcpserver: SessionIdleTimeout %s is under a second", c.SessionIdleTimeout)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxInitializeBytes == 0 {
		c.MaxInitializeBytes = min(DefaultMaxInitializeBytes, c.MaxRequestBytes)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	_, err := c.origins()
	return err
}

// origins returns the set of origins browsers may call from.
func (c *HTTPConfig) origins() (map[string]bool, error) {
	set := map[string]bool{}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("mcpserver: public URL %q is not an absolute URL", c.PublicURL)
		}
		o, ok := Origin(u.Scheme + "://" + u.Host)
		if !ok {
			return nil, fmt.Errorf("mcpserver: public URL %q has no http(s) origin", c.PublicURL)
		}
		set[o] = true
	}
	if c.Listen != "" {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("mcpserver: listen address %q: %w", c.Listen, err)
		}
		hosts := []string{host}
		if ip := net.ParseIP(host); host == "" || host == "localhost" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
			// A page on this machine at airlock's own port is airlock.
			hosts = []string{"localhost", "127.0.0.1", "::1"}
		}
		for _, h := range hosts {
			o, _ := Origin("http://" + net.JoinHostPort(h, port))
			set[o] = true
		}
	}
	for _, a := range c.AllowedOrigins {
		o, ok := Origin(a)
		if !ok {
			return nil, fmt.Errorf("mcpserver: allowed origin %q is not scheme://host[:port]", a)
		}
		set[o] = true
	}
	return set, nil
}

// Origin returns s as browsers write it in the Origin header (lower case,
// without a default port), and whether s is an http(s) origin at all: no
// path, query, fragment or user.
func Origin(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.ContainsAny(s, "?#") {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if u.Scheme == "http" && port == "80" || u.Scheme == "https" && port == "443" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return u.Scheme + "://" + host, true
}

// HTTPHandler serves a Server over streamable HTTP (mcp-go), in front of
// which it checks every request's Origin, bounds its body, and admits a
// request that would open a session only while the caller and everyone
// together are under their caps. mcp-go ends sessions that idle out.
//
//	request ─→ Origin check ─→ body bound ─→ Authenticate ─→ admission ─→ mcp-go
//	              403              413                         413, 429
type HTTPHandler struct {
	cfg        HTTPConfig
	sessions   *sessionTable
	tasks      *tasks
	identity   IdentityFunc
	origins    map[string]bool
	streamable *server.StreamableHTTPServer
	next       http.Handler
	sweep      time.Duration
	refused    *prometheus.CounterVec // nil without a Registerer
}

// Reasons a request is refused, in logs and metrics.
const (
	reasonOrigin          = "origin_not_allowed"
	reasonBodyTooLarge    = "body_too_large"
	reasonInitialize      = "initialize_too_large"
	reasonSessionsTotal   = "too_many_sessions"
	reasonSessionsPerUser = "too_many_sessions_for_identity"
	reasonNoIdentity      = "no_identity"
	reasonNoSession       = "no_session"
)

// Log attribute keys.
const (
	keyStatus  = "status"
	keyReason  = "reason"
	keyMethod  = "method"
	keyPath    = "path"
	keyRemote  = "remote"
	keySubject = "subject"
	keyOrigin  = "origin"
	keyLimit   = "limit"
	keyBytes   = "bytes"
	keyRetry   = "retry_after"
)

// codeTooManySessions is the JSON-RPC error code of a 429: a server error
// (the range -32000 to -32099 is the implementation's).
const codeTooManySessions = -32000

// HTTPHandler returns the streamable HTTP transport of s. Call it once.
func (s *Server) HTTPHandler(cfg HTTPConfig) (*HTTPHandler, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	origins, _ := cfg.origins()
	h := &HTTPHandler{
		cfg:      cfg,
		sessions: s.sessions,
		tasks:    s.tasks,
		identity: s.identity,
		origins:  origins,
		// As mcp-go's sweeper runs: every half ttl, at least every second.
		sweep: max(cfg.SessionIdleTimeout/2, time.Second),
	}
	opts := []server.StreamableHTTPOption{
		server.WithEndpointPath("/mcp"),
		server.WithStreamableHTTPLogger(slog.New(fingerprintSessions{cfg.Logger.Handler()})),
		server.WithSessionIdleTTL(cfg.SessionIdleTimeout),
		server.WithHeartbeatInterval(min(maxHeartbeat, cfg.SessionIdleTimeout/3)),
	}
	if cfg.ContextFunc != nil {
		opts = append(opts, server.WithHTTPContextFunc(cfg.ContextFunc))
	}
	if cfg.Registerer != nil {
		h.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_mcp_requests_refused_total",
			Help: "Requests to /mcp refused before the MCP server saw them, by reason.",
		}, []string{"reason"})
		for _, r := range []string{reasonOrigin, reasonBodyTooLarge, reasonInitialize, reasonSessionsTotal, reasonSessionsPerUser, reasonNoIdentity} {
			h.refused.WithLabelValues(r)
		}
		gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "airlock_mcp_sessions",
			Help: "MCP sessions held on /mcp, all callers together: sessions, open subscriptions/listen streams and requests opening one.",
		}, func() float64 { return float64(h.sessions.slots()) })
		for _, c := range []prometheus.Collector{h.refused, gauge} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("mcpserver: registering metrics: %w", err)
			}
		}
	}
	// Built after the options: a sweeper starts with it.
	h.streamable = server.NewStreamableHTTPServer(s.mcp, opts...)
	h.next = http.HandlerFunc(h.admit)
	if cfg.Authenticate != nil {
		h.next = cfg.Authenticate(h.next)
	}
	return h, nil
}

// Sessions returns the number of MCP sessions mcp-go holds registered.
func (h *HTTPHandler) Sessions() int { return h.sessions.count() }

// Shutdown ends every session and stops the idle sweeper.
func (h *HTTPHandler) Shutdown(ctx context.Context) error { return h.streamable.Shutdown(ctx) }

func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin, ok := h.originAllowed(r); !ok {
		h.refuse(w, r, refusal{
			status: http.StatusForbidden, reason: reasonOrigin,
			message: fmt.Sprintf("requests from the web page at %q may not reach this MCP endpoint (a DNS rebinding defence); an administrator can allow that origin with http.allowed_origins", origin),
			attrs:   []any{keyOrigin, origin},
		})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxRequestBytes)
	h.next.ServeHTTP(w, r)
}

// originAllowed checks the Origin header, as the MCP transport asks
// (2025-11-25, "Security Warning"): none at all (a client that is not a
// browser) passes; one of airlock's own or an allowed origin passes;
// anything else, "null" included, does not. The origin is returned,
// shortened, for messages.
func (h *HTTPHandler) originAllowed(r *http.Request) (string, bool) {
	values := r.Header.Values("Origin")
	switch len(values) {
	case 0:
		return "", true
	case 1:
	default:
		return shorten(strings.Join(values, ", "), 200), false
	}
	o, ok := Origin(values[0])
	return shorten(values[0], 200), ok && h.origins[o]
}

// admit runs after authentication. It reads a POST's body (bounded) to see
// its JSON-RPC method, bounds an initialize request, and lets a request that
// may open a session through only with a slot reserved for its caller.
func (h *HTTPHandler) admit(w http.ResponseWriter, r *http.Request) {
	sessionID := r.Header.Get(server.HeaderKeySessionID)
	opens := false
	var (
		rpcID json.RawMessage
		body  []byte
	)
	switch r.Method {
	case http.MethodPost:
		var err error
		body, err = io.ReadAll(r.Body)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				h.refuse(w, r, refusal{
					status: http.StatusRequestEntityTooLarge, reason: reasonBodyTooLarge,
					message: fmt.Sprintf("the request body is larger than %d bytes, the most this server accepts (http.max_request_bytes)", tooLarge.Limit),
					attrs:   []any{keyLimit, tooLarge.Limit},
				})
				return
			}
			writeRPCError(w, http.StatusBadRequest, nil, mcp.PARSE_ERROR, "the request body could not be read")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		// A body that is not a JSON-RPC message goes on: mcp-go answers it.
		if json.Unmarshal(body, &msg) == nil {
			rpcID = msg.ID
			// An initialize opens a session, and a subscriptions/listen
			// (protocol 2026-07-28) holds one for as long as its stream is
			// open: what either keeps comes from the request.
			if m := mcp.MCPMethod(msg.Method); m == mcp.MethodInitialize || m == mcp.MethodSubscriptionsListen {
				if int64(len(body)) > h.cfg.MaxInitializeBytes {
					h.refuse(w, r, refusal{
						status: http.StatusRequestEntityTooLarge, reason: reasonInitialize, id: rpcID,
						message: fmt.Sprintf("the %s request is %d bytes, more than the %d this server keeps for a session (http.max_initialize_bytes): send a shorter clientInfo, fewer capabilities or fewer subscriptions", m, len(body), h.cfg.MaxInitializeBytes),
						attrs:   []any{keyBytes, len(body), keyLimit, h.cfg.MaxInitializeBytes},
					})
					return
				}
				opens = true
			}
		}
	case http.MethodGet:
		// An event stream belongs to a session this server opened: without
		// one, mcp-go would invent a session id for the stream and keep it
		// after the stream ends (memory a client could grow without bound).
		// 2026-07-28 has no GET stream; mcp-go refuses those itself.
		if sessionID == "" && !mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion)) {
			h.refuse(w, r, refusal{status: http.StatusBadRequest, reason: reasonNoSession,
				message: "an event stream (GET /mcp) needs the Mcp-Session-Id header of a session this server opened: send initialize first"})
			return
		}
		// An event stream for a session mcp-go does not hold opens one.
		opens = !h.sessions.has(sessionID)
	}
	if !opens {
		h.sessions.touch(sessionID)
		if req, ok := h.taskRequest(r, body, sessionID); ok {
			h.serveTask(w, r, req, sessionID)
			return
		}
		h.streamable.ServeHTTP(w, r)
		return
	}

	id, err := h.identity(r.Context())
	if err != nil {
		h.refuse(w, r, refusal{status: http.StatusForbidden, reason: reasonNoIdentity, id: rpcID, message: err.Error()})
		return
	}
	key := id.Issuer + "\x00" + id.Subject
	res, scope := h.sessions.reserve(key, h.cfg.MaxSessions, h.cfg.MaxSessionsPerIdentity)
	if scope != capNone {
		h.refuse(w, r, h.tooMany(scope, key, id, rpcID))
		return
	}
	defer h.sessions.release(res)
	h.streamable.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), reservationKey{}, res)))
}

// taskRequest returns the request the task layer answers (tasks.go), when
// the POST body is one: of protocol 2026-07-28 (stateless, no session), or
// of 2025-11-25 on a session mcp-go holds. Anything mcp-go refuses before
// reading the message — a body that is not application/json, a 2025-11-25
// request on no session or an unknown one, or naming a protocol version
// mcp-go does not know — goes on to mcp-go, which refuses it as it does.
func (h *HTTPHandler) taskRequest(r *http.Request, body []byte, sessionID string) (*rpcRequest, bool) {
	if r.Method != http.MethodPost {
		return nil, false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, false
	}
	req, ok := h.tasks.claim(body, r.Header.Get(mcp.HeaderProtocolVersion))
	switch {
	case !ok:
		return nil, false
	case req.gen.modern:
		return req, true
	case sessionID == "" || !h.sessions.has(sessionID),
		req.gen.headerVersion != "" && !mcp.IsValidProtocolVersion(req.gen.headerVersion):
		return nil, false
	}
	return req, true
}

// serveTask answers a request of the task layer with a JSON response. A
// request of protocol 2026-07-28 is answered on no session: the
// Mcp-Session-Id it may carry is ignored, as mcp-go ignores it.
func (h *HTTPHandler) serveTask(w http.ResponseWriter, r *http.Request, req *rpcRequest, sessionID string) {
	if req.gen.modern {
		sessionID = ""
	}
	resp, status := h.tasks.handle(r.Context(), req, sessionID, r.Header)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(resp, '\n'))
}

func (h *HTTPHandler) tooMany(scope capScope, key string, id policy.Identity, rpcID json.RawMessage) refusal {
	wait := h.sessions.retryAfter(scope, key, h.cfg.SessionIdleTimeout, h.sweep)
	rf := refusal{status: http.StatusTooManyRequests, id: rpcID, retryAfter: wait, attrs: []any{keySubject, id.Subject, keyRetry, wait}}
	if scope == capIdentity {
		rf.reason = reasonSessionsPerUser
		rf.message = fmt.Sprintf("you already hold %d MCP sessions, the most one caller may (http.max_sessions_per_identity); end one (DELETE /mcp with its Mcp-Session-Id) or retry in %s, when an idle one expires",
			h.cfg.MaxSessionsPerIdentity, wait)
		rf.attrs = append(rf.attrs, keyLimit, h.cfg.MaxSessionsPerIdentity)
		return rf
	}
	rf.reason = reasonSessionsTotal
	rf.message = fmt.Sprintf("this server already holds %d MCP sessions, the most it keeps (http.max_sessions); retry in %s, when an idle one expires", h.cfg.MaxSessions, wait)
	rf.attrs = append(rf.attrs, keyLimit, h.cfg.MaxSessions)
	return rf
}

// refusal is a request answered before mcp-go sees it.
type refusal struct {
	status     int
	reason     string
	message    string          // for the client: what bound, and what to do
	id         json.RawMessage // the JSON-RPC request's id, when known
	retryAfter time.Duration
	attrs      []any // for the log line
}

// refuse answers rf, with a JSON-RPC error body to a POST (which expects a
// JSON-RPC response) and plain text to anything else, and logs one line.
func (h *HTTPHandler) refuse(w http.ResponseWriter, r *http.Request, rf refusal) {
	attrs := append([]any{keyStatus, rf.status, keyReason, rf.reason, keyMethod, r.Method, keyPath, r.URL.Path, keyRemote, r.RemoteAddr}, rf.attrs...)
	h.cfg.Logger.LogAttrs(r.Context(), slog.LevelWarn, "request refused", argsToAttrs(attrs)...)
	if h.refused != nil {
		h.refused.WithLabelValues(rf.reason).Inc()
	}
	if rf.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(rf.retryAfter/time.Second)))
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(rf.status)
		_, _ = io.WriteString(w, rf.message+"\n")
		return
	}
	code := mcp.INVALID_REQUEST
	if rf.status == http.StatusTooManyRequests {
		code = codeTooManySessions
	}
	writeRPCError(w, rf.status, rf.id, code, rf.message)
}

// writeRPCError writes a JSON-RPC error response. id is echoed when it is a
// JSON-RPC id (a string or a number), else null.
func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, message string) {
	if len(id) == 0 || (id[0] != '"' && id[0] != '-' && (id[0] < '0' || id[0] > '9')) {
		id = json.RawMessage("null")
	}
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: mcp.JSONRPC_VERSION, ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, message}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func argsToAttrs(args []any) []slog.Attr {
	out := make([]slog.Attr, 0, len(args)/2)
	for i := 0; i+1 < len(args); i += 2 {
		out = append(out, slog.Any(args[i].(string), args[i+1]))
	}
	return out
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// fingerprintSessions is the slog handler of mcp-go's transport logger. mcp-go
// logs session IDs as they are (when it sweeps an idle session, for one);
// airlock logs them by fingerprint, as authn does.
type fingerprintSessions struct{ slog.Handler }

func (h fingerprintSessions) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(sessionFingerprint(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h fingerprintSessions) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = sessionFingerprint(a)
	}
	return fingerprintSessions{h.Handler.WithAttrs(out)}
}

func (h fingerprintSessions) WithGroup(name string) slog.Handler {
	return fingerprintSessions{h.Handler.WithGroup(name)}
}

func sessionFingerprint(a slog.Attr) slog.Attr {
	switch strings.ToLower(a.Key) {
	case "session", "sessionid", "session_id":
		return slog.String("session_fp", authn.Fingerprint(a.Value.String()))
	}
	return a
}
