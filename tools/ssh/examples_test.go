package ssh

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
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
		in := c.Input()
		in.Resource.Kind = KindName
		raw := map[string]any{"resource": c.Resource}
		for k, v := range c.Args {
			raw[k] = v
		}
		b, _ := json.Marshal(raw)
		args, err := tool.Decode(b)
		if err != nil {
			return in, err
		}
		in.SetFacts(tool.Facts(args))
		return in, nil
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
