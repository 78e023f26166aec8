package httpkind

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// The red-team tests of http_request (s18/h9): attacks tried cold against
// the promises of docs/http.md, beyond TestHostileInput. Each finding has
// a case that failed before its fix; the "held" cases pin what already
// resisted.

// TestRedTeamDecodeRefuses lists calls whose facts would not be what the
// service acts on: they must be refused before policy.
func TestRedTeamDecodeRefuses(t *testing.T) {
	cases := []struct{ name, args, want string }{
		// Path parameters: Tomcat, Jetty and Spring drop ";..." from a
		// segment before routing, so "..;" climbs and "admin;x" is admin.
		{"dot-dot path parameter climbs on Tomcat", `{"path": "/v1/orders/..;/admin/users"}`, "path parameter"},
		{"path parameter hides a segment from policy", `{"path": "/v1/admin;x/users"}`, "path parameter"},
		{"dot path parameter", `{"path": "/v1/orders/.;/x"}`, "path parameter"},
		{"encoded path parameter", `{"path": "/v1/admin%3bx/users"}`, "path parameter"},
		{"double-encoded path parameter", `{"path": "/v1/admin%253bx/users"}`, "path parameter"},
		// Unicode look-alikes and overlong UTF-8 that lax or normalising
		// servers read as "." and "/".
		{"overlong UTF-8 dots", `{"path": "/v1/orders/%c0%ae%c0%ae/admin"}`, "not UTF-8"},
		{"overlong UTF-8 slash", `{"path": "/v1/orders%c0%afadmin"}`, "not UTF-8"},
		{"fullwidth dots", `{"path": "/v1/orders/%ef%bc%8e%ef%bc%8e/admin"}`, "dot segment"},
		{"two-dot leader", `{"path": "/v1/orders/%e2%80%a5/admin"}`, "dot segment"},
		{"fullwidth solidus", `{"path": "/v1/orders%ef%bc%8fadmin"}`, "encodes / or \\"},
		{"fullwidth reverse solidus", `{"path": "/v1/orders%ef%bc%bcadmin"}`, "encodes / or \\"},
		// Header names that CGI, PHP and WSGI servers read with "_" as "-"
		// (HTTP_X_DEBUG): the facts would say x_debug, the service X-Debug.
		{"underscore hides a header from policy", `{"path": "/v1/orders", "headers": {"X_Debug": "1"}}`, "underscore"},
		{"underscore method override", `{"path": "/v1/orders", "headers": {"X_HTTP_Method_Override": "DELETE"}}`, "underscore"},
		{"underscore forwarded-for", `{"path": "/v1/orders", "headers": {"X_Forwarded_For": "10.0.0.1"}}`, "underscore"},
		{"underscore proxy authorization", `{"path": "/v1/orders", "headers": {"Proxy_Authorization": "Basic eA=="}}`, "underscore"},
		// Forwarding headers beyond For/Host/Proto: docs promise X-Forwarded-*.
		{"X-Forwarded-Prefix rewrites paths (Spring, ASP.NET)", `{"path": "/v1/orders", "headers": {"X-Forwarded-Prefix": "/admin"}}`, "X-Forwarded-Prefix is refused"},
		{"X-Forwarded-Port", `{"path": "/v1/orders", "headers": {"X-Forwarded-Port": "443"}}`, "X-Forwarded-Port is refused"},
		{"X-Forwarded-Server", `{"path": "/v1/orders", "headers": {"X-Forwarded-Server": "evil"}}`, "X-Forwarded-Server is refused"},
		{"X-Original-URL overrides the path (IIS, old Symfony)", `{"path": "/v1/orders", "headers": {"X-Original-URL": "/admin"}}`, "X-Original-Url is refused"},
		{"X-Rewrite-URL", `{"path": "/v1/orders", "headers": {"X-Rewrite-URL": "/admin"}}`, "X-Rewrite-Url is refused"},
		{"X-Original-Host", `{"path": "/v1/orders", "headers": {"X-Original-Host": "evil"}}`, "X-Original-Host is refused"},
		{"X-Host", `{"path": "/v1/orders", "headers": {"X-Host": "evil"}}`, "X-Host is refused"},
		{"True-Client-IP", `{"path": "/v1/orders", "headers": {"True-Client-IP": "10.0.0.1"}}`, "True-Client-Ip is refused"},
		{"X-Client-IP", `{"path": "/v1/orders", "headers": {"X-Client-IP": "10.0.0.1"}}`, "X-Client-Ip is refused"},
		{"Client-IP", `{"path": "/v1/orders", "headers": {"Client-IP": "10.0.0.1"}}`, "Client-Ip is refused"},
		// Method overrides outside headers: http.method would say POST
		// (or GET, read_only) while the framework runs DELETE.
		{"_method in the query (Rails, Laravel, Symfony)", `{"method": "POST", "path": "/v1/refunds", "query": {"_method": "DELETE"}}`, "method override"},
		{"_method in the query, other case", `{"method": "POST", "path": "/v1/refunds", "query": {"_METHOD": "DELETE"}}`, "method override"},
		{"_HttpMethod in the query (Salesforce)", `{"method": "POST", "path": "/v1/refunds", "query": {"_HttpMethod": "DELETE"}}`, "method override"},
		{"override header name as a query parameter", `{"method": "GET", "path": "/v1/orders", "query": {"X-HTTP-Method-Override": "DELETE"}}`, "method override"},
		{"_method in a JSON body (Laravel)", `{"method": "POST", "path": "/v1/refunds", "body": {"_method": "DELETE", "amount": 1}}`, "method override"},
		{"_method in a form body", `{"method": "POST", "path": "/v1/refunds", "headers": {"Content-Type": "application/x-www-form-urlencoded"}, "body": "amount=1&_method=DELETE"}`, "method override"},
		{"_method in a multipart body", `{"method": "POST", "path": "/v1/refunds", "headers": {"Content-Type": "multipart/form-data; boundary=XX"}, "body": "--XX\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n1\r\n--XX\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XX--\r\n"}`, "method override"},
		// JSON bodies policy and service would read differently.
		{"duplicate key: policy reads one amount, the service another", `{"method": "POST", "path": "/v1/refunds", "body": {"amount": 10, "amount": 900}}`, "twice"},
		{"keys equal but for case (Go's encoding/json matches them alike)", `{"method": "POST", "path": "/v1/refunds", "body": {"amount": 10, "Amount": 900}}`, "twice"},
		{"keys equal under Unicode folding (long s)", `{"method": "POST", "path": "/v1/refunds", "body": {"status": "open", "\u017ftatus": "paid"}}`, "twice"},
		{"duplicate key in a nested object", `{"method": "POST", "path": "/v1/refunds", "body": {"refund": {"amount": 10, "amount": 900}}}`, "twice"},
		{"duplicate key in an object inside a list", `{"method": "POST", "path": "/v1/refunds", "body": [{"amount": 10, "amount": 900}]}`, "twice"},
		{"duplicate key in a string body typed JSON", `{"method": "POST", "path": "/v1/refunds", "headers": {"Content-Type": "application/json"}, "body": "{\"amount\": 10, \"amount\": 900}"}`, "twice"},
		{"number beyond float64: policy would see nil", `{"method": "POST", "path": "/v1/refunds", "body": {"amount": 1e400}}`, "number"},
		{"number policy would see rounded down to 50", `{"method": "POST", "path": "/v1/refunds", "body": {"amount": 50.000000000000001}}`, "number"},
		{"integer past 2^53", `{"method": "POST", "path": "/v1/refunds", "body": {"order": 9007199254740993}}`, "number"},
		{"number underflowing to zero", `{"method": "POST", "path": "/v1/refunds", "body": {"amount": 1e-400}}`, "number"},
		{"a body in another encoding than policy reads", `{"method": "POST", "path": "/v1/refunds", "headers": {"Content-Encoding": "deflate"}, "body": "x"}`, "Content-Encoding is refused"},
		{"a body in another charset than policy reads", `{"method": "POST", "path": "/v1/refunds", "headers": {"Content-Type": "application/json; charset=utf-16le"}, "body": {"amount": 1}}`, "charset"},
		{"Range slices a JSON document out of field masking", `{"path": "/v1/customers/7", "headers": {"Range": "bytes=40-"}}`, "Range is refused"},
		{"If-Range", `{"path": "/v1/customers/7", "headers": {"If-Range": "x"}}`, "If-Range is refused"},
		{"a Content-Type that is not one media type", `{"method": "POST", "path": "/v1/refunds", "headers": {"Content-Type": "text/plain, application/json"}, "body": "{\"amount\": 900}"}`, "Content-Type"},
	}
	// Red team 4b: a body nested 9,998 levels deep (a string typed JSON:
	// MCP's framing stops a JSON value sooner) was decided on, but its
	// call.decided, with the body in the facts, was deeper than the
	// transcript takes: the call was refused or denied and left no event.
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	cases = append(cases,
		struct{ name, args, want string }{"a JSON body nested deeper than the transcript takes",
			`{"method": "POST", "path": "/v1/refunds", "body": ` + deep(maxBodyDepth+1) + `}`, "deeper than 1000 levels"},
		struct{ name, args, want string }{"a string body typed JSON nested 9,998 levels",
			`{"method": "POST", "path": "/v1/refunds", "headers": {"Content-Type": "application/json"}, "body": "` + deep(9998) + `"}`, "deeper than 1000 levels"},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			dec := json.NewDecoder(strings.NewReader(tc.args))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("case args: %v", err)
			}
			// Rebuild from the raw text so that duplicate keys survive.
			raw := `{"resource": "orders-api", ` + strings.TrimPrefix(tc.args, "{")
			if _, ok := m["method"]; !ok {
				raw = `{"method": "GET", ` + strings.TrimPrefix(raw, "{")
			}
			a, err := (&Request{}).Decode(json.RawMessage(raw))
			if err == nil {
				f := a.(*RequestArgs).facts()
				t.Fatalf("Decode(%s) accepted the call; policy would see %+v", raw, f)
			}
			if !errors.Is(err, tools.ErrInvalidArguments) {
				t.Fatalf("Decode(%s) = %v, want an invalid-arguments error", raw, err)
			}
			mustContain(t, "error", err.Error(), tc.want)
		})
	}
}

// TestRedTeamHeaderValuesAreFacts: a header's value can change what a call
// means (the tenant it acts for, a dry run switched off); policy saw only
// header names, so no rule could tell X-Tenant-Id: acme from
// X-Tenant-Id: other. The values are facts now.
func TestRedTeamHeaderValuesAreFacts(t *testing.T) {
	p, err := policy.Parse([]byte(`
rules:
  - name: reads
    when: tool == "http_request" && http.read_only
    effect: allow
    grant: reader
  - name: own-tenant-only
    when: tool == "http_request" && "x-tenant-id" in http.header_names && http.headers["x-tenant-id"] != "acme"
    effect: deny
`), "tenant")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, tc := range []struct {
		tenant string
		want   policy.Effect
	}{{"acme", policy.Allow}, {"other", policy.Deny}} {
		a, err := (&Request{}).Decode(json.RawMessage(`{"resource": "api", "method": "GET", "path": "/v1/orders", "headers": {"X-Tenant-Id": "` + tc.tenant + `"}}`))
		if err != nil {
			t.Fatal(err)
		}
		f, _ := (&Request{}).Facts(a)
		in := policy.Input{Tool: "http_request", Identity: policy.Identity{Subject: "alice"}, Resource: policy.Resource{Name: "api", Kind: KindName}}
		in.SetFacts(f)
		if d := p.Evaluate(in); d.Effect != tc.want {
			t.Errorf("tenant %s: %s, want %s", tc.tenant, d.Effect, tc.want)
		}
	}
}

// TestRedTeamFactsMatchTheWire sends calls that try to make facts and
// request differ (method case, repeated keys, escapes, header case) to a
// server that records what it received, and compares. These held.
func TestRedTeamFactsMatchTheWire(t *testing.T) {
	type seen struct {
		method, rawPath, host string
		query                 url.Values
		headers               http.Header
		body                  []byte
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.EscapedPath(), r.Host, r.URL.Query(), r.Header.Clone(), b}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok": true}`)
	}))
	defer srv.Close()
	r := open(t, mapEnv{}, fmt.Sprintf("name: api\nbase_url: %s/api\nmethods: [GET, POST, DELETE]\ngrants:\n  reader: {ttl: 10m}\n", srv.URL))
	cred := mint(t, r, "reader")
	for _, tc := range []struct{ name, args string }{
		{"lower-case method", `{"method": "get", "path": "/v1/orders"}`},
		{"a repeated argument key: the last wins for facts and wire alike", `{"method": "GET", "path": "/v1/admin", "path": "/v1/orders"}`},
		{"a repeated query key in the arguments", `{"method": "GET", "path": "/v1/orders", "query": {"a": "1", "a": "2"}}`},
		{"a query list", `{"method": "GET", "path": "/v1/orders", "query": {"tag": ["x", "y"], "q": "a&b=c"}}`},
		{"query keys that look like syntax", `{"method": "GET", "path": "/v1/orders", "query": {"a&debug": "1", "b=c": "d#e"}}`},
		{"userinfo-looking path keeps the host", `{"method": "GET", "path": "@evil.example/x"}`},
		{"port-looking path keeps the host", `{"method": "GET", "path": ":8080/x"}`},
		{"escaped key in a JSON body", `{"method": "POST", "path": "/v1/refunds", "body": {"\u0061mount": 900}}`},
		{"DELETE with a body", `{"method": "DELETE", "path": "/v1/orders/7", "body": {"reason": "x"}}`},
		{"header name case", `{"method": "GET", "path": "/v1/orders", "headers": {"x-DEBUG": "1"}}`},
		{"a body that looks like a second request", `{"method": "POST", "path": "/v1/x", "body": "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: evil\r\n\r\n"}`},
		{"a decimal policy sees exactly", `{"method": "POST", "path": "/v1/refunds", "body": {"amount": 0.1, "n": 1e2}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := `{"resource": "api", ` + strings.TrimPrefix(tc.args, "{")
			a, err := (&Request{}).Decode(json.RawMessage(raw))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			f := a.(*RequestArgs).facts()
			if _, err := (&Request{}).Execute(t.Context(), tools.Target{Resource: r, Credential: cred, Limits: testLimits}, a); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			s := <-got
			if s.method != f.Method {
				t.Errorf("policy saw method %s, the service %s", f.Method, s.method)
			}
			if s.rawPath != "/api"+f.Path {
				t.Errorf("policy saw path %s, the service %s", f.Path, s.rawPath)
			}
			if want := strings.TrimPrefix(srv.URL, "http://"); s.host != want {
				t.Errorf("the service was asked for host %s, not %s", s.host, want)
			}
			if len(s.query) != len(f.Query) {
				t.Errorf("policy saw query %v, the service %v", f.Query, s.query)
			}
			for k, v := range f.Query {
				if !slices.Equal(s.query[k], v) {
					t.Errorf("query %s: policy saw %v, the service %v", k, v, s.query[k])
				}
			}
			for _, h := range f.HeaderNames {
				if s.headers.Get(h) != f.Headers[h] {
					t.Errorf("policy saw header %s: %q, the service got %q", h, f.Headers[h], s.headers.Get(h))
				}
			}
			switch b := f.Body.(type) {
			case nil:
				if len(s.body) != 0 {
					t.Errorf("policy saw no body, the service %q", s.body)
				}
			case string:
				if string(s.body) != b {
					t.Errorf("policy saw body %q, the service %q", b, s.body)
				}
			default:
				var v any
				if err := json.Unmarshal(s.body, &v); err != nil || fmt.Sprint(v) != fmt.Sprint(b) {
					t.Errorf("policy saw body %v, the service %s", b, s.body)
				}
			}
		})
	}
}

// echoTarget reflects the request's credential back in every way a
// careless or hostile service might: JSON fields, keys, \u escapes, text,
// URL-encoded, response headers, a redirect's Location, and a cut at the
// byte cap.
func echoTarget(t testing.TB, credHeader string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get(credHeader)
		tok := strings.TrimPrefix(v, "Bearer ")
		switch r.URL.Path {
		case "/echo/json":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"headers": map[string]string{credHeader: v}, "token": tok})
		case "/echo/key":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{tok: true})
		case "/echo/escaped":
			w.Header().Set("Content-Type", "application/json")
			var b strings.Builder
			for _, c := range tok {
				fmt.Fprintf(&b, `\u%04x`, c)
			}
			_, _ = fmt.Fprintf(w, `{"token": "%s"}`, b.String())
		case "/echo/text":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = fmt.Fprintf(w, "you sent %s and %s\n", tok, url.QueryEscape(v))
		case "/echo/headers":
			w.Header().Set("X-Request-Id", tok)
			w.Header().Set("Content-Type", "text/plain; token="+tok)
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", token="`+tok+`"`)
			w.Header().Set("Location", "https://elsewhere.example/cb?access_token="+url.QueryEscape(tok))
			w.WriteHeader(http.StatusFound)
		case "/echo/away":
			// The token, lower-cased, in the host of another origin: the
			// notice names that host.
			w.Header().Set("Location", "https://"+strings.ToLower(tok)+".evil.example/")
			w.WriteHeader(http.StatusFound)
		case "/echo/cut":
			// The cap (set by the test) falls one byte before the end of
			// the token: its prefix must not come back either.
			w.Header().Set("Content-Type", "text/plain")
			_, _ = fmt.Fprintf(w, "%s%s", strings.Repeat("x", 100), tok)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// checkNoCredential runs every echo path and checks the secret appears
// nowhere the agent reads: the rendered result, its text, the notice.
func checkNoCredential(t *testing.T, r *Resource, cred *Credential, secret string) {
	t.Helper()
	if len(secret) < 8 {
		t.Fatalf("secret %q too short to test with", secret)
	}
	for _, p := range []string{"/echo/json", "/echo/key", "/echo/escaped", "/echo/text", "/echo/headers", "/echo/away", "/echo/cut"} {
		t.Run(p, func(t *testing.T) {
			limits := testLimits
			if p == "/echo/cut" {
				limits.MaxBytes = int64(100 + len(secret) - 1)
			}
			out, err := call(t, r, cred, limits, `{"resource": "`+r.spec.Name+`", "method": "GET", "path": "`+p+`"}`)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			res, text := maskAndRender(t, masking.DefaultConfig(), "default", out)
			js, _ := json.Marshal(res)
			all := text + "\n" + string(js) + "\n" + out.Notice
			for _, form := range []string{secret, url.QueryEscape(secret), strings.ToLower(secret), secret[:len(secret)-1]} {
				mustNotContain(t, "what the agent reads", all, form)
			}
			if res.Status != http.StatusOK && res.Status != http.StatusFound {
				t.Errorf("status %d", res.Status)
			}
			mustContain(t, "notice", out.Notice, "echoed the request's credential")
		})
	}
}

// TestRedTeamCredentialEchoHydra: a target that reflects the Authorization
// header gets a real token from Hydra; the token never comes back.
func TestRedTeamCredentialEchoHydra(t *testing.T) {
	h := testenv.Hydra(t)
	target := echoTarget(t, "Authorization")
	client := h.CreateClientSpec(t, testenv.ClientSpec{Audience: []string{target.URL}, Scopes: []string{"orders.read"}})
	env := mapEnv{vars: map[string]string{"HYDRA_SECRET": client.Secret}}
	r := open(t, env, fmt.Sprintf(`
name: echo
base_url: %s
auth:
  type: oauth2_client_credentials
  token_url: %s
  client_id: %s
  client_secret_env: HYDRA_SECRET
grants:
  reader: {ttl: 10m, scopes: [orders.read], audience: ["%s"]}
`, target.URL, h.TokenURL(), client.ID, target.URL))
	cred := mint(t, r, "reader")
	checkNoCredential(t, r, cred, cred.Secret().Reveal())
}

// TestRedTeamCredentialEchoHeader: the same with an API key in a header,
// one no detector recognises.
func TestRedTeamCredentialEchoHeader(t *testing.T) {
	target := echoTarget(t, "X-Api-Key")
	env := mapEnv{vars: map[string]string{"KEY": "int-7Gq2xPz9Lm4Rt8VwYb3"}}
	r := open(t, env, fmt.Sprintf("name: keyed\nbase_url: %s\nauth: {type: header, header: X-API-Key, token_env: KEY}\ngrants:\n  reader: {ttl: 10m}\n", target.URL))
	checkNoCredential(t, r, mint(t, r, "reader"), "int-7Gq2xPz9Lm4Rt8VwYb3")
}

// TestRedTeamCredentialInTransportError: a service whose answer is not
// HTTP but the request's Authorization line; Go's transport quotes a
// malformed answer in its error, which reaches the agent.
func TestRedTeamCredentialInTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if v, ok := strings.CutPrefix(line, "Authorization: "); ok {
						_, _ = io.WriteString(c, strings.TrimSpace(v)+"\r\n\r\n")
						return
					}
				}
			}()
		}
	}()
	env := mapEnv{vars: map[string]string{"TOK": "tok-3f9a1c7e5b2d4e6f"}}
	r := open(t, env, fmt.Sprintf("name: raw\nbase_url: http://%s\nauth: {type: bearer, token_env: TOK}\ngrants:\n  reader: {ttl: 10m}\n", ln.Addr()))
	_, err = call(t, r, mint(t, r, "reader"), testLimits, `{"resource": "raw", "method": "GET", "path": "/"}`)
	if !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Fatalf("Execute = %v, want backend unavailable", err)
	}
	mustNotContain(t, "error", err.Error(), "tok-3f9a1c7e5b2d4e6f")
}

// TestRedTeamTokenEndpointEchoesSecret: a token endpoint whose error
// description quotes the client secret; the mint error must not.
func TestRedTeamTokenEndpointEchoesSecret(t *testing.T) {
	const secret = "client-secret-9d8c7b6a5f4e"
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": "secret " + pass + " is not valid"})
	}))
	defer idp.Close()
	env := mapEnv{vars: map[string]string{"CS": secret}}
	r := open(t, env, fmt.Sprintf("name: idp\nbase_url: http://127.0.0.1:1\nauth: {type: oauth2_client_credentials, token_url: %s, client_id: c1, client_secret_env: CS}\ngrants:\n  reader: {ttl: 10m}\n", idp.URL))
	_, err := r.Mint(context.Background(), tools.MintRequest{LeaseID: "l-1", GrantName: "reader"})
	if !errors.Is(err, ErrTokenEndpoint) {
		t.Fatalf("Mint = %v", err)
	}
	mustContain(t, "mint error", err.Error(), "invalid_client")
	mustNotContain(t, "mint error", err.Error(), secret)
}

// TestRedTeamBodyTypeLies: JSON served as text/plain (or JSONP, which an
// agent asks for with ?callback=) is still masked field by field; a body
// served as JSON that does not parse is not returned as text (the field
// rules could not reach it).
func TestRedTeamBodyTypeLies(t *testing.T) {
	const doc = `{"customer": {"name": "Ann", "ssn": "078-05-1120-X"}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/plain":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "\n  "+doc+"\n")
		case "/untyped":
			w.Header()["Content-Type"] = nil
			_, _ = io.WriteString(w, doc)
		case "/broken":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, doc+` trailing`)
		case "/jsonp":
			// ?callback=cb, as many APIs offer.
			w.Header().Set("Content-Type", "application/javascript")
			_, _ = io.WriteString(w, "/**/ typeof cb === 'function' && cb("+doc+");")
		case "/bom":
			// A byte-order mark before JSON: Go's parser refuses it, and
			// the body must not fall back to text.
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "\ufeff"+doc)
		case "/text":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "just text, ssn-free")
		}
	}))
	defer srv.Close()
	r := open(t, mapEnv{}, fmt.Sprintf("name: api\nbase_url: %s\ngrants:\n  reader: {ttl: 10m}\n", srv.URL))
	cred := mint(t, r, "reader")
	cfg := masking.DefaultConfig()
	cfg.Profiles["crm"] = masking.ProfileConfig{Fields: []string{"customer.ssn"}}
	for _, p := range []string{"/plain", "/untyped", "/broken", "/jsonp", "/bom"} {
		t.Run(p, func(t *testing.T) {
			out, err := call(t, r, cred, testLimits, `{"resource": "api", "method": "GET", "path": "`+p+`"}`)
			if err != nil {
				t.Fatal(err)
			}
			res, text := maskAndRender(t, cfg, "crm", out)
			js, _ := json.Marshal(res)
			mustNotContain(t, "result", text+string(js), "078-05-1120-X")
			if p != "/broken" {
				if body, _ := res.Body.(map[string]any); body == nil || body["customer"].(map[string]any)["name"] != "Ann" {
					t.Errorf("the JSON body was not returned as JSON: %s", js)
				}
			}
		})
	}
	out, err := call(t, r, cred, testLimits, `{"resource": "api", "method": "GET", "path": "/text"}`)
	if err != nil || out.Streams == nil || out.Streams.Stdout != "just text, ssn-free" {
		t.Errorf("plain text: %v %+v", err, out)
	}
}

// TestRedTeamDestinations: DNS answers that reach internal addresses in
// disguise are refused before anything is dialed.
func TestRedTeamDestinations(t *testing.T) {
	var dials atomic.Int64
	refused := []struct{ answer, allow, class string }{
		// Findings: ranges the private-address rule called public.
		{"::7f00:1", "", "special-purpose"},        // IPv4-compatible ::127.0.0.1
		{"::a9fe:a9fe", "", "special-purpose"},     // IPv4-compatible ::169.254.169.254
		{"::ffff:0:7f00:1", "", "special-purpose"}, // SIIT ::ffff:0:127.0.0.1
		{"fec0::1", "", "special-purpose"},         // deprecated site-local
		{"192.88.99.1", "", "special-purpose"},     // 6to4 relay anycast
		{"2001:2::1", "", "special-purpose"},       // IETF protocol assignments
		{"3fff::1", "", "special-purpose"},         // documentation (RFC 9637)
		// Held.
		{"::ffff:127.0.0.1", "", "loopback"},          // v4-mapped loopback
		{"::ffff:169.254.169.254", "", "link-local"},  // v4-mapped metadata
		{"64:ff9b::a9fe:a9fe", "", "special-purpose"}, // NAT64 of the metadata address
		{"64:ff9b::7f00:1", "", "special-purpose"},
		{"2002:7f00:1::1", "", "special-purpose"}, // 6to4 of 127.0.0.1
		{"0.0.0.0", "allow_private: [0.0.0.0/0]", "unspecified"},
		{"::", "allow_private: ['::/0']", "unspecified"},
		{"0.1.2.3", "", "special-purpose"},
		{"fe80::1", "", "link-local"},
		{"fe80::1%eth0", "allow_private: ['fe80::/10']", "link-local"},
		{"fd00:ec2::254", "", "private"}, // AWS metadata over IPv6
		{"100.64.0.1", "", "special-purpose"},
		{"224.0.0.1", "allow_private: [224.0.0.0/4]", "multicast"},
		{"ff02::1", "", "multicast"},
		{"255.255.255.255", "", "broadcast"},
	}
	for _, tc := range refused {
		t.Run(tc.answer, func(t *testing.T) {
			res := newScriptedResolver(tc.answer)
			r := open(t, mapEnv{}, fmt.Sprintf("name: api\nbase_url: https://service.example/\n%s\ngrants:\n  reader: {ttl: 10m}\n", tc.allow), WithResolver(res))
			r.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return r.dial(ctx, network, addr)
			}
			limits := testLimits
			limits.Timeout = 3 * time.Second
			_, err := call(t, r, mint(t, r, "reader"), limits, `{"resource": "api", "method": "GET", "path": "/"}`)
			if !errors.Is(err, ErrDestination) {
				t.Fatalf("answer %s: Execute = %v, want the destination refused", tc.answer, err)
			}
			mustContain(t, "error", err.Error(), "a "+tc.class+" address")
		})
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("%d dials for refused answers", n)
	}

	// Plain http is accepted for localhost on the grounds that it is
	// loopback: a resolver answering a public address for localhost must
	// not turn it into cleartext over the network.
	t.Run("http localhost resolving off loopback", func(t *testing.T) {
		res := newScriptedResolver("93.184.216.34")
		r := open(t, mapEnv{vars: map[string]string{"TOK": "tok-abcdef123456"}}, "name: api\nbase_url: http://localhost:8080/\nauth: {type: bearer, token_env: TOK}\ngrants:\n  reader: {ttl: 10m}\n", WithResolver(res))
		limits := testLimits
		limits.Timeout = 2 * time.Second
		_, err := call(t, r, mint(t, r, "reader"), limits, `{"resource": "api", "method": "GET", "path": "/"}`)
		if !errors.Is(err, ErrDestination) {
			t.Fatalf("Execute = %v, want the destination refused", err)
		}
		mustContain(t, "error", err.Error(), "93.184.216.34")
	})
}

// TestRedTeamIDNAHost: a base_url host in Unicode would be resolved in
// that form while net/http dials, sends Host and SNI for its punycode:
// refused at start-up instead of failing (or diverging) at each call.
func TestRedTeamIDNAHost(t *testing.T) {
	for _, base := range []string{"https://bücher.example/", "https://ＡＰＩ.example/", "https://api.example。com/"} {
		_, err := NewKind(WithResolver(newScriptedResolver("93.184.216.34"))).Open(specFromYAML(t, "name: idn\nbase_url: "+base+"\ngrants:\n  reader: {ttl: 10m}\n"), mapEnv{})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "ASCII form") {
			t.Errorf("base_url %s: Open = %v", base, err)
		}
	}
}

// TestRedTeamConnectionReuse: a keep-alive connection one resource made to
// a loopback service is not used by another resource that does not name
// loopback (each resource has its own transport), and a connection kept
// alive does not outlive a refused DNS answer for the next call. Held.
func TestRedTeamConnectionReuse(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	res := func(name, allow string, resolver Resolver) (*Resource, *Credential) {
		r := open(t, mapEnv{}, fmt.Sprintf("name: %s\nbase_url: https://example.com:%d/\n%s\ntls: {ca_file: %s}\ngrants:\n  reader: {ttl: 10m}\n", name, port, allow, caFile), WithResolver(resolver))
		return r, mint(t, r, "reader")
	}
	inside, insideCred := res("inside", "allow_private: [127.0.0.1]", newScriptedResolver("127.0.0.1"))
	outside, outsideCred := res("outside", "", newScriptedResolver("127.0.0.1"))
	rebind, rebindCred := res("rebind", "allow_private: [127.0.0.1]", newScriptedResolver("127.0.0.1", "127.0.0.1", "10.1.2.3"))
	get := `{"resource": "x", "method": "GET", "path": "/"}`
	for range 2 {
		if _, err := call(t, inside, insideCred, testLimits, get); err != nil {
			t.Fatal(err)
		}
	}
	before := hits.Load()
	if _, err := call(t, outside, outsideCred, testLimits, get); !errors.Is(err, ErrDestination) {
		t.Errorf("outside: %v", err)
	}
	for i := range 2 {
		if _, err := call(t, rebind, rebindCred, testLimits, get); err != nil {
			t.Fatalf("rebind call %d: %v", i, err)
		}
	}
	if _, err := call(t, rebind, rebindCred, testLimits, get); !errors.Is(err, ErrDestination) {
		t.Errorf("rebound with a live keep-alive connection: %v", err)
	}
	if hits.Load() != before+2 {
		t.Errorf("refused calls reached the service: %d hits, want %d", hits.Load(), before+2)
	}
}

// TestRedTeamResponseBounds: a gzip bomb, a slow drip and a slow header
// stay within the byte cap, memory and the timeout. Held.
func TestRedTeamResponseBounds(t *testing.T) {
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bomb", "/bomb.json":
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				http.Error(w, "no gzip", http.StatusNotAcceptable)
				return
			}
			ct := "text/plain"
			if r.URL.Path == "/bomb.json" {
				ct = "application/json"
			}
			w.Header().Set("Content-Type", ct)
			w.Header().Set("Content-Encoding", "gzip")
			cw := &countWriter{w: w, n: &written}
			gz, _ := gzip.NewWriterLevel(cw, gzip.BestCompression)
			chunk := []byte(strings.Repeat("a", 1<<20))
			if ct == "application/json" {
				_, _ = gz.Write([]byte(`["`))
			}
			for range 4 << 10 { // 4 GiB decompressed
				if _, err := gz.Write(chunk); err != nil {
					return
				}
			}
			_ = gz.Close()
		case "/drip":
			w.Header().Set("Content-Type", "text/plain")
			for range 200 {
				if _, err := io.WriteString(w, "a"); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		case "/slow-headers":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
	}))
	defer srv.Close()
	r := open(t, mapEnv{}, fmt.Sprintf("name: api\nbase_url: %s\ngrants:\n  reader: {ttl: 10m}\n", srv.URL))
	cred := mint(t, r, "reader")
	limits := tools.Limits{MaxBytes: 256 << 10, Timeout: 1500 * time.Millisecond}

	for _, p := range []string{"/bomb", "/bomb.json"} {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		out, err := call(t, r, cred, tools.Limits{MaxBytes: 256 << 10, Timeout: 20 * time.Second}, `{"resource": "api", "method": "GET", "path": "`+p+`"}`)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		runtime.ReadMemStats(&ms)
		if !out.Truncated || (p == "/bomb" && len(out.Streams.Stdout) != 256<<10) || (p == "/bomb.json" && out.Objects != nil) {
			t.Errorf("%s: truncated %v, %+v", p, out.Truncated, out.Extra)
		}
		if alloc := ms.TotalAlloc - before; alloc > 64<<20 {
			t.Errorf("%s: the call allocated %d MiB", p, alloc>>20)
		}
	}
	if n := written.Load(); n > 32<<20 {
		t.Errorf("the bomb server wrote %d MiB compressed: airlock inflated past the cap", n>>20)
	}
	for _, p := range []string{"/drip", "/slow-headers"} {
		start := time.Now()
		_, err := call(t, r, cred, limits, `{"resource": "api", "method": "GET", "path": "`+p+`"}`)
		if !errors.Is(err, tools.ErrBackendUnavailable) || !strings.Contains(err.Error(), "no complete answer within 1.5s") {
			t.Errorf("%s: %v", p, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %s with a 1.5s timeout", p, d)
		}
	}
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// A body as deep as maxBodyDepth is a body like any other.
func TestBodyAtMaxDepthDecodes(t *testing.T) {
	body := strings.Repeat(`{"a":`, maxBodyDepth-1) + "[]" + strings.Repeat("}", maxBodyDepth-1)
	if _, err := (&Request{}).Decode(json.RawMessage(`{"resource": "orders-api", "method": "POST", "path": "/v1/refunds", "body": ` + body + `}`)); err != nil {
		t.Fatalf("a body %d levels deep: %v", maxBodyDepth, err)
	}
}
