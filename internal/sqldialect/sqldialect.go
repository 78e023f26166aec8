// Package sqldialect tells the two SQL databases airlock keeps its state in
// apart, and rewrites the one spelling of a query they disagree on: bind
// parameters. Queries in broker/store and recorder are written once, with
// SQLite's `?`, and Rebind turns them into PostgreSQL's `$1, $2, …`.
// Whatever else differs (types in migrations, json_each, locks) is written
// out per dialect where it is used.
package sqldialect

import (
	"database/sql"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/stdlib"
)

// Dialect is the SQL database behind a *sql.DB.
type Dialect int

// The dialects airlock's store speaks.
const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// TxOptions are the options every transaction on the store begins with.
// On PostgreSQL they are READ COMMITTED whatever the database's, role's or
// URL's default: the store and the transcript take a lock (a row's, or
// the chain's advisory lock) and then read what it guards, which must be
// what was committed before the lock was granted; a REPEATABLE READ
// snapshot is taken at the locking statement, before the wait (two
// replicas would then write one transcript seq, or open two approvals for
// one call). SQLite has one writer at a time: nil, its default.
func (d Dialect) TxOptions() *sql.TxOptions {
	if d == Postgres {
		return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	return nil
}

// Of returns the dialect of db by its driver: pgx's database/sql driver is
// PostgreSQL, anything else is taken for SQLite.
func Of(db *sql.DB) Dialect {
	if _, ok := db.Driver().(*stdlib.Driver); ok {
		return Postgres
	}
	return SQLite
}

// Rebind rewrites each `?` outside quotes (string literals, quoted
// identifiers) and comments into `$n` for PostgreSQL; for SQLite it returns
// q unchanged.
func (d Dialect) Rebind(q string) string {
	if d != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) && q[j] != c {
				j++
			}
			b.WriteString(q[i:min(j+1, len(q))])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j - 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// PostgreSQL advisory locks airlock takes, as the first of the two 32-bit
// keys of pg_advisory_xact_lock(int, int); the second names the object
// (0 when there is one). All are transaction-scoped: a crashed holder's
// lock goes with its connection.
const (
	lockSpace = 0x61697200 // "air" and a zero byte

	LockMigrate        = lockSpace + 1 // broker/store schema migrations
	LockApprovals      = lockSpace + 2 // one approval digest (hashtext(digest))
	LockChain          = lockSpace + 3 // the transcript chain's head, for one append
	LockRecorderSchema = lockSpace + 4 // the recorder's CREATE TABLE IF NOT EXISTS
)
