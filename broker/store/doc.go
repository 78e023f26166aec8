// Package store is airlock's persistent state: credential leases today,
// and the tables other components (the recorder, approvals) keep in the
// same database.
//
// Open takes a URL. The embedded default is SQLite (modernc.org/sqlite,
// pure Go) in WAL mode:
//
//	sqlite:///var/lib/airlock/airlock.db
//	sqlite://./airlock.db
//	sqlite://:memory:          (tests)
//
// PostgreSQL (postgres://…, through pgx's database/sql driver) is for
// several replicas sharing one store:
//
//	postgres://airlock@db:5432/airlock?sslmode=verify-full&password_env=NAME
//
// SQLite writes go through a single connection (DB), so in-process writers
// queue in database/sql instead of spinning on SQLITE_BUSY; every explicit
// transaction begins IMMEDIATE, which also makes a second process (the CLI)
// wait on busy_timeout rather than deadlock. Reads use a read-only pool
// (ReadDB) that WAL lets run alongside the writer. PostgreSQL has one pool
// for both; where SQLite's write lock serialised a read-then-write, it
// takes a lock of its own: an advisory lock per approval digest
// (RequestApproval), a row lock (DecideApproval), an advisory lock around
// each migration step.
//
// Queries are written once with `?` parameters (sqldialect.Rebind makes
// them PostgreSQL's); the few that differ are written per dialect. The
// schema is versioned in schema_version, with one migration list per
// dialect reaching the same tables, and migrated on Open; Open is
// idempotent. Times are stored as UTC unix nanoseconds (BIGINT). Copy
// moves every table to another store (airlock store copy).
//
// A lease goes through these states:
//
//	InsertLease(pending) ──mint ok──▶ active ──revoke ok──▶ revoked
//	        │                           │
//	        └──mint failed, nothing ────┴──▶ failed
//	           created
//
// pending and active leases are live: LeasesDue and LiveLeases return them
// for the sweeper and for crash recovery; revoked and failed are final.
package store
