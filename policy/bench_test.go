package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

// benchPolicy writes n rules of the kinds a large organisation accumulates:
// per-team reads, per-resource write approvals, global and per-environment
// denials, and ssh and kubernetes rules that a query_db call skips on the
// first comparison.
func benchPolicy(n int) string {
	templates := []func(i int) string{
		func(i int) string {
			return fmt.Sprintf(`  - name: team-%d-reads-db-%d
    when: tool == "query_db" && resource.name == "db-%d" && "team-%d" in identity.groups && sql.read_only
    effect: allow
    grant: readonly
    mask: pii
    limits: {max_rows: 500, timeout: 10s}
`, i, i, i, i)
		},
		func(i int) string {
			return fmt.Sprintf(`  - name: writes-on-db-%d-need-a-dba
    when: tool == "query_db" && resource.name == "db-%d" && !sql.read_only
    effect: approve
    grant: readwrite
    approvers: {groups: [dba-%d], min: 1}
`, i, i, i)
		},
		func(i int) string {
			return fmt.Sprintf(`  - name: no-ddl-in-env-%d
    when: tool == "query_db" && resource.labels.env == "env-%d" && any(sql.statements, {.kind in ["drop", "truncate", "alter", "grant"]})
    effect: deny
`, i, i)
		},
		func(i int) string {
			return fmt.Sprintf(`  - name: no-dangerous-functions-%d
    when: tool == "query_db" && any(sql.functions, {# in ["pg_terminate_backend", "pg_read_file", "lo_import", "dblink-%d"]})
    effect: deny
`, i, i)
		},
		func(i int) string {
			return fmt.Sprintf(`  - name: ops-%d-on-host-%d
    when: tool == "run_ssh" && resource.name == "host-%d" && "ops-%d" in identity.groups && !shell.uses_sudo
    effect: allow
    grant: operator
`, i, i, i, i)
		},
		func(i int) string {
			return fmt.Sprintf(`  - name: viewers-ns-%d
    when: tool == "kubectl_get" && k8s.namespace == "ns-%d" && k8s.verb in ["get", "list"] && k8s.resource != "secrets"
    effect: allow
    grant: viewer
`, i, i)
		},
		func(i int) string {
			return fmt.Sprintf(`  - name: contractors-%d-denied-on-prod
    when: identity.email endsWith "@contractor-%d.example" && resource.labels.env == "prod"
    effect: deny
`, i, i)
		},
	}
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		b.WriteString(templates[i%len(templates)](i))
	}
	return b.String()
}

// benchInput is an engineer reading one table: the common call.
func benchInput() policy.Input {
	in := readOrders("eng", "team-7", "oncall")
	in.Identity.Email = "alice@example.com"
	in.Resource.Name = "db-7"
	in.SQL.Tables = []string{"orders"}
	in.SQL.TablesRead = []string{"orders"}
	in.Args = map[string]any{"sql": "select id, total from orders where id = 42"}
	return in
}

func benchmarkEvaluate(b *testing.B, n int) {
	p := mustParse(b, benchPolicy(n))
	if got := len(p.Rules()); got != n {
		b.Fatalf("policy has %d rules", got)
	}
	in := benchInput()
	if d := p.Evaluate(in); n > 1 && (d.Effect != policy.Allow || d.Rule != "team-7-reads-db-7") {
		b.Fatalf("unexpected decision %+v", d)
	}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		p.Evaluate(in)
	}
	reportCPU(b, start)
}

func BenchmarkEvaluate1Rule(b *testing.B)    { benchmarkEvaluate(b, 1) }
func BenchmarkEvaluate200Rules(b *testing.B) { benchmarkEvaluate(b, 200) }

func TestBenchPolicyCompiles(t *testing.T) {
	p := mustParse(t, benchPolicy(200))
	d := p.Evaluate(benchInput())
	if d.Effect != policy.Allow || d.Rule != "team-7-reads-db-7" {
		t.Fatalf("got %+v", d)
	}
}
