package kubernetes

import (
	"os"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// TestExamplePolicy runs examples/policies/kubernetes.cases.yaml against
// kubernetes.yaml with facts from this package and resource labels from
// examples/kubernetes/airlock.yaml, as `airlock policy test --config` does.
func TestExamplePolicy(t *testing.T) {
	p, err := policy.Load("../../examples/policies/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../examples/policies/kubernetes.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := policy.ParseCases(data, "kubernetes.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfgData, err := os.ReadFile("../../examples/kubernetes/airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Resources []tools.ResourceSpec `yaml:"resources"`
	}
	if err := yaml.Unmarshal(cfgData, &cfg); err != nil {
		t.Fatal(err)
	}
	specs := map[string]tools.ResourceSpec{}
	env := mapEnv{
		vars:  map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
		files: map[string]string{inClusterTokenFile: "t", inClusterCAFile: "ca", "/etc/airlock/staging.kubeconfig": testKubeconfig},
	}
	for _, s := range cfg.Resources {
		if _, err := NewKind().Open(s, env); err != nil {
			t.Errorf("example config: %v", err)
		}
		specs[s.Name] = s
	}
	byName := map[string]tools.Tool{}
	for _, tool := range Tools() {
		byName[tool.Name()] = tool
	}
	results := policy.RunCases(p, cases, func(c policy.Case) (policy.Input, error) {
		spec := specs[c.Resource]
		return tools.CaseInput(byName[c.Tool], c, &spec)
	})
	if len(results) == 0 {
		t.Fatal("no cases")
	}
	for _, r := range results {
		if !r.Pass {
			t.Error(r.String())
		}
	}
	// Every grant the policy hands out exists on the resources it targets.
	for name, grants := range map[string][]string{"prod": {"viewer", "secret-reader", "operator"}, "staging": {"as-caller"}} {
		for _, g := range grants {
			if _, ok := specs[name].Grants[g]; !ok {
				t.Errorf("resource %s has no grant %s", name, g)
			}
		}
	}
}
