package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// What the security review found, through the built binary, the demo's
// config and policy, and the official TypeScript SDK: values derived from a
// protected column come back masked whole and the result says why, in its
// structured content and its text; values derived from no protected column
// come back as they are.
func TestMaskingProvenanceThroughTypeScriptSDK(t *testing.T) {
	d := newDemo(t, "127.0.0.1:0")
	d.pg.ExecDB(t, "shop", "ANALYZE customers")
	env := map[string]string{}
	for _, kv := range d.env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "E2E_") {
			env[k] = v
		}
	}
	query := func(sql string) call {
		return call{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": sql}}
	}
	const (
		card  = "derived from public.customers.card_number (rule *.card_number)"
		email = "derived from public.customers.email (rule *.email)"
	)
	tests := []struct {
		sql    string
		masked map[string]string // column → the start of its reason
		want   []string          // must appear in the text
	}{
		{"SELECT n, substr(cn,1,9), substr(cn,10) FROM customers AS c(i,n,e,cn)", map[string]string{"substr": card}, []string{"Ada Lovelace"}},
		{"SELECT split_part(e,'@',1) AS local, split_part(e,'@',2) AS domain FROM customers AS c(i,n,e)", map[string]string{"local": email, "domain": email}, nil},
		{"SELECT attname, histogram_bounds FROM pg_stats WHERE tablename = 'customers' AND attname IN ('email', 'card_number')", map[string]string{"histogram_bounds": "unknown origin: statistics samples"}, []string{"card_number", "email"}},
		{"SELECT count(*), max(email) FROM customers", map[string]string{"max": email}, []string{"6"}},
		{"SELECT g FROM generate_series(1,3) g", nil, []string{"1", "2", "3"}},
		{"EXPLAIN SELECT * FROM customers", nil, []string{"Seq Scan on customers"}},
	}
	var calls []call
	for _, tt := range tests {
		calls = append(calls, query(tt.sql))
	}
	tr := runClient(t, map[string]any{
		"transport": "stdio",
		"command":   airlockBin,
		"args":      []string{"stdio", "--config", d.config},
		"env":       env,
		"calls":     calls,
	})
	if len(tr.Results) != len(tests) {
		t.Fatalf("got %d results, want %d", len(tr.Results), len(tests))
	}
	for i, tt := range tests {
		r := tr.Results[i]
		if r.IsError || r.ProtocolError != nil {
			t.Errorf("%s: %+v", tt.sql, r)
			continue
		}
		raw, _ := json.Marshal(r.StructuredContent)
		for _, secret := range []string{"ada@example.com", "example.com", "4111 1111", "5555-5555", "378282246310005"} {
			if strings.Contains(string(raw), secret) || strings.Contains(r.Text, secret) {
				t.Errorf("%s: leaked %q:\n%s", tt.sql, secret, r.Text)
			}
		}
		for _, want := range tt.want {
			if !strings.Contains(r.Text, want) {
				t.Errorf("%s: text lacks %q:\n%s", tt.sql, want, r.Text)
			}
		}
		masked, _ := r.StructuredContent["masked"].(map[string]any)
		if len(masked) != len(tt.masked) {
			t.Errorf("%s: masked = %v, want columns %v", tt.sql, masked, tt.masked)
		}
		for column, reason := range tt.masked {
			got, _ := masked[column].(string)
			if !strings.HasPrefix(got, reason) {
				t.Errorf("%s: column %s masked %q, want %q...", tt.sql, column, got, reason)
			}
			if !strings.Contains(r.Text, "masked: ") || !strings.Contains(r.Text, column) || !strings.Contains(r.Text, got) {
				t.Errorf("%s: the text does not say %s was masked (%s):\n%s", tt.sql, column, got, r.Text)
			}
		}
		if len(tt.masked) == 0 && strings.Contains(r.Text, "masked: ") {
			t.Errorf("%s: the text says something was masked:\n%s", tt.sql, r.Text)
		}
	}
}
