package ssh

import (
	"os"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// TestExamplePolicy runs examples/policies/ssh.cases.yaml against ssh.yaml
// with facts from this package, as `airlock policy test` does.
func TestExamplePolicy(t *testing.T) {
	p, err := policy.Load("../../examples/policies/ssh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../examples/policies/ssh.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := policy.ParseCases(data, "ssh.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tool := &RunSSH{}
	results := policy.RunCases(p, cases, func(c policy.Case) (policy.Input, error) {
		return tools.CaseInput(tool, c, nil)
	})
	if len(results) == 0 {
		t.Fatal("no cases")
	}
	for _, r := range results {
		if !r.Pass {
			t.Error(r.String())
		}
	}
}
