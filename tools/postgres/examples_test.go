package postgres

import (
	"os"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// TestExamplePolicy runs examples/policies/postgres.cases.yaml against
// postgres.yaml with facts from this package (as `airlock policy test`
// does), with the resources' labels of examples/policies/airlock.yaml.
func TestExamplePolicy(t *testing.T) {
	p, err := policy.Load("../../examples/policies/postgres.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../examples/policies/postgres.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := policy.ParseCases(data, "postgres.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]*tools.ResourceSpec{
		"orders":         {Name: "orders", Kind: KindName, Labels: map[string]string{"env": "prod"}},
		"orders-staging": {Name: "orders-staging", Kind: KindName, Labels: map[string]string{"env": "staging"}},
	}
	tool := &QueryDB{}
	results := policy.RunCases(p, cases, func(c policy.Case) (policy.Input, error) {
		return tools.CaseInput(tool, c, specs[c.Resource])
	})
	refused := 0
	for _, r := range results {
		if !r.Pass {
			t.Error(r.String())
		}
		if r.Refused != "" {
			refused++
		}
	}
	if len(results) < 30 || refused < 3 {
		t.Errorf("%d cases, %d refused before policy: the example lost its cases", len(results), refused)
	}
}
