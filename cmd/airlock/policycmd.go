package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check and test policy files",
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyTestCmd())
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Compile a policy file and report every error, naming the rule and line",
		Long: `Compile every rule's when expression against the typed environment. An unknown
name, a type error, a bad effect or a missing grant fails with the rule's name
and line. With --config, grants and mask profiles are also checked against the
configured resources and masking profiles.`,
		Example: `  airlock policy check examples/policies/postgres.yaml
  airlock policy check policy.yaml --config airlock.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := policy.Load(args[0])
			if err != nil {
				return err
			}
			if cfgPath != "" {
				if err := checkConfig(cfgPath); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rules, OK (version %s)\n", args[0], len(p.Rules()), p.Version())
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "also check the config that uses this policy")
	return cmd
}

// checkConfig loads a config with its policy and resources, contacting no
// backend.
func checkConfig(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	st, err := broker.BuildState(cfg, kinds(), nil)
	if err != nil {
		return err
	}
	st.Close()
	return nil
}

func newPolicyTestCmd() *cobra.Command {
	var policyPath, cfgPath string
	cmd := &cobra.Command{
		Use:   "test --policy FILE CASES.yaml",
		Short: "Run example calls against a policy and compare each decision with the expected one",
		Long: `Each case names an identity, a tool, a resource and the tool's arguments, and
the effect (and optionally the deciding rule) it expects. Facts are computed by
the real tool (SQL through PostgreSQL's parser, shell commands through a shell
parser), exactly as airlock does for a live call. Exits non-zero when a case
does not get the decision it expects: keep the cases next to the policy and run
them in CI.

With --config, resources' kinds and labels come from the config; otherwise a
case's resource has the kind of its tool and no labels.`,
		Example: `  airlock policy test --config examples/policies/airlock.yaml \
    --policy examples/policies/postgres.yaml examples/policies/postgres.cases.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := policy.Load(policyPath)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			cases, err := policy.ParseCases(data, args[0])
			if err != nil {
				return err
			}
			var cfg *config.Config
			if cfgPath != "" {
				if cfg, err = config.Load(cfgPath); err != nil {
					return err
				}
			}
			results := policy.RunCases(p, cases, caseInput(cfg))
			failed := 0
			for _, r := range results {
				fmt.Fprintln(cmd.OutOrStdout(), r.String())
				if !r.Pass {
					failed++
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d passed, %d failed\n", len(results)-failed, failed)
			if failed > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&policyPath, "policy", "p", "policy.yaml", "policy file")
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "config file for resource kinds and labels")
	return cmd
}

// caseInput builds the policy input for a case the way the broker does for
// a live call: the tool decodes the arguments and computes the facts.
func caseInput(cfg *config.Config) func(policy.Case) (policy.Input, error) {
	byName := map[string]tools.Tool{}
	for _, t := range allTools() {
		byName[t.Name()] = t
	}
	return func(c policy.Case) (policy.Input, error) {
		t, ok := byName[c.Tool]
		if !ok {
			return c.Input(), fmt.Errorf("unknown tool %q", c.Tool)
		}
		if cfg == nil {
			return tools.CaseInput(t, c, nil)
		}
		for i := range cfg.Resources {
			if cfg.Resources[i].Name == c.Resource {
				return tools.CaseInput(t, c, &cfg.Resources[i])
			}
		}
		return c.Input(), fmt.Errorf("resource %q is not in %s", c.Resource, cfg.Source)
	}
}
