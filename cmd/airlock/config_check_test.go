package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the airlock command line in-process and returns what it wrote
// to stdout and stderr (as main would: the final error on stderr) and its
// exit status.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	code := 0
	if err != nil {
		code = 1
		msg := err.Error()
		var exit *exitError
		if errors.As(err, &exit) {
			code, msg = exit.code, exit.msg
		}
		if msg != "" {
			out.WriteString("airlock: " + msg + "\n")
		}
	}
	return out.String(), code
}

// checkGolden compares got with testdata/NAME, or rewrites it with
// UPDATE_GOLDEN=1.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with UPDATE_GOLDEN=1)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (review, then UPDATE_GOLDEN=1 go test ./cmd/airlock/):\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

// `airlock config check` on a config with one mistake of each kind reports
// all of them in one run, in file order, each with file:line and the key,
// in words (no Go types), and without resolving secrets: the variables the
// file names are unset and nothing is said about them. With
// --resolve-secrets, the unset ones are reported too, on their keys.
func TestConfigCheckGolden(t *testing.T) {
	for _, v := range []string{"AIRLOCK_CHECK_TEST_UNSET_DSN", "AIRLOCK_CHECK_TEST_UNSET_HOOK", "SHOP_ADMIN_DSN"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	cfg := filepath.Join("testdata", "check", "airlock.yaml")

	out, code := runCLI(t, "config", "check", cfg)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	for _, leak := range []string{"Go struct", "unmarshal", "resource web: resource web", "AIRLOCK_CHECK_TEST_UNSET"} {
		if strings.Contains(out, leak) {
			t.Errorf("output contains %q:\n%s", leak, out)
		}
	}
	checkGolden(t, "config_check.golden", out)

	out, code = runCLI(t, "config", "check", "--resolve-secrets", cfg)
	if code != 1 {
		t.Errorf("--resolve-secrets: exit status %d, want 1", code)
	}
	checkGolden(t, "config_check_resolve.golden", out)
}

// A config without mistakes checks in CI, where its secrets are not set;
// with --resolve-secrets and the secrets set, it checks too.
func TestConfigCheckValid(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.yaml", "rules:\n  - name: read\n    when: tool == \"query_db\" && sql.read_only\n    effect: allow\n    grant: readonly\n")
	write("airlock.yaml", `auth: {mode: none}
resources:
  - name: shop
    kind: postgres
    admin_dsn_env: AIRLOCK_CHECK_TEST_VALID_DSN
    grants:
      readonly: {roles: [shop_reader], ttl: 10m}
`)
	os.Unsetenv("AIRLOCK_CHECK_TEST_VALID_DSN")
	cfg := filepath.Join(dir, "airlock.yaml")
	if out, code := runCLI(t, "config", "check", cfg); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if out, code := runCLI(t, "config", "check", "--resolve-secrets", cfg); code != 1 || !strings.Contains(out, "resources[0].admin_dsn_env: environment variable AIRLOCK_CHECK_TEST_VALID_DSN is not set") || !strings.Contains(out, "airlock.yaml:5:") {
		t.Errorf("--resolve-secrets with the variable unset: exit %d:\n%s", code, out)
	}
	t.Setenv("AIRLOCK_CHECK_TEST_VALID_DSN", "host=127.0.0.1 port=5432 user=airlock dbname=shop")
	if out, code := runCLI(t, "config", "check", "--resolve-secrets", cfg); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("--resolve-secrets with the variable set: exit %d:\n%s", code, out)
	}
}
