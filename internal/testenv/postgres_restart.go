package testenv

import (
	"os"
	"testing"
)

// ServerLog returns what the server has written to its log so far (all of
// it, across Stop and Start), for tests that set log_statement and check
// which statements reached the server.
func (pg *Postgres) ServerLog(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(pg.logFile)
	if err != nil {
		t.Fatalf("testenv: reading the PostgreSQL log: %v", err)
	}
	return string(b)
}
