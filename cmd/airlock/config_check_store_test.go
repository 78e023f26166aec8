package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --resolve-secrets resolves the store URL's password reference
// (?password_env=, ?password_file=) and the checkpoint key reference
// (transcripts.checkpoint_key_env / _file, at least 32 bytes) as serve
// would, and reports one that does not resolve on its config line, like
// the other secret references; without --resolve-secrets nothing is said
// of them. No secret is ever printed.
func TestConfigCheckStoreAndCheckpointSecrets(t *testing.T) {
	const (
		storePW = "store-password-never-printed-4b1d"
		ckptKey = "checkpoint-key-never-printed-0123456789abcdef"
	)
	for _, v := range []string{"AIRLOCK_CHECK_TEST_STORE_PW", "AIRLOCK_CHECK_TEST_CKPT"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.yaml", "rules: []\n")
	cfg := filepath.Join(dir, "airlock.yaml")
	check := func(t *testing.T, resolve bool, wantCode int, want ...string) string {
		t.Helper()
		args := []string{"config", "check", cfg}
		if resolve {
			args = []string{"config", "check", "--resolve-secrets", cfg}
		}
		out, code := runCLI(t, args...)
		if code != wantCode {
			t.Errorf("%v: exit %d, want %d:\n%s", args[2:], code, wantCode, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", args[2:], w, out)
			}
		}
		for _, secret := range []string{storePW, ckptKey} {
			if strings.Contains(out, secret) {
				t.Errorf("%v: output holds a secret:\n%s", args[2:], out)
			}
		}
		return out
	}

	t.Run("environment", func(t *testing.T) {
		write("airlock.yaml", `auth: {mode: none}
store: postgres://airlock@db.internal:5432/airlock?sslmode=require&password_env=AIRLOCK_CHECK_TEST_STORE_PW
transcripts: {checkpoint_key_env: AIRLOCK_CHECK_TEST_CKPT}
`)
		check(t, false, 0, "OK (secret references not resolved")
		check(t, true, 1,
			"airlock.yaml:2: store: password_env names AIRLOCK_CHECK_TEST_STORE_PW, which is not set in the environment",
			"airlock.yaml:3: transcripts.checkpoint_key_env: names AIRLOCK_CHECK_TEST_CKPT, which is not set in the environment",
			"2 errors")

		t.Setenv("AIRLOCK_CHECK_TEST_STORE_PW", storePW)
		t.Setenv("AIRLOCK_CHECK_TEST_CKPT", "too-short")
		out := check(t, true, 1, "airlock.yaml:3: transcripts.checkpoint_key_env: is 9 bytes; it needs at least 32", "1 error")
		if strings.Contains(out, "store:") {
			t.Errorf("the store's password is set, yet it is reported:\n%s", out)
		}

		t.Setenv("AIRLOCK_CHECK_TEST_CKPT", ckptKey)
		check(t, true, 0, "airlock.yaml: OK\n")
	})

	t.Run("files", func(t *testing.T) {
		write("airlock.yaml", `auth: {mode: none}
store: postgres://airlock@db.internal:5432/airlock?password_file=./store-password
transcripts:
  checkpoint_interval: 1m
  checkpoint_key_file: ./checkpoint.key
`)
		check(t, false, 0, "OK (secret references not resolved")
		check(t, true, 1,
			"airlock.yaml:2: store: password_file: open "+filepath.Join(dir, "store-password")+": no such file or directory",
			"airlock.yaml:5: transcripts.checkpoint_key_file: open "+filepath.Join(dir, "checkpoint.key")+": no such file or directory")

		write("store-password", "\n")
		write("checkpoint.key", ckptKey+"\n")
		check(t, true, 1, "airlock.yaml:2: store: password_file "+filepath.Join(dir, "store-password")+" is empty", "1 error")

		write("store-password", storePW+"\n")
		check(t, true, 0, "airlock.yaml: OK\n")
	})

	t.Run("both references", func(t *testing.T) {
		t.Setenv("AIRLOCK_CHECK_TEST_STORE_PW", storePW)
		write("airlock.yaml", "auth: {mode: none}\nstore: postgres://airlock@db.internal/airlock?password_env=AIRLOCK_CHECK_TEST_STORE_PW&password_file=./store-password\n")
		out := check(t, true, 1, "airlock.yaml:2: store: set password_env or password_file, not both", "1 error")
		if n := strings.Count(out, "not both"); n != 1 {
			t.Errorf("the store URL's error is reported %d times, want once:\n%s", n, out)
		}
	})

	t.Run("checkpoint webhook", func(t *testing.T) {
		t.Setenv("AIRLOCK_CHECK_TEST_CKPT", ckptKey)
		write("airlock.yaml", `auth: {mode: none}
store: sqlite://./airlock.db
transcripts:
  checkpoint_key_env: AIRLOCK_CHECK_TEST_CKPT
  checkpoint_webhook: {url: "https://audit.example.com/airlock", secret_file: ./hook.secret}
`)
		check(t, false, 0, "OK (secret references not resolved")
		check(t, true, 1, "airlock.yaml:5: transcripts.checkpoint_webhook.secret_file: open "+filepath.Join(dir, "hook.secret")+": no such file or directory", "1 error")
		write("hook.secret", "0123456789abcdef0123456789\n")
		check(t, true, 0, "airlock.yaml: OK\n")
	})

	t.Run("sqlite", func(t *testing.T) {
		write("airlock.yaml", "auth: {mode: none}\nstore: sqlite://./airlock.db\n")
		check(t, true, 0, "airlock.yaml: OK\n")
	})
}
