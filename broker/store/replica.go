package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// Replica is one running `airlock serve` sharing the store: a random id
// per start, where it runs, and when it last said it was alive.
type Replica struct {
	ID          string
	Host        string
	PID         int
	Version     string
	StartedAt   time.Time
	HeartbeatAt time.Time
}

// RegisterReplica records a replica that has just started.
func (s *Store) RegisterReplica(ctx context.Context, r Replica) error {
	if r.ID == "" || r.StartedAt.IsZero() || r.HeartbeatAt.IsZero() {
		return fmt.Errorf("registering replica %q: id, start and heartbeat are required", r.ID)
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO replicas (id, host, pid, version, started_at, heartbeat_at)
		VALUES (?, ?, ?, ?, ?, ?)`), r.ID, r.Host, r.PID, r.Version, toNanos(r.StartedAt), toNanos(r.HeartbeatAt))
	if err != nil {
		return fmt.Errorf("registering replica %s: %w", r.ID, err)
	}
	return nil
}

// Heartbeat moves replica id's heartbeat to at. ErrNotFound means its row
// is gone: another replica took it for dead and revoked its leases.
func (s *Store) Heartbeat(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE replicas SET heartbeat_at = ? WHERE id = ?`), toNanos(at), id)
	if err != nil {
		return fmt.Errorf("heartbeat of replica %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("heartbeat of replica %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("heartbeat of replica %s: %w", id, ErrNotFound)
	}
	return nil
}

// Replicas returns every registered replica, oldest first.
func (s *Store) Replicas(ctx context.Context) ([]Replica, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, host, pid, version, started_at, heartbeat_at FROM replicas ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing replicas: %w", err)
	}
	defer rows.Close()
	var out []Replica
	for rows.Next() {
		var (
			r             Replica
			started, beat int64
		)
		if err := rows.Scan(&r.ID, &r.Host, &r.PID, &r.Version, &started, &beat); err != nil {
			return nil, fmt.Errorf("listing replicas: %w", err)
		}
		r.StartedAt, r.HeartbeatAt = fromNanos(started), fromNanos(beat)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing replicas: %w", err)
	}
	return out, nil
}

// RemoveReplica deletes replica id's row (a clean stop, or a previous run
// of this process found at start-up). Its live leases become abandoned.
func (s *Store) RemoveReplica(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM replicas WHERE id = ?`), id); err != nil {
		return fmt.Errorf("removing replica %s: %w", id, err)
	}
	return nil
}

// RemoveStaleReplicas deletes the rows of replicas whose heartbeat is
// older than before and returns their ids.
func (s *Store) RemoveStaleReplicas(ctx context.Context, before time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`DELETE FROM replicas WHERE heartbeat_at < ? RETURNING id`), toNanos(before))
	if err != nil {
		return nil, fmt.Errorf("removing stale replicas: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("removing stale replicas: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("removing stale replicas: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// ClaimLeasesDue claims up to limit live leases that expire at or before
// now and that nobody holds a claim on, for claimer until now+hold, and
// returns them soonest first. Two sweepers never get the same lease: on
// PostgreSQL the candidates are locked FOR UPDATE SKIP LOCKED, on SQLite
// the single writer serialises. A claimed lease that is not revoked (the
// backend is down) stays live and is claimed again once its claim ends.
func (s *Store) ClaimLeasesDue(ctx context.Context, now time.Time, claimer string, hold time.Duration, limit int) ([]Lease, error) {
	return s.claimLeases(ctx, `expires_at <= ?`, []any{toNanos(now)}, now, claimer, hold, limit)
}

// ClaimAbandonedLeases claims, as ClaimLeasesDue, up to limit live leases
// whatever their expiry whose replica is gone: it has no row in replicas,
// or its heartbeat is older than staleBefore. Leases with no replica (the
// CLI's, or from before replicas) are left to the expiry sweep, and so are
// claimer's own.
func (s *Store) ClaimAbandonedLeases(ctx context.Context, staleBefore, now time.Time, claimer string, hold time.Duration, limit int) ([]Lease, error) {
	return s.claimLeases(ctx, `replica <> '' AND replica <> ? AND NOT EXISTS (
			SELECT 1 FROM replicas r WHERE r.id = leases.replica AND r.heartbeat_at >= ?)`,
		[]any{claimer, toNanos(staleBefore)}, now, claimer, hold, limit)
}

func (s *Store) claimLeases(ctx context.Context, where string, args []any, now time.Time, claimer string, hold time.Duration, limit int) ([]Lease, error) {
	lock := ""
	if s.dialect == sqldialect.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	query := `UPDATE leases SET claimed_by = ?, claim_until = ?
		WHERE id IN (SELECT id FROM leases
			WHERE state IN ('pending', 'active') AND claim_until <= ? AND ` + where + `
			ORDER BY expires_at, id LIMIT ?` + lock + `)
		RETURNING ` + leaseColumns
	all := append([]any{claimer, toNanos(now.Add(hold)), toNanos(now)}, args...)
	all = append(all, limit)
	rows, err := s.db.QueryContext(ctx, s.q(query), all...)
	if err != nil {
		return nil, fmt.Errorf("claiming leases: %w", err)
	}
	defer rows.Close()
	var leases []Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("claiming leases: %w", err)
		}
		leases = append(leases, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claiming leases: %w", err)
	}
	slices.SortFunc(leases, func(a, b Lease) int {
		if c := a.ExpiresAt.Compare(b.ExpiresAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return leases, nil
}

// Installation returns the store's installation id, recording newID as it
// the first time (one row, created once, whichever replica gets there
// first). Minted credentials carry it, so two installations sharing a
// backend never clean up each other's.
func (s *Store) Installation(ctx context.Context, newID string, now time.Time) (string, error) {
	if newID == "" {
		return "", errors.New("installation id: a new id is required")
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO installation (singleton, id, created_at) VALUES (1, ?, ?)
		ON CONFLICT (singleton) DO NOTHING`), newID, toNanos(now))
	if err != nil {
		return "", fmt.Errorf("recording the installation id: %w", err)
	}
	var id string
	if err := s.db.QueryRowContext(ctx, `SELECT id FROM installation WHERE singleton = 1`).Scan(&id); err != nil {
		return "", fmt.Errorf("reading the installation id: %w", err)
	}
	return id, nil
}

// CallInFlight is a call a replica has received and not yet ended.
type CallInFlight struct {
	CallID    string
	Replica   string
	SessionID string
	Subject   string
	Issuer    string
	Tool      string
	Resource  string
	StartedAt time.Time
}

// BeginCall records a call in flight.
func (s *Store) BeginCall(ctx context.Context, c CallInFlight) error {
	_, err := s.db.ExecContext(ctx, s.q(beginCallSQL), c.CallID, c.Replica, c.SessionID, c.Subject, c.Issuer, c.Tool, c.Resource, toNanos(c.StartedAt))
	if err != nil {
		return fmt.Errorf("recording call %s in flight: %w", c.CallID, err)
	}
	return nil
}

// BeginCallTx records a call in flight in tx, a transaction on s.DB()
// (the recorder's append of call.received, so the row and the event are
// committed together).
func (s *Store) BeginCallTx(ctx context.Context, tx *sql.Tx, c CallInFlight) error {
	_, err := s.execTx(ctx, tx, beginCallSQL, c.CallID, c.Replica, c.SessionID, c.Subject, c.Issuer, c.Tool, c.Resource, toNanos(c.StartedAt))
	if err != nil {
		return fmt.Errorf("recording call %s in flight: %w", c.CallID, err)
	}
	return nil
}

// EndCall forgets a call in flight; an unknown one is not an error.
func (s *Store) EndCall(ctx context.Context, callID string) error {
	if _, err := s.db.ExecContext(ctx, s.q(endCallSQL), callID); err != nil {
		return fmt.Errorf("ending call %s in flight: %w", callID, err)
	}
	return nil
}

// EndCallTx forgets a call in flight in tx, a transaction on s.DB() (the
// recorder's append of the call's final event).
func (s *Store) EndCallTx(ctx context.Context, tx *sql.Tx, callID string) error {
	if _, err := s.execTx(ctx, tx, endCallSQL, callID); err != nil {
		return fmt.Errorf("ending call %s in flight: %w", callID, err)
	}
	return nil
}

const (
	beginCallSQL = `INSERT INTO calls_in_flight
		(call_id, replica, session_id, subject, issuer, tool, resource, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (call_id) DO NOTHING`
	endCallSQL = `DELETE FROM calls_in_flight WHERE call_id = ?`
)

// TakeAbandonedCalls removes and returns the calls in flight of replicas
// that are gone (no row, or a heartbeat older than staleBefore), and of
// replica when it is not empty (a replica ending its own at shutdown).
// Each call is returned to one caller only.
func (s *Store) TakeAbandonedCalls(ctx context.Context, staleBefore time.Time, replica string) ([]CallInFlight, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`DELETE FROM calls_in_flight
		WHERE replica = ? OR NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = calls_in_flight.replica AND r.heartbeat_at >= ?)
		RETURNING call_id, replica, session_id, subject, issuer, tool, resource, started_at`), replica, toNanos(staleBefore))
	if err != nil {
		return nil, fmt.Errorf("taking abandoned calls: %w", err)
	}
	defer rows.Close()
	var out []CallInFlight
	for rows.Next() {
		var (
			c       CallInFlight
			started int64
		)
		if err := rows.Scan(&c.CallID, &c.Replica, &c.SessionID, &c.Subject, &c.Issuer, &c.Tool, &c.Resource, &started); err != nil {
			return nil, fmt.Errorf("taking abandoned calls: %w", err)
		}
		c.StartedAt = fromNanos(started)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("taking abandoned calls: %w", err)
	}
	slices.SortFunc(out, func(a, b CallInFlight) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.CallID, b.CallID)
	})
	return out, nil
}
