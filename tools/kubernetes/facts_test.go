package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

func TestFacts(t *testing.T) {
	for _, tc := range []struct {
		args string
		want policy.K8s
	}{
		{`{"resource":"prod","kind":"pods"}`, policy.K8s{Verb: "list", Version: "v1", Resource: "pods", Kind: "Pod", Namespace: "default"}},
		{`{"resource":"prod","kind":"po","namespace":"web","name":"api-1"}`, policy.K8s{Verb: "get", Version: "v1", Resource: "pods", Kind: "Pod", Namespace: "web", Name: "api-1"}},
		{`{"resource":"prod","kind":"deploy","label_selector":"app=web"}`, policy.K8s{Verb: "list", Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespace: "default", LabelSelector: "app=web"}},
		{`{"resource":"prod","kind":"deployments.apps","all_namespaces":true}`, policy.K8s{Verb: "list", Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", AllNamespaces: true}},
		{`{"resource":"prod","kind":"Deployment"}`, policy.K8s{Verb: "list", Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespace: "default"}},
		{`{"resource":"prod","kind":"Secret","namespace":"prod"}`, policy.K8s{Verb: "list", Version: "v1", Resource: "secrets", Kind: "Secret", Namespace: "prod"}},
		{`{"resource":"prod","kind":"nodes","namespace":"x"}`, policy.K8s{Verb: "list", Version: "v1", Resource: "nodes", Kind: "Node"}},
		{`{"resource":"prod","kind":"ns","name":"kube-system"}`, policy.K8s{Verb: "get", Version: "v1", Resource: "namespaces", Kind: "Namespace", Name: "kube-system"}},
		{`{"resource":"prod","kind":"events"}`, policy.K8s{Verb: "list", Version: "v1", Resource: "events", Kind: "Event", Namespace: "default"}},
		{`{"resource":"prod","kind":"events.events.k8s.io"}`, policy.K8s{Verb: "list", Group: "events.k8s.io", Version: "v1", Resource: "events", Kind: "Event", Namespace: "default"}},
		{`{"resource":"prod","kind":"Widget"}`, policy.K8s{Verb: "list", Resource: "widget", Kind: "widget", Namespace: "default"}},
		{`{"resource":"prod","kind":"widgets.example.com","namespace":"a"}`, policy.K8s{Verb: "list", Group: "example.com", Resource: "widgets", Kind: "widgets", Namespace: "a"}},
		{`{"resource":"prod","kind":"widgets.v1beta1.example.com"}`, policy.K8s{Verb: "list", Group: "example.com", Version: "v1beta1", Resource: "widgets", Kind: "widgets", Namespace: "default"}},
	} {
		a, err := (&Get{}).Decode([]byte(tc.args))
		if err != nil {
			t.Errorf("Decode(%s): %v", tc.args, err)
			continue
		}
		f, err := (&Get{}).Facts(a)
		if err != nil {
			t.Fatalf("Facts(%s): %v", tc.args, err)
		}
		if got := f.K8s; !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("Facts(%s)\n got %+v\nwant %+v", tc.args, *got, tc.want)
		}
	}
	a, _ := (&Describe{}).Decode([]byte(`{"resource":"prod","kind":"sts","name":"db","namespace":"data"}`))
	want := policy.K8s{Verb: "get", Group: "apps", Version: "v1", Resource: "statefulsets", Kind: "StatefulSet", Namespace: "data", Name: "db"}
	if f, err := (&Describe{}).Facts(a); err != nil || !reflect.DeepEqual(*f.K8s, want) {
		t.Errorf("describe facts %+v (%v), want %+v", f.K8s, err, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{`[]`, "JSON object"},
		{`{"resource":"prod"}`, "kind is required"},
		{`{"kind":"pods"}`, "resource is required"},
		{`{"resource":"prod","kind":"pods","verbose":true}`, `unknown argument "verbose"`},
		{`{"resource":"prod","kind":"pods","namespace":"Bad_NS"}`, "not a namespace name"},
		{`{"resource":"prod","kind":"pods","name":"../secrets"}`, "not an object name"},
		{`{"resource":"prod","kind":"pods/log"}`, "not a kind name"},
		{`{"resource":"prod","kind":"pods","output":"wide"}`, `output "wide"`},
		{`{"resource":"prod","kind":"pods","limit":0}`, "limit must be a whole number from 1 to 1000"},
		{`{"resource":"prod","kind":"pods","limit":1.5}`, "limit must be a whole number"},
		{`{"resource":"prod","kind":"pods","limit":"5"}`, "limit must be a whole number"},
		{`{"resource":"prod","kind":"pods","all_namespaces":"yes"}`, "all_namespaces must be true or false"},
		{`{"resource":"prod","kind":"pods","label_selector":"app in ("}`, "label_selector"},
		{`{"resource":"prod","kind":"pods","field_selector":"a~b"}`, "field_selector"},
		{`{"resource":"prod","kind":"pods","namespace":"a","all_namespaces":true}`, "exclude each other"},
		{`{"resource":"prod","kind":"pods","name":"a","label_selector":"x=y"}`, "exclude each other"},
		{`{"resource":"prod","kind":"pods","name":"a","continue":"abc"}`, "continue pages through a list"},
	} {
		_, err := (&Get{}).Decode([]byte(tc.args))
		if err == nil || !errors.Is(err, tools.ErrInvalidArguments) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v; want ErrInvalidArguments mentioning %q", tc.args, err, tc.want)
		}
	}
	if _, err := (&Describe{}).Decode([]byte(`{"resource":"prod","kind":"pods"}`)); err == nil || !strings.Contains(err.Error(), "name is required") {
		t.Errorf("describe without name = %v", err)
	}
	if _, err := (&Describe{}).Decode([]byte(`{"resource":"prod","kind":"pods","name":"a","limit":1}`)); err == nil || !strings.Contains(err.Error(), `unknown argument "limit"`) {
		t.Errorf("describe with limit = %v", err)
	}
}

func TestCanonicalStable(t *testing.T) {
	a, _ := (&Get{}).Decode([]byte(`{"limit":5,"kind":"pods","resource":"prod","namespace":"web"}`))
	b, _ := (&Get{}).Decode([]byte(`{"resource":"prod","namespace":"web","kind":"pods","limit":5}`))
	if string(a.Canonical()) != string(b.Canonical()) {
		t.Errorf("canonical differs: %s vs %s", a.Canonical(), b.Canonical())
	}
	if want := `{"resource":"prod","kind":"pods","namespace":"web","limit":5}`; string(a.Canonical()) != want {
		t.Errorf("canonical = %s, want %s", a.Canonical(), want)
	}
}

// TestResolveRefusesMismatch shows that a kind policy was told about cannot
// resolve, through discovery, to another group or resource.
func TestResolveRefusesMismatch(t *testing.T) {
	r, err := NewKind().Open(validSpec(), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	res := r.(*Resource)
	evilPods := &apiResource{Group: "evil.example.com", Version: "v1", Resource: "pods", Kind: "Pod", Singular: "pod", Namespaced: true}
	coreSecrets := &apiResource{Version: "v1", Resource: "secrets", Kind: "Secret", Singular: "secret", ShortNames: []string{"sekret"}, Namespaced: true}
	gadgets := &apiResource{Group: "example.com", Version: "v1", Resource: "gadgets", Kind: "Gadget", Singular: "gadget", Namespaced: true}
	res.discovery.index = map[string][]*apiResource{}
	for _, a := range []*apiResource{evilPods, coreSecrets, gadgets} {
		res.discovery.all = append(res.discovery.all, a)
		for _, n := range names(a) {
			res.discovery.index[n] = append(res.discovery.index[n], a)
		}
	}
	res.discovery.fetched = time.Now()
	c := &call{res: res}
	ctx := context.Background()
	for _, tc := range []struct {
		kind string
		want error
	}{
		{"pods", ErrMismatch},   // the table says core pods, the cluster only has evil ones
		{"sekret", ErrMismatch}, // unknown text reaching a built-in kind
		{"gadgets.other.io", ErrUnknownKind},
		{"gadget", nil},
		{"Gadget", nil},
		{"gadgets.example.com", nil},
		{"gadgts", ErrUnknownKind},
	} {
		_, err := c.resolve(ctx, tc.kind)
		if (tc.want == nil) != (err == nil) || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("resolve(%q) = %v, want %v", tc.kind, err, tc.want)
		}
		if errors.Is(err, ErrMismatch) && !errors.Is(err, tools.ErrRefused) {
			t.Errorf("ErrMismatch does not wrap tools.ErrRefused")
		}
	}
	_, err = c.resolve(ctx, "gadgts")
	if err == nil || !strings.Contains(err.Error(), "did you mean gadgets.example.com (Gadget)") {
		t.Errorf("close matches missing: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"pods", "pods", 0}, {"pdos", "pods", 1}, {"deploymnet", "deployment", 1}, {"abc", "ca", 3}, {"a", "", 1}, {"kitten", "sitting", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q,%q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// TestSchemas checks each tool's JSON Schema against what Decode accepts:
// every property decodes, and an argument outside the schema is rejected.
func TestSchemas(t *testing.T) {
	for _, tool := range Tools() {
		var schema struct {
			Type                 string                     `json:"type"`
			Properties           map[string]json.RawMessage `json:"properties"`
			Required             []string                   `json:"required"`
			AdditionalProperties bool                       `json:"additionalProperties"`
		}
		if err := json.Unmarshal(tool.InputSchema(), &schema); err != nil {
			t.Fatalf("%s: schema is not JSON: %v", tool.Name(), err)
		}
		if schema.Type != "object" || schema.AdditionalProperties || len(schema.Required) == 0 {
			t.Errorf("%s: schema %+v", tool.Name(), schema)
		}
		for name := range schema.Properties {
			_, err := tool.Decode(json.RawMessage(`{"` + name + `": 1}`))
			if err != nil && strings.Contains(err.Error(), "unknown argument") {
				t.Errorf("%s: schema property %q is unknown to Decode", tool.Name(), name)
			}
		}
		reads := map[string]bool{"kubectl_get": true, "kubectl_describe": true, "kubectl_logs": true, "kubectl_events": true}
		if tool.Kind() != KindName || tool.ReadOnly() != reads[tool.Name()] || tool.Description() == "" {
			t.Errorf("%s: kind %q read-only %v", tool.Name(), tool.Kind(), tool.ReadOnly())
		}
	}
}
