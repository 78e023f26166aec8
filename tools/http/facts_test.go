package httpkind

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

func factsOf(t *testing.T, args string) HTTP {
	t.Helper()
	a, err := (&Request{}).Decode(json.RawMessage(args))
	if err != nil {
		t.Fatalf("Decode(%s): %v", args, err)
	}
	f, err := (&Request{}).Facts(a)
	if err != nil {
		t.Fatalf("Facts: %v", err)
	}
	name, v, ok := f.Registered()
	if !ok || name != FactsName {
		t.Fatalf("facts are not registered http facts: %v %v", name, ok)
	}
	return v.(HTTP)
}

func TestFacts(t *testing.T) {
	cases := []struct {
		name string
		args string
		want HTTP
	}{
		{"read with query", `{"resource": "api", "method": "get", "path": "v1/users/a%20b/", "query": {"limit": 10, "tag": ["x", "y"], "all": true}, "headers": {"accept": "application/json"}}`, HTTP{
			Method: "GET", Path: "/v1/users/a%20b/", Segments: []string{"v1", "users", "a b", ""},
			Query: map[string][]string{"limit": {"10"}, "tag": {"x", "y"}, "all": {"true"}}, HeaderNames: []string{"accept"}, Headers: map[string]string{"accept": "application/json"}, ReadOnly: true,
		}},
		{"JSON body", `{"resource": "api", "method": "POST", "path": "/v1/refunds", "body": {"amount": 120, "order": "o-1"}}`, HTTP{
			Method: "POST", Path: "/v1/refunds", Segments: []string{"v1", "refunds"}, Query: map[string][]string{},
			HeaderNames: []string{"content-type"}, Headers: map[string]string{"content-type": "application/json"}, Body: map[string]any{"amount": 120.0, "order": "o-1"}, ContentType: "application/json",
		}},
		{"JSON text body with a JSON content type", `{"resource": "api", "method": "PATCH", "path": "/v1/users/1", "headers": {"Content-Type": "application/merge-patch+json"}, "body": "{\"role\": \"admin\"}"}`, HTTP{
			Method: "PATCH", Path: "/v1/users/1", Segments: []string{"v1", "users", "1"}, Query: map[string][]string{},
			HeaderNames: []string{"content-type"}, Headers: map[string]string{"content-type": "application/merge-patch+json"}, Body: map[string]any{"role": "admin"}, ContentType: "application/merge-patch+json",
		}},
		{"text body", `{"resource": "api", "method": "PUT", "path": "/notes/1", "body": "hello"}`, HTTP{
			Method: "PUT", Path: "/notes/1", Segments: []string{"notes", "1"}, Query: map[string][]string{},
			HeaderNames: []string{"content-type"}, Headers: map[string]string{"content-type": "text/plain; charset=utf-8"}, Body: "hello", ContentType: "text/plain",
		}},
		{"root", `{"resource": "api", "method": "DELETE", "path": "/"}`, HTTP{
			Method: "DELETE", Path: "/", Segments: []string{}, Query: map[string][]string{}, HeaderNames: []string{}, Headers: map[string]string{},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := factsOf(t, tc.args); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("facts\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// TestPolicyReadsHTTPFacts compiles rules over http.* at load (a typo is a
// load error) and evaluates them with facts from real calls.
func TestPolicyReadsHTTPFacts(t *testing.T) {
	p, err := policy.Parse([]byte(`
rules:
  - name: reads
    when: tool == "http_request" && http.read_only && http.segments[0] == "v1"
    effect: allow
    grant: reader
  - name: big-refunds-need-approval
    when: tool == "http_request" && http.method == "POST" && http.path == "/v1/refunds" && http.body.amount > 100
    effect: approve
    approvers: {groups: [finance]}
    grant: writer
  - name: no-admin
    when: tool == "http_request" && "admin" in http.segments
    effect: deny
    message: no admin endpoints
  - name: no-debug-query
    when: tool == "http_request" && "debug" in http.query
    effect: deny
`), "test")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	decide := func(args string) policy.Decision {
		a, err := (&Request{}).Decode(json.RawMessage(args))
		if err != nil {
			t.Fatal(err)
		}
		f, err := (&Request{}).Facts(a)
		if err != nil {
			t.Fatal(err)
		}
		in := policy.Input{Tool: "http_request", Identity: policy.Identity{Subject: "alice"}, Resource: policy.Resource{Name: "api", Kind: KindName}}
		in.SetFacts(f)
		return p.Evaluate(in)
	}
	for _, tc := range []struct {
		args   string
		effect policy.Effect
	}{
		{`{"resource": "api", "method": "GET", "path": "/v1/users"}`, policy.Allow},
		{`{"resource": "api", "method": "POST", "path": "/v1/refunds", "body": {"amount": 500}}`, policy.Approve},
		{`{"resource": "api", "method": "POST", "path": "/v1/refunds", "body": {"amount": 5}}`, policy.Deny},
		{`{"resource": "api", "method": "GET", "path": "/v1/admin/users"}`, policy.Deny},
		{`{"resource": "api", "method": "GET", "path": "/v1/users", "query": {"debug": "1"}}`, policy.Deny},
	} {
		if d := decide(tc.args); d.Effect != tc.effect {
			t.Errorf("%s: %s (%v), want %s", tc.args, d.Effect, d.Matched, tc.effect)
		}
	}

	_, err = policy.Parse([]byte("rules:\n  - name: typo\n    when: http.methd == \"GET\"\n    effect: allow\n"), "typo")
	if err == nil || !strings.Contains(err.Error(), "methd") {
		t.Errorf("a typo in an http fact: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{`[]`, "must be a JSON object"},
		{`{"resource": "api", "method": "GET"}`, "path is required"},
		{`{"resource": "api", "path": "/"}`, "method is required"},
		{`{"resource": "api", "method": "GET", "path": "/", "url": "x"}`, `unknown argument "url"`},
		{`{"resource": "api", "method": "GET", "path": "/", "query": {"a": {"b": 1}}}`, "values are strings"},
		{`{"resource": "api", "method": "GET", "path": "/", "headers": {"A": 1}}`, "headers must be an object of strings"},
		{`{"resource": "api", "method": "POST", "path": "/", "headers": {"Content-Type": "application/json"}, "body": "{nope"}`, "body is not valid JSON"},
		{`{"resource": "api", "method": "POST", "path": "/", "headers": {"Content-Type": "text/csv"}, "body": {"a": 1}}`, "body is JSON but Content-Type is text/csv"},
		{`{"resource": "api", "method": "GET", "path": "/a b"}`, "percent-encode it"},
		{`{"resource": "api", "method": "GET", "path": "/a%zz"}`, "not valid percent-encoding"},
	} {
		_, err := (&Request{}).Decode(json.RawMessage(tc.args))
		if !errors.Is(err, tools.ErrInvalidArguments) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestCanonicalIsStable(t *testing.T) {
	a1, _ := (&Request{}).Decode(json.RawMessage(`{"resource": "api", "method": "post", "path": "/x", "query": {"b": "2", "a": "1"}, "body": {"z": 1,  "a": [1, 2]}}`))
	a2, _ := (&Request{}).Decode(json.RawMessage(`{"body": {"z": 1, "a": [1,2]}, "query": {"a": "1", "b": "2"}, "path": "/x", "method": "POST", "resource": "api"}`))
	if string(a1.Canonical()) != string(a2.Canonical()) {
		t.Errorf("canonical forms differ:\n%s\n%s", a1.Canonical(), a2.Canonical())
	}
	if want := `{"resource":"api","method":"POST","path":"/x","query":{"a":["1"],"b":["2"]},"headers":{"Content-Type":"application/json"},"body":{"z":1,"a":[1,2]}}`; string(a1.Canonical()) != want {
		t.Errorf("canonical\n got %s\nwant %s", a1.Canonical(), want)
	}
}
