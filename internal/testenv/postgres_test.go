package testenv

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPostgreSQL(t *testing.T) {
	pg := PostgreSQL(t)
	pg.Exec(t, `CREATE ROLE app LOGIN PASSWORD 'secret-pw'; CREATE TABLE t (id int); INSERT INTO t VALUES (1)`)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "host=127.0.0.1 port="+itoa(pg.Port)+" user=app password=secret-pw dbname=postgres sslmode=disable")
	if err != nil {
		t.Fatalf("SCRAM login over TCP: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("query: %v %d", err, n)
	}
	conn.Close(ctx)

	pg.Stop(t)
	if _, err := pgx.Connect(ctx, pg.AdminDSN); err == nil {
		t.Fatal("connected to a stopped server")
	}
	pg.Start(t)
	pg.Exec(t, `SELECT count(*) FROM t`)
}

func itoa(n int) string { return strconv.Itoa(n) }
