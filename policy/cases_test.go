package policy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

const designCases = `cases:
  - name: engineer reads orders
    identity: {subject: alice, groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: select 1}
    expect: {effect: allow, rule: engineers-read-orders, grant: readonly, mask: pii}
  - name: outsider
    identity: {subject: bob}
    tool: query_db
    resource: orders
    args: {sql: select 1}
    expect: {effect: deny, default_deny: true}
  - name: drop is denied
    identity: {subject: alice, groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: drop table orders}
    expect: {effect: deny, rule: no-ddl, matched: [writes-need-a-dba, no-ddl]}
  - name: wrong expectation
    identity: {subject: alice, groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: drop table orders}
    expect: {effect: allow, rule: engineers-read-orders}
  - name: build fails
    identity: {subject: alice}
    tool: query_db
    resource: nowhere
    expect: {effect: deny}
`

// buildByHand stands in for the CLI, which computes facts through the tool.
func buildByHand(c policy.Case) (policy.Input, error) {
	if c.Resource == "nowhere" {
		return policy.Input{}, errors.New(`unknown resource "nowhere"`)
	}
	in := c.Input()
	in.Resource.Kind = "postgres"
	sql, _ := c.Args["sql"].(string)
	kind, _, _ := strings.Cut(sql, " ")
	in.SQL = policy.SQL{Statements: []policy.Statement{{Kind: kind}}, StatementCount: 1, ReadOnly: kind == "select"}
	return in, nil
}

func TestRunCases(t *testing.T) {
	p := mustParse(t, designPolicy)
	cases, err := policy.ParseCases([]byte(designCases), "cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	results := policy.RunCases(p, cases, buildByHand)
	want := []string{
		"PASS engineer reads orders",
		"PASS outsider",
		"PASS drop is denied",
		`FAIL wrong expectation: expected allow by engineers-read-orders, got deny by no-ddl (matched: writes-need-a-dba[approve], no-ddl[deny])`,
		`FAIL build fails: building the call: unknown resource "nowhere"`,
	}
	if len(results) != len(want) {
		t.Fatalf("got %d results", len(results))
	}
	for i, r := range results {
		if got := r.String(); got != want[i] {
			t.Errorf("result %d:\n got %s\nwant %s", i, got, want[i])
		}
		if r.Pass != strings.HasPrefix(want[i], "PASS") {
			t.Errorf("result %d: Pass = %v", i, r.Pass)
		}
	}
	if results[4].Err == nil {
		t.Error("build error not recorded")
	}
}

// A call refused before policy passes only a case that expects the refusal,
// and a case that expects one fails when policy decides instead.
func TestRunCasesRefused(t *testing.T) {
	p := mustParse(t, designPolicy)
	cases, err := policy.ParseCases([]byte(`cases:
  - name: opaque is refused
    identity: {groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: opaque}
    expect: {effect: refused, reason: cannot see}
  - name: wrong reason
    identity: {groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: opaque}
    expect: {effect: refused, reason: parse}
  - name: expected allow
    identity: {groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: opaque}
    expect: {effect: allow}
  - name: expected refusal
    identity: {groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: select 1}
    expect: {effect: refused}
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	build := func(c policy.Case) (policy.Input, error) {
		if c.Args["sql"] == "opaque" {
			return policy.Input{}, &policy.RefusedError{Reason: "the analysis cannot see through it"}
		}
		return buildByHand(c)
	}
	want := []string{
		"PASS opaque is refused",
		`FAIL wrong reason: expected a refusal mentioning "parse", got refused before policy: the analysis cannot see through it`,
		"FAIL expected allow: expected allow, got refused before policy: the analysis cannot see through it",
		"FAIL expected refusal: expected a refusal before policy, got allow by engineers-read-orders",
	}
	for i, r := range policy.RunCases(p, cases, build) {
		if got := r.String(); got != want[i] {
			t.Errorf("result %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
	if _, err := policy.ParseCases([]byte("cases:\n  - name: a\n    tool: t\n    expect: {effect: refused, rule: x}\n"), "c.yaml"); err == nil ||
		!strings.Contains(err.Error(), "never reaches policy") {
		t.Errorf("refused with a rule: %v", err)
	}
}

func TestCaseResultStringDetails(t *testing.T) {
	p := mustParse(t, designPolicy)
	cases, err := policy.ParseCases([]byte(`cases:
  - name: mask
    identity: {groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: select 1}
    expect: {effect: allow, mask: none, grant: readonly}
  - name: default
    identity: {groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: select 1}
    expect: {effect: deny, default_deny: true}
  - name: no build
    tool: run_ssh
    expect: {effect: deny, default_deny: true, matched: []}
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	results := policy.RunCases(p, cases, buildByHand)
	for i, want := range []string{
		`FAIL mask: expected allow with grant readonly with mask none, got allow by engineers-read-orders with grant "readonly" with mask "pii" (matched: engineers-read-orders[allow])`,
		`FAIL default: expected deny by default, got allow by engineers-read-orders (matched: engineers-read-orders[allow])`,
	} {
		if got := results[i].String(); got != want {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	}
	// A nil build uses Case.Input: no facts, so only default deny.
	if r := policy.RunCases(p, cases[2:], nil)[0]; !r.Pass {
		t.Errorf("nil build: %s", r)
	}
}

func TestParseCasesErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"missing effect", "cases:\n  - name: a\n    tool: query_db\n    expect: {rule: x}\n",
			`c.yaml: case "a" (case 1, line 4): expect.effect is required: one of allow, deny, approve, refused`},
		{"bad effect", "cases:\n  - name: a\n    tool: t\n    expect: {effect: permit}\n",
			`case "a" (case 1, line 4): expect.effect "permit" is not one of allow, deny, approve, refused`},
		{"unknown key", "cases:\n  - name: a\n    tool: t\n    sql: select 1\n    expect: {effect: deny}\n",
			`case "a" (case 1, line 4): unknown key "sql" in a case; valid keys are name, identity, tool, resource, args, facts, expect`},
		{"unknown identity key", "cases:\n  - name: a\n    tool: t\n    identity:\n      group: [eng]\n    expect: {effect: deny}\n",
			`case "a" (case 1, line 5): unknown key "group" in identity; valid keys are subject, email, groups, claims`},
		{"duplicate", "cases:\n  - name: a\n    tool: t\n    expect: {effect: deny}\n  - name: a\n    tool: t\n    expect: {effect: deny}\n",
			`case "a" (case 2, line 5): duplicate case name; case 1 already uses it`},
		{"default deny with allow", "cases:\n  - name: a\n    tool: t\n    expect: {effect: allow, default_deny: true}\n",
			`expect.default_deny needs effect deny, not allow`},
		{"default deny with rule", "cases:\n  - name: a\n    tool: t\n    expect: {effect: deny, default_deny: true, rule: x}\n",
			`expect.default_deny means no rule decided`},
		{"missing tool", "cases:\n  - name: a\n    expect: {effect: deny}\n", `case "a" (case 1, line 2): tool is required`},
		{"missing name", "cases:\n  - tool: t\n    expect: {effect: deny}\n", `case 1 (line 2): name is required`},
		{"no cases", "cases:\n", "no cases"},
		{"top-level key", "case:\n  - name: a\n", `c.yaml: line 1: unknown key "case" in the case file; valid keys are config, policy, cases`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.ParseCases([]byte(tt.src), "c.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v\nwant it to contain %s", err, tt.want)
			}
		})
	}
}
