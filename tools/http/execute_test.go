package httpkind

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/masking"
)

const testJWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

// TestOutputMasking checks what leaves Execute is shaped for the broker's
// masking: a JSON body field by field (profile field paths at the root and
// in each element of a root list, then detectors), a text body through the
// detectors, response headers through the detectors, and the API key the
// resource sends (a header credential) nowhere in the result.
func TestOutputMasking(t *testing.T) {
	var gotKey string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotKey = r.Header.Get("X-Api-Key")
		switch r.URL.Path {
		case "/customers":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = fmt.Fprintf(w, `[{"id": 9007199254740993, "name": "Ann", "customer": {"email": "ann@example.com", "tier": "gold"}, "note": "token %s"},
			                        {"id": 2, "name": "Bob", "customer": {"email": "bob@example.com", "tier": "silver"}}]`, testJWT)
		case "/log":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Request-Id", testJWT)
			_, _ = fmt.Fprintf(w, "GET /x by ann@example.com with %s\n", testJWT)
		case "/broken":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"half": `))
		}
	}))
	defer srv.Close()
	r := open(t, mapEnv{vars: map[string]string{"KEY": "k-secret-123"}}, fmt.Sprintf(`
name: crm
base_url: %s
auth: {type: header, header: X-API-Key, token_env: KEY}
grants:
  reader: {ttl: 10m}
`, srv.URL))
	c := mint(t, r, "reader")
	cfg := masking.DefaultConfig()
	cfg.Profiles["crm"] = masking.ProfileConfig{Fields: []string{"customer.email"}, Detectors: []string{"jwt", "email"}}

	out, err := call(t, r, c, testLimits, `{"resource": "crm", "method": "GET", "path": "/customers"}`)
	if err != nil {
		t.Fatal(err)
	}
	if gotKey != "k-secret-123" {
		t.Errorf("the service got API key %q", gotKey)
	}
	res, text := maskAndRender(t, cfg, "crm", out)
	mustNotContain(t, "JSON result", text, "ann@example.com", "bob@example.com", testJWT, "k-secret-123")
	mustContain(t, "JSON result", text, "HTTP 200 OK", `"tier": "gold"`, `"name": "Bob"`, "9007199254740993")
	if list, _ := res.Body.([]any); len(list) != 2 {
		t.Errorf("body %v", res.Body)
	}

	out, err = call(t, r, c, testLimits, `{"resource": "crm", "method": "GET", "path": "/log"}`)
	if err != nil {
		t.Fatal(err)
	}
	res, text = maskAndRender(t, cfg, "crm", out)
	mustNotContain(t, "text result", text+fmt.Sprint(res.Headers), "ann@example.com", testJWT)
	mustContain(t, "text result", text, "GET /x by ")

	out, err = call(t, r, c, testLimits, `{"resource": "crm", "method": "GET", "path": "/broken"}`)
	if err != nil {
		t.Fatal(err)
	}
	// Served as JSON but not JSON: not returned as text either, where the
	// profile's field rules could not reach it (s18/h9).
	if out.Streams != nil || out.Objects != nil || !strings.Contains(out.Notice, "does not parse; it is not returned") {
		t.Errorf("broken JSON: %v %v %q", out.Streams, out.Objects, out.Notice)
	}
	js, _ := json.Marshal(out)
	mustNotContain(t, "output JSON", string(js), "k-secret-123")
}

// TestNoBodyAnswers covers answers without a body (HEAD, 204) and the
// response headers a resource adds to the shown ones.
func TestNoBodyAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Ratelimit-Remaining", "41")
		w.Header().Set("X-Internal-Trace", "t-1")
		if r.URL.Path == "/gone" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"a": 1}`))
	}))
	defer srv.Close()
	r := open(t, mapEnv{}, fmt.Sprintf(`
name: svc
base_url: %s
methods: [GET, HEAD, DELETE]
response_headers: [X-RateLimit-Remaining]
grants:
  reader: {ttl: 10m}
`, srv.URL))
	c := mint(t, r, "reader")
	for _, tc := range []struct{ args string }{
		{`{"resource": "svc", "method": "HEAD", "path": "/x"}`},
		{`{"resource": "svc", "method": "DELETE", "path": "/gone"}`},
	} {
		out, err := call(t, r, c, testLimits, tc.args)
		if err != nil {
			t.Fatal(err)
		}
		res, text := maskAndRender(t, masking.DefaultConfig(), "default", out)
		if res.Body != nil || res.Text != "" || out.Objects != nil {
			t.Errorf("%s: a body: %v %q", tc.args, res.Body, res.Text)
		}
		if res.Headers["x-ratelimit-remaining"] != "41" || res.Headers["x-internal-trace"] != "" {
			t.Errorf("%s: headers %v", tc.args, res.Headers)
		}
		mustNotContain(t, "text", text, "t-1")
	}
}
