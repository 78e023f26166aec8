package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
)

func newConfigCheckCmd() *cobra.Command {
	var resolve bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Check a config file with its policy and resources, and report every error at once",
		Long: `Read a config file the way airlock serve does, with its policy and masking
profiles, and report every problem at once: each with its file, line and key,
in the order of the file. Nothing is contacted and, by default, no secret
reference (*_env, *_file, the store URL's password_env and password_file) is
resolved, so the check runs in CI where the secrets are not; --resolve-secrets
also checks that each one is set and usable (a checkpoint key of at least 32
bytes), and that every resource opens with it. Exits 1 when anything is wrong.

airlock doctor goes further: it connects to each resource with its credential.`,
		Example: `  airlock config check airlock.yaml
  airlock config check --resolve-secrets /etc/airlock/airlock.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			errs := checkConfig(args[0], resolve)
			if len(errs) == 0 {
				note := " (secret references not resolved; --resolve-secrets checks them)"
				if resolve {
					note = ""
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: OK%s\n", args[0], note)
				return nil
			}
			for _, e := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), e)
			}
			return &exitError{code: 1, msg: fmt.Sprintf("%s: %d %s", args[0], len(errs), plural(len(errs), "error", "errors"))}
		},
	}
	cmd.Flags().BoolVar(&resolve, "resolve-secrets", false, "also resolve every secret reference (*_env, *_file) and open every resource with it")
	return cmd
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// checkConfig reads a config with its policy and masking profiles and
// returns every problem found, in file order: the config file's first, then
// the policy's. With resolve, secret references are resolved and every
// resource is opened with its kind; nothing is contacted either way.
func checkConfig(path string, resolve bool) []error {
	cfg, cerrs := config.Check(path)
	if cfg == nil {
		return asErrors(cerrs)
	}
	bad := map[int]bool{} // resources with errors in the file
	badStore := false
	for _, e := range cerrs {
		badStore = badStore || e.Key == "store"
		var i int
		if _, err := fmt.Sscanf(e.Key, "resources[%d]", &i); err == nil {
			bad[i] = true
		}
	}

	// Masking profiles. The hash key is a secret: without resolve, a
	// placeholder of the right length stands in for one that is named.
	var hashKey []byte
	env := config.OSEnvironment{Dir: cfg.Dir}
	if resolve {
		key, err := config.Secret(env, "masking.hash_key", cfg.Masking.HashKeyEnv, cfg.Masking.HashKeyFile)
		if err != nil {
			cerrs = append(cerrs, secretError(cfg, "masking", err))
		}
		hashKey = key
	} else if cfg.Masking.HashKeyEnv != "" || cfg.Masking.HashKeyFile != "" {
		hashKey = make([]byte, 32)
	}
	if _, err := masking.New(cfg.Masking, hashKey); err != nil {
		for _, e := range flatten(err) {
			cerrs = append(cerrs, maskingError(cfg, e))
		}
	}

	if resolve {
		for i, w := range cfg.Approvals.Webhooks {
			key := fmt.Sprintf("approvals.webhooks[%d]", i)
			if _, err := config.Secret(env, key+".secret", w.SecretEnv, w.SecretFile); err != nil {
				cerrs = append(cerrs, secretError(cfg, key, err))
			}
		}
		if w := cfg.Transcripts.CheckpointWebhook; w != nil {
			const key = "transcripts.checkpoint_webhook"
			if _, err := config.Secret(env, key+".secret", w.SecretEnv, w.SecretFile); err != nil {
				cerrs = append(cerrs, secretError(cfg, key, err))
			}
		}
		if u := cfg.UI; u != nil {
			if _, err := config.Secret(env, "ui.client_secret", u.ClientSecretEnv, u.ClientSecretFile); err != nil {
				cerrs = append(cerrs, secretError(cfg, "ui", err))
			}
		}
		if err := store.CheckPassword(cfg.StoreURL()); err != nil && !badStore {
			cerrs = append(cerrs, storeSecretError(cfg, err))
		}
		if t := cfg.Transcripts; t.CheckpointKeyEnv == "" || t.CheckpointKeyFile == "" { // both: config.Check said so
			if _, err := checkpointKey(cfg); err != nil {
				cerrs = append(cerrs, checkpointKeyError(cfg, err))
			}
		}
		ks := kinds()
		for i, spec := range cfg.Resources {
			k, ok := ks[spec.Kind]
			if bad[i] || !ok {
				continue
			}
			res, err := k.Open(spec, env)
			if err != nil {
				cerrs = append(cerrs, cfg.ResourceError(i, err))
				continue
			}
			res.Close()
		}
	}
	out := asErrors(sortErrors(cerrs))

	// The policy, and the grants and profiles its rules name.
	policyPath := displayPath(cfg.Path(cfg.Policy))
	if _, err := os.Stat(policyPath); err != nil {
		return append(out, &config.Error{Source: cfg.Source, Key: "policy", Line: cfg.LineOf("policy"),
			Msg: fmt.Sprintf("cannot read the policy file %s: %v", policyPath, errors.Unwrap(err))})
	}
	pol, err := policy.Load(policyPath)
	if err != nil {
		return append(out, policyErrors(err)...)
	}
	grants := map[string]bool{}
	for _, r := range cfg.Resources {
		for g := range r.Grants {
			grants[g] = true
		}
	}
	err = pol.Check(func(g string) bool { return grants[g] }, func(m string) bool { _, ok := cfg.Masking.Profiles[m]; return ok })
	return append(out, policyErrors(err)...)
}

// secretError places an error resolving a secret reference ("masking.hash_key_env
// names X, which is not set") on its key.
func secretError(cfg *config.Config, section string, err error) *config.Error {
	msg := err.Error()
	key := section
	if k, rest, ok := strings.Cut(msg, " "); ok && strings.HasPrefix(k, section) {
		key, msg = strings.TrimSuffix(k, ":"), rest
	}
	return &config.Error{Source: cfg.Source, Key: key, Line: cfg.LineOf(key), Msg: msg}
}

// storeSecretError places an error resolving the store URL's password
// reference (password_env, password_file) on the store: line.
func storeSecretError(cfg *config.Config, err error) *config.Error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "store URL: "); i >= 0 {
		msg = msg[i+len("store URL: "):]
	}
	return &config.Error{Source: cfg.Source, Key: "store", Line: cfg.LineOf("store"), Msg: msg}
}

// checkpointKeyError places an error resolving the checkpoint key on the
// setting that names it.
func checkpointKeyError(cfg *config.Config, err error) *config.Error {
	e := secretError(cfg, "transcripts", err)
	if e.Key == "transcripts.checkpoint_key" { // too short: on the reference
		e.Key = "transcripts.checkpoint_key_env"
		if cfg.Transcripts.CheckpointKeyFile != "" {
			e.Key = "transcripts.checkpoint_key_file"
		}
		e.Line = cfg.LineOf(e.Key)
	}
	return e
}

var (
	maskingProfile  = regexp.MustCompile(`^profile "([^"]*)": (.*)$`)
	maskingDetector = regexp.MustCompile(`^detector "([^"]*)": (.*)$`)
	maskingIndexed  = regexp.MustCompile(`^detectors\[(\d+)\]: (.*)$`)
)

// maskingError places an error of the masking package on the profile or
// detector it is about.
func maskingError(cfg *config.Config, err error) *config.Error {
	msg := strings.TrimPrefix(err.Error(), masking.ErrInvalidConfig.Error()+": ")
	key := "masking"
	if m := maskingProfile.FindStringSubmatch(msg); m != nil {
		key, msg = "masking.profiles."+m[1], m[2]
	} else if m := maskingDetector.FindStringSubmatch(msg); m != nil {
		key, msg = "masking.detectors", m[2]
		for i, d := range cfg.Masking.Detectors {
			if d.Name == m[1] {
				key = fmt.Sprintf("masking.detectors[%d]", i)
				break
			}
		}
	} else if m := maskingIndexed.FindStringSubmatch(msg); m != nil {
		key, msg = "masking.detectors["+m[1]+"]", m[2]
	}
	return &config.Error{Source: cfg.Source, Key: key, Line: cfg.LineOf(key), Msg: msg}
}

// policyErrors turns the policy package's errors into config.Errors: file,
// line, the rule, and the message.
func policyErrors(err error) []error {
	var out []error
	for _, e := range flatten(err) {
		var le *policy.LoadError
		if !errors.As(e, &le) {
			out = append(out, e)
			continue
		}
		ce := &config.Error{Source: le.Source, Line: le.Line, Msg: strings.TrimPrefix(le.Err.Error(), policy.ErrUnknownReference.Error()+": ")}
		if le.Kind != "" && le.Name != "" {
			ce.Key = fmt.Sprintf("%s %q", le.Kind, le.Name)
		} else if le.Kind != "" {
			ce.Key = fmt.Sprintf("%s %d", le.Kind, le.Index)
		}
		out = append(out, ce)
	}
	return out
}

// flatten lists the errors errors.Join put together.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func sortErrors(errs config.Errors) config.Errors {
	slices.SortStableFunc(errs, func(a, b *config.Error) int { return a.Line - b.Line })
	return errs
}

func asErrors(errs config.Errors) []error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}

// displayPath is p relative to the working directory when it is below it,
// as a user would type it.
func displayPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}
