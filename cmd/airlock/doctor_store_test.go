package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// airlock doctor on a postgres:// store (a real PostgreSQL, its role logging
// in over TCP with a password from password_file): one that opens and
// takes a write passes; one that does not open
// fails with a fix that speaks of a PostgreSQL database, not of a file.
func TestDoctorPostgresStore(t *testing.T) {
	const password = "doctor-store-password-5e1f9a"
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE ROLE airlock_store LOGIN PASSWORD '"+password+"'")
	pg.Exec(t, "CREATE DATABASE airlock OWNER airlock_store")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "store-password"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, storeURL string) (int, string) {
		t.Helper()
		p := filepath.Join(dir, "airlock.yaml")
		if err := os.WriteFile(p, []byte(fmt.Sprintf("auth: {mode: none}\nstore: %q\n", storeURL)), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := doctorRun(t, p)
		if strings.Contains(out, password) {
			t.Errorf("doctor printed the store's password:\n%s", out)
		}
		return code, out
	}
	base := fmt.Sprintf("postgres://airlock_store@127.0.0.1:%d/airlock?sslmode=disable", pg.Port)

	t.Run("opens", func(t *testing.T) {
		code, out := run(t, base+"&password_file=./store-password")
		if code != 0 || lineWith(out, "store", "opens", "127.0.0.1", "schema version") == "" || lineWith(out, "store", "writable") == "" {
			t.Errorf("doctor on a working postgres store: exit %d:\n%s", code, out)
		}
	})

	t.Run("does not open", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, "wrong-password"), []byte("not-the-password\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := run(t, base+"&password_file=./wrong-password")
		if code != 1 {
			t.Errorf("exit %d, want 1:\n%s", code, out)
		}
		if !strings.Contains(out, "must name a PostgreSQL database airlock can reach and log in to") || !strings.Contains(out, "password_file") {
			t.Errorf("the fix does not speak of a PostgreSQL store:\n%s", out)
		}
		if strings.Contains(out, "a file airlock can create") || strings.Contains(out, "the store's file") {
			t.Errorf("the fix speaks of a file for a postgres:// store:\n%s", out)
		}
	})

	t.Run("sqlite file", func(t *testing.T) {
		code, out := run(t, "sqlite://./no-such-dir/airlock.db")
		if code != 1 || !strings.Contains(out, "must name a file airlock can create and write") {
			t.Errorf("doctor on a SQLite store in a missing directory: exit %d:\n%s", code, out)
		}
	})
}
