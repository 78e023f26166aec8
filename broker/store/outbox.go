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

// The webhook outbox: every delivery of a payload to a webhook is a row,
// written when the payload is made, so it survives a restart and is sent
// by one replica at a time:
//
//	EnqueueDeliveries ──▶ due (next_attempt_at ≤ now, no live claim)
//	   ClaimDeliveries: claimed_by = replica, claimed_until = now+hold, attempts+1
//	      ├─ 2xx ────────────────▶ DeliverySucceeded: delivered_at   (final)
//	      ├─ retryable failure ──▶ RetryDelivery: claim released, next_attempt_at later
//	      ├─ final failure ──────▶ FailDelivery: failed_at            (final)
//	      ├─ shutting down ──────▶ ReleaseDelivery: claim released, attempt uncounted
//	      └─ replica dies ───────▶ the claim expires; the row is due again
//
// Done rows, and rows left by a webhook no longer configured, are deleted
// by PruneDeliveries after a retention.

// ErrInvalidDelivery is returned when a delivery lacks a required field.
var ErrInvalidDelivery = errors.New("store: invalid webhook delivery")

// Delivery is one payload for one webhook. It never holds a secret: Body
// is the payload as it is signed and sent, and LastError names a host and
// a status, never a URL.
type Delivery struct {
	ID         string // the Airlock-Delivery header: the same on every attempt
	Webhook    string // the name of the webhook (not its URL)
	Topic      string // what the body is: approval.requested, transcript.checkpoint
	ApprovalID string // the approval it tells about, if any
	CallID     string // the call that asked for that approval, if any
	Body       []byte // JSON

	// Attempts counts the attempts started, the current one included
	// once the delivery is claimed.
	Attempts      int
	CreatedAt     time.Time
	NextAttemptAt time.Time
	ClaimedBy     string    // the replica holding the claim; "" when none
	ClaimedUntil  time.Time // the claim's end; zero when none
	DeliveredAt   time.Time // zero until a receiver answered 2xx
	FailedAt      time.Time // zero unless it failed for good
	LastError     string
}

// Done reports whether the delivery is delivered or failed for good.
func (d Delivery) Done() bool { return !d.DeliveredAt.IsZero() || !d.FailedAt.IsZero() }

func (d Delivery) validate() error {
	switch {
	case d.ID == "":
		return fmt.Errorf("%w: empty id", ErrInvalidDelivery)
	case d.Webhook == "":
		return fmt.Errorf("%w %s: no webhook", ErrInvalidDelivery, d.ID)
	case d.Topic == "":
		return fmt.Errorf("%w %s: no topic", ErrInvalidDelivery, d.ID)
	case len(d.Body) == 0:
		return fmt.Errorf("%w %s: empty body", ErrInvalidDelivery, d.ID)
	case d.CreatedAt.IsZero():
		return fmt.Errorf("%w %s: zero CreatedAt", ErrInvalidDelivery, d.ID)
	}
	return nil
}

const deliveryColumns = `id, webhook, topic, approval_id, call_id, body, attempts, created_at, next_attempt_at,
	claimed_by, claimed_until, delivered_at, failed_at, last_error`

// EnqueueDeliveries records new deliveries, all or none, due at their
// NextAttemptAt (CreatedAt when zero).
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []Delivery) error {
	for _, d := range ds {
		if err := d.validate(); err != nil {
			return err
		}
	}
	if len(ds) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, s.dialect.TxOptions())
	if err != nil {
		return fmt.Errorf("enqueueing webhook deliveries: %w", err)
	}
	defer tx.Rollback()
	if err := s.insertDeliveries(ctx, tx, ds); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("enqueueing webhook deliveries: %w", err)
	}
	return nil
}

// insertDeliveries writes validated deliveries in the caller's transaction.
func (s *Store) insertDeliveries(ctx context.Context, tx *sql.Tx, ds []Delivery) error {
	for _, d := range ds {
		next := d.NextAttemptAt
		if next.IsZero() {
			next = d.CreatedAt
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO webhook_outbox
			(id, webhook, topic, approval_id, call_id, body, attempts, created_at, next_attempt_at)
			VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)`),
			d.ID, d.Webhook, d.Topic, d.ApprovalID, d.CallID, string(d.Body), toNanos(d.CreatedAt), toNanos(next))
		if err != nil {
			return fmt.Errorf("enqueueing webhook delivery %s: %w", d.ID, err)
		}
	}
	return nil
}

// ClaimDeliveries claims up to limit deliveries to webhook that are due at
// now (not done, next attempt at or before now, no claim in force) for
// claimer until now+hold, counts the attempt, and returns them, oldest due
// first. Two replicas never claim the same delivery at once: on PostgreSQL
// the candidates are locked FOR UPDATE SKIP LOCKED, on SQLite the single
// writer serialises. A claimer that dies leaves its claim to expire, and
// the delivery is due again (its attempt counted).
func (s *Store) ClaimDeliveries(ctx context.Context, webhook string, now time.Time, claimer string, hold time.Duration, limit int) ([]Delivery, error) {
	if claimer == "" || hold <= 0 || limit <= 0 {
		return nil, fmt.Errorf("claiming webhook deliveries: a claimer, a positive hold and a limit are required")
	}
	lock := ""
	if s.dialect == sqldialect.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	rows, err := s.db.QueryContext(ctx, s.q(`UPDATE webhook_outbox
		SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1
		WHERE id IN (SELECT id FROM webhook_outbox
			WHERE webhook = ? AND delivered_at IS NULL AND failed_at IS NULL
				AND next_attempt_at <= ? AND claimed_until <= ?
			ORDER BY next_attempt_at, id LIMIT ?`+lock+`)
		RETURNING `+deliveryColumns),
		claimer, toNanos(now.Add(hold)), webhook, toNanos(now), toNanos(now), limit)
	if err != nil {
		return nil, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	ds, err := collectDeliveries(rows, "claiming webhook deliveries")
	// RETURNING gives no order: oldest due first, as claimed.
	slices.SortFunc(ds, func(a, b Delivery) int {
		if c := a.NextAttemptAt.Compare(b.NextAttemptAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ds, err
}

// DeliverySucceeded marks delivery id delivered at now and drops its
// claim, whoever holds it: a receiver answered 2xx, which settles it.
// A delivery already done is left as it is.
func (s *Store) DeliverySucceeded(ctx context.Context, id string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE webhook_outbox
		SET delivered_at = ?, claimed_by = '', claimed_until = 0, last_error = ''
		WHERE id = ? AND delivered_at IS NULL AND failed_at IS NULL`), toNanos(now), id)
	if err != nil {
		return fmt.Errorf("marking webhook delivery %s delivered: %w", id, err)
	}
	return nil
}

// RetryDelivery releases claimer's claim on delivery id and makes it due
// again at next, with lastError. It does nothing when claimer no longer
// holds the claim (it expired and another replica took the delivery) or
// the delivery is done, and reports whether it changed the row.
func (s *Store) RetryDelivery(ctx context.Context, id, claimer string, next time.Time, lastError string) (bool, error) {
	return s.settleDelivery(ctx, `SET next_attempt_at = ?, claimed_by = '', claimed_until = 0, last_error = ?`,
		[]any{toNanos(next), lastError}, id, claimer, "scheduling a retry of")
}

// FailDelivery marks delivery id failed for good at now, with lastError,
// when claimer holds its claim; it reports whether it changed the row.
func (s *Store) FailDelivery(ctx context.Context, id, claimer string, now time.Time, lastError string) (bool, error) {
	return s.settleDelivery(ctx, `SET failed_at = ?, claimed_by = '', claimed_until = 0, last_error = ?`,
		[]any{toNanos(now), lastError}, id, claimer, "failing")
}

// ReleaseDelivery gives up claimer's claim on delivery id without
// counting the attempt (airlock is stopping and aborted it): the delivery
// is due again at once, for another replica or the next start.
func (s *Store) ReleaseDelivery(ctx context.Context, id, claimer string) (bool, error) {
	return s.settleDelivery(ctx, `SET claimed_by = '', claimed_until = 0,
		attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END`, nil, id, claimer, "releasing")
}

func (s *Store) settleDelivery(ctx context.Context, set string, args []any, id, claimer, what string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE webhook_outbox `+set+`
		WHERE id = ? AND claimed_by = ? AND delivered_at IS NULL AND failed_at IS NULL`),
		append(args, id, claimer)...)
	if err != nil {
		return false, fmt.Errorf("%s webhook delivery %s: %w", what, id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("%s webhook delivery %s: %w", what, id, err)
	}
	return n == 1, nil
}

// Delivery returns delivery id, or ErrNotFound.
func (s *Store) Delivery(ctx context.Context, id string) (Delivery, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT `+deliveryColumns+` FROM webhook_outbox WHERE id = ?`), id)
	if err != nil {
		return Delivery{}, fmt.Errorf("reading webhook delivery %s: %w", id, err)
	}
	ds, err := collectDeliveries(rows, "reading webhook delivery "+id)
	if err != nil {
		return Delivery{}, err
	}
	if len(ds) == 0 {
		return Delivery{}, fmt.Errorf("webhook delivery %s: %w", id, ErrNotFound)
	}
	return ds[0], nil
}

// Deliveries returns the deliveries in the outbox, to webhook when it is
// not empty, oldest first (operators and tests; the outbox is pruned).
func (s *Store) Deliveries(ctx context.Context, webhook string) ([]Delivery, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT `+deliveryColumns+` FROM webhook_outbox
		WHERE ? = '' OR webhook = ? ORDER BY created_at, id`), webhook, webhook)
	if err != nil {
		return nil, fmt.Errorf("listing webhook deliveries: %w", err)
	}
	return collectDeliveries(rows, "listing webhook deliveries")
}

// PruneDeliveries deletes the deliveries that were delivered or failed
// before before, and those created before it whatever their state (a
// delivery ends within minutes, its attempts bounded, unless its webhook
// is no longer configured anywhere), and returns how many.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (int64, error) {
	b := toNanos(before)
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM webhook_outbox
		WHERE delivered_at < ? OR failed_at < ? OR created_at < ?`), b, b, b)
	if err != nil {
		return 0, fmt.Errorf("pruning webhook deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("pruning webhook deliveries: %w", err)
	}
	return n, nil
}

func collectDeliveries(rows *sql.Rows, what string) ([]Delivery, error) {
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var (
			d                        Delivery
			body                     string
			created, next, claimedTo int64
			delivered, failed        sql.NullInt64
		)
		if err := rows.Scan(&d.ID, &d.Webhook, &d.Topic, &d.ApprovalID, &d.CallID, &body, &d.Attempts,
			&created, &next, &d.ClaimedBy, &claimedTo, &delivered, &failed, &d.LastError); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		d.Body = []byte(body)
		d.CreatedAt, d.NextAttemptAt = fromNanos(created), fromNanos(next)
		if claimedTo != 0 {
			d.ClaimedUntil = fromNanos(claimedTo)
		}
		if delivered.Valid {
			d.DeliveredAt = fromNanos(delivered.Int64)
		}
		if failed.Valid {
			d.FailedAt = fromNanos(failed.Int64)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
