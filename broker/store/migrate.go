package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; migrations[i] brings the schema to
// version i+1. Append only: never edit a migration that has shipped.
// Times are unix nanoseconds (UTC), which sort and compare as integers and
// keep sub-second precision.
var migrations = []string{
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
}

// migrate brings the schema up to date. Each step runs in its own write
// transaction (BEGIN IMMEDIATE), which also serialises two processes
// migrating the same file; running it again is a no-op.
func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("creating schema_version: %w", err)
	}
	for {
		done, err := migrateStep(ctx, db)
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
func migrateStep(ctx context.Context, db *sql.DB) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrating: %w", err)
	}
	defer tx.Rollback()

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
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, version+1); err != nil {
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
