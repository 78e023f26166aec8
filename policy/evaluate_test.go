package policy_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// designPolicy is the example from DESIGN.md, kept in examples/policies.
var designPolicy = func() string {
	b, err := os.ReadFile("../examples/policies/design.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func sqlInput(groups []string, stmts ...policy.Statement) policy.Input {
	readOnly := true
	for _, s := range stmts {
		if s.Kind != "select" && s.Kind != "show" {
			readOnly = false
		}
	}
	return policy.Input{
		Identity: policy.Identity{Subject: "alice", Groups: groups, Method: "local"},
		Tool:     "query_db",
		Resource: policy.Resource{Name: "orders", Kind: "postgres", Labels: map[string]string{"env": "prod"}},
		SQL:      policy.SQL{Statements: stmts, StatementCount: len(stmts), ReadOnly: readOnly},
	}
}

func readOrders(groups ...string) policy.Input {
	return sqlInput(groups, policy.Statement{Kind: "select", TablesRead: []string{"orders"}})
}

func names(ms []policy.Match) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Rule
	}
	return out
}

func TestDesignPolicy(t *testing.T) {
	p := mustParse(t, designPolicy)
	tests := []struct {
		name        string
		in          policy.Input
		wantEffect  policy.Effect
		wantRule    string
		wantMatched []string
	}{
		{"engineer reads", readOrders("eng"), policy.Allow, "engineers-read-orders", []string{"engineers-read-orders"}},
		{"non-engineer reads", readOrders("sales"), policy.Deny, "", []string{}},
		{"nil groups", readOrders(), policy.Deny, "", []string{}},
		{"write", sqlInput([]string{"eng"}, policy.Statement{Kind: "update", HasWhere: true}), policy.Approve, "writes-need-a-dba", []string{"writes-need-a-dba"}},
		{"drop", sqlInput([]string{"eng"}, policy.Statement{Kind: "drop"}), policy.Deny, "no-ddl", []string{"writes-need-a-dba", "no-ddl"}},
		{"select then truncate", sqlInput([]string{"eng"}, policy.Statement{Kind: "select"}, policy.Statement{Kind: "truncate"}), policy.Deny, "no-ddl", []string{"writes-need-a-dba", "no-ddl"}},
		{"other tool", policy.Input{Tool: "run_ssh"}, policy.Deny, "", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Evaluate(tt.in)
			if d.Effect != tt.wantEffect || d.Rule != tt.wantRule {
				t.Errorf("got %s by %q, want %s by %q (%+v)", d.Effect, d.Rule, tt.wantEffect, tt.wantRule, d)
			}
			if got := names(d.Matched); !slices.Equal(got, tt.wantMatched) {
				t.Errorf("matched %v, want %v", got, tt.wantMatched)
			}
			if d.PolicyVersion != p.Version() {
				t.Errorf("PolicyVersion %q, want %q", d.PolicyVersion, p.Version())
			}
		})
	}

	d := p.Evaluate(readOrders("eng"))
	if d.Grant != "readonly" || d.Mask != "pii" || d.Limits != (policy.Limits{MaxRows: 500, Timeout: 10 * time.Second}) {
		t.Errorf("allow decision lacks its constraints: %+v", d)
	}
	d = p.Evaluate(sqlInput([]string{"eng"}, policy.Statement{Kind: "insert"}))
	if d.Grant != "readwrite" || d.Approvers == nil || !slices.Equal(d.Approvers.Groups, []string{"dba"}) || d.Approvers.Min != 1 {
		t.Errorf("approve decision lacks its constraints: %+v", d)
	}
	d = p.Evaluate(sqlInput([]string{"eng"}, policy.Statement{Kind: "drop"}))
	if d.Message != "DDL is not allowed through agents" || d.Grant != "" || d.Approvers != nil {
		t.Errorf("deny decision: %+v", d)
	}
}

const precedencePolicy = `rules:
  - name: allow-1
    when: '"allow1" in identity.groups'
    effect: allow
    grant: g-allow-1
    message: first allow
  - name: approve-1
    when: '"approve1" in identity.groups'
    effect: approve
    grant: g-approve-1
    approvers: {groups: [dba], min: 2}
  - name: allow-2
    when: '"allow2" in identity.groups'
    effect: allow
    grant: g-allow-2
  - name: deny-1
    when: '"deny1" in identity.groups'
    effect: deny
  - name: approve-2
    when: '"approve2" in identity.groups'
    effect: approve
    grant: g-approve-2
    approvers: {groups: [sec]}
  - name: deny-2
    when: '"deny2" in identity.groups'
    effect: deny
    message: second deny
`

func TestPrecedence(t *testing.T) {
	p := mustParse(t, precedencePolicy)
	tests := []struct {
		groups      []string
		wantEffect  policy.Effect
		wantRule    string
		wantMessage string
		wantGrant   string
		wantMatched []string
	}{
		{nil, policy.Deny, "", policy.DefaultDenyMessage, "", []string{}},
		{[]string{"allow1"}, policy.Allow, "allow-1", "first allow", "g-allow-1", []string{"allow-1"}},
		{[]string{"allow2"}, policy.Allow, "allow-2", "allowed by rule allow-2", "g-allow-2", []string{"allow-2"}},
		{[]string{"allow2", "allow1"}, policy.Allow, "allow-1", "first allow", "g-allow-1", []string{"allow-1", "allow-2"}},
		{[]string{"allow1", "approve2"}, policy.Approve, "approve-2", "approval required by rule approve-2", "g-approve-2", []string{"allow-1", "approve-2"}},
		{[]string{"approve2", "approve1", "allow2"}, policy.Approve, "approve-1", "approval required by rule approve-1", "g-approve-1", []string{"approve-1", "allow-2", "approve-2"}},
		{[]string{"allow1", "approve1", "deny2"}, policy.Deny, "deny-2", "second deny", "", []string{"allow-1", "approve-1", "deny-2"}},
		{[]string{"deny2", "deny1", "allow1"}, policy.Deny, "deny-1", "denied by rule deny-1", "", []string{"allow-1", "deny-1", "deny-2"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.groups, "+"), func(t *testing.T) {
			d := p.Evaluate(policy.Input{Identity: policy.Identity{Groups: tt.groups}})
			if d.Effect != tt.wantEffect || d.Rule != tt.wantRule || d.Message != tt.wantMessage || d.Grant != tt.wantGrant {
				t.Errorf("got %s by %q (%q, grant %q), want %s by %q (%q, grant %q)",
					d.Effect, d.Rule, d.Message, d.Grant, tt.wantEffect, tt.wantRule, tt.wantMessage, tt.wantGrant)
			}
			if got := names(d.Matched); !slices.Equal(got, tt.wantMatched) {
				t.Errorf("matched %v, want %v", got, tt.wantMatched)
			}
		})
	}

	d := p.Evaluate(policy.Input{Identity: policy.Identity{Groups: []string{"approve1"}}})
	if d.Approvers == nil || d.Approvers.Min != 2 || !slices.Equal(d.Approvers.Groups, []string{"dba"}) {
		t.Errorf("approvers = %+v", d.Approvers)
	}
	// Every matched entry carries its rule's effect and message.
	d = p.Evaluate(policy.Input{Identity: policy.Identity{Groups: []string{"allow1", "deny2"}}})
	want := []policy.Match{
		{Rule: "allow-1", Effect: policy.Allow, Message: "first allow"},
		{Rule: "deny-2", Effect: policy.Deny, Message: "second deny"},
	}
	if !slices.Equal(d.Matched, want) {
		t.Errorf("matched %+v, want %+v", d.Matched, want)
	}
}

func TestEmptyWhenAlwaysMatches(t *testing.T) {
	p := mustParse(t, "rules:\n  - name: everything\n    effect: allow\n    grant: g\n")
	if d := p.Evaluate(policy.Input{}); d.Effect != policy.Allow || d.Rule != "everything" {
		t.Fatalf("got %+v", d)
	}
}

// Nil and missing values in the environment are false, not errors.
func TestNilAndMissingValues(t *testing.T) {
	p := mustParse(t, `rules:
  - name: eng
    when: '"eng" in identity.groups'
    effect: allow
    grant: g
  - name: prod
    when: resource.labels.env == "prod"
    effect: allow
    grant: g
  - name: prod-index
    when: resource.labels["env"] == "prod"
    effect: allow
    grant: g
  - name: not-prod
    when: resource.labels.env != "prod"
    effect: allow
    grant: g
  - name: any-table
    when: any(sql.tables, {# == "orders"})
    effect: allow
    grant: g
  - name: no-statements
    when: len(sql.statements) == 0 && sql.statement_count == 0
    effect: allow
    grant: g
  - name: claim
    when: identity.claims?.team?.name == "core"
    effect: allow
    grant: g
  - name: arg
    when: args?.limit == nil
    effect: allow
    grant: g
`)
	for _, in := range []policy.Input{
		{},
		{Resource: policy.Resource{Labels: map[string]string{"team": "x"}}, Identity: policy.Identity{Groups: []string{}}},
	} {
		d := p.Evaluate(in)
		want := []string{"not-prod", "no-statements", "arg"}
		if got := names(d.Matched); !slices.Equal(got, want) {
			t.Errorf("matched %v, want %v (%+v)", got, want, d.Matched)
		}
	}
}

// A rule that fails at run time is a matching deny: evaluation fails closed.
func TestEvaluationErrorFailsClosed(t *testing.T) {
	p := mustParse(t, `rules:
  - name: everyone-reads
    effect: allow
    grant: readonly
  - name: limit-compare
    when: args.limit > 100
    effect: allow
    grant: readonly
  - name: deep-claim
    when: identity.claims.org.name == "acme"
    effect: approve
    grant: readwrite
    approvers: {groups: [dba]}
`)
	d := p.Evaluate(policy.Input{Args: map[string]any{"limit": "lots"}})
	if d.Effect != policy.Deny || d.Rule != "limit-compare" {
		t.Fatalf("got %s by %q; want deny by limit-compare: %+v", d.Effect, d.Rule, d)
	}
	if !strings.HasPrefix(d.Message, "rule limit-compare failed to evaluate: ") || strings.Contains(d.Message, "\n") {
		t.Errorf("message = %q", d.Message)
	}
	want := []string{"everyone-reads", "limit-compare", "deep-claim"}
	if got := names(d.Matched); !slices.Equal(got, want) {
		t.Errorf("matched %v, want %v", got, want)
	}
	for _, m := range d.Matched[1:] {
		if m.Effect != policy.Deny || !strings.Contains(m.Message, "failed to evaluate") {
			t.Errorf("failed rule recorded as %+v", m)
		}
	}
	if d.Grant != "" || d.Mask != "" {
		t.Errorf("fail-closed decision carries a grant: %+v", d)
	}

	// The policy keeps working after an error.
	d = p.Evaluate(policy.Input{Args: map[string]any{"limit": 5}, Identity: policy.Identity{Claims: map[string]any{"org": map[string]any{"name": "x"}}}})
	if d.Effect != policy.Allow || d.Rule != "everyone-reads" {
		t.Errorf("after an error: %+v", d)
	}
}

func TestDecisionJSON(t *testing.T) {
	p := mustParse(t, "rules: []\n")
	b, err := json.Marshal(p.Evaluate(policy.Input{}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"matched":[]`) {
		t.Errorf("default deny encodes matched as %s; want []", b)
	}
}

func TestExpressionsSeeEveryFact(t *testing.T) {
	p := mustParse(t, `rules:
  - name: everything
    when: >-
      identity.subject == "alice" && identity.email endsWith "@example.com" &&
      identity.InGroup("eng") && identity.method == "oidc" && identity.issuer != "" &&
      identity.token_id == "t1" && identity.claims.team == "core" &&
      tool == "query_db" && resource.name == "orders" && resource.kind == "postgres" &&
      args.sql startsWith "select" &&
      sql.read_only && sql.statement_count == 1 && "orders" in sql.tables &&
      "orders" in sql.tables_read && len(sql.tables_written) == 0 && sql.parse_error == "" &&
      all(sql.statements, {.kind == "select" && !.has_where && len(.functions) == 1}) &&
      "now" in sql.functions &&
      !shell.uses_sudo && len(shell.commands) == 0 && shell.parse_error == "" &&
      k8s.verb == "" && !k8s.all_namespaces &&
      now.Year() == 2026 && now > date("2026-01-01")
    effect: allow
    grant: g
`)
	in := readOrders("eng")
	in.Identity.Email, in.Identity.Method, in.Identity.Issuer, in.Identity.TokenID = "alice@example.com", "oidc", "https://idp", "t1"
	in.Identity.Claims = map[string]any{"team": "core"}
	in.Args = map[string]any{"sql": "select now() from orders"}
	in.SQL.Statements[0].Functions = []string{"now"}
	in.SQL.Tables, in.SQL.TablesRead, in.SQL.Functions = []string{"orders"}, []string{"orders"}, []string{"now"}
	in.Now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if d := p.Evaluate(in); d.Effect != policy.Allow {
		t.Fatalf("got %+v", d)
	}
}

// Rules that start with tool == "..." are skipped for other tools; the
// result must be what running them would give.
func TestToolPrefilterKeepsSemantics(t *testing.T) {
	p := mustParse(t, `rules:
  - name: leftmost
    when: tool == "query_db" && args.n > 1
    effect: allow
    grant: g
  - name: reversed
    when: '"query_db" == tool && sql.read_only'
    effect: allow
    grant: g
  - name: not-leftmost
    when: args.n > 1 && tool == "query_db"
    effect: allow
    grant: g
  - name: or
    when: tool == "query_db" || tool == "run_ssh"
    effect: allow
    grant: g
  - name: grouped
    when: (tool == "run_ssh" && !shell.uses_sudo) && "ops" in identity.groups
    effect: allow
    grant: g
`)
	tests := []struct {
		in   policy.Input
		want []string
	}{
		{policy.Input{Tool: "query_db", SQL: policy.SQL{ReadOnly: true}, Args: map[string]any{"n": 2}}, []string{"leftmost", "reversed", "not-leftmost", "or"}},
		// args.n is a string: rules that reach the comparison fail closed;
		// the skipped ones could never have reached it.
		{policy.Input{Tool: "run_ssh", Args: map[string]any{"n": "x"}, Identity: policy.Identity{Groups: []string{"ops"}}}, []string{"not-leftmost", "or", "grouped"}},
		{policy.Input{Tool: "kubectl_get"}, []string{"not-leftmost"}},
	}
	for _, tt := range tests {
		d := p.Evaluate(tt.in)
		if got := names(d.Matched); !slices.Equal(got, tt.want) {
			t.Errorf("%s: matched %v, want %v (%+v)", tt.in.Tool, got, tt.want, d.Matched)
		}
	}
}
