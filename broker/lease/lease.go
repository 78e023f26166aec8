// Package lease manages credential leases: short-lived credentials minted for
// one (identity, resource, grant, column guard), never shown to the agent.
//
//	Acquire ─┬─ cached for the same key, reusable, enough ttl left → reuse
//	         └─ new lease id → store (pending, this replica) → Resource.Mint → store (active)
//	Sweeper ─── store.ClaimLeasesDue(now) → Resource.Revoke → store (revoked)
//	Heartbeat ─ every HeartbeatInterval: store.Heartbeat(replica), then reap:
//	            replicas silent for longer than HeartbeatTimeout−HeartbeatInterval
//	            → their calls in flight get OnInterrupted (call.interrupted),
//	            their leases are claimed (ClaimAbandonedLeases) and revoked.
//	Register ── at start-up: drop the row of a previous run on this host (same
//	            host, its pid gone or ours), record this replica.
//	Recover ─── then: reap, revoke expired leases, then every credential on a backend carrying this
//	            installation's mark that no live lease owns (Orphans).
//	Close   ─── revokes every lease this process holds, interrupts the calls it
//	            still has in flight, removes its replica row.
//
// The lease is written to the store before the credential exists, so a crash
// between the two leaves a record that recovery revokes. A lease is claimed
// in the store before it is revoked, so of several replicas one revokes it.
package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// Store is the persistence the manager needs.
type Store interface {
	InsertLease(ctx context.Context, l store.Lease) error
	SetLeaseState(ctx context.Context, id string, state store.LeaseState, errText string, at time.Time) error
	LiveLeases(ctx context.Context) ([]store.Lease, error)
	ClaimLeasesDue(ctx context.Context, now time.Time, claimer string, hold time.Duration, limit int) ([]store.Lease, error)
	ClaimAbandonedLeases(ctx context.Context, staleBefore, now time.Time, claimer string, hold time.Duration, limit int) ([]store.Lease, error)

	RegisterReplica(ctx context.Context, r store.Replica) error
	Heartbeat(ctx context.Context, id string, at time.Time) error
	Replicas(ctx context.Context) ([]store.Replica, error)
	RemoveReplica(ctx context.Context, id string) error
	RemoveStaleReplicas(ctx context.Context, before time.Time) ([]string, error)
	TakeAbandonedCalls(ctx context.Context, staleBefore time.Time, replica string) ([]store.CallInFlight, error)
}

// Event reports a lease transition (minted, revoked, failed) so the caller
// can record it in the transcript.
type Event struct {
	Type  string // "lease.minted", "lease.revoked", "lease.failed" (a reuse is the caller's to record)
	Lease store.Lease
	Err   error
}

// Config configures a Manager.
type Config struct {
	Store Store
	// Resolve finds the live Resource for a resource name (config reloads
	// replace resources, so the manager looks them up when it needs them).
	Resolve func(name string) (tools.Resource, bool)
	// OnEvent is called for every lease transition; an error from it fails
	// the transition (minting stops; revocation is retried by the sweeper).
	OnEvent func(ctx context.Context, ev Event) error
	// OnInterrupted is called for each call a gone replica (or this one, at
	// Close) left without a final transcript event; the caller records
	// call.interrupted. An error is logged.
	OnInterrupted func(ctx context.Context, c store.CallInFlight) error
	// ReuseMargin is the fraction of ttl that must remain for reuse.
	ReuseMargin   float64
	SweepInterval time.Duration

	// Replica identifies this process among those sharing the store
	// (default: a random id); Host, PID and Version are recorded with it
	// (defaults: os.Hostname, os.Getpid, "dev").
	Replica string
	Host    string
	PID     int
	Version string
	// HeartbeatInterval is how often this replica refreshes its heartbeat
	// and looks for gone replicas (default 5s); a replica whose heartbeat is
	// older than HeartbeatTimeout−HeartbeatInterval (default timeout 15s)
	// when looked at is gone, so its leases are revoked at most
	// HeartbeatTimeout after its last heartbeat. The timeout must be at
	// least twice the interval.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// Installation is the store's installation id, set on every resource
	// that marks its credentials with it (InstallationMarker) before it
	// mints or lists orphans.
	Installation string

	Clock  func() time.Time
	Logger *slog.Logger
}

// CheckAndSetDefaults validates the config and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Store == nil {
		return errors.New("lease: Store is required")
	}
	if c.Resolve == nil {
		return errors.New("lease: Resolve is required")
	}
	if c.OnEvent == nil {
		c.OnEvent = func(context.Context, Event) error { return nil }
	}
	if c.ReuseMargin == 0 {
		c.ReuseMargin = 0.5
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 15 * time.Second
	}
	if c.OnInterrupted == nil {
		c.OnInterrupted = func(context.Context, store.CallInFlight) error { return nil }
	}
	if c.Replica == "" {
		c.Replica = uuid.NewString()
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.PID == 0 {
		c.PID = os.Getpid()
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.HeartbeatTimeout < 2*c.HeartbeatInterval {
		return fmt.Errorf("lease: heartbeat timeout %s must be at least twice the heartbeat interval %s", c.HeartbeatTimeout, c.HeartbeatInterval)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Lease is a live lease with its credential.
type Lease struct {
	Record     store.Lease
	Credential tools.Credential
	// Reused is true when this call reuses a lease minted for an earlier one.
	Reused bool

	res tools.Resource // the resource object that minted it
}

// key is what a lease may be reused for. guard is the GuardKey of the
// columns the credential was minted to refuse ("" for none): a credential
// minted without enforcement never serves a call that needs it, and one
// minted for a profile never serves a call under another (or none).
type key struct{ subject, issuer, resource, grant, guard string }

// mintTimeout bounds one Mint, which runs even if the call is cancelled.
const mintTimeout = 30 * time.Second

// Manager mints, caches, reuses and revokes leases.
type Manager struct {
	cfg Config

	mu    sync.Mutex
	cache map[key]*Lease
	live  map[string]*Lease // by lease id: every lease with a credential in memory

	cancel context.CancelFunc
	done   chan struct{}

	// lastBeat is this replica's last successful heartbeat, and before
	// reapAfter it does not take other replicas for dead (see heartbeat).
	// Only Register and the sweeper's goroutine touch them.
	lastBeat, reapAfter time.Time
}

// New returns a Manager; it starts nothing.
func New(cfg Config) (*Manager, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, cache: map[key]*Lease{}, live: map[string]*Lease{}}, nil
}

// Acquire returns a lease for the grant: a cached one when the resource
// allows reuse, it was minted for the same guard and enough of its ttl is
// left, else a freshly minted one. guard, when not nil, names the columns
// the credential must be unable to read (tools.MintRequest.Guard).
//
// A reused lease is returned with Reused set and no event: the caller
// records the reuse with the call's own events. Before minting, Acquire
// calls beforeMint (when not nil) and mints only if it succeeds: the broker
// commits the call's decision there, so a credential is never created for a
// call the transcript does not hold yet, and lease.minted follows it.
func (m *Manager) Acquire(ctx context.Context, res tools.Resource, grantName string, guard tools.ColumnGuard, id policy.Identity, callID string, beforeMint func(context.Context) error) (*Lease, error) {
	spec := res.Spec()
	grant, ok := spec.Grants[grantName]
	if !ok {
		return nil, fmt.Errorf("resource %s has no grant %q", spec.Name, grantName)
	}
	k := key{subject: id.Subject, issuer: id.Issuer, resource: spec.Name, grant: grantName}
	if guard != nil {
		k.guard = guard.GuardKey()
		if k.guard == "" {
			return nil, fmt.Errorf("resource %s: the column guard for grant %q has an empty key", spec.Name, grantName)
		}
	}
	now := m.cfg.Clock()

	if res.Reusable() {
		m.mu.Lock()
		l, ok := m.cache[k]
		m.mu.Unlock()
		if ok && l.Record.ExpiresAt.Sub(now) > time.Duration(float64(grant.TTL)*m.cfg.ReuseMargin) {
			return &Lease{Record: l.Record, Credential: l.Credential, Reused: true, res: l.res}, nil
		}
	}
	if beforeMint != nil {
		if err := beforeMint(ctx); err != nil {
			return nil, err
		}
	}

	leaseID := uuid.NewString()
	rec := store.Lease{
		ID:        leaseID,
		CallID:    callID,
		Resource:  spec.Name,
		Kind:      spec.Kind,
		Grant:     grantName,
		Subject:   id.Subject,
		Issuer:    id.Issuer,
		State:     store.LeasePending,
		CreatedAt: now,
		ExpiresAt: now.Add(grant.TTL),
		Replica:   m.cfg.Replica,
	}
	m.mark(res)
	if namer, ok := res.(tools.HandleNamer); ok {
		rec.Handle = namer.Handle(leaseID)
	}
	// Persist first: a crash after minting must leave a record to revoke.
	if err := m.cfg.Store.InsertLease(ctx, rec); err != nil {
		return nil, fmt.Errorf("recording lease before minting: %w", err)
	}
	// Minting is not cut short by the caller going away: a CREATE ROLE the
	// server completes after a cancelled request would leave a credential
	// behind that the cleanup below ran too early to see.
	mintCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mintTimeout)
	defer cancel()
	cred, err := res.Mint(mintCtx, tools.MintRequest{
		LeaseID:   leaseID,
		Handle:    rec.Handle,
		GrantName: grantName,
		Grant:     grant,
		Identity:  id,
		CallID:    callID,
		Expires:   rec.ExpiresAt,
		Guard:     guard,
	})
	if err != nil {
		m.fail(ctx, res, rec, err)
		return nil, fmt.Errorf("minting a %s credential for grant %q: %w", spec.Kind, grantName, err)
	}
	if rec.Handle == "" {
		rec.Handle = cred.Handle()
	}
	rec.State = store.LeaseActive
	if err := m.cfg.Store.SetLeaseState(ctx, rec.ID, store.LeaseActive, "", m.cfg.Clock()); err != nil {
		m.revoke(context.WithoutCancel(ctx), res, &Lease{Record: rec, Credential: cred}, "could not record lease as active")
		return nil, fmt.Errorf("recording minted lease: %w", err)
	}
	if err := m.cfg.OnEvent(ctx, Event{Type: "lease.minted", Lease: rec}); err != nil {
		m.revoke(context.WithoutCancel(ctx), res, &Lease{Record: rec, Credential: cred}, "could not record lease")
		return nil, err
	}
	l := &Lease{Record: rec, Credential: cred, res: res}
	m.mu.Lock()
	m.live[rec.ID] = l
	if res.Reusable() {
		m.cache[k] = l
	}
	m.mu.Unlock()
	return l, nil
}

// fail marks a lease that could not be minted and cleans up anything the
// backend may have created.
func (m *Manager) fail(ctx context.Context, res tools.Resource, rec store.Lease, cause error) {
	ctx = context.WithoutCancel(ctx)
	if err := res.Revoke(ctx, tools.LeaseRef{LeaseID: rec.ID, Handle: rec.Handle}); err != nil {
		// Whatever the mint may have created could not be cleaned up: the
		// lease stays pending, so the sweeper revokes it at its expiry.
		m.cfg.Logger.Error("cleaning up after a failed mint; the sweeper will retry at expiry", "lease_id", rec.ID, "error", err)
		_ = m.cfg.Store.SetLeaseState(ctx, rec.ID, store.LeasePending, "mint failed and cleanup failed: "+err.Error(), m.cfg.Clock())
		_ = m.cfg.OnEvent(ctx, Event{Type: "lease.failed", Lease: rec, Err: cause})
		return
	}
	now := m.cfg.Clock()
	if err := m.cfg.Store.SetLeaseState(ctx, rec.ID, store.LeaseFailed, cause.Error(), now); err != nil {
		m.cfg.Logger.Error("recording failed lease", "lease_id", rec.ID, "error", err)
	}
	rec.State = store.LeaseFailed
	rec.Error = cause.Error()
	_ = m.cfg.OnEvent(ctx, Event{Type: "lease.failed", Lease: rec, Err: cause})
}

// Release ends a lease's use by one call. Leases that may not be reused
// (one credential per call) are revoked at once.
func (m *Manager) Release(ctx context.Context, res tools.Resource, l *Lease) {
	if res.Reusable() {
		return
	}
	m.revoke(context.WithoutCancel(ctx), res, l, "single-use credential")
}

// revoke withdraws a lease's credential and records it. A failure leaves the
// lease live in the store, so the sweeper retries it.
func (m *Manager) revoke(ctx context.Context, res tools.Resource, l *Lease, why string) {
	rec := l.Record
	m.mu.Lock()
	delete(m.live, rec.ID)
	for k, c := range m.cache {
		if c.Record.ID == rec.ID {
			delete(m.cache, k)
		}
	}
	m.mu.Unlock()
	if c, ok := l.Credential.(io.Closer); ok {
		_ = c.Close()
	}
	if err := res.Revoke(ctx, tools.LeaseRef{LeaseID: rec.ID, Handle: rec.Handle}); err != nil {
		m.cfg.Logger.Error("revoking lease", "lease_id", rec.ID, "resource", rec.Resource, "error", err)
		_ = m.cfg.Store.SetLeaseState(ctx, rec.ID, rec.State, "revoke failed: "+err.Error(), m.cfg.Clock())
		_ = m.cfg.OnEvent(ctx, Event{Type: "lease.failed", Lease: rec, Err: fmt.Errorf("revoking: %w", err)})
		return
	}
	now := m.cfg.Clock()
	if err := m.cfg.Store.SetLeaseState(ctx, rec.ID, store.LeaseRevoked, "", now); err != nil {
		m.cfg.Logger.Error("recording revoked lease", "lease_id", rec.ID, "error", err)
	}
	rec.State, rec.RevokedAt = store.LeaseRevoked, now
	if err := m.cfg.OnEvent(ctx, Event{Type: "lease.revoked", Lease: rec}); err != nil {
		m.cfg.Logger.Error("recording lease revocation", "lease_id", rec.ID, "error", err)
	}
	m.cfg.Logger.Info("lease revoked", "lease_id", rec.ID, "resource", rec.Resource, "grant", rec.Grant, "reason", why)
}

// RevokeResource revokes every lease this process holds on a resource: a
// reload removed it or changed it, and its grants may have narrowed.
func (m *Manager) RevokeResource(ctx context.Context, res tools.Resource) {
	m.mu.Lock()
	var held []*Lease
	for _, l := range m.live {
		if l.res == res {
			held = append(held, l)
		}
	}
	m.mu.Unlock()
	for _, l := range held {
		m.revoke(ctx, res, l, "resource reconfigured")
	}
}

// revokeRecord revokes a lease known only from the store.
func (m *Manager) revokeRecord(ctx context.Context, rec store.Lease, why string) {
	res, ok := m.cfg.Resolve(rec.Resource)
	if !ok {
		m.cfg.Logger.Warn("lease for a resource that is no longer configured; cannot revoke it", "lease_id", rec.ID, "resource", rec.Resource)
		return
	}
	m.mu.Lock()
	l, ok := m.live[rec.ID]
	m.mu.Unlock()
	if !ok {
		l = &Lease{Record: rec}
	}
	m.revoke(ctx, res, l, why)
}

// Recover cleans up after an earlier process: it revokes every lease whose
// expiry has passed, then every credential on a backend that carries
// airlock's marks but that no live lease in the store owns (a crash between
// minting and recording, or a store that was reset). Live leases of other
// processes sharing the store are left alone; the sweeper revokes them at
// expiry.
func (m *Manager) Recover(ctx context.Context, resources []tools.Resource) error {
	m.Reap(ctx)
	m.Sweep(ctx)
	// Handles of every live lease, whatever its resource: two resources can
	// be databases of one PostgreSQL cluster, where roles are cluster-wide,
	// so one resource's orphan listing shows the other's live roles too.
	live, err := m.cfg.Store.LiveLeases(ctx)
	if err != nil {
		return fmt.Errorf("listing live leases: %w", err)
	}
	owned := make(map[string]bool, len(live))
	for _, l := range live {
		owned[l.Handle] = true
	}
	var errs []error
	for _, res := range resources {
		name := res.Spec().Name
		m.mark(res)
		orphans, err := res.Orphans(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("resource %s: listing credentials left behind: %w", name, err))
			continue
		}
		for _, handle := range orphans {
			if owned[handle] {
				continue
			}
			if err := res.Revoke(ctx, tools.LeaseRef{Handle: handle}); err != nil {
				errs = append(errs, fmt.Errorf("resource %s: revoking %s: %w", name, handle, err))
				continue
			}
			m.cfg.Logger.Info("revoked a credential no live lease owns", "resource", name, "handle", handle)
		}
	}
	return errors.Join(errs...)
}

// Start runs the sweeper until Close.
func (m *Manager) Start(ctx context.Context) {
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		sweep := time.NewTicker(m.cfg.SweepInterval)
		defer sweep.Stop()
		beat := time.NewTicker(m.cfg.HeartbeatInterval)
		defer beat.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sweep.C:
				m.Sweep(ctx)
			case <-beat.C:
				if m.heartbeat(ctx) {
					m.Reap(ctx)
				}
			}
		}
	}()
}

// claimHold is how long a sweeper's claim on a lease lasts: a claimed
// lease that its claimer did not revoke in that time (it died, or the
// backend is down) is claimed again.
const claimHold = time.Minute

// claimBatch bounds the leases one claim takes.
const claimBatch = 100

// Sweep revokes every lease whose expiry has passed, claiming each first
// so that of several replicas sweeping one store, one revokes it.
func (m *Manager) Sweep(ctx context.Context) {
	for {
		due, err := m.cfg.Store.ClaimLeasesDue(ctx, m.cfg.Clock(), m.cfg.Replica, claimHold, claimBatch)
		if err != nil {
			m.cfg.Logger.Error("claiming expired leases", "error", err)
			return
		}
		for _, rec := range due {
			m.revokeRecord(ctx, rec, "expired")
		}
		if len(due) < claimBatch || ctx.Err() != nil {
			return
		}
	}
}

// Live returns the number of leases with a credential in memory.
func (m *Manager) Live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

// Close stops the sweeper and revokes every lease this process holds.
func (m *Manager) Close(ctx context.Context) error {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
	m.mu.Lock()
	held := make([]*Lease, 0, len(m.live))
	for _, l := range m.live {
		held = append(held, l)
	}
	m.mu.Unlock()
	for _, l := range held {
		res, ok := m.cfg.Resolve(l.Record.Resource)
		if !ok {
			continue
		}
		m.revoke(ctx, res, l, "shutdown")
	}
	return m.unregister(ctx)
}
