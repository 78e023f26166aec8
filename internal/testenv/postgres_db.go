package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DSN returns the admin DSN for another database on the same server.
func (pg *Postgres) DSN(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", pg.SocketDir, pg.Port, dbname)
}

// ExecDB runs sql as the superuser in database dbname and fails the test on
// error.
func (pg *Postgres) ExecDB(t testing.TB, dbname, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN(dbname))
	if err != nil {
		t.Fatalf("testenv: connecting as admin to %s: %v", dbname, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("testenv: %v\nSQL: %s", err, sql)
	}
}

// Query runs a query as the superuser in database dbname and returns the
// first column of every row as text.
func (pg *Postgres) Query(t testing.TB, dbname, sql string, args ...any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN(dbname))
	if err != nil {
		t.Fatalf("testenv: connecting as admin to %s: %v", dbname, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("testenv: %v\nSQL: %s", err, sql)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var v any
		if err := r.Scan(&v); err != nil {
			return "", err
		}
		return fmt.Sprint(v), nil
	})
	if err != nil {
		t.Fatalf("testenv: %v\nSQL: %s", err, sql)
	}
	return out
}
