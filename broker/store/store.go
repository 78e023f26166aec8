package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
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

// Store is airlock's persistent state. It is safe for concurrent use.
type Store struct {
	db   *sql.DB // the single writer connection
	read *sql.DB // readers; the same pool as db for in-memory stores
}

// Open opens the store named by rawURL and brings its schema up to date.
//
// Supported URLs:
//
//	sqlite:///abs/path.db   SQLite file at an absolute path
//	sqlite://./rel.db       SQLite file relative to the working directory
//	sqlite://:memory:       private in-memory SQLite database (tests)
//
// A new SQLite file is created with mode 0600. Connections use WAL,
// synchronous=NORMAL, foreign keys and a busy timeout. Writes go through
// one connection (see DB), so writers queue in Go rather than spinning on
// SQLITE_BUSY; reads use a separate read-only pool (see ReadDB).
func Open(ctx context.Context, rawURL string) (*Store, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("%w %q: %s", ErrUnsupportedURL, redactURL(rawURL), supported)
	}
	switch strings.ToLower(scheme) {
	case "sqlite":
		return openSQLite(ctx, rest)
	case "postgres", "postgresql":
		return nil, fmt.Errorf("%w %q: PostgreSQL is not supported yet in this version; %s", ErrUnsupportedURL, redactURL(rawURL), supported)
	default:
		return nil, fmt.Errorf("%w %q: %s", ErrUnsupportedURL, redactURL(rawURL), supported)
	}
}

const supported = "supported: sqlite:///abs/path.db, sqlite://./rel.db, sqlite://:memory:"

// redactURL drops user information (a PostgreSQL password, say) from a URL
// before it is quoted in an error message.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if err != nil && strings.Contains(raw, "@") {
			return "<unparseable URL>"
		}
		return raw
	}
	u.User = url.User("REDACTED")
	return u.String()
}

func openSQLite(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: sqlite URL has no path; %s", ErrUnsupportedURL, supported)
	}
	// The driver splits its parameters off at the first '?', so a path
	// holding one would be misread.
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%w: sqlite path %q must not contain '?' or '#'", ErrUnsupportedURL, path)
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
	params.Set("_synchronous", "NORMAL")

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
		return fmt.Errorf("connecting to sqlite: %w", err)
	}
	if err := migrate(ctx, s.db); err != nil {
		return err
	}
	if s.read != s.db {
		if err := s.read.PingContext(ctx); err != nil {
			return fmt.Errorf("connecting to sqlite for reading: %w", err)
		}
	}
	return nil
}

// DB returns the writer pool (one connection). Components that keep their
// own tables in the store, such as the recorder, write through it. Do not
// hold a transaction on it while waiting for another write: it is the only
// connection.
func (s *Store) DB() *sql.DB { return s.db }

// ReadDB returns a read-only pool for queries that may run long (exports,
// listings) without holding up writers. For an in-memory store it is DB.
func (s *Store) ReadDB() *sql.DB { return s.read }

// Close closes both pools.
func (s *Store) Close() error {
	var errs []error
	if s.read != s.db {
		errs = append(errs, s.read.Close())
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}
