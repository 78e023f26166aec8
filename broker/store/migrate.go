package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// There is one migration list per dialect, and both have the same length:
// migration i of one creates the same tables, columns and indexes as
// migration i of the other, in that dialect's types (TestMigrationsAgree
// compares the schemas they reach). Each list is applied in order; list[i]
// brings the schema to version i+1. Append only: never edit a migration
// that has shipped, and add every new one to both lists.
//
// Times are unix nanoseconds (UTC), which sort and compare as integers and
// keep sub-second precision: INTEGER in SQLite, BIGINT in PostgreSQL.
func migrationsFor(d sqldialect.Dialect) []string {
	if d == sqldialect.Postgres {
		return postgresMigrations
	}
	return sqliteMigrations
}

// SchemaVersionWanted is the schema version this airlock migrates a store to.
func SchemaVersionWanted() int { return len(sqliteMigrations) }

var sqliteMigrations = []string{
	// 1: credential leases. Never a secret here, only a handle.
	`CREATE TABLE leases (
		id          TEXT PRIMARY KEY,
		call_id     TEXT NOT NULL,
		resource    TEXT NOT NULL,
		kind        TEXT NOT NULL,
		grant_name  TEXT NOT NULL,
		subject     TEXT NOT NULL,
		issuer      TEXT NOT NULL,
		handle      TEXT NOT NULL,
		state       TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked', 'failed')),
		created_at  INTEGER NOT NULL,
		expires_at  INTEGER NOT NULL,
		revoked_at  INTEGER,
		error       TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX leases_state_expires ON leases (state, expires_at);
	CREATE INDEX leases_resource_state ON leases (resource, state);`,

	// 2: approvals and the decisions on them. state is the stored state;
	// "expired" is computed on read from expires_at (see approvals.go).
	// arguments are the masked arguments, for display; the unmasked ones
	// only enter through digest.
	`CREATE TABLE approvals (
		id              TEXT PRIMARY KEY,
		digest          TEXT NOT NULL,
		call_id         TEXT NOT NULL,
		subject         TEXT NOT NULL,
		email           TEXT NOT NULL,
		issuer          TEXT NOT NULL,
		tool            TEXT NOT NULL,
		resource        TEXT NOT NULL,
		arguments       TEXT NOT NULL,
		rule            TEXT NOT NULL,
		rules           TEXT NOT NULL,
		approver_groups TEXT NOT NULL,
		min_approvers   INTEGER NOT NULL CHECK (min_approvers >= 1),
		policy_version  TEXT NOT NULL,
		state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'consumed')),
		created_at      INTEGER NOT NULL,
		expires_at      INTEGER NOT NULL,
		decided_at      INTEGER,
		consumed_at     INTEGER,
		consumed_by     TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX approvals_digest_state ON approvals (digest, state, expires_at);
	CREATE INDEX approvals_state_created ON approvals (state, created_at);
	CREATE TABLE approval_decisions (
		approval_id TEXT NOT NULL REFERENCES approvals (id),
		subject     TEXT NOT NULL,
		issuer      TEXT NOT NULL,
		email       TEXT NOT NULL,
		verdict     TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
		reason      TEXT NOT NULL,
		via         TEXT NOT NULL,
		decided_at  INTEGER NOT NULL,
		PRIMARY KEY (approval_id, subject, issuer)
	);`,
	// 3: several replicas. Each airlock serve has a row in replicas, its
	// heartbeat refreshed every leases.heartbeat_interval; a lease names
	// the replica that minted it, and a sweeper claims a lease (claimed_by,
	// claim_until) before revoking it, so each is revoked once. installation
	// is one row, created once: the id minted credentials carry, so orphan
	// cleanup never touches another installation's. calls_in_flight holds
	// the calls a replica has received and not yet ended, so the replica
	// that reaps a dead one can end them with call.interrupted.
	`CREATE TABLE replicas (
		id           TEXT PRIMARY KEY,
		host         TEXT NOT NULL,
		pid          INTEGER NOT NULL,
		version      TEXT NOT NULL,
		started_at   INTEGER NOT NULL,
		heartbeat_at INTEGER NOT NULL
	);
	CREATE INDEX replicas_heartbeat ON replicas (heartbeat_at);
	ALTER TABLE leases ADD COLUMN replica TEXT NOT NULL DEFAULT '';
	ALTER TABLE leases ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
	ALTER TABLE leases ADD COLUMN claim_until INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX leases_replica_state ON leases (replica, state);
	CREATE TABLE installation (
		singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
		id         TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE calls_in_flight (
		call_id    TEXT PRIMARY KEY,
		replica    TEXT NOT NULL,
		session_id TEXT NOT NULL,
		subject    TEXT NOT NULL,
		issuer     TEXT NOT NULL,
		tool       TEXT NOT NULL,
		resource   TEXT NOT NULL,
		started_at INTEGER NOT NULL
	);
	CREATE INDEX calls_in_flight_replica ON calls_in_flight (replica);`,

	// 4: the webhook outbox (outbox.go). One row per delivery of a body to
	// one webhook; id is its Airlock-Delivery header. A replica claims a
	// due row (claimed_by, claimed_until) before an attempt, so one replica
	// sends it at a time, and a claim left by a replica that died expires.
	// body is the JSON payload as signed, which never holds a secret;
	// last_error names a host and a status, never a URL.
	`CREATE TABLE webhook_outbox (
		id              TEXT PRIMARY KEY,
		webhook         TEXT NOT NULL,
		topic           TEXT NOT NULL,
		approval_id     TEXT NOT NULL DEFAULT '',
		call_id         TEXT NOT NULL DEFAULT '',
		body            TEXT NOT NULL,
		attempts        INTEGER NOT NULL DEFAULT 0,
		created_at      INTEGER NOT NULL,
		next_attempt_at INTEGER NOT NULL,
		claimed_by      TEXT NOT NULL DEFAULT '',
		claimed_until   INTEGER NOT NULL DEFAULT 0,
		delivered_at    INTEGER,
		failed_at       INTEGER,
		last_error      TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX webhook_outbox_due ON webhook_outbox (webhook, next_attempt_at)
		WHERE delivered_at IS NULL AND failed_at IS NULL;`,

	// 5: calls_in_flight gets a row at a call's first commit and loses it
	// at its last, so every page it touches is written to the log twice a
	// call. Keyed by call_id alone (WITHOUT ROWID: one B-tree, not a table
	// and its primary-key index) and without the index on replica (a
	// replica's rows are looked for only when one starts or stops, in a
	// table as small as the calls running), it touches one page where it
	// touched three. The rows in it are kept: a call that was running when
	// an older airlock died is still found and marked interrupted.
	`CREATE TABLE calls_in_flight_v5 (
		call_id    TEXT PRIMARY KEY,
		replica    TEXT NOT NULL,
		session_id TEXT NOT NULL,
		subject    TEXT NOT NULL,
		issuer     TEXT NOT NULL,
		tool       TEXT NOT NULL,
		resource   TEXT NOT NULL,
		started_at INTEGER NOT NULL
	) WITHOUT ROWID;
	INSERT INTO calls_in_flight_v5 SELECT call_id, replica, session_id, subject, issuer, tool, resource, started_at FROM calls_in_flight;
	DROP TABLE calls_in_flight;
	ALTER TABLE calls_in_flight_v5 RENAME TO calls_in_flight;`,
}

// postgresMigrations are sqliteMigrations in PostgreSQL's types.
// approval_decisions has an explicit rowid, the insertion order SQLite
// keeps implicitly, so decisions read back in the order they were made.
var postgresMigrations = []string{
	// 1: credential leases.
	`CREATE TABLE leases (
		id          TEXT PRIMARY KEY,
		call_id     TEXT NOT NULL,
		resource    TEXT NOT NULL,
		kind        TEXT NOT NULL,
		grant_name  TEXT NOT NULL,
		subject     TEXT NOT NULL,
		issuer      TEXT NOT NULL,
		handle      TEXT NOT NULL,
		state       TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked', 'failed')),
		created_at  BIGINT NOT NULL,
		expires_at  BIGINT NOT NULL,
		revoked_at  BIGINT,
		error       TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX leases_state_expires ON leases (state, expires_at);
	CREATE INDEX leases_resource_state ON leases (resource, state);`,

	// 2: approvals and the decisions on them.
	`CREATE TABLE approvals (
		id              TEXT PRIMARY KEY,
		digest          TEXT NOT NULL,
		call_id         TEXT NOT NULL,
		subject         TEXT NOT NULL,
		email           TEXT NOT NULL,
		issuer          TEXT NOT NULL,
		tool            TEXT NOT NULL,
		resource        TEXT NOT NULL,
		arguments       TEXT NOT NULL,
		rule            TEXT NOT NULL,
		rules           TEXT NOT NULL,
		approver_groups TEXT NOT NULL,
		min_approvers   INTEGER NOT NULL CHECK (min_approvers >= 1),
		policy_version  TEXT NOT NULL,
		state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'consumed')),
		created_at      BIGINT NOT NULL,
		expires_at      BIGINT NOT NULL,
		decided_at      BIGINT,
		consumed_at     BIGINT,
		consumed_by     TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX approvals_digest_state ON approvals (digest, state, expires_at);
	CREATE INDEX approvals_state_created ON approvals (state, created_at);
	CREATE TABLE approval_decisions (
		rowid       BIGINT GENERATED ALWAYS AS IDENTITY,
		approval_id TEXT NOT NULL REFERENCES approvals (id),
		subject     TEXT NOT NULL,
		issuer      TEXT NOT NULL,
		email       TEXT NOT NULL,
		verdict     TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
		reason      TEXT NOT NULL,
		via         TEXT NOT NULL,
		decided_at  BIGINT NOT NULL,
		PRIMARY KEY (approval_id, subject, issuer)
	);`,

	// 3: several replicas (see the SQLite list).
	`CREATE TABLE replicas (
		id           TEXT PRIMARY KEY,
		host         TEXT NOT NULL,
		pid          INTEGER NOT NULL,
		version      TEXT NOT NULL,
		started_at   BIGINT NOT NULL,
		heartbeat_at BIGINT NOT NULL
	);
	CREATE INDEX replicas_heartbeat ON replicas (heartbeat_at);
	ALTER TABLE leases ADD COLUMN replica TEXT NOT NULL DEFAULT '';
	ALTER TABLE leases ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
	ALTER TABLE leases ADD COLUMN claim_until BIGINT NOT NULL DEFAULT 0;
	CREATE INDEX leases_replica_state ON leases (replica, state);
	CREATE TABLE installation (
		singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
		id         TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE calls_in_flight (
		call_id    TEXT PRIMARY KEY,
		replica    TEXT NOT NULL,
		session_id TEXT NOT NULL,
		subject    TEXT NOT NULL,
		issuer     TEXT NOT NULL,
		tool       TEXT NOT NULL,
		resource   TEXT NOT NULL,
		started_at BIGINT NOT NULL
	);
	CREATE INDEX calls_in_flight_replica ON calls_in_flight (replica);`,

	// 4: the webhook outbox (see the SQLite list).
	`CREATE TABLE webhook_outbox (
		id              TEXT PRIMARY KEY,
		webhook         TEXT NOT NULL,
		topic           TEXT NOT NULL,
		approval_id     TEXT NOT NULL DEFAULT '',
		call_id         TEXT NOT NULL DEFAULT '',
		body            TEXT NOT NULL,
		attempts        INTEGER NOT NULL DEFAULT 0,
		created_at      BIGINT NOT NULL,
		next_attempt_at BIGINT NOT NULL,
		claimed_by      TEXT NOT NULL DEFAULT '',
		claimed_until   BIGINT NOT NULL DEFAULT 0,
		delivered_at    BIGINT,
		failed_at       BIGINT,
		last_error      TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX webhook_outbox_due ON webhook_outbox (webhook, next_attempt_at)
		WHERE delivered_at IS NULL AND failed_at IS NULL;`,

	// 5: calls_in_flight without the index on replica (see the SQLite list;
	// a PostgreSQL table is a heap beside its primary key already).
	`DROP INDEX IF EXISTS calls_in_flight_replica;`,
}

// migrate brings the schema up to date. Each step runs in its own write
// transaction, which serialises two processes migrating the same store:
// BEGIN IMMEDIATE in SQLite, a transaction-scoped advisory lock in
// PostgreSQL (whose DDL is transactional). Running it again is a no-op.
func migrate(ctx context.Context, db *sql.DB, d sqldialect.Dialect) error {
	if d == sqldialect.SQLite {
		if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("creating schema_version: %w", err)
		}
	}
	for {
		done, err := migrateStep(ctx, db, d)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateStep applies the next pending migration, if any, and reports
// whether the schema was already current.
func migrateStep(ctx context.Context, db *sql.DB, d sqldialect.Dialect) (done bool, err error) {
	migrations := migrationsFor(d)
	tx, err := db.BeginTx(ctx, d.TxOptions())
	if err != nil {
		return false, fmt.Errorf("migrating: %w", err)
	}
	defer tx.Rollback()
	if d == sqldialect.Postgres {
		// Two replicas starting at once: the second waits here, then finds
		// the schema current. CREATE TABLE IF NOT EXISTS is not safe to run
		// concurrently in PostgreSQL, so it runs under the lock.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, sqldialect.LockMigrate); err != nil {
			return false, fmt.Errorf("migrating: taking the migration lock: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
			return false, fmt.Errorf("creating schema_version: %w", err)
		}
	}

	var version int
	err = tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&version)
	if err != nil {
		return false, fmt.Errorf("reading schema version: %w", err)
	}
	switch {
	case version == len(migrations):
		return true, nil
	case version > len(migrations):
		return false, fmt.Errorf("store schema version %d is newer than this airlock supports (%d); upgrade airlock", version, len(migrations))
	}
	if _, err := tx.ExecContext(ctx, migrations[version]); err != nil {
		return false, fmt.Errorf("applying migration %d: %w", version+1, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM schema_version`); err != nil {
		return false, fmt.Errorf("recording migration %d: %w", version+1, err)
	}
	if _, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO schema_version (version) VALUES (?)`), version+1); err != nil {
		return false, fmt.Errorf("recording migration %d: %w", version+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("committing migration %d: %w", version+1, err)
	}
	return false, nil
}

// SchemaVersion reports the schema version of the store.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}
