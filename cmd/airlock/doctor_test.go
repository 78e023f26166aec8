package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// `airlock doctor` against a real PostgreSQL and a real sshd, with one
// working and one broken resource of each kind: the working ones pass every
// check (a role is really minted, logs in over TCP and is dropped; a
// certificate is really accepted and a command runs), the broken ones fail
// with the fix for each failure, and the exit status is 1. The golden file
// has the variable parts (paths, ports, versions) normalised.
func TestDoctorGolden(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	sshd := testenv.OpenSSH(t)
	pg.Exec(t, "CREATE DATABASE shop")
	pg.ExecDB(t, "shop", `
		CREATE TABLE orders (id int PRIMARY KEY, total numeric);
		CREATE ROLE shop_reader NOLOGIN;
		GRANT SELECT ON orders TO shop_reader;
		-- What airlock's admin needs, and nothing more.
		CREATE ROLE shop_admin LOGIN CREATEROLE;
		GRANT shop_reader TO shop_admin WITH ADMIN OPTION;
		GRANT pg_signal_backend TO shop_admin;
		-- A broken one: no CREATEROLE, no pg_signal_backend, and its
		-- grant's role does not exist.
		CREATE ROLE billing_admin LOGIN;`)
	dsn := func(user string) string {
		return fmt.Sprintf("host=%s port=%d user=%s dbname=shop sslmode=disable", pg.SocketDir, pg.Port, user)
	}
	t.Setenv("DOCTOR_TEST_SHOP_DSN", dsn("shop_admin"))
	t.Setenv("DOCTOR_TEST_BILLING_DSN", dsn("billing_admin"))
	t.Setenv("DOCTOR_TEST_UNSET_DSN", "")
	os.Unsetenv("DOCTOR_TEST_UNSET_DSN")

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "user_ca"), sshd.CAPrivateKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewPublicKey(otherPub)
	policy := "rules:\n  - name: read\n    when: tool == \"query_db\"\n    effect: allow\n    grant: readonly\n  - name: ops\n    when: tool == \"run_ssh\"\n    effect: allow\n    grant: operator\n"
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`auth: {mode: none}
store: sqlite://./airlock.db
resources:
  - name: shop
    kind: postgres
    admin_dsn_env: DOCTOR_TEST_SHOP_DSN
    grants:
      readonly: {roles: [shop_reader], ttl: 10m}
  - name: billing
    kind: postgres
    admin_dsn_env: DOCTOR_TEST_BILLING_DSN
    grants:
      readonly: {roles: [billing_reader], ttl: 10m}
  - name: reports
    kind: postgres
    admin_dsn_env: DOCTOR_TEST_UNSET_DSN
    grants:
      readonly: {roles: [shop_reader], ttl: 10m}
  - name: web
    kind: ssh
    address: %[1]s
    host_key: %[2]q
    ca_key_file: ./user_ca
    grants:
      operator: {principals: [%[3]s], ttl: 2m}
      root: {principals: [no-such-user], ttl: 2m}
  - name: old-web
    kind: ssh
    address: %[1]s
    host_key: %[4]q
    ca_key_file: ./user_ca
    grants:
      operator: {principals: [%[3]s], ttl: 2m}
`, sshd.Address, sshd.HostPublicKey, sshd.User, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey))))
	cfgPath := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	out, code := runCLI(t, "doctor", "--config", cfgPath)
	if code != 1 {
		t.Errorf("exit status %d, want 1 (checks fail)", code)
	}
	// Nothing the checks minted is left behind.
	if left := pg.Query(t, "shop", `SELECT rolname FROM pg_roles WHERE rolname LIKE 'airlock\_%'`); len(left) != 0 {
		t.Errorf("roles left behind: %v", left)
	}
	for _, secret := range []string{"PRIVATE KEY"} {
		if strings.Contains(out, secret) {
			t.Errorf("output holds %q", secret)
		}
	}
	normalised := out
	for _, r := range []struct{ re, with string }{
		{regexp.QuoteMeta(dir), "DIR"},
		{regexp.QuoteMeta(pg.SocketDir), "SOCKET"},
		{regexp.QuoteMeta(sshd.Address), "SSHD"},
		{`-p \d+ 127\.0\.0\.1`, "-p SSHPORT 127.0.0.1"},
		{fmt.Sprintf(`\b%d\b`, pg.Port), "PGPORT"},
		{`PostgreSQL [0-9.]+`, "PostgreSQL VERSION"},
		{`serial \d+`, "serial N"},
		{`SHA256:[A-Za-z0-9+/]+`, "SHA256:FINGERPRINT"},
		{` {2,}`, "  "}, // column widths follow the variable parts
	} {
		normalised = regexp.MustCompile(r.re).ReplaceAllString(normalised, r.with)
	}
	checkGolden(t, "doctor.golden", normalised)
}
