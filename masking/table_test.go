package masking

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestColumnPatterns(t *testing.T) {
	for _, tt := range []struct {
		pattern string
		ref     ColumnRef
		want    bool
	}{
		{"*.email", ColumnRef{Table: "public.users", Column: "email"}, true},
		{"*.email", ColumnRef{Table: "", Column: "email"}, true}, // computed column
		{"*.email", ColumnRef{Table: "public.users", Column: "email_verified"}, false},
		{"users.ssn", ColumnRef{Table: "public.users", Column: "ssn"}, true},
		{"users.ssn", ColumnRef{Table: "billing.users", Column: "SSN"}, true},
		{"users.ssn", ColumnRef{Table: "public.accounts", Column: "ssn"}, false},
		{"public.users.phone", ColumnRef{Table: "public.users", Column: "phone"}, true},
		{"public.users.phone", ColumnRef{Table: "audit.users", Column: "phone"}, false},
		{"public.users.phone", ColumnRef{Table: "users", Column: "phone"}, true}, // no schema known: compare table.column
		{"*.password*", ColumnRef{Table: "auth.accounts", Column: "password_hash"}, true},
		{"email", ColumnRef{Table: "x.y", Column: "email"}, true},
	} {
		if got := compileColumnPattern(tt.pattern).matches(tt.ref); got != tt.want {
			t.Errorf("%q matches %+v = %v, want %v", tt.pattern, tt.ref, got, tt.want)
		}
	}
}

func TestMaskTable(t *testing.T) {
	p := piiProfile(t)
	cols := []ColumnRef{{Table: "public.users", Column: "id"}, {Table: "public.users", Column: "email"}, {Table: "public.users", Column: "note"}, {Table: "", Column: "card"}, {Table: "public.users", Column: "meta"}, {Table: "public.users", Column: "raw"}}
	rows := [][]any{
		{int64(1), "a@example.com", "call (415) 555-2671", int64(4111111111111111), map[string]any{"k": []any{"b@example.org", 3.5}}, []byte("ssn 123-45-6789")},
		{int64(2), nil, "nothing", nil, nil, []byte("plain")},
	}
	c, err := p.MaskTable(cols, rows)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{
		{int64(1), "[COLUMN]", "call [PHONE]", "[PAYMENT_CARD]", map[string]any{"k": []any{"[EMAIL]", 3.5}}, []byte("ssn [US_SSN]")},
		{int64(2), nil, "nothing", nil, nil, []byte("plain")},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows = %#v\nwant %#v", rows, want)
	}
	wantCounts := Counts{"column": 1, "phone": 1, "payment_card": 1, "email": 1, "us_ssn": 1}
	if !reflect.DeepEqual(c, wantCounts) {
		t.Errorf("counts = %v, want %v", c, wantCounts)
	}
}

// A column is masked whole when a rule covers it, a base column it is
// derived from, or (under a profile with column rules) when its origin is
// unknown; MaskTableWhy says which, per column. The name a query gives the
// column plays no part.
func TestMaskTableReasons(t *testing.T) {
	p := piiProfile(t)
	email := BaseColumn{Table: "public.customers", Column: "email"}
	tests := []struct {
		name string
		ref  ColumnRef
		want string // "" leaves the value to the detectors
	}{
		{"own column", ColumnRef{Table: "public.customers", Column: "email"}, "column rule *.email"},
		{"own column under an alias", ColumnRef{Table: "public.customers", Column: "card_number"}, "column rule *.card_number"},
		{"derived", ColumnRef{From: []BaseColumn{{Table: "public.customers", Column: "name"}, email}}, "derived from public.customers.email (rule *.email)"},
		{"view column", ColumnRef{Table: "public.contacts", Column: "mail", From: []BaseColumn{email}}, "derived from public.customers.email (rule *.email)"},
		{"unknown", ColumnRef{Unknown: "function peek is not built into PostgreSQL"}, "unknown origin: function peek is not built into PostgreSQL; masked because profile pii protects columns"},
		{"own rule before unknown", ColumnRef{Table: "public.customers", Column: "email", Unknown: "x"}, "column rule *.email"},
		{"clean base column", ColumnRef{Table: "public.customers", Column: "name"}, ""},
		{"clean computed column", ColumnRef{From: []BaseColumn{{Table: "public.customers", Column: "country"}}}, ""},
		{"from no column", ColumnRef{}, ""},
	}
	cols := make([]ColumnRef, len(tests))
	row := make([]any, len(tests))
	for i, tt := range tests {
		cols[i], row[i] = tt.ref, "plain text"
	}
	rows := [][]any{row}
	c, why, err := p.MaskTableWhy(cols, rows)
	if err != nil {
		t.Fatal(err)
	}
	masked := 0
	for i, tt := range tests {
		if why[i] != tt.want {
			t.Errorf("%s: reason %q, want %q", tt.name, why[i], tt.want)
		}
		wantValue := "plain text"
		if tt.want != "" {
			wantValue, masked = "[COLUMN]", masked+1
		}
		if rows[0][i] != wantValue {
			t.Errorf("%s: value %q, want %q", tt.name, rows[0][i], wantValue)
		}
	}
	if c[RuleColumn] != masked {
		t.Errorf("column count %d, want %d", c[RuleColumn], masked)
	}

	// A profile without column rules masks nothing whole, unknown or not.
	def, _ := mustEngine(t).Profile("default")
	rows = [][]any{{"plain text"}}
	if _, why, err := def.MaskTableWhy([]ColumnRef{{Unknown: "x"}}, rows); err != nil || why != nil || rows[0][0] != "plain text" {
		t.Errorf("default profile: why %q, value %v, err %v", why, rows[0][0], err)
	}
	// Clean columns only: no reasons at all.
	if _, why, _ := p.MaskTableWhy([]ColumnRef{{Table: "t", Column: "name"}}, [][]any{{"x"}}); why != nil {
		t.Errorf("clean table: why = %q", why)
	}
}

func mustEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestMaskTableFailsClosed(t *testing.T) {
	p := piiProfile(t)
	type opaque struct{ S string }
	_, err := p.MaskTable([]ColumnRef{{Table: "t", Column: "x"}}, [][]any{{opaque{"a@example.com"}}})
	if !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("err = %v, want ErrUnsupportedType", err)
	}
	_, err = p.MaskTable([]ColumnRef{{Table: "t", Column: "x"}}, [][]any{{"a", "b"}})
	if err == nil {
		t.Error("row wider than columns accepted")
	}
	// Known scalar types pass through.
	row := []any{true, 1.5, time.Unix(0, 0), json.Number("12"), int32(7), uint64(3)}
	if _, err := p.MaskTable(make([]ColumnRef, len(row)), [][]any{row}); err != nil {
		t.Error(err)
	}
}

func TestMaskTableColumnReplacements(t *testing.T) {
	for _, tt := range []struct {
		replace string
		in      any
		want    string
	}{
		{ReplaceRedact, "4111 1111 1111 1111", "[COLUMN]"},
		{ReplacePartial, "4111 1111 1111 1111", "**** **** **** 1111"},
		{ReplacePartial, "john", "[COLUMN]"},
		{ReplaceHash, "john", "[COLUMN:"},
	} {
		e, err := New(Config{Profiles: map[string]ProfileConfig{"p": {Columns: []string{"*.secret"}, Replace: tt.replace}}}, testKey)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := e.Profile("p")
		rows := [][]any{{tt.in}}
		if _, err := p.MaskTable([]ColumnRef{{Table: "t", Column: "secret"}}, rows); err != nil {
			t.Fatal(err)
		}
		if got := rows[0][0].(string); len(got) < len(tt.want) || got[:len(tt.want)] != tt.want {
			t.Errorf("%s: got %q, want prefix %q", tt.replace, got, tt.want)
		}
	}
}

func TestMaskObject(t *testing.T) {
	p := piiProfile(t)
	var obj any
	doc := `{"kind": "List", "items": [
	  {"kind": "Secret", "metadata": {"name": "db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}", "team": "a@example.com"}},
	   "data": {"password": "aHVudGVyMg==", "nested": {"x": 1}}, "stringData": {"token": "plain"}},
	  {"kind": "Pod", "spec": {"containers": [{"name": "app", "env": [
	     {"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "API_KEY", "value": "k"}, {"name": "LOG_LEVEL", "value": "debug"},
	     {"name": "GITHUB", "value": "ghp_1234567890abcdefghijABCDEFGHIJ123456"}]}]}}
	]}`
	if err := json.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	out, c, err := p.MaskObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	items := out.(map[string]any)["items"].([]any)
	secret := items[0].(map[string]any)
	if got := secret["data"].(map[string]any)["password"]; got != "[K8S_SECRET]" {
		t.Errorf("secret data = %v", got)
	}
	if got := secret["data"].(map[string]any)["nested"].(map[string]any)["x"]; got != "[K8S_SECRET]" {
		t.Errorf("nested secret data = %v", got)
	}
	if got := secret["stringData"].(map[string]any)["token"]; got != "[K8S_SECRET]" {
		t.Errorf("stringData = %v", got)
	}
	ann := secret["metadata"].(map[string]any)["annotations"].(map[string]any)
	if ann[lastAppliedKey] != "[LAST_APPLIED]" || ann["team"] != "[EMAIL]" {
		t.Errorf("annotations = %v", ann)
	}
	env := items[1].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"].([]any)
	var vals []any
	for _, e := range env {
		vals = append(vals, e.(map[string]any)["value"])
	}
	if !reflect.DeepEqual(vals, []any{"[ENV_SECRET]", "[ENV_SECRET]", "debug", "[GITHUB_TOKEN]"}) {
		t.Errorf("env values = %v", vals)
	}
	want := Counts{RuleK8sSecret: 3, RuleLastApplied: 1, RuleEnvSecret: 2, "email": 1, "github_token": 1}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("counts = %v, want %v", c, want)
	}
}

func TestMaskObjectFields(t *testing.T) {
	e, err := New(Config{Profiles: map[string]ProfileConfig{"p": {Fields: []string{"data.*", "spec.containers[].args[]", "spec.containers[].image"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.Profile("p")
	obj := []any{map[string]any{
		"kind": "ConfigMap", "data": map[string]any{"a": "1", "b": "2"},
		"spec": map[string]any{"containers": []any{map[string]any{"image": "x:1", "args": []any{"--token", "t"}, "name": "keep"}}},
	}}
	out, c, err := p.MaskObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{map[string]any{
		"kind": "ConfigMap", "data": map[string]any{"a": "[FIELD]", "b": "[FIELD]"},
		"spec": map[string]any{"containers": []any{map[string]any{"image": "[FIELD]", "args": []any{"[FIELD]", "[FIELD]"}, "name": "keep"}}},
	}}
	if !reflect.DeepEqual(out, want) || c[RuleField] != 5 {
		t.Errorf("got %v %v", out, c)
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"DB_PASSWORD": true, "api_key": true, "GITHUB_TOKEN": true, "AWS_SECRET_ACCESS_KEY": true, "CREDENTIALS_FILE": true,
		"SENTRY_DSN": true, "PG_PASS": true, "LOG_LEVEL": false, "MONKEY": false, "KEYSPACE": false, "PORT": false,
	} {
		if got := secretName(name); got != want {
			t.Errorf("secretName(%q) = %v", name, got)
		}
	}
}
