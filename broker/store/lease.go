package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// LeaseState is where a credential lease is in its life.
type LeaseState string

// Lease states. A lease is recorded as pending before its credential is
// minted, so a crash between the two leaves a row the next start-up revokes.
const (
	LeasePending LeaseState = "pending" // recorded, not yet (known to be) minted
	LeaseActive  LeaseState = "active"  // minted and usable until ExpiresAt
	LeaseRevoked LeaseState = "revoked" // revoked; final
	LeaseFailed  LeaseState = "failed"  // minting failed and nothing was created; final
)

// Valid reports whether s is one of the known states.
func (s LeaseState) Valid() bool {
	switch s {
	case LeasePending, LeaseActive, LeaseRevoked, LeaseFailed:
		return true
	}
	return false
}

// Live reports whether a lease in state s may still hold a credential
// that has to be revoked.
func (s LeaseState) Live() bool { return s == LeasePending || s == LeaseActive }

// Lease is the record of one short-lived credential. It never holds the
// secret, only a handle (role name, certificate serial, service account)
// that is enough to revoke it.
type Lease struct {
	ID       string
	CallID   string
	Resource string
	Kind     string // resource kind: postgres, ssh, kubernetes
	Grant    string
	Subject  string
	Issuer   string
	Handle   string // role name / cert serial / service account — not secret
	State    LeaseState
	// Replica is the id of the airlock serve that minted the lease (""
	// for the CLI and stores from before replicas): when its heartbeat
	// stops, another replica revokes the lease.
	Replica string

	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero if not revoked
	Error     string    // last mint/revoke error text
}

func (l Lease) validate() error {
	switch {
	case l.ID == "":
		return fmt.Errorf("%w: empty id", ErrInvalidLease)
	case !l.State.Valid():
		return fmt.Errorf("%w: unknown state %q", ErrInvalidLease, l.State)
	case l.CreatedAt.IsZero():
		return fmt.Errorf("%w %s: zero CreatedAt", ErrInvalidLease, l.ID)
	case l.ExpiresAt.IsZero():
		return fmt.Errorf("%w %s: zero ExpiresAt", ErrInvalidLease, l.ID)
	}
	return nil
}

const leaseColumns = `id, call_id, resource, kind, grant_name, subject, issuer, handle, state,
	created_at, expires_at, revoked_at, error, replica`

// InsertLease records a new lease.
func (s *Store) InsertLease(ctx context.Context, l Lease) error {
	if err := l.validate(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO leases (`+leaseColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		l.ID, l.CallID, l.Resource, l.Kind, l.Grant, l.Subject, l.Issuer, l.Handle, string(l.State),
		toNanos(l.CreatedAt), toNanos(l.ExpiresAt), nullNanos(l.RevokedAt), l.Error, l.Replica)
	if err != nil {
		return fmt.Errorf("inserting lease %s: %w", l.ID, err)
	}
	return nil
}

// SetLeaseState moves lease id to state and records errText as its last
// error (an empty errText clears it). Moving to revoked sets RevokedAt to
// at. A revoked or failed lease is final: changing it returns
// ErrLeaseFinal. An unknown id returns ErrNotFound.
func (s *Store) SetLeaseState(ctx context.Context, id string, state LeaseState, errText string, at time.Time) error {
	if !state.Valid() {
		return fmt.Errorf("%w: unknown state %q", ErrInvalidLease, state)
	}
	if state == LeaseRevoked && at.IsZero() {
		return fmt.Errorf("%w %s: revoked without a time", ErrInvalidLease, id)
	}
	var revokedAt any
	if state == LeaseRevoked {
		revokedAt = toNanos(at)
	}
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE leases
		SET state = ?, error = ?, revoked_at = COALESCE(?, revoked_at)
		WHERE id = ? AND state IN ('pending', 'active')`),
		string(state), errText, revokedAt, id)
	if err != nil {
		return fmt.Errorf("setting lease %s %s: %w", id, state, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("setting lease %s %s: %w", id, state, err)
	}
	if n == 1 {
		return nil
	}
	// Nothing changed: tell a missing lease from a final one.
	cur, err := s.lease(ctx, s.db, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("setting lease %s %s: %w (%s)", id, state, ErrLeaseFinal, cur.State)
}

// Lease returns lease id, or ErrNotFound.
func (s *Store) Lease(ctx context.Context, id string) (Lease, error) {
	return s.lease(ctx, s.read, id)
}

func (s *Store) lease(ctx context.Context, db *sql.DB, id string) (Lease, error) {
	row := db.QueryRowContext(ctx, s.q(`SELECT `+leaseColumns+` FROM leases WHERE id = ?`), id)
	l, err := scanLease(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, fmt.Errorf("lease %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("reading lease %s: %w", id, err)
	}
	return l, nil
}

// LeasesDue returns the live (pending or active) leases that expire at or
// before now, soonest first: the sweeper revokes them.
func (s *Store) LeasesDue(ctx context.Context, now time.Time) ([]Lease, error) {
	return s.queryLeases(ctx, `SELECT `+leaseColumns+` FROM leases
		WHERE state IN ('pending', 'active') AND expires_at <= ?
		ORDER BY expires_at, id`, toNanos(now))
}

// LiveLeases returns every pending or active lease, whatever its expiry,
// soonest expiry first. On start-up airlock revokes the ones a crashed
// process left behind.
func (s *Store) LiveLeases(ctx context.Context) ([]Lease, error) {
	return s.queryLeases(ctx, `SELECT `+leaseColumns+` FROM leases
		WHERE state IN ('pending', 'active')
		ORDER BY expires_at, id`)
}

// LeaseHandles returns the set of handles of live leases on resource, so
// a backend can tell its own credentials from ones airlock no longer tracks.
func (s *Store) LeaseHandles(ctx context.Context, resource string) (map[string]bool, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT handle FROM leases
		WHERE resource = ? AND state IN ('pending', 'active')`), resource)
	if err != nil {
		return nil, fmt.Errorf("listing lease handles of %s: %w", resource, err)
	}
	defer rows.Close()
	handles := make(map[string]bool)
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("listing lease handles of %s: %w", resource, err)
		}
		handles[h] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing lease handles of %s: %w", resource, err)
	}
	return handles, nil
}

// CountLiveLeases returns the number of pending or active leases.
func (s *Store) CountLiveLeases(ctx context.Context) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM leases WHERE state IN ('pending', 'active')`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting live leases: %w", err)
	}
	return n, nil
}

func (s *Store) queryLeases(ctx context.Context, query string, args ...any) ([]Lease, error) {
	rows, err := s.read.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	defer rows.Close()
	var leases []Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("listing leases: %w", err)
		}
		leases = append(leases, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	return leases, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanLease(sc scanner) (Lease, error) {
	var (
		l                Lease
		state            string
		created, expires int64
		revoked          sql.NullInt64
	)
	err := sc.Scan(&l.ID, &l.CallID, &l.Resource, &l.Kind, &l.Grant, &l.Subject, &l.Issuer, &l.Handle,
		&state, &created, &expires, &revoked, &l.Error, &l.Replica)
	if err != nil {
		return Lease{}, err
	}
	l.State = LeaseState(state)
	l.CreatedAt = fromNanos(created)
	l.ExpiresAt = fromNanos(expires)
	if revoked.Valid {
		l.RevokedAt = fromNanos(revoked.Int64)
	}
	return l, nil
}

// toNanos stores a time as UTC unix nanoseconds (valid for years 1678–2262).
func toNanos(t time.Time) int64 { return t.UnixNano() }

func nullNanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
