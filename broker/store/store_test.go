package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
	"github.com/airlock-mcp/airlock/internal/testenv"
)

func TestOpenURLs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("AIRLOCK_TEST_UNSET", "")
	tests := []struct {
		name    string
		url     string
		wantErr string // substring; empty means success
	}{
		{"memory", "sqlite://:memory:", ""},
		{"absolute", "sqlite://" + filepath.Join(dir, "abs.db"), ""},
		{"relative", "sqlite://./rel.db", ""},
		{"relative bare", "sqlite://bare.db", ""},
		{"postgres password twice", "postgres://airlock:hunter2@db.example.com/airlock?password_env=X", "keep only the reference"},
		{"postgres both references", "postgresql://airlock@db/airlock?password_env=X&password_file=/f", "not both"},
		{"postgres password env unset", "postgres://airlock@db/airlock?password_env=AIRLOCK_TEST_UNSET", "AIRLOCK_TEST_UNSET, which is not set"},
		{"postgres password file missing", "postgres://airlock@db/airlock?password_file=" + filepath.Join(dir, "nope"), "password_file"},
		{"postgres bad DSN", "postgres://airlock:hunter2@db/airlock?sslmode=sometimes", "sslmode"},
		{"no scheme", "./airlock.db", "supported: sqlite://"},
		{"unknown scheme", "mysql://db/airlock", "supported: sqlite://"},
		{"empty path", "sqlite://", "no path"},
		{"driver parameter", "sqlite://./x.db?_pragma=journal_mode(off)", `parameter "_pragma" is not supported`},
		{"synchronous full", "sqlite://" + filepath.Join(dir, "full.db") + "?synchronous=full", ""},
		{"synchronous normal", "sqlite://" + filepath.Join(dir, "normal.db") + "?synchronous=NORMAL", ""},
		{"synchronous off", "sqlite://./x.db?synchronous=off", "want normal or full"},
		{"synchronous twice", "sqlite://./x.db?synchronous=full&synchronous=normal", "not supported"},
		{"fragment", "sqlite://./x.db#frag", "must not contain '#'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Open(%q): %v", tt.url, err)
				}
				defer s.Close()
				if v, err := s.SchemaVersion(context.Background()); err != nil || v != SchemaVersionWanted() {
					t.Errorf("SchemaVersion = %d, %v; want %d", v, err, SchemaVersionWanted())
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want error containing %q", tt.url, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %q", err)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sqlite:///var/lib/airlock.db", "sqlite:///var/lib/airlock.db"},
		{"postgres://airlock:hunter2@db:5432/airlock?sslmode=require", "postgres://airlock:REDACTED@db:5432/airlock?sslmode=require"},
		{"postgres://airlock@db/airlock?password=hunter2&password_env=X", "postgres://airlock@db/airlock?password=REDACTED&password_env=X"},
		{"postgres://airlock@db/airlock?password_file=/etc/pw", "postgres://airlock@db/airlock?password_file=/etc/pw"},
		{"postgres://airlock:hun%ter2@db/x", "<unparseable URL>"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// A PostgreSQL store reached over TCP as a role with a password (SCRAM),
// the password named by password_env or password_file, never written in
// the URL; a wrong one fails without quoting it.
func TestOpenPostgresPassword(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, `CREATE ROLE airlock_store LOGIN PASSWORD 'correct-horse'`)
	pg.Exec(t, `CREATE DATABASE pwstore OWNER airlock_store`)
	base := fmt.Sprintf("postgres://airlock_store@%s:%d/pwstore?sslmode=disable", pg.Host, pg.Port)
	pwFile := filepath.Join(t.TempDir(), "store-password")
	if err := os.WriteFile(pwFile, []byte("correct-horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_TEST_STORE_PASSWORD", "correct-horse")
	t.Setenv("AIRLOCK_TEST_WRONG_PASSWORD", "wrong-battery")
	t.Setenv("PGPASSWORD", "") // only the reference may supply it

	for _, u := range []string{base + "&password_env=AIRLOCK_TEST_STORE_PASSWORD", base + "&password_file=" + pwFile} {
		s, err := Open(context.Background(), u)
		if err != nil {
			t.Fatalf("Open(%s): %v", u, err)
		}
		if s.Dialect() != sqldialect.Postgres {
			t.Errorf("Dialect = %v", s.Dialect())
		}
		if err := s.InsertLease(context.Background(), testLease("l1-"+filepath.Base(u)[:4], t0)); err != nil {
			t.Error(err)
		}
		s.Close()
	}
	_, err := Open(context.Background(), base+"&password_env=AIRLOCK_TEST_WRONG_PASSWORD")
	if err == nil {
		t.Fatal("Open with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "wrong-battery") || strings.Contains(err.Error(), "correct-horse") {
		t.Errorf("error leaks a password: %v", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("error = %v, want SQLSTATE 28P01 (invalid password)", err)
	}
}

func TestOpenFileModeAndPragmas(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.InsertLease(ctx, testLease("l1", time.Now())); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode = %o, want 600", filepath.Base(p), perm)
		}
	}

	pragmas := []struct{ name, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"synchronous", "1"}, // NORMAL
		{"busy_timeout", "5000"},
	}
	for _, p := range pragmas {
		for name, db := range map[string]func() (string, error){
			"writer": func() (v string, err error) { err = s.DB().QueryRow("PRAGMA " + p.name).Scan(&v); return },
			"reader": func() (v string, err error) { err = s.ReadDB().QueryRow("PRAGMA " + p.name).Scan(&v); return },
		} {
			got, err := db()
			if err != nil {
				t.Fatalf("%s PRAGMA %s: %v", name, p.name, err)
			}
			if got != p.want {
				t.Errorf("%s PRAGMA %s = %q, want %q", name, p.name, got, p.want)
			}
		}
	}
	if _, err := s.ReadDB().Exec(`DELETE FROM leases`); err == nil {
		t.Error("read pool accepted a write")
	}
}

// sqlite://PATH?synchronous=full syncs the WAL at every commit.
func TestSQLiteSynchronousFull(t *testing.T) {
	s, err := Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "full.db")+"?synchronous=full")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v string
	if err := s.DB().QueryRow("PRAGMA synchronous").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "2" { // FULL
		t.Errorf("PRAGMA synchronous = %q, want 2 (FULL)", v)
	}
}

func testOpenIdempotent(t *testing.T, b backend) {
	ctx := context.Background()
	url := b.url(t)
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InsertLease(ctx, testLease("keep", time.Now())); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for i := range 2 {
		s, err = Open(ctx, url)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if _, err := s.Lease(ctx, "keep"); err != nil {
			t.Errorf("reopen %d: lease lost: %v", i, err)
		}
		var rows int
		if err := s.DB().QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&rows); err != nil || rows != 1 {
			t.Errorf("schema_version rows = %d, %v; want 1", rows, err)
		}
		s.Close()
	}
}

func testOpenNewerSchema(t *testing.T, b backend) {
	ctx := context.Background()
	url := b.url(t)
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, url)
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a schema newer than it knows")
	}
	if !strings.Contains(err.Error(), "newer than this airlock supports") {
		t.Errorf("error = %v", err)
	}
}

// Concurrent Open of one store (replicas starting together) must not fail
// or run a migration twice.
func testOpenConcurrent(t *testing.T, b backend) {
	ctx := context.Background()
	url := b.url(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	s := openURL(t, url)
	var rows, v int
	if err := s.DB().QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&rows, &v); err != nil || rows != 1 || v != SchemaVersionWanted() {
		t.Errorf("schema_version = %d rows, version %d, %v; want 1 row, %d", rows, v, err, SchemaVersionWanted())
	}
}

// Both migration lists reach the same version and the same schema: the
// same tables with the same columns and the same indexes. The one
// difference allowed is approval_decisions.rowid, which SQLite has
// implicitly.
func TestMigrationsAgree(t *testing.T) {
	if len(sqliteMigrations) != len(postgresMigrations) {
		t.Fatalf("%d SQLite migrations, %d PostgreSQL migrations: add every migration to both", len(sqliteMigrations), len(postgresMigrations))
	}
	ctx := context.Background()
	lite := openURL(t, sqliteBackend().url(t))
	pgs := openURL(t, postgresBackend(t).url(t))
	for _, s := range []*Store{lite, pgs} {
		if v, err := s.SchemaVersion(ctx); err != nil || v != SchemaVersionWanted() {
			t.Errorf("%s: SchemaVersion = %d, %v; want %d", s.Dialect(), v, err, SchemaVersionWanted())
		}
	}
	schema := func(s *Store, columns, indexes string) []string {
		t.Helper()
		var out []string
		for _, q := range []string{columns, indexes} {
			rows, err := s.DB().QueryContext(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var a, b string
				if err := rows.Scan(&a, &b); err != nil {
					t.Fatal(err)
				}
				out = append(out, a+"."+b)
			}
			rows.Close()
		}
		slices.Sort(out)
		return out
	}
	liteSchema := schema(lite,
		`SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'`,
		`SELECT tbl_name, 'index ' || name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'`)
	pgSchema := schema(pgs,
		`SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND NOT (table_name = 'approval_decisions' AND column_name = 'rowid')`,
		`SELECT tablename, 'index ' || indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%_pkey'`)
	if !slices.Equal(liteSchema, pgSchema) {
		t.Errorf("schemas differ:\nsqlite:   %v\npostgres: %v", liteSchema, pgSchema)
	}
	if len(liteSchema) < 40 {
		t.Errorf("schema has %d columns and indexes; the query read too little: %v", len(liteSchema), liteSchema)
	}
}

// A PostgreSQL store's transactions are READ COMMITTED, whatever the
// database, or the URL, sets as the default: the store's and the
// transcript's transactions read rows after locking them.
func TestOpenPostgresReadCommitted(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, `CREATE DATABASE isostore`)
	pg.Exec(t, `ALTER DATABASE isostore SET default_transaction_isolation = 'serializable'`)
	for _, u := range []string{
		pgURL(pg, "isostore", "postgres", ""),
		pgURL(pg, "isostore", "postgres", "") + "&default_transaction_isolation=repeatable%20read",
		pgURL(pg, "isostore", "postgres", "") + "&DEFAULT_TRANSACTION_ISOLATION=repeatable%20read",
		pgURL(pg, "isostore", "postgres", "") + "&Default_Transaction_Isolation=serializable",
	} {
		s, err := Open(context.Background(), u)
		if err != nil {
			t.Fatalf("Open(%s): %v", u, err)
		}
		var iso string
		err = s.InTx(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&iso)
		})
		s.Close()
		if err != nil || iso != "read committed" {
			t.Errorf("Open(%s): a transaction's isolation is %q (%v), want read committed", u, iso, err)
		}
	}
}
