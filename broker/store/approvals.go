package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// Approval errors. Callers match them with errors.Is; the transitions that
// refuse also return the approval as it is, so the caller can say why.
var (
	// ErrInvalidApproval is returned when an approval or a decision is
	// missing a required field.
	ErrInvalidApproval = errors.New("store: invalid approval")
	// ErrApprovalState is returned when an approval is not in the state a
	// transition needs: deciding one that is not pending (or has expired),
	// consuming one that is not approved (or has expired).
	ErrApprovalState = errors.New("store: approval is not in the required state")
	// ErrDuplicateDecision is returned when an approver decides an approval
	// they have already decided.
	ErrDuplicateDecision = errors.New("store: approver has already decided this approval")
	// ErrApprovalChanged is returned when an approval gained decisions
	// since the caller read it (DecideApprovalTx's prior).
	ErrApprovalChanged = errors.New("store: approval changed since it was read")
)

// ApprovalState is the stored state of an approval. Expiry is not stored:
// a pending or approved approval whose ExpiresAt has passed is expired,
// and every transition and lookup here compares against the caller's now.
type ApprovalState string

// Approval states.
const (
	ApprovalPending  ApprovalState = "pending"  // waiting for decisions
	ApprovalApproved ApprovalState = "approved" // enough approvals; may be consumed once
	ApprovalDenied   ApprovalState = "denied"   // one approver denied; final
	ApprovalConsumed ApprovalState = "consumed" // one execution used it; final
)

// Verdicts an approver gives.
const (
	VerdictApprove = "approve"
	VerdictDeny    = "deny"
)

// Approval is the record of one call held for human approval.
type Approval struct {
	ID     string
	Digest string // binds identity, tool, resource, arguments and policy version
	CallID string // the call that first asked

	Subject, Email, Issuer string // the requester

	Tool      string
	Resource  string
	Arguments []byte // JSON, masked for display
	Rule      string // the deciding rule
	Rules     []byte // JSON list of the rules that matched, opaque here

	ApproverGroups []string
	MinApprovers   int
	PolicyVersion  string

	State      ApprovalState
	CreatedAt  time.Time
	ExpiresAt  time.Time
	DecidedAt  time.Time // zero while pending
	ConsumedAt time.Time // zero unless consumed
	ConsumedBy string    // call id that consumed it

	Decisions []ApprovalDecision // in the order they were made
}

// ApprovalDecision is one approver's verdict on an approval.
type ApprovalDecision struct {
	Subject, Issuer, Email string
	Verdict                string // VerdictApprove or VerdictDeny
	Reason                 string
	Via                    string // web, api, cli-local
	At                     time.Time
}

func (a Approval) validate() error {
	switch {
	case a.ID == "":
		return fmt.Errorf("%w: empty id", ErrInvalidApproval)
	case a.Digest == "":
		return fmt.Errorf("%w %s: empty digest", ErrInvalidApproval, a.ID)
	case a.Subject == "":
		return fmt.Errorf("%w %s: empty requester subject", ErrInvalidApproval, a.ID)
	case len(a.ApproverGroups) == 0:
		return fmt.Errorf("%w %s: no approver groups", ErrInvalidApproval, a.ID)
	case a.MinApprovers < 1:
		return fmt.Errorf("%w %s: min approvers %d", ErrInvalidApproval, a.ID, a.MinApprovers)
	case a.State != ApprovalPending:
		return fmt.Errorf("%w %s: a new approval must be pending, not %q", ErrInvalidApproval, a.ID, a.State)
	case a.CreatedAt.IsZero() || a.ExpiresAt.IsZero():
		return fmt.Errorf("%w %s: zero CreatedAt or ExpiresAt", ErrInvalidApproval, a.ID)
	}
	return nil
}

func (d ApprovalDecision) validate() error {
	switch {
	case d.Subject == "":
		return fmt.Errorf("%w: decision without an approver", ErrInvalidApproval)
	case d.Verdict != VerdictApprove && d.Verdict != VerdictDeny:
		return fmt.Errorf("%w: unknown verdict %q", ErrInvalidApproval, d.Verdict)
	case d.At.IsZero():
		return fmt.Errorf("%w: decision without a time", ErrInvalidApproval)
	}
	return nil
}

const approvalColumns = `id, digest, call_id, subject, email, issuer, tool, resource, arguments,
	rule, rules, approver_groups, min_approvers, policy_version, state,
	created_at, expires_at, decided_at, consumed_at, consumed_by`

// querier is what both *sql.DB and *sql.Tx offer. Inside a write
// transaction every read must go through the transaction: the writer pool
// has one connection.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// RequestApproval returns the approval a call with this digest should use,
// creating it if there is none, in one write transaction so that two
// identical calls at the same moment share one approval:
//
//  1. an approved, unexpired approval with a.Digest (the call may proceed);
//  2. else a pending, unexpired one (still waiting; no new notification);
//  3. else a is inserted, and created is true; deliveries (its webhooks'
//     notifications) are written to the outbox in the same transaction.
//
// It is RequestApprovalTx in a transaction of its own, with no transcript
// event: the broker runs RequestApprovalTx in the commit of the call's
// approval.requested.
func (s *Store) RequestApproval(ctx context.Context, a Approval, now time.Time, deliveries ...Delivery) (got Approval, created bool, err error) {
	// Checked before the transaction takes the write lock, too.
	if _, err := checkRequest(a, deliveries); err != nil {
		return Approval{}, false, err
	}
	err = s.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		got, created, err = s.RequestApprovalTx(ctx, tx, a, now, deliveries...)
		return err
	})
	if err != nil {
		return Approval{}, false, err
	}
	return got, created, nil
}

// RequestApprovalTx is RequestApproval's rules in tx, a transaction on the
// store's writer (the transcript's append of the event that records the
// request, so that a new approval, its deliveries and its event are
// committed together or not at all). It writes nothing when it finds an
// approval (rules 1 and 2, created false). On PostgreSQL it takes the
// per-digest lock in tx; inside the transcript's append that lock comes
// after the chain lock, and nothing takes them in the other order.
func (s *Store) RequestApprovalTx(ctx context.Context, tx *sql.Tx, a Approval, now time.Time, deliveries ...Delivery) (_ Approval, created bool, err error) {
	groups, err := checkRequest(a, deliveries)
	if err != nil {
		return Approval{}, false, err
	}
	// SQLite's BEGIN IMMEDIATE already holds the write lock; PostgreSQL
	// takes one per digest, so two replicas asking at once share one approval.
	if s.dialect == sqldialect.Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, sqldialect.LockApprovals, a.Digest); err != nil {
			return Approval{}, false, fmt.Errorf("requesting approval: %w", err)
		}
	}

	if found, ok, err := s.openApproval(ctx, tx, a.Digest, now); err != nil {
		return Approval{}, false, err
	} else if ok {
		return found, false, nil
	}

	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO approvals (`+approvalColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, '')`),
		a.ID, a.Digest, a.CallID, a.Subject, a.Email, a.Issuer, a.Tool, a.Resource, jsonText(a.Arguments, "null"),
		a.Rule, jsonText(a.Rules, "[]"), groups, a.MinApprovers, a.PolicyVersion, string(a.State),
		toNanos(a.CreatedAt), toNanos(a.ExpiresAt))
	if err != nil {
		return Approval{}, false, fmt.Errorf("inserting approval %s: %w", a.ID, err)
	}
	// Its webhook deliveries commit with it: a crash cannot leave an
	// approval nobody is told about.
	if err := s.insertDeliveries(ctx, tx, deliveries); err != nil {
		return Approval{}, false, err
	}
	a.Decisions = nil
	a.CreatedAt, a.ExpiresAt = a.CreatedAt.UTC(), a.ExpiresAt.UTC()
	return a, true, nil
}

// checkRequest validates a new approval and its deliveries, and returns
// its approver groups as stored (JSON).
func checkRequest(a Approval, deliveries []Delivery) (string, error) {
	if err := a.validate(); err != nil {
		return "", err
	}
	for _, d := range deliveries {
		if err := d.validate(); err != nil {
			return "", err
		}
	}
	groups, err := json.Marshal(a.ApproverGroups)
	if err != nil {
		return "", fmt.Errorf("encoding approver groups: %w", err)
	}
	return string(groups), nil
}

// OpenApproval returns the approval a call with this digest would be given
// by RequestApproval without creating one: an approved, unconsumed,
// unexpired one, else a pending one. ok is false when there is neither.
func (s *Store) OpenApproval(ctx context.Context, digest string, now time.Time) (_ Approval, ok bool, err error) {
	return s.openApproval(ctx, s.read, digest, now)
}

func (s *Store) openApproval(ctx context.Context, q querier, digest string, now time.Time) (Approval, bool, error) {
	for _, state := range []ApprovalState{ApprovalApproved, ApprovalPending} {
		found, err := s.queryApprovals(ctx, q, `SELECT `+approvalColumns+` FROM approvals
			WHERE digest = ? AND state = ? AND expires_at > ?
			ORDER BY created_at DESC, id LIMIT 1`, digest, string(state), toNanos(now))
		if err != nil {
			return Approval{}, false, err
		}
		if len(found) == 1 {
			return found[0], true, nil
		}
	}
	return Approval{}, false, nil
}

// DecideApproval is DecideApprovalTx in a transaction of its own, for
// whatever decisions the approval holds when it runs. It records no
// transcript event: airlock decides through approval.Manager, which runs
// DecideApprovalTx in the commit of the event that records the decision.
func (s *Store) DecideApproval(ctx context.Context, id string, d ApprovalDecision, now time.Time) (Approval, error) {
	var got Approval
	err := s.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		got, err = s.DecideApprovalTx(ctx, tx, id, d, now, -1)
		return err
	})
	return got, err
}

// DecideApprovalTx records one approver's decision and moves the approval
// on, in tx (a transaction on the store's writer, DB: the transcript's
// append of the event that records the decision, so that the two are
// committed together or not at all):
//
//   - the approval must be pending and not expired at now, else the current
//     approval is returned with ErrApprovalState;
//   - an approver (subject and issuer) decides once; a second decision
//     returns ErrDuplicateDecision;
//   - when prior is not negative, the approval must hold exactly prior
//     decisions (the ones the caller read, and wrote its event from: they
//     are never removed), else the current approval is returned with
//     ErrApprovalChanged;
//   - the approval moves to NextState.
//
// Who may decide (approver groups, not the requester) is the caller's
// business: those facts do not change after the approval is created.
//
// On PostgreSQL the transaction also sends NOTIFY ApprovalsChannel with the
// id (see ListenApprovals), delivered only if the decision commits.
func (s *Store) DecideApprovalTx(ctx context.Context, tx *sql.Tx, id string, d ApprovalDecision, now time.Time, prior int) (Approval, error) {
	if err := d.validate(); err != nil {
		return Approval{}, err
	}
	// SQLite's BEGIN IMMEDIATE already holds the write lock; in PostgreSQL
	// the row lock makes two approvers deciding at once count each other.
	if s.dialect == sqldialect.Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT 1 FROM approvals WHERE id = $1 FOR UPDATE`, id); err != nil {
			return Approval{}, fmt.Errorf("deciding approval %s: %w", id, err)
		}
	}
	cur, err := s.approval(ctx, tx, id)
	if err != nil {
		return Approval{}, err
	}
	if cur.State != ApprovalPending || !now.Before(cur.ExpiresAt) {
		return cur, fmt.Errorf("deciding approval %s: %w (%s)", id, ErrApprovalState, cur.StateAt(now))
	}
	for _, prev := range cur.Decisions {
		if prev.Subject == d.Subject && prev.Issuer == d.Issuer {
			return cur, fmt.Errorf("deciding approval %s: %w", id, ErrDuplicateDecision)
		}
	}
	if prior >= 0 && len(cur.Decisions) != prior {
		return cur, fmt.Errorf("deciding approval %s: %w (%d decisions, not %d)", id, ErrApprovalChanged, len(cur.Decisions), prior)
	}
	next := NextState(cur, d)
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO approval_decisions
		(approval_id, subject, issuer, email, verdict, reason, via, decided_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		id, d.Subject, d.Issuer, d.Email, d.Verdict, d.Reason, d.Via, toNanos(d.At))
	if err != nil {
		return Approval{}, fmt.Errorf("recording decision on approval %s: %w", id, err)
	}
	d.At = d.At.UTC()
	cur.Decisions = append(cur.Decisions, d)
	if next != ApprovalPending {
		_, err = tx.ExecContext(ctx, s.q(`UPDATE approvals SET state = ?, decided_at = ? WHERE id = ? AND state = 'pending'`),
			string(next), toNanos(d.At), id)
		if err != nil {
			return Approval{}, fmt.Errorf("deciding approval %s: %w", id, err)
		}
		cur.State, cur.DecidedAt = next, d.At
	}
	// Waiters on other replicas reread the approval when this commits.
	if err := s.notifyApproval(ctx, tx, id); err != nil {
		return Approval{}, err
	}
	return cur, nil
}

// NextState is the state pending approval a moves to with decision d: a
// deny denies; approvals from MinApprovers distinct approvers approve.
func NextState(a Approval, d ApprovalDecision) ApprovalState {
	if d.Verdict == VerdictDeny {
		return ApprovalDenied
	}
	approvals := 1
	for _, prev := range a.Decisions {
		if prev.Verdict == VerdictApprove {
			approvals++
		}
	}
	if approvals >= a.MinApprovers {
		return ApprovalApproved
	}
	return ApprovalPending
}

// InTx runs fn in a transaction on the store's writer and commits what it
// wrote, unless it returns an error.
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, s.dialect.TxOptions())
	if err != nil {
		return fmt.Errorf("store: beginning a transaction: %w", err)
	}
	defer tx.Rollback()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: committing: %w", err)
	}
	return nil
}

// ConsumeApproval is ConsumeApprovalTx in a transaction of its own, with
// no transcript event (the broker runs ConsumeApprovalTx in the commit of
// the call's approval.consumed).
func (s *Store) ConsumeApproval(ctx context.Context, id, callID string, now time.Time) (Approval, error) {
	var got Approval
	err := s.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		got, err = s.ConsumeApprovalTx(ctx, tx, id, callID, now)
		return err
	})
	return got, err
}

// ConsumeApprovalTx marks an approved, unexpired approval as used by
// callID, in tx (the transaction that appends the approval.consumed event
// recording it). It succeeds once: otherwise the current approval is
// returned with ErrApprovalState (or ErrNotFound).
func (s *Store) ConsumeApprovalTx(ctx context.Context, tx *sql.Tx, id, callID string, now time.Time) (Approval, error) {
	res, err := tx.ExecContext(ctx, s.q(`UPDATE approvals SET state = 'consumed', consumed_at = ?, consumed_by = ?
		WHERE id = ? AND state = 'approved' AND expires_at > ?`),
		toNanos(now), callID, id, toNanos(now))
	if err != nil {
		return Approval{}, fmt.Errorf("consuming approval %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Approval{}, fmt.Errorf("consuming approval %s: %w", id, err)
	}
	cur, err := s.approval(ctx, tx, id)
	if err != nil {
		return Approval{}, err
	}
	if n != 1 {
		return cur, fmt.Errorf("consuming approval %s: %w (%s)", id, ErrApprovalState, cur.StateAt(now))
	}
	return cur, nil
}

// Approval returns approval id with its decisions, or ErrNotFound.
func (s *Store) Approval(ctx context.Context, id string) (Approval, error) {
	return s.approval(ctx, s.read, id)
}

func (s *Store) approval(ctx context.Context, q querier, id string) (Approval, error) {
	found, err := s.queryApprovals(ctx, q, `SELECT `+approvalColumns+` FROM approvals WHERE id = ?`, id)
	if err != nil {
		return Approval{}, err
	}
	if len(found) == 0 {
		return Approval{}, fmt.Errorf("approval %s: %w", id, ErrNotFound)
	}
	return found[0], nil
}

// ApprovalFilter selects approvals for ListApprovals. Zero fields select
// everything.
type ApprovalFilter struct {
	// State is an effective state: "pending" and "approved" exclude
	// expired approvals; "expired" selects pending or approved ones past
	// their expiry.
	State string
	// Subject and Issuer, with Groups, restrict the list to approvals this
	// person requested or may decide (any of Groups is an approver group).
	// Empty Subject: no restriction.
	Subject, Issuer string
	Groups          []string
	Limit           int // default 100
}

// ListApprovals returns approvals, the ones still open to decision
// (pending, unexpired) first, then the rest, newest first.
func (s *Store) ListApprovals(ctx context.Context, f ApprovalFilter, now time.Time) ([]Approval, error) {
	var (
		where []string
		args  []any
	)
	n := toNanos(now)
	switch f.State {
	case "":
	case "pending", "approved":
		where = append(where, "state = ? AND expires_at > ?")
		args = append(args, f.State, n)
	case "expired":
		where = append(where, "state IN ('pending', 'approved') AND expires_at <= ?")
		args = append(args, n)
	case "denied", "consumed":
		where = append(where, "state = ?")
		args = append(args, f.State)
	default:
		return nil, fmt.Errorf("%w: unknown state filter %q", ErrInvalidApproval, f.State)
	}
	if f.Subject != "" {
		cond := "(subject = ? AND issuer = ?)"
		args = append(args, f.Subject, f.Issuer)
		if len(f.Groups) > 0 {
			cond = "(" + cond + " OR EXISTS (SELECT 1 FROM " + s.jsonArray("approvals.approver_groups") + " WHERE g.value IN (" +
				placeholders(len(f.Groups)) + ")))"
			for _, g := range f.Groups {
				args = append(args, g)
			}
		}
		where = append(where, cond)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	query := `SELECT ` + approvalColumns + ` FROM approvals`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY CASE WHEN state = 'pending' AND expires_at > ? THEN 0 ELSE 1 END, created_at DESC, id LIMIT ?`
	args = append(args, n, limit)
	return s.queryApprovals(ctx, s.read, query, args...)
}

// queryApprovals runs a query selecting approvalColumns and loads the
// decisions of every approval it returns.
func (s *Store) queryApprovals(ctx context.Context, q querier, query string, args ...any) ([]Approval, error) {
	rows, err := q.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("reading approvals: %w", err)
	}
	var list []Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading approvals: %w", err)
		}
		list = append(list, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading approvals: %w", err)
	}
	if len(list) == 0 {
		return nil, nil
	}

	index := make(map[string]int, len(list))
	ids := make([]any, len(list))
	for i, a := range list {
		index[a.ID] = i
		ids[i] = a.ID
	}
	// rowid is SQLite's implicit insertion order, and a column of that name
	// in PostgreSQL (migrate.go).
	rows, err = q.QueryContext(ctx, s.q(`SELECT approval_id, subject, issuer, email, verdict, reason, via, decided_at
		FROM approval_decisions WHERE approval_id IN (`+placeholders(len(ids))+`)
		ORDER BY decided_at, rowid`), ids...)
	if err != nil {
		return nil, fmt.Errorf("reading approval decisions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id string
			d  ApprovalDecision
			at int64
		)
		if err := rows.Scan(&id, &d.Subject, &d.Issuer, &d.Email, &d.Verdict, &d.Reason, &d.Via, &at); err != nil {
			return nil, fmt.Errorf("reading approval decisions: %w", err)
		}
		d.At = fromNanos(at)
		i := index[id]
		list[i].Decisions = append(list[i].Decisions, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading approval decisions: %w", err)
	}
	return list, nil
}

func scanApproval(sc scanner) (Approval, error) {
	var (
		a                   Approval
		args, rules, groups string
		state               string
		created, expires    int64
		decided, consumed   sql.NullInt64
	)
	err := sc.Scan(&a.ID, &a.Digest, &a.CallID, &a.Subject, &a.Email, &a.Issuer, &a.Tool, &a.Resource, &args,
		&a.Rule, &rules, &groups, &a.MinApprovers, &a.PolicyVersion, &state,
		&created, &expires, &decided, &consumed, &a.ConsumedBy)
	if err != nil {
		return Approval{}, err
	}
	if err := json.Unmarshal([]byte(groups), &a.ApproverGroups); err != nil {
		return Approval{}, fmt.Errorf("approval %s: decoding approver groups: %w", a.ID, err)
	}
	a.Arguments, a.Rules = []byte(args), []byte(rules)
	a.State = ApprovalState(state)
	a.CreatedAt, a.ExpiresAt = fromNanos(created), fromNanos(expires)
	if decided.Valid {
		a.DecidedAt = fromNanos(decided.Int64)
	}
	if consumed.Valid {
		a.ConsumedAt = fromNanos(consumed.Int64)
	}
	return a, nil
}

// StateAt is the effective state at now: "expired" for a pending or
// approved approval whose expiry has passed, else the stored state.
func (a Approval) StateAt(now time.Time) string {
	if (a.State == ApprovalPending || a.State == ApprovalApproved) && !now.Before(a.ExpiresAt) {
		return "expired"
	}
	return string(a.State)
}

// jsonArray is a table expression g(value) over the elements of a JSON
// array of strings held in a TEXT column.
func (s *Store) jsonArray(col string) string {
	if s.dialect == sqldialect.Postgres {
		return "jsonb_array_elements_text(" + col + "::jsonb) AS g(value)"
	}
	return "json_each(" + col + ") AS g"
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func jsonText(b []byte, empty string) string {
	if len(b) == 0 {
		return empty
	}
	return string(b)
}
