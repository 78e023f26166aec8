package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// Sentinel errors. Callers match them with errors.Is.
var (
	// ErrNotFound is returned when a looked-up row does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrUnsupportedURL is returned by Open for a URL it cannot serve.
	ErrUnsupportedURL = errors.New("store: unsupported store URL")
	// ErrInvalidLease is returned when a lease is missing a required field
	// or carries an unknown state.
	ErrInvalidLease = errors.New("store: invalid lease")
	// ErrLeaseFinal is returned when a lease that is already revoked or
	// failed is asked to change state.
	ErrLeaseFinal = errors.New("store: lease is in a final state")
)

// Connection settings for SQLite. busyTimeoutMS bounds how long a
// statement waits for another process holding the write lock (the CLI
// running next to `airlock serve`, for instance).
const (
	busyTimeoutMS = 5000
	readConns     = 4
)

// Connection settings for PostgreSQL: one pool for reads and writes.
// pgConns bounds the connections one airlock process holds on the store.
const (
	pgConns       = 10
	pgConnMaxIdle = 5 * time.Minute
)

// Store is airlock's persistent state. It is safe for concurrent use.
type Store struct {
	db      *sql.DB // SQLite: the single writer connection; PostgreSQL: the pool
	read    *sql.DB // readers; the same pool as db for in-memory and PostgreSQL stores
	dialect sqldialect.Dialect

	stmts map[string]*sql.Stmt // SQLite: txStatements prepared on the writer; read-only once open
	wal   *walCheckpointer     // SQLite file: checkpoints the log in the background
}

// Open opens the store named by rawURL and brings its schema up to date.
//
// Supported URLs:
//
//	sqlite:///abs/path.db   SQLite file at an absolute path
//	sqlite://./rel.db       SQLite file relative to the working directory
//	sqlite://:memory:       private in-memory SQLite database (tests)
//	postgres://user@host:5432/db?sslmode=verify-full&password_env=NAME
//	                        PostgreSQL (also postgresql://), for several replicas
//
// A PostgreSQL URL is pgx's (libpq's keywords as query parameters), plus
// two parameters of airlock's own that name where the password is kept,
// the way every other secret in the config is named: password_env (an
// environment variable) or password_file (a file, its content trimmed).
// They are removed before the URL reaches the driver. A password written
// into the URL itself is used as given; it is never quoted in an error.
//
// A new SQLite file is created with mode 0600. Connections use WAL,
// synchronous=NORMAL (or FULL: sqlite://PATH?synchronous=full, see
// ParseSQLite), foreign keys and a busy timeout. Writes go through
// one connection (see DB), so writers queue in Go rather than spinning on
// SQLITE_BUSY; reads use a separate read-only pool (see ReadDB). A file
// store's log is checkpointed in the background (walcheckpoint.go).
func Open(ctx context.Context, rawURL string) (*Store, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("%w %q: %s", ErrUnsupportedURL, redactURL(rawURL), supported)
	}
	switch strings.ToLower(scheme) {
	case "sqlite":
		return openSQLite(ctx, rest)
	case "postgres", "postgresql":
		return openPostgres(ctx, rawURL)
	default:
		return nil, fmt.Errorf("%w %q: %s", ErrUnsupportedURL, redactURL(rawURL), supported)
	}
}

const supported = "supported: sqlite:///abs/path.db, sqlite://./rel.db, sqlite://:memory:, postgres://user@host/db"

// RedactURL returns a store URL fit to print: a password in it is replaced
// by REDACTED (the user name stays), and so is a password query parameter.
// A URL that does not parse is not printed at all if it may hold one.
func RedactURL(raw string) string { return redactURL(raw) }

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") || strings.Contains(strings.ToLower(raw), "password") {
			return "<unparseable URL>"
		}
		return raw
	}
	if _, set := u.User.Password(); set {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// ParseSQLite reads what follows "sqlite://" in a store URL: the path
// and its one parameter, synchronous, "normal" (the default) or "full":
//
//	normal  a commit is written to the WAL and the WAL synced at
//	        checkpoints: a committed event survives airlock being killed,
//	        not a power loss or an OS crash, which may roll back the last
//	        commits
//	full    the WAL is synced at every commit: a committed event survives
//	        those too, for a sync per transaction
func ParseSQLite(rest string) (path, synchronous string, err error) {
	path, query, _ := strings.Cut(rest, "?")
	if path == "" {
		return "", "", fmt.Errorf("%w: sqlite URL has no path; %s", ErrUnsupportedURL, supported)
	}
	// The driver splits its parameters off at the first '?', so a path
	// holding a '#' would be misread.
	if strings.Contains(rest, "#") {
		return "", "", fmt.Errorf("%w: sqlite URL %q must not contain '#'", ErrUnsupportedURL, rest)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", fmt.Errorf("%w: sqlite URL parameters %q: %v", ErrUnsupportedURL, query, err)
	}
	synchronous = "NORMAL"
	for k, v := range q {
		if k != "synchronous" || len(v) != 1 {
			return "", "", fmt.Errorf("%w: sqlite URL parameter %q is not supported; the one parameter is synchronous=normal or synchronous=full", ErrUnsupportedURL, k)
		}
		switch strings.ToLower(v[0]) {
		case "normal":
		case "full":
			synchronous = "FULL"
		default:
			return "", "", fmt.Errorf("%w: sqlite synchronous=%q: want normal or full", ErrUnsupportedURL, v[0])
		}
	}
	return path, synchronous, nil
}

func openSQLite(ctx context.Context, rest string) (*Store, error) {
	path, synchronous, err := ParseSQLite(rest)
	if err != nil {
		return nil, err
	}

	params := url.Values{}
	params.Set("_busy_timeout", fmt.Sprint(busyTimeoutMS))
	params.Set("_foreign_keys", "on")
	params.Set("_txlock", "immediate") // take the write lock at BEGIN: no lock-upgrade deadlocks

	if path == ":memory:" {
		// Every connection to ":memory:" is a separate database, so an
		// in-memory store has exactly one connection for reads and writes.
		db, err := sql.Open("sqlite", path+"?"+params.Encode())
		if err != nil {
			return nil, fmt.Errorf("opening sqlite: %w", err)
		}
		db.SetMaxOpenConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		s := &Store{db: db, read: db}
		if err := s.init(ctx); err != nil {
			db.Close()
			return nil, err
		}
		return s, nil
	}

	if err := createFile(path); err != nil {
		return nil, err
	}
	params.Set("_journal_mode", "WAL")
	params.Set("_synchronous", synchronous)
	ckpt := maps.Clone(params) // the writer's but for its transactions' lock and pragma
	delete(ckpt, "_txlock")

	// The log is checkpointed in the background (walcheckpoint.go), not
	// by the commit that fills it, unless it outruns the checkpointer.
	params.Set("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walWriterPages))
	db, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening sqlite %s: %w", path, err)
	}
	// One writer: SQLite allows one write transaction at a time, and
	// queueing on Go's pool is cheaper and fairer than busy-waiting.
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)

	params.Set("_query_only", "on")
	params.Del("_txlock")
	params.Del("_pragma")
	read, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening sqlite %s for reading: %w", path, err)
	}
	read.SetMaxOpenConns(readConns)
	read.SetMaxIdleConns(readConns)

	s := &Store{db: db, read: read}
	if err := s.init(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.wal, err = startWALCheckpointer(path+"?"+ckpt.Encode(), db, walCheckpointEvery); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// createFile creates the database file with mode 0600 if it does not exist,
// so SQLite does not create it with the process umask. SQLite gives the
// -wal and -shm files the mode of the database file.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case errors.Is(err, os.ErrExist):
		return nil
	default:
		return fmt.Errorf("creating sqlite file: %w", err)
	}
}

func (s *Store) init(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("connecting to %s: %w", s.dialect, err)
	}
	if err := migrate(ctx, s.db, s.dialect); err != nil {
		return err
	}
	if s.read != s.db {
		if err := s.read.PingContext(ctx); err != nil {
			return fmt.Errorf("connecting to sqlite for reading: %w", err)
		}
	}
	return s.prepare(ctx)
}

// DB returns the writer pool: one connection for SQLite, the pool for
// PostgreSQL. Components that keep their own tables in the store, such as
// the recorder, write through it (sqldialect.Of tells them which SQL to
// speak). Do not hold a transaction on it while waiting for another write:
// for SQLite it is the only connection.
func (s *Store) DB() *sql.DB { return s.db }

// ReadDB returns a read-only pool for queries that may run long (exports,
// listings) without holding up writers. For an in-memory SQLite store and
// for PostgreSQL it is DB.
func (s *Store) ReadDB() *sql.DB { return s.read }

// Dialect reports which SQL database the store is.
func (s *Store) Dialect() sqldialect.Dialect { return s.dialect }

// q rewrites a query written with `?` parameters for the store's dialect.
func (s *Store) q(query string) string { return s.dialect.Rebind(query) }

// execTx runs query (written with `?` parameters) in tx, a transaction on
// s.DB(). SQLite's driver parses a statement every time it is run unless
// it is prepared, and the statements a call's commits run are the same
// every call: on SQLite those (txStatements) are prepared once, on the
// writer connection, when the store opens, and bound to each transaction.
// pgx keeps its own cache of prepared statements per connection.
func (s *Store) execTx(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.stmts[query]; st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, s.q(query), args...)
}

// txStatements are the statements execTx runs prepared on SQLite.
var txStatements = []string{beginCallSQL, endCallSQL}

// prepare prepares txStatements on the writer connection. It runs before
// the store is used: preparing needs the writer connection, which a
// transaction holds while its hooks run.
func (s *Store) prepare(ctx context.Context) error {
	if s.dialect != sqldialect.SQLite {
		return nil
	}
	s.stmts = make(map[string]*sql.Stmt, len(txStatements))
	for _, q := range txStatements {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("preparing the store's statements: %w", err)
		}
		s.stmts[q] = st
	}
	return nil
}

// Close closes both pools.
func (s *Store) Close() error {
	var errs []error
	if s.wal != nil {
		errs = append(errs, s.wal.close())
	}
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	if s.read != s.db {
		errs = append(errs, s.read.Close())
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}
