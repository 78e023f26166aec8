package httpkind

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/airlock-mcp/airlock/tools"
)

// hostileServer serves everything the hostile table asks for under /v1/x/
// and counts requests and bytes written.
type hostileServer struct {
	hits    atomic.Int64
	written atomic.Int64
	other   string // URL of another origin, for redirects
}

func (h *hostileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.hits.Add(1)
	switch strings.TrimPrefix(r.URL.EscapedPath(), "/v1/x") {
	case "/ok":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=abc")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"ok": true, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery, "host": r.Host,
			"authorized": r.Header.Get("Authorization") == "Bearer api-token-1", "resource_header": r.Header.Get("X-Resource"),
		})
	case "/redirect-away":
		http.Redirect(w, r, h.other+"/steal", http.StatusFound)
	case "/redirect-same":
		http.Redirect(w, r, "/v1/x/ok", http.StatusFound)
	case "/huge", "/huge.json":
		ct := "text/plain; charset=utf-8"
		chunk := []byte(strings.Repeat("a", 32<<10))
		if strings.HasSuffix(r.URL.Path, ".json") {
			ct = "application/json"
			chunk = []byte(strings.Repeat(`"aaaaaaa",`, 32<<10/10))
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", fmt.Sprint(int64(2)<<30))
		var n int64
		if strings.HasSuffix(r.URL.Path, ".json") {
			m, _ := w.Write([]byte("["))
			n += int64(m)
		}
		for n < 2<<30 {
			m, err := w.Write(chunk[:min(int64(len(chunk)), 2<<30-n)])
			n += int64(m)
			h.written.Add(int64(m))
			if err != nil {
				return
			}
		}
	case "/image":
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
	case "/sniff":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"))
	default:
		http.NotFound(w, r)
	}
}

// TestHostileInput is the hostile list of issue 15 as one table: every way
// an agent could try to make http_request reach another host, climb out of
// the resource, smuggle a header, or exhaust airlock's memory, against real
// local servers (plain and TLS) and an injectable resolver.
func TestHostileInput(t *testing.T) {
	// Proxy variables are set for the whole test: airlock must ignore them.
	var proxyHits atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxyHits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxy.Close()
	for _, v := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"} {
		t.Setenv(v, proxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	var otherHits atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		_, _ = fmt.Fprintf(w, "stolen: %s", r.Header.Get("Authorization"))
	}))
	defer other.Close()

	plain := &hostileServer{other: other.URL}
	plainSrv := httptest.NewServer(plain)
	defer plainSrv.Close()
	secure := &hostileServer{other: other.URL}
	tlsSrv := httptest.NewTLSServer(secure)
	defer tlsSrv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsPort := tlsSrv.Listener.Addr().String()
	tlsPort = tlsPort[strings.LastIndexByte(tlsPort, ':')+1:]

	env := mapEnv{vars: map[string]string{"API_TOKEN": "api-token-1"}}
	api := open(t, env, fmt.Sprintf(`
name: api
base_url: %s/v1
methods: [GET, POST]
path_prefixes: [/x]
headers: {X-Resource: r1}
max_request_bytes: 1024
auth: {type: bearer, token_env: API_TOKEN}
grants:
  reader: {ttl: 10m}
`, plainSrv.URL))
	apiCred := mint(t, api, "reader")

	// httptest's TLS certificate is valid for example.com: these resources
	// name a host that only the injected resolver answers for.
	tlsResource := func(name, allow string, res Resolver) (*Resource, *Credential) {
		r := open(t, env, fmt.Sprintf(`
name: %s
base_url: https://example.com:%s/v1
%s
tls: {ca_file: %s}
grants:
  reader: {ttl: 10m}
`, name, tlsPort, allow, caFile), WithResolver(res))
		return r, mint(t, r, "reader")
	}
	pinned, pinnedCred := tlsResource("pinned", "allow_private: [127.0.0.1]", newScriptedResolver("127.0.0.1"))
	rebindResolver := newScriptedResolver("127.0.0.1", "169.254.169.254")
	rebind, rebindCred := tlsResource("rebind", "allow_private: [127.0.0.1]", rebindResolver)
	mixed, mixedCred := tlsResource("mixed", "", newScriptedResolver("93.184.216.34,127.0.0.1"))
	loopbackOnly, loopbackCred := tlsResource("loopback", "", newScriptedResolver("127.0.0.1"))

	type exec struct {
		res  *Resource
		cred *Credential
	}
	apiX := exec{api, apiCred}
	cases := []struct {
		name string
		on   exec
		args string
		// Exactly one of decodeErr, execErr, check is set.
		decodeErr string
		execErr   error
		errText   string
		check     func(t *testing.T, out *tools.Output)
	}{
		{name: "absolute URL in path", args: `{"path": "https://evil.example/x/ok"}`, decodeErr: "is an absolute URL"},
		{name: "absolute URL with another scheme", args: `{"path": "file:///etc/passwd"}`, decodeErr: "is an absolute URL"},
		{name: "scheme-relative URL", args: `{"path": "//evil.example/x/ok"}`, decodeErr: "scheme-relative"},
		{name: "dot-dot", args: `{"path": "/x/../admin"}`, decodeErr: "dot segment"},
		{name: "trailing dot-dot", args: `{"path": "/x/.."}`, decodeErr: "dot segment"},
		{name: "encoded dot-dot", args: `{"path": "/x/%2e%2e/admin"}`, decodeErr: "dot segment"},
		{name: "mixed-case encoded dot-dot", args: `{"path": "/x/%2E%2e/admin"}`, decodeErr: "dot segment"},
		{name: "half-encoded dot-dot", args: `{"path": "/x/.%2e/admin"}`, decodeErr: "dot segment"},
		{name: "double-encoded dot-dot", args: `{"path": "/x/%252e%252e/admin"}`, decodeErr: "dot segment"},
		{name: "triple-encoded dot-dot", args: `{"path": "/x/%25252e%25252e/admin"}`, decodeErr: "dot segment"},
		{name: "encoded slash with dot-dot", args: `{"path": "/x/..%2fadmin"}`, decodeErr: "encodes / or \\"},
		{name: "double-encoded slash", args: `{"path": "/x/a%252fb"}`, decodeErr: "encodes / or \\"},
		{name: "backslash", args: `{"path": "/x\\..\\admin"}`, decodeErr: "backslash"},
		{name: "encoded backslash", args: `{"path": "/x/..%5cadmin"}`, decodeErr: "encodes / or \\"},
		{name: "query smuggled in path", args: `{"path": "/x/ok?admin=1"}`, decodeErr: "give query parameters in query"},
		{name: "NUL in path", args: `{"path": "/x/ok\u0000"}`, decodeErr: "control character"},
		{name: "encoded CRLF in path", args: `{"path": "/x/ok%0d%0aHost:%20evil"}`, decodeErr: "encodes a control character"},
		{name: "empty segment", args: `{"path": "/x//ok"}`, decodeErr: "empty segment"},
		{name: "CRLF in header value", args: `{"path": "/x/ok", "headers": {"X-A": "v\r\nHost: evil.example"}}`, decodeErr: "no CR, LF or NUL"},
		{name: "LF in header value", args: `{"path": "/x/ok", "headers": {"X-A": "v\nX-B: w"}}`, decodeErr: "no CR, LF or NUL"},
		{name: "NUL in header value", args: `{"path": "/x/ok", "headers": {"X-A": "v\u0000"}}`, decodeErr: "no CR, LF or NUL"},
		{name: "CRLF in header name", args: `{"path": "/x/ok", "headers": {"X-A\r\nHost": "evil"}}`, decodeErr: "not a header name"},
		{name: "colon in header name", args: `{"path": "/x/ok", "headers": {"Host: evil.example\r\nX": "v"}}`, decodeErr: "not a header name"},
		{name: "Host override", args: `{"path": "/x/ok", "headers": {"Host": "evil.example"}}`, decodeErr: "Host is refused"},
		{name: "Host override lower-case", args: `{"path": "/x/ok", "headers": {"host": "evil.example"}}`, decodeErr: "Host is refused"},
		{name: "agent Authorization", args: `{"path": "/x/ok", "headers": {"Authorization": "Bearer mine"}}`, decodeErr: "Authorization is refused"},
		{name: "agent Cookie", args: `{"path": "/x/ok", "headers": {"Cookie": "session=1"}}`, decodeErr: "Cookie is refused"},
		{name: "Proxy header", args: `{"path": "/x/ok", "headers": {"Proxy-Authorization": "Basic eA=="}}`, decodeErr: "Proxy-Authorization is refused"},
		{name: "X-Forwarded-For", args: `{"path": "/x/ok", "headers": {"X-Forwarded-For": "10.0.0.1"}}`, decodeErr: "X-Forwarded-For is refused"},
		{name: "method override header", args: `{"path": "/x/ok", "headers": {"X-HTTP-Method-Override": "DELETE"}}`, decodeErr: "X-Http-Method-Override is refused"},
		{name: "TRACE", args: `{"method": "TRACE", "path": "/x/ok"}`, decodeErr: `method "TRACE" is not one of`},
		{name: "body on GET", args: `{"path": "/x/ok", "body": {"a": 1}}`, decodeErr: "carry no body"},

		{name: "resource header cannot be overridden", on: apiX, args: `{"path": "/x/ok", "headers": {"X-Resource": "mine"}}`, execErr: ErrNotAllowed, errText: "sets X-Resource itself"},
		{name: "method the resource does not serve", on: apiX, args: `{"method": "DELETE", "path": "/x/ok"}`, execErr: ErrNotAllowed, errText: "does not serve DELETE"},
		{name: "path outside the prefixes", on: apiX, args: `{"path": "/admin"}`, execErr: ErrNotAllowed, errText: "only paths under /x"},
		{name: "prefix matched by segment, not by text", on: apiX, args: `{"path": "/xy/ok"}`, execErr: ErrNotAllowed, errText: "only paths under /x"},
		{name: "request body over max_request_bytes", on: apiX, args: `{"method": "POST", "path": "/x/ok", "body": "` + strings.Repeat("b", 2000) + `"}`, execErr: ErrNotAllowed, errText: "at most 1024"},

		{name: "valid call reaches the base path with the credential", on: apiX, args: `{"path": "/x/ok", "query": {"q": "a b", "n": 3}}`, check: func(t *testing.T, out *tools.Output) {
			body := out.Objects[0].(map[string]any)
			if body["path"] != "/v1/x/ok" || body["authorized"] != true || body["resource_header"] != "r1" || body["query"] != "n=3&q=a+b" {
				t.Errorf("the service saw %v", body)
			}
			if _, shown := out.Extra["headers"].(map[string]any)["set-cookie"]; shown {
				t.Error("Set-Cookie is shown to the agent")
			}
		}},
		{name: "redirect to another origin is not followed", on: apiX, args: `{"path": "/x/redirect-away"}`, check: func(t *testing.T, out *tools.Output) {
			if out.Extra["status"] != http.StatusFound || otherHits.Load() != 0 {
				t.Errorf("status %v, other origin hit %d times", out.Extra["status"], otherHits.Load())
			}
			mustContain(t, "notice", out.Notice, "another origin ("+other.URL+")", "never off the resource's origin")
		}},
		{name: "same-origin redirect is not followed either", on: apiX, args: `{"path": "/x/redirect-same"}`, check: func(t *testing.T, out *tools.Output) {
			if out.Extra["status"] != http.StatusFound {
				t.Errorf("status %v", out.Extra["status"])
			}
			mustContain(t, "notice", out.Notice, "make a new request for path /x/ok")
		}},
		{name: "2 GB text response: bounded memory, clear truncation", on: apiX, args: `{"path": "/x/huge"}`, check: func(t *testing.T, out *tools.Output) {
			if !out.Truncated || out.Streams == nil || len(out.Streams.Stdout) != int(testLimits.MaxBytes) {
				t.Fatalf("truncated %v, %d bytes kept", out.Truncated, len(out.Streams.Stdout))
			}
			mustContain(t, "notice", out.Notice, "cut at the byte cap (1048576 bytes)")
		}},
		{name: "2 GB JSON response: not returned half-parsed", on: apiX, args: `{"path": "/x/huge.json"}`, check: func(t *testing.T, out *tools.Output) {
			if !out.Truncated || out.Objects != nil || out.Streams != nil {
				t.Fatalf("truncated %v, objects %d, streams %v", out.Truncated, len(out.Objects), out.Streams != nil)
			}
			mustContain(t, "notice", out.Notice, "larger than the byte cap", "not returned")
		}},
		{name: "binary by content type", on: apiX, args: `{"path": "/x/image"}`, check: func(t *testing.T, out *tools.Output) {
			if out.Objects != nil || out.Streams != nil {
				t.Fatal("a binary body was returned")
			}
			mustContain(t, "notice", out.Notice, "image/png is binary")
		}},
		{name: "binary by sniffing although served as text", on: apiX, args: `{"path": "/x/sniff"}`, check: func(t *testing.T, out *tools.Output) {
			if out.Objects != nil || out.Streams != nil {
				t.Fatal("a binary body was returned")
			}
			mustContain(t, "notice", out.Notice, "binary (image/png) although it was served as text/plain")
		}},

		{name: "proxy variables are ignored", on: exec{pinned, pinnedCred}, args: `{"path": "/x/ok"}`, check: func(t *testing.T, out *tools.Output) {
			body := out.Objects[0].(map[string]any)
			if body["ok"] != true || proxyHits.Load() != 0 {
				t.Errorf("body %v, proxy hit %d times", body, proxyHits.Load())
			}
			if pinned.transport.Proxy != nil {
				t.Error("the transport has a Proxy function")
			}
		}},
		{name: "DNS rebinding: loopback first, then link-local", on: exec{rebind, rebindCred}, args: `{"path": "/x/ok"}`, check: func(t *testing.T, out *tools.Output) {
			// The first call's answer (127.0.0.1, named by allow_private)
			// is looked up once and pinned: the TLS server on loopback was
			// reached for example.com, which no real resolver would give.
			if out.Objects[0].(map[string]any)["ok"] != true || rebindResolver.Calls() != 1 {
				t.Fatalf("first call: %v, %d lookups", out.Objects, rebindResolver.Calls())
			}
			before := secure.hits.Load()
			_, err := call(t, rebind, rebindCred, testLimits, `{"resource": "rebind", "method": "GET", "path": "/x/ok"}`)
			if !errors.Is(err, ErrDestination) || !errors.Is(err, tools.ErrRefused) {
				t.Fatalf("rebound call: %v", err)
			}
			mustContain(t, "error", err.Error(), "169.254.169.254, a link-local address")
			if secure.hits.Load() != before || rebindResolver.Calls() != 2 {
				t.Errorf("the rebound call reached the server (%d) or looked up more than once (%d)", secure.hits.Load()-before, rebindResolver.Calls())
			}
		}},
		{name: "an answer mixing public and loopback is refused whole", on: exec{mixed, mixedCred}, args: `{"path": "/x/ok"}`, execErr: ErrDestination, errText: "127.0.0.1, a loopback address"},
		{name: "loopback not named by the resource", on: exec{loopbackOnly, loopbackCred}, args: `{"path": "/x/ok"}`, execErr: ErrDestination, errText: "127.0.0.1, a loopback address this resource does not name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(tc.args), &m); err != nil {
				t.Fatalf("case args: %v", err)
			}
			if _, ok := m["method"]; !ok {
				m["method"] = "GET"
			}
			res := tc.on.res
			if res == nil {
				res = api
			}
			m["resource"] = res.spec.Name
			raw, _ := json.Marshal(m)
			a, err := (&Request{}).Decode(raw)
			if tc.decodeErr != "" {
				if !errors.Is(err, tools.ErrInvalidArguments) {
					t.Fatalf("Decode(%s) = %v, want an invalid-arguments error", raw, err)
				}
				mustContain(t, "error", err.Error(), tc.decodeErr)
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s): %v", raw, err)
			}
			hitsBefore := plain.hits.Load() + secure.hits.Load()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			allocBefore := ms.TotalAlloc
			out, err := (&Request{}).Execute(t.Context(), tools.Target{Resource: res, Credential: tc.on.cred, Limits: testLimits}, a)
			runtime.ReadMemStats(&ms)
			if alloc := ms.TotalAlloc - allocBefore; alloc > 64<<20 {
				t.Errorf("the call allocated %d MiB", alloc>>20)
			}
			if tc.execErr != nil {
				if !errors.Is(err, tc.execErr) {
					t.Fatalf("Execute = %v, want %v", err, tc.execErr)
				}
				mustContain(t, "error", err.Error(), tc.errText)
				if plain.hits.Load()+secure.hits.Load() != hitsBefore {
					t.Error("a refused call reached the service")
				}
				return
			}
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			tc.check(t, out)
		})
	}
	if n := plain.written.Load() + secure.written.Load(); n > 256<<20 {
		t.Errorf("the servers wrote %d MiB of the 2 GB responses: airlock kept reading past the cap", n>>20)
	}
}
