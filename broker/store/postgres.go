package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// Query parameters of a postgres:// store URL that are airlock's, not the
// driver's: where the password is kept.
const (
	ParamPasswordEnv  = "password_env"
	ParamPasswordFile = "password_file"
)

// openPostgres opens a PostgreSQL store: one pool for reads and writes.
func openPostgres(ctx context.Context, rawURL string) (*Store, error) {
	dsn, password, err := resolvePassword(rawURL)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse errors redact the password; the URL is quoted redacted too.
		return nil, fmt.Errorf("%w %q: %v", ErrUnsupportedURL, redactURL(rawURL), err)
	}
	if password != "" {
		cfg.Password = password
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "airlock"
	}
	// Transcript text is UTF-8 and is stored as it was hashed.
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	// The store's transactions (and the transcript's) are written for
	// READ COMMITTED, PostgreSQL's default: each statement sees what was
	// committed before it, so a row locked and then read, or a chain head
	// read after its lock is taken, is current. A database, role or URL
	// that sets a stricter default would have them read a snapshot taken
	// before the lock they wait for. (Each transaction also asks for it,
	// sqldialect.TxOptions; this covers statements run outside one, as
	// long as nothing sets it for the session: airlock's own statements
	// only ever SET LOCAL.)
	// The server takes parameter names in any case, the last one sent
	// winning, and a map's order is random: every spelling goes.
	for k := range cfg.RuntimeParams {
		if strings.EqualFold(k, "default_transaction_isolation") {
			delete(cfg.RuntimeParams, k)
		}
	}
	cfg.RuntimeParams["default_transaction_isolation"] = "read committed"
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgConns)
	db.SetMaxIdleConns(pgConns)
	db.SetConnMaxIdleTime(pgConnMaxIdle)
	s := &Store{db: db, read: db, dialect: sqldialect.Postgres}
	if err := checkEncoding(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", redactURL(rawURL), err)
	}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening store %s: %w", redactURL(rawURL), err)
	}
	return s, nil
}

// resolvePassword removes password_env and password_file from a postgres://
// URL and returns the URL and the password they name ("" if neither is set).
// Errors name the setting, never the secret.
func resolvePassword(rawURL string) (dsn, password string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", fmt.Errorf("%w %s: not a URL (postgres://user@host:5432/dbname)", ErrUnsupportedURL, redactURL(rawURL))
	}
	q := u.Query()
	envName, file := q.Get(ParamPasswordEnv), q.Get(ParamPasswordFile)
	if !q.Has(ParamPasswordEnv) && !q.Has(ParamPasswordFile) {
		return rawURL, "", nil
	}
	q.Del(ParamPasswordEnv)
	q.Del(ParamPasswordFile)
	u.RawQuery = q.Encode()
	_, inURL := u.User.Password()
	switch {
	case envName != "" && file != "":
		return "", "", fmt.Errorf("%w: store URL: set %s or %s, not both", ErrUnsupportedURL, ParamPasswordEnv, ParamPasswordFile)
	case inURL || q.Has("password"):
		return "", "", fmt.Errorf("%w: store URL has a password and %s/%s: keep only the reference", ErrUnsupportedURL, ParamPasswordEnv, ParamPasswordFile)
	case envName != "":
		v, ok := os.LookupEnv(envName)
		if !ok || v == "" {
			return "", "", fmt.Errorf("store URL: %s names %s, which is not set in the environment", ParamPasswordEnv, envName)
		}
		return u.String(), v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", "", fmt.Errorf("store URL: %s: %w", ParamPasswordFile, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", "", fmt.Errorf("store URL: %s %s is empty", ParamPasswordFile, file)
		}
		return u.String(), v, nil
	}
	return "", "", fmt.Errorf("%w: store URL: %s or %s is empty", ErrUnsupportedURL, ParamPasswordEnv, ParamPasswordFile)
}

// checkEncoding refuses a database that cannot hold every transcript event
// as it was hashed: in another encoding, text some events carry would fail
// to be stored (and the calls they describe would be refused), or come back
// changed.
func checkEncoding(ctx context.Context, db *sql.DB) error {
	var enc string
	if err := db.QueryRowContext(ctx, `SHOW server_encoding`).Scan(&enc); err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	if enc != "UTF8" {
		return fmt.Errorf("the database's encoding is %s; the store needs UTF8 (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)", enc)
	}
	return nil
}
