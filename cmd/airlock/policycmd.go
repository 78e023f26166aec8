package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

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
				if errs := checkConfig(cfgPath, false); len(errs) > 0 {
					for _, e := range errs {
						fmt.Fprintln(cmd.ErrOrStderr(), e)
					}
					return &exitError{code: 1, msg: fmt.Sprintf("%s: %d %s", cfgPath, len(errs), plural(len(errs), "error", "errors"))}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rules, OK (version %s)\n", args[0], len(p.Rules()), p.Version())
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "also check the config that uses this policy")
	return cmd
}

func newPolicyTestCmd() *cobra.Command {
	var policyPath, cfgPath string
	cmd := &cobra.Command{
		Use:   "test [--policy FILE] [--config FILE] CASES.yaml",
		Short: "Run example calls against a policy and compare each decision with the expected one",
		Long: `Each case names an identity, a tool, a resource and the tool's arguments, and
the effect (and optionally the deciding rule) it expects. Facts are computed by
the real tool (SQL through PostgreSQL's parser, shell commands through a shell
parser), exactly as airlock does for a live call. Exits non-zero when a case
does not get the decision it expects: keep the cases next to the policy and run
them in CI.

A case file may name the policy and config it is written for at the top,
relative to the case file:

  config: ../kubernetes/airlock.yaml
  policy: kubernetes.yaml
  cases:
    - ...

--policy and --config override those. With a config, resources' kinds and
labels come from it; otherwise a case's resource has the kind of its tool and
no labels. Without either, the policy is ./policy.yaml.`,
		Example: `  airlock policy test examples/policies/ssh.cases.yaml
  airlock policy test --config examples/policies/airlock.yaml \
    --policy examples/policies/postgres.yaml examples/policies/postgres.cases.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			file, err := policy.ParseCaseFile(data, args[0])
			if err != nil {
				return err
			}
			switch {
			case policyPath != "":
			case file.Policy != "":
				policyPath = file.Policy
			default:
				policyPath = "policy.yaml"
			}
			if cfgPath == "" {
				cfgPath = file.Config
			}
			p, err := policy.Load(policyPath)
			if err != nil {
				return err
			}
			var cfg *config.Config
			if cfgPath != "" {
				if cfg, err = config.Load(cfgPath); err != nil {
					return err
				}
			}
			results := policy.RunCases(p, file.Cases, caseInput(cfg))
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
	cmd.Flags().StringVarP(&policyPath, "policy", "p", "", "policy file (default: the case file's policy:, else policy.yaml)")
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "config file for resource kinds and labels (default: the case file's config:)")
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
		return c.Input(), fmt.Errorf("resource %q is not in %s (its resources: %s); use the config the case file is written for (config: at its top, or --config)", c.Resource, cfg.Source, strings.Join(cfg.ResourceNames(), ", "))
	}
}
