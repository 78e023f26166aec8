package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// ApprovalsChannel is the PostgreSQL NOTIFY channel on which the store
// announces a change to an approval; the payload is the approval's id.
// DecideApproval (a decision or a withdrawal) sends it in its transaction,
// so it is delivered only if the decision commits. The channel is
// database-wide: stores in other schemas of the same database hear it too,
// which costs them a reread of an id they do not have, nothing more.
const ApprovalsChannel = "airlock_approvals"

// ErrNoNotifications is returned by ListenApprovals for a store that
// cannot deliver notifications across processes (SQLite).
var ErrNoNotifications = errors.New("store: this store has no cross-process notifications")

// Backoff of the LISTEN connection after it fails: doubling from the first
// to the last. While it is down, waiting calls fall back to polling.
const (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 5 * time.Second
)

// notifyApproval queues NOTIFY ApprovalsChannel, id in tx: PostgreSQL
// delivers it when tx commits, and never if it rolls back. SQLite has no
// NOTIFY; it is a no-op there.
func (s *Store) notifyApproval(ctx context.Context, tx *sql.Tx, id string) error {
	if s.dialect != sqldialect.Postgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, ApprovalsChannel, id); err != nil {
		return fmt.Errorf("notifying approval %s: %w", id, err)
	}
	return nil
}

// ApprovalListener is told what a ListenApprovals loop hears.
type ApprovalListener struct {
	// Changed is called with the id of every approval changed by any
	// process on the store, once per committed change (possibly more).
	Changed func(id string)
	// Up is called each time the LISTEN connection is (re)established.
	// Notifications sent while it was down are lost, so Up is the moment
	// to recheck everything waited on.
	Up func()
	// Down is called when the connection fails, with why; the loop
	// reconnects after a backoff.
	Down func(err error)
}

// ListenApprovals holds one dedicated connection (outside the pool, so it
// never takes one from the queries) that LISTENs on ApprovalsChannel, and
// calls l.Changed for each notification until ctx ends. A failed
// connection is reopened with a backoff doubling from 100 ms to 5 s. It
// returns ctx's error, or ErrNoNotifications at once for SQLite.
func (s *Store) ListenApprovals(ctx context.Context, l ApprovalListener) error {
	if s.dialect != sqldialect.Postgres {
		return ErrNoNotifications
	}
	backoff := listenBackoffMin
	for {
		err := s.listenOnce(ctx, l)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil { // listenOnce returns only with an error or a done ctx
			err = errors.New("listen connection ended")
		}
		if l.Down != nil {
			l.Down(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, listenBackoffMax)
		if errors.Is(err, errListening) {
			backoff = listenBackoffMin // it was up: start over
		}
	}
}

// errListening wraps a failure of a connection that had been listening.
var errListening = errors.New("listen connection lost")

func (s *Store) listenOnce(ctx context.Context, l ApprovalListener) error {
	cfg, err := s.connConfig(ctx)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("opening the listen connection: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ApprovalsChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listening on %s: %w", ApprovalsChannel, err)
	}
	if l.Up != nil {
		l.Up()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("%w: %w", errListening, err)
		}
		if n.Channel == ApprovalsChannel && l.Changed != nil {
			l.Changed(n.Payload)
		}
	}
}

// connConfig is the pgx config the pool connects with (its password
// already resolved), read from one pooled connection.
func (s *Store) connConfig(ctx context.Context) (*pgx.ConnConfig, error) {
	c, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the store's connection settings: %w", err)
	}
	defer c.Close()
	var cfg *pgx.ConnConfig
	err = c.Raw(func(dc any) error {
		pc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("store connection is a %T, not pgx", dc)
		}
		cfg = pc.Conn().Config()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the store's connection settings: %w", err)
	}
	// The copy carries the pooled connection's notification handler; with
	// none, pgx buffers them for WaitForNotification on the new connection.
	cfg.OnNotification = nil
	cfg.RuntimeParams["application_name"] = cfg.RuntimeParams["application_name"] + " listen"
	return cfg, nil
}
