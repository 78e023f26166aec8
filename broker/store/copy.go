package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// ErrTargetNotEmpty is returned by Copy when the target store holds rows
// and CopyOptions.Replace is not set.
var ErrTargetNotEmpty = errors.New("store: target store is not empty")

// copyTable is one table Copy moves, with the columns it copies and the
// order rows are read and written in (which keeps SQLite's implicit rowid
// order, and PostgreSQL's rowid column, in the order of the source).
type copyTable struct {
	name, columns, order string
	identity             string // PostgreSQL identity column whose sequence follows the copied ids
}

// copyTables are every table of the store: broker/store's own and the
// recorder's (transcript_events, transcript_checkpoints, transcript_meta),
// parents first. replicas and calls_in_flight belong to running processes
// and are not copied; the installation id is, so the credentials minted
// before the copy stay this installation's.
var copyTables = []copyTable{
	{name: "installation", columns: "singleton, id, created_at", order: "singleton"},
	{name: "leases", columns: leaseColumns, order: "created_at, id"},
	{name: "approvals", columns: approvalColumns, order: "created_at, id"},
	{name: "approval_decisions", columns: "approval_id, subject, issuer, email, verdict, reason, via, decided_at", order: "decided_at, rowid"},
	{name: "transcript_events", columns: "seq, time, type, call_id, session_id, subject, issuer, token_id, tool, resource, effect, data, prev_hash, hash", order: "seq"},
	{name: "transcript_checkpoints", columns: "id, time, head_seq, head_hash, key_id, signature", order: "id", identity: "id"},
	{name: "transcript_meta", columns: "id, high, slack", order: "id"},
	// Deliveries still waiting are sent by the target's replicas.
	{name: "webhook_outbox", columns: deliveryColumns, order: "created_at, id"},
}

// CopyOptions tunes Copy.
type CopyOptions struct {
	// Replace empties the target's tables first; without it a target with
	// any row is refused with ErrTargetNotEmpty.
	Replace bool
	// Progress, if set, is called after each table with its row count.
	Progress func(table string, rows int64)
}

// Copy copies every row of every table of src into dst, in one
// transaction on dst: a failed copy leaves dst as it was. Both stores must
// be open (migrated) and have the recorder's tables (recorder.New creates
// them). Copying between dialects is the point (sqlite:// to postgres://),
// but any pair works. The caller verifies the copied chain.
func Copy(ctx context.Context, src, dst *Store, opts CopyOptions) (map[string]int64, error) {
	tx, err := dst.db.BeginTx(ctx, dst.dialect.TxOptions())
	if err != nil {
		return nil, fmt.Errorf("copying the store: %w", err)
	}
	defer tx.Rollback()

	for _, t := range copyTables {
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.name).Scan(&n); err != nil {
			return nil, fmt.Errorf("copying the store: counting the target's %s: %w", t.name, err)
		}
		if n > 0 && !opts.Replace {
			return nil, fmt.Errorf("%w: it has %d rows in %s (copy into an empty store, or replace its content)", ErrTargetNotEmpty, n, t.name)
		}
	}
	if opts.Replace {
		for i := len(copyTables) - 1; i >= 0; i-- { // children first
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+copyTables[i].name); err != nil {
				return nil, fmt.Errorf("copying the store: emptying the target's %s: %w", copyTables[i].name, err)
			}
		}
	}

	counts := map[string]int64{}
	for _, t := range copyTables {
		n, err := copyRows(ctx, src, dst, tx, t)
		if err != nil {
			return nil, fmt.Errorf("copying the store: %s: %w", t.name, err)
		}
		counts[t.name] = n
		if dst.dialect == sqldialect.Postgres && t.identity != "" {
			_, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence($1, $2), GREATEST((SELECT MAX(`+t.identity+`) FROM `+t.name+`), 1), (SELECT COUNT(*) > 0 FROM `+t.name+`))`, t.name, t.identity)
			if err != nil {
				return nil, fmt.Errorf("copying the store: %s: moving its id sequence: %w", t.name, err)
			}
		}
		if opts.Progress != nil {
			opts.Progress(t.name, n)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("copying the store: commit: %w", err)
	}
	return counts, nil
}

// copyRows streams t's rows from src into dst's transaction tx.
func copyRows(ctx context.Context, src, dst *Store, tx *sql.Tx, t copyTable) (int64, error) {
	cols := strings.Split(t.columns, ",")
	rows, err := src.read.QueryContext(ctx, `SELECT `+t.columns+` FROM `+t.name+` ORDER BY `+t.order)
	if err != nil {
		return 0, fmt.Errorf("reading the source: %w", err)
	}
	defer rows.Close()
	insert, err := tx.PrepareContext(ctx, dst.q(`INSERT INTO `+t.name+` (`+t.columns+`) VALUES (`+placeholders(len(cols))+`)`))
	if err != nil {
		return 0, err
	}
	defer insert.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("reading the source: %w", err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok { // TEXT read back as bytes: keep it text
				vals[i] = string(b)
			}
		}
		if _, err := insert.ExecContext(ctx, vals...); err != nil {
			return n, fmt.Errorf("writing row %d: %w", n+1, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("reading the source: %w", err)
	}
	return n, nil
}
