package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// newBroker returns a broker over an in-memory store with a postgres
// resource stand-in, for the tools on offer.
func newBroker(t *testing.T) *broker.Broker {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://:memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	var b *broker.Broker
	leases, err := lease.New(lease.Config{Store: st, Resolve: func(name string) (tools.Resource, bool) {
		r, ok := b.State().Resources[name]
		return r, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	b, err = broker.New(broker.Config{
		Tools:    []tools.Tool{kindTool{"query_thing", "postgres"}, kindTool{"run_thing", "ssh"}},
		Recorder: rec, Leases: leases,
	}, stateWith(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type userKey struct{}

// byHeader authenticates a test request as the user its X-Test-User names.
func byHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, r.Header.Get("X-Test-User"))))
	})
}

func identityFromHeader(ctx context.Context) (policy.Identity, error) {
	u, _ := ctx.Value(userKey{}).(string)
	if u == "" {
		return policy.Identity{}, fmt.Errorf("no test user")
	}
	return policy.Identity{Subject: u, Issuer: "https://idp.test/", Method: "oidc"}, nil
}

// lockedLog is a slog destination the test reads while the server writes.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// frontDoor is a Server's HTTP handler on a real listener.
type frontDoor struct {
	srv  *Server
	h    *HTTPHandler
	url  string // .../mcp
	addr string
	log  *lockedLog
	reg  *prometheus.Registry
}

func startFrontDoor(t *testing.T, cfg HTTPConfig) *frontDoor {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fd := &frontDoor{srv: New(newBroker(t), identityFromHeader, "test", nil), log: &lockedLog{}, reg: prometheus.NewRegistry(), addr: ln.Addr().String()}
	cfg.Listen = ln.Addr().String()
	if cfg.Authenticate == nil {
		cfg.Authenticate = byHeader
	}
	cfg.Logger = slog.New(slog.NewTextHandler(fd.log, nil))
	cfg.Registerer = fd.reg
	fd.h, err = fd.srv.HTTPHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", fd.h)
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fd.h.Shutdown(ctx)
		_ = hs.Shutdown(ctx)
	})
	fd.url = "http://" + ln.Addr().String() + "/mcp"
	return fd
}

// sessions returns the slots held (airlock_mcp_sessions).
func (fd *frontDoor) sessions() int { return fd.srv.sessions.slots() }

// metric returns the value of a gauge or counter, of the series whose one
// label has value label ("" for none).
func (fd *frontDoor) metric(t *testing.T, name, label string) float64 {
	t.Helper()
	families, err := fd.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() != label {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

// reply is what a raw HTTP request got.
type reply struct {
	status     int
	header     http.Header
	body       []byte
	rpcID      any
	rpcCode    int
	rpcMessage string
}

func (fd *frontDoor) do(t *testing.T, method, user string, body []byte, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, fd.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: b}
	var msg struct {
		ID    any `json:"id"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &msg) == nil && msg.Error != nil {
		r.rpcID, r.rpcCode, r.rpcMessage = msg.ID, msg.Error.Code, msg.Error.Message
	}
	return r
}

func initializeBody(id int, clientName string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "initialize", "params": map[string]any{
		"protocolVersion": mcp.LATEST_LEGACY_PROTOCOL_VERSION, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": clientName, "version": "1"},
	}})
	return b
}

// initialize opens a session as user and returns its id, or the reply that
// refused it.
func (fd *frontDoor) initialize(t *testing.T, user string) (string, reply) {
	t.Helper()
	r := fd.do(t, http.MethodPost, user, initializeBody(7, "t"), nil)
	return r.header.Get("Mcp-Session-Id"), r
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sessions are capped per identity and in total: the request past a cap is
// answered 429 with Retry-After and a JSON-RPC error naming the setting, and
// logged once; ending a session frees its slot.
func TestHTTPCapsSessions(t *testing.T) {
	fd := startFrontDoor(t, HTTPConfig{MaxSessions: 5, MaxSessionsPerIdentity: 3, SessionIdleTimeout: time.Hour})

	var alice []string
	for range 3 {
		sid, r := fd.initialize(t, "alice")
		if r.status != http.StatusOK || sid == "" {
			t.Fatalf("alice's initialize under the cap: %d %s", r.status, r.body)
		}
		alice = append(alice, sid)
	}
	r := fd.do(t, http.MethodPost, "alice", initializeBody(42, "t"), nil)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("alice's 4th session: status %d, want 429: %s", r.status, r.body)
	}
	if r.rpcCode != codeTooManySessions || r.rpcID != float64(42) || !strings.Contains(r.rpcMessage, "http.max_sessions_per_identity") {
		t.Errorf("alice's 4th session: JSON-RPC error %v %d %q, want id 42, code %d, naming http.max_sessions_per_identity", r.rpcID, r.rpcCode, r.rpcMessage, codeTooManySessions)
	}
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 3600 || secs > 3600+1800+1 {
		t.Errorf("Retry-After = %q, want the idle timeout plus a sweep (3600-5401 s)", r.header.Get("Retry-After"))
	}
	if r.header.Get("Mcp-Session-Id") != "" {
		t.Error("a refused initialize got a session id")
	}

	for range 2 {
		if sid, r := fd.initialize(t, "bob"); r.status != http.StatusOK || sid == "" {
			t.Fatalf("bob's initialize under the caps: %d %s", r.status, r.body)
		}
	}
	r = fd.do(t, http.MethodPost, "bob", initializeBody(1, "t"), nil)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.rpcMessage, "http.max_sessions)") {
		t.Fatalf("the 6th session of all: %d %q, want 429 naming http.max_sessions", r.status, r.rpcMessage)
	}
	if got := fd.h.Sessions(); got != 5 {
		t.Errorf("sessions kept = %d, want 5", got)
	}

	// An event stream for an unknown session would open one: refused too.
	r = fd.do(t, http.MethodGet, "bob", nil, map[string]string{"Mcp-Session-Id": "mcp-session-unknown"})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "http.max_sessions") {
		t.Errorf("GET for an unknown session at the cap: %d %q", r.status, r.body)
	}
	// One with no session at all is refused whatever the cap: mcp-go would
	// keep a session id it made up for it.
	r = fd.do(t, http.MethodGet, "bob", nil, nil)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "needs the Mcp-Session-Id header") {
		t.Errorf("GET without a session: %d %q, want 400 naming Mcp-Session-Id", r.status, r.body)
	}

	// alice ends one of hers: bob may open his third.
	if r := fd.do(t, http.MethodDelete, "alice", nil, map[string]string{"Mcp-Session-Id": alice[0], "Mcp-Protocol-Version": mcp.LATEST_LEGACY_PROTOCOL_VERSION}); r.status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if sid, r := fd.initialize(t, "bob"); r.status != http.StatusOK || sid == "" {
		t.Errorf("bob's initialize after alice ended a session: %d %s", r.status, r.body)
	}

	// One log line per refusal, with the reason and the subject, and no
	// session id.
	log := fd.log.String()
	if n := strings.Count(log, "reason=too_many_sessions_for_identity"); n != 1 {
		t.Errorf("%d log lines for the per-identity refusal, want 1:\n%s", n, log)
	}
	if n := strings.Count(log, "reason=too_many_sessions "); n != 2 {
		t.Errorf("%d log lines for the total refusals, want 2:\n%s", n, log)
	}
	if !strings.Contains(log, "subject=alice") || !strings.Contains(log, "status=429") {
		t.Errorf("the log does not say who was refused:\n%s", log)
	}
	for _, sid := range alice {
		if strings.Contains(log, sid) {
			t.Errorf("the log holds session id %s:\n%s", sid, log)
		}
	}
	if got := fd.metric(t, "airlock_mcp_requests_refused_total", reasonSessionsTotal); got != 2 {
		t.Errorf("airlock_mcp_requests_refused_total{reason=too_many_sessions} = %v, want 2", got)
	}
}

// Requests racing for the last slots never pass a cap: exactly the cap's
// worth of concurrent initializes succeed.
func TestHTTPCapHoldsUnderConcurrency(t *testing.T) {
	fd := startFrontDoor(t, HTTPConfig{MaxSessions: 10, MaxSessionsPerIdentity: 10, SessionIdleTimeout: time.Hour})
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch _, r := fd.initialize(t, "carol"); r.status {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
			default:
				t.Errorf("initialize %d: %d %s", i, r.status, r.body)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 10 || refused.Load() != 30 || fd.h.Sessions() != 10 {
		t.Errorf("40 concurrent initializes with a cap of 10: %d accepted, %d refused, %d kept", ok.Load(), refused.Load(), fd.h.Sessions())
	}
}

// A session idle for the timeout ends and frees its slot; one whose event
// stream is open is pinged and stays.
func TestHTTPIdleSessionsExpire(t *testing.T) {
	fd := startFrontDoor(t, HTTPConfig{MaxSessions: 2, MaxSessionsPerIdentity: 2, SessionIdleTimeout: time.Second})

	// A real client with its event stream open.
	c, err := client.NewStreamableHttpClient(fd.url, transport.WithContinuousListening(), transport.WithHTTPHeaders(map[string]string{"X-Test-User": "dave"}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION, ClientInfo: mcp.Implementation{Name: "streaming", Version: "1"}}}); err != nil {
		t.Fatal(err)
	}
	streaming := c.GetSessionId()

	// And one that goes away without a DELETE.
	abandoned, r := fd.initialize(t, "dave")
	if r.status != http.StatusOK {
		t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	if _, r := fd.initialize(t, "dave"); r.status != http.StatusTooManyRequests {
		t.Fatalf("initialize at the cap: %d, want 429", r.status)
	}
	start := time.Now()
	waitFor(t, "the abandoned session did not expire", 5*time.Second, func() bool { return !fd.srv.sessions.has(abandoned) })
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("the idle session ended after %s, before the 1s timeout", took)
	}
	if !fd.srv.sessions.has(streaming) {
		t.Fatal("the session with its event stream open expired")
	}
	// It is still kept after several timeouts.
	time.Sleep(2500 * time.Millisecond)
	if !fd.srv.sessions.has(streaming) {
		t.Error("the session with its event stream open expired after 3.5 s")
	}
	if _, r := fd.initialize(t, "dave"); r.status != http.StatusOK {
		t.Errorf("initialize once the idle session ended: %d %s", r.status, r.body)
	}
	// The client still works.
	if _, err := c.ListTools(ctx, mcp.ListToolsRequest{}); err != nil {
		t.Errorf("tools/list on the streaming session: %v", err)
	}
	// So does the one whose session ended: its requests are served without
	// a session, and bring none back.
	call, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": map[string]any{"name": broker.ListResourcesTool, "arguments": map[string]any{}}})
	r = fd.do(t, http.MethodPost, "dave", call, map[string]string{"Mcp-Session-Id": abandoned, "Mcp-Protocol-Version": mcp.LATEST_LEGACY_PROTOCOL_VERSION})
	if r.status != http.StatusOK || r.rpcCode != 0 || !strings.Contains(string(r.body), `"airlock/call_id"`) {
		t.Errorf("a tools/call on the expired session: %d %s", r.status, r.body)
	}
	if fd.srv.sessions.has(abandoned) {
		t.Error("a request on the expired session brought it back")
	}
	// mcp-go logs the sweep with the session's fingerprint, not its id.
	log := fd.log.String()
	if !strings.Contains(log, "Sweeping expired session") || !strings.Contains(log, "session_fp=") || strings.Contains(log, abandoned) {
		t.Errorf("the sweep is not logged by fingerprint:\n%s", log)
	}
}

// Bodies over MaxRequestBytes and initialize requests over
// MaxInitializeBytes are refused with 413 and a JSON-RPC error, and keep
// nothing.
func TestHTTPBoundsRequestSizes(t *testing.T) {
	fd := startFrontDoor(t, HTTPConfig{MaxRequestBytes: 64 << 10, MaxInitializeBytes: 4 << 10})

	big, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": map[string]any{"pad": strings.Repeat("x", 100<<10)}})
	r := fd.do(t, http.MethodPost, "erin", big, nil)
	if r.status != http.StatusRequestEntityTooLarge || r.rpcCode != mcp.INVALID_REQUEST || r.rpcID != nil || !strings.Contains(r.rpcMessage, "65536 bytes") || !strings.Contains(r.rpcMessage, "http.max_request_bytes") {
		t.Errorf("a 100 KiB body: %d %s", r.status, r.body)
	}

	r = fd.do(t, http.MethodPost, "erin", initializeBody(9, strings.Repeat("n", 8<<10)), nil)
	if r.status != http.StatusRequestEntityTooLarge || r.rpcID != float64(9) || !strings.Contains(r.rpcMessage, "http.max_initialize_bytes") {
		t.Errorf("an initialize with an 8 KiB client name: %d %s", r.status, r.body)
	}
	if r.header.Get("Mcp-Session-Id") != "" || fd.h.Sessions() != 0 {
		t.Errorf("an oversized initialize opened a session (%d kept)", fd.h.Sessions())
	}
	// The same request with a name of a sensible size is fine, and a
	// tools/call under the body bound (but over the initialize bound) too.
	sid, r := fd.initialize(t, "erin")
	if r.status != http.StatusOK {
		t.Fatalf("a small initialize: %d %s", r.status, r.body)
	}
	call, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": map[string]any{"name": "list_resources", "arguments": map[string]any{}, "_meta": map[string]any{"pad": strings.Repeat("y", 32<<10)}}})
	r = fd.do(t, http.MethodPost, "erin", call, map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": mcp.LATEST_LEGACY_PROTOCOL_VERSION})
	if r.status != http.StatusOK || r.rpcCode != 0 {
		t.Errorf("a 32 KiB tools/call: %d %s", r.status, r.body)
	}
	log := fd.log.String()
	for _, reason := range []string{"reason=body_too_large", "reason=initialize_too_large"} {
		if strings.Count(log, reason) != 1 {
			t.Errorf("want one log line with %s:\n%s", reason, log)
		}
	}
	if strings.Contains(log, "nnnnnnnn") {
		t.Error("the log holds the request body")
	}
}

// The Origin header is validated (MCP transport, 2025-11-25): none, airlock's
// own and allowed origins pass; any other is refused with 403 before
// authentication.
func TestHTTPValidatesOrigin(t *testing.T) {
	authenticated := atomic.Int64{}
	fd := startFrontDoor(t, HTTPConfig{
		PublicURL:      "https://Airlock.example.com/mcp",
		AllowedOrigins: []string{"https://agents.example.com:8443"},
		Authenticate: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				authenticated.Add(1)
				byHeader(next).ServeHTTP(w, r)
			})
		},
	})
	_, port, _ := net.SplitHostPort(fd.addr)
	for _, o := range []string{"", "https://airlock.example.com", "https://AIRLOCK.example.com:443", "http://127.0.0.1:" + port, "http://localhost:" + port, "http://[::1]:" + port, "https://agents.example.com:8443"} {
		h := map[string]string{}
		if o != "" {
			h["Origin"] = o
		}
		if r := fd.do(t, http.MethodPost, "frank", initializeBody(1, "t"), h); r.status != http.StatusOK {
			t.Errorf("Origin %q: %d %s, want 200", o, r.status, r.body)
		}
	}
	before := authenticated.Load()
	for _, o := range []string{"http://evil.example.com", "null", "https://airlock.example.com.evil.test", "http://airlock.example.com", "http://localhost:1", "https://agents.example.com", "file://"} {
		r := fd.do(t, http.MethodPost, "frank", initializeBody(1, "t"), map[string]string{"Origin": o})
		if r.status != http.StatusForbidden || r.rpcCode != mcp.INVALID_REQUEST || r.rpcID != nil || !strings.Contains(r.rpcMessage, "http.allowed_origins") {
			t.Errorf("Origin %q: %d %s, want 403 with a JSON-RPC error naming http.allowed_origins", o, r.status, r.body)
		}
	}
	if r := fd.do(t, http.MethodGet, "frank", nil, map[string]string{"Origin": "http://evil.example.com"}); r.status != http.StatusForbidden || !strings.Contains(string(r.body), "http.allowed_origins") {
		t.Errorf("GET from another origin: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest(http.MethodPost, fd.url, bytes.NewReader(initializeBody(1, "t")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Add("Origin", "https://airlock.example.com")
	req.Header.Add("Origin", "http://evil.example.com")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("two Origin headers: %v %v", resp, err)
	}
	if n := authenticated.Load() - before; n != 0 {
		t.Errorf("%d requests from other origins reached authentication", n)
	}
	if n := strings.Count(fd.log.String(), "reason=origin_not_allowed"); n != 9 {
		t.Errorf("%d log lines for refused origins, want 9:\n%s", n, fd.log.String())
	}
}

func TestOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://Example.COM":        "https://example.com",
		"https://example.com:443":    "https://example.com",
		"http://example.com:80":      "http://example.com",
		"http://example.com:8080":    "http://example.com:8080",
		"http://[::1]:8080":          "http://[::1]:8080",
		"https://example.com/":       "",
		"https://example.com/mcp":    "",
		"https://example.com?x":      "",
		"https://u@example.com":      "",
		"ftp://example.com":          "",
		"null":                       "",
		"":                           "",
		"https://":                   "",
		"https://example.com#frag":   "",
		"chrome-extension://abcdefg": "",
	} {
		got, ok := Origin(in)
		if got != want || ok != (want != "") {
			t.Errorf("Origin(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// A real client works through the front door, and tools/list_changed after
// a Sync reaches it over its event stream.
func TestHTTPClientThroughTheFrontDoor(t *testing.T) {
	fd := startFrontDoor(t, HTTPConfig{})
	var changed atomic.Int64
	c, err := client.NewStreamableHttpClient(fd.url, transport.WithContinuousListening(), transport.WithHTTPHeaders(map[string]string{"X-Test-User": "gina"}))
	if err != nil {
		t.Fatal(err)
	}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationToolsListChanged) {
			changed.Add(1)
		}
	})
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION, ClientInfo: mcp.Implementation{Name: "t", Version: "1"}}}); err != nil {
		t.Fatal(err)
	}
	res, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: broker.ListResourcesTool, Arguments: map[string]any{}}})
	if err != nil || res.IsError {
		t.Fatalf("list_resources: %v %+v", err, res)
	}
	// The stream is open once the server holds the session's listener;
	// give it a moment before changing the tools.
	time.Sleep(200 * time.Millisecond)
	fd.srv.broker.Swap(stateWith(t, "postgres", "ssh"))
	if !fd.srv.Sync() {
		t.Fatal("Sync reports no change")
	}
	waitFor(t, "no tools/list_changed reached the HTTP client", 5*time.Second, func() bool { return changed.Load() == 1 })
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	if !slices.Contains(names, "run_thing") {
		t.Errorf("tools after the reload: %v", names)
	}
	if fd.h.Sessions() != 1 || fd.metric(t, "airlock_mcp_sessions", "") != 1 {
		t.Errorf("sessions kept = %d, airlock_mcp_sessions = %v, want 1", fd.h.Sessions(), fd.metric(t, "airlock_mcp_sessions", ""))
	}
}

// A protocol 2026-07-28 client keeps no session, but its subscriptions/listen
// stream holds a slot for as long as it is open, and gets tools/list_changed.
func TestHTTPListenStreamsHoldASlot(t *testing.T) {
	fd := startFrontDoor(t, HTTPConfig{MaxSessions: 10, MaxSessionsPerIdentity: 1})
	ctx := context.Background()
	modern := func() *client.Client {
		t.Helper()
		c, err := client.NewStreamableHttpClient(fd.url, transport.WithHTTPHeaders(map[string]string{"X-Test-User": "hana"}))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		res, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ClientInfo: mcp.Implementation{Name: "modern", Version: "1"}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.ProtocolVersion != mcp.ProtocolVersion20260728 {
			t.Fatalf("negotiated %s, want %s", res.ProtocolVersion, mcp.ProtocolVersion20260728)
		}
		return c
	}
	a := modern()
	var changed atomic.Int64
	a.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationToolsListChanged) {
			changed.Add(1)
		}
	})
	if _, err := a.ListTools(ctx, mcp.ListToolsRequest{}); err != nil {
		t.Fatal(err)
	}
	if fd.h.Sessions() != 0 || fd.sessions() != 0 {
		t.Fatalf("a stateless client holds %d sessions, %d slots", fd.h.Sessions(), fd.sessions())
	}
	stop, err := a.ListenAsync(ctx, mcp.SubscriptionFilter{ToolsListChanged: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the listen stream holds no slot", 5*time.Second, func() bool { return fd.sessions() == 1 })
	time.Sleep(100 * time.Millisecond)
	fd.srv.broker.Swap(stateWith(t, "postgres", "ssh"))
	fd.srv.Sync()
	waitFor(t, "no tools/list_changed reached the listen stream", 5*time.Second, func() bool { return changed.Load() == 1 })

	b := modern()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Listen(lctx, mcp.SubscriptionFilter{ToolsListChanged: true}); err == nil || lctx.Err() != nil {
		t.Errorf("a second listen stream past the cap: %v, want a refusal", err)
	}
	if _, r := fd.initialize(t, "hana"); r.status != http.StatusTooManyRequests {
		t.Errorf("an initialize past the cap while the stream is open: %d", r.status)
	}
	stop()
	waitFor(t, "the closed listen stream still holds its slot", 5*time.Second, func() bool { return fd.sessions() == 0 })
	if _, r := fd.initialize(t, "hana"); r.status != http.StatusOK {
		t.Errorf("an initialize once the stream closed: %d %s", r.status, r.body)
	}
}
