package lease

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/tools"
)

// Defaults of Config.HeartbeatInterval and Config.HeartbeatTimeout.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultHeartbeatTimeout  = 15 * time.Second
)

// InstallationMarker is implemented by resources that mark the credentials
// they mint with the installation id and list as orphans only credentials
// carrying it (PostgreSQL: the role's COMMENT), so two installations
// sharing a backend never revoke each other's.
type InstallationMarker interface {
	SetInstallation(id string)
}

// Replica returns this process's replica id.
func (m *Manager) Replica() string { return m.cfg.Replica }

// mark gives res the installation id, when it takes one.
func (m *Manager) mark(res tools.Resource) {
	if mk, ok := res.(InstallationMarker); ok && m.cfg.Installation != "" {
		mk.SetInstallation(m.cfg.Installation)
	}
}

// staleBefore is the heartbeat time before which a replica is gone.
func (m *Manager) staleBefore(now time.Time) time.Time {
	return now.Add(-(m.cfg.HeartbeatTimeout - m.cfg.HeartbeatInterval))
}

// Register records this replica; call it before Recover and Start. Until
// it is registered, a replica's leases look abandoned to the others. A row left by an earlier run of airlock
// on this host (the same host name, and its pid is ours or no longer
// runs: a restart after a crash) is removed first, so its leases are
// revoked now rather than after the heartbeat timeout.
func (m *Manager) Register(ctx context.Context) error {
	replicas, err := m.cfg.Store.Replicas(ctx)
	if err != nil {
		return fmt.Errorf("listing replicas: %w", err)
	}
	for _, r := range replicas {
		if r.ID == m.cfg.Replica || r.Host != m.cfg.Host || (r.PID != m.cfg.PID && processRuns(r.PID)) {
			continue
		}
		if err := m.cfg.Store.RemoveReplica(ctx, r.ID); err != nil {
			return err
		}
		m.cfg.Logger.Warn("an earlier run of airlock on this host did not stop cleanly; revoking its leases", "replica", r.ID, "pid", r.PID, "last_heartbeat", r.HeartbeatAt)
	}
	now := m.cfg.Clock()
	err = m.cfg.Store.RegisterReplica(ctx, store.Replica{
		ID: m.cfg.Replica, Host: m.cfg.Host, PID: m.cfg.PID, Version: m.cfg.Version,
		StartedAt: now, HeartbeatAt: now,
	})
	if err != nil {
		return err
	}
	m.lastBeat, m.reapAfter = now, time.Time{}
	m.cfg.Logger.Info("replica registered", "replica", m.cfg.Replica, "host", m.cfg.Host,
		"heartbeat_interval", m.cfg.HeartbeatInterval, "heartbeat_timeout", m.cfg.HeartbeatTimeout)
	return nil
}

// processRuns reports whether a process with pid exists on this host.
func processRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// heartbeat refreshes this replica's heartbeat. When the row is gone,
// another replica took this one for dead (a pause longer than the
// timeout) and revoked its leases: the credentials held in memory are
// dropped and the replica registers again.
//
// It reports whether this replica may now take others for dead (Reap).
// Not for a heartbeat timeout after its own heartbeats resume from a gap
// (one failed or late, the store unreachable or this process paused):
// whatever kept this replica from the store may have kept the others
// from it too, and their heartbeats are stale for the same reason, not
// because they are gone. Reaping them then would revoke leases under
// live calls and interrupt calls that go on to complete. In that time
// every live replica beats again; one that does not is reaped after it.
func (m *Manager) heartbeat(ctx context.Context) bool {
	now := m.cfg.Clock()
	err := m.cfg.Store.Heartbeat(ctx, m.cfg.Replica, now)
	switch {
	case err == nil:
		done := m.cfg.Clock()
		if gap := done.Sub(m.lastBeat); !m.lastBeat.IsZero() && gap > m.cfg.HeartbeatInterval*3/2 {
			m.reapAfter = done.Add(m.cfg.HeartbeatTimeout)
			m.cfg.Logger.Warn("replica heartbeats resumed after a gap; not taking other replicas for dead until they have had time to beat again",
				"replica", m.cfg.Replica, "gap", gap.Round(time.Millisecond), "until", m.reapAfter)
		}
		m.lastBeat = done
		return !done.Before(m.reapAfter)
	case !errors.Is(err, store.ErrNotFound):
		m.cfg.Logger.Error("replica heartbeat failed; other replicas revoke this one's leases if it stays silent", "replica", m.cfg.Replica, "timeout", m.cfg.HeartbeatTimeout, "error", err)
		return false
	}
	m.cfg.Logger.Error("this replica was taken for dead and its leases revoked; dropping its credentials and registering again", "replica", m.cfg.Replica)
	m.mu.Lock()
	dropped := make([]*Lease, 0, len(m.live))
	for _, l := range m.live {
		dropped = append(dropped, l)
	}
	clear(m.live)
	clear(m.cache)
	m.mu.Unlock()
	for _, l := range dropped {
		if c, ok := l.Credential.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}
	if err := m.cfg.Store.RegisterReplica(ctx, store.Replica{
		ID: m.cfg.Replica, Host: m.cfg.Host, PID: m.cfg.PID, Version: m.cfg.Version,
		StartedAt: now, HeartbeatAt: now,
	}); err != nil {
		m.cfg.Logger.Error("registering the replica again", "replica", m.cfg.Replica, "error", err)
		return false
	}
	m.lastBeat = m.cfg.Clock()
	m.reapAfter = m.lastBeat.Add(m.cfg.HeartbeatTimeout)
	return false
}

// Reap ends what gone replicas left: their leases are claimed and revoked
// (for PostgreSQL: sessions terminated, role dropped), then their calls in
// flight are reported to OnInterrupted, and their rows removed. Several
// replicas may reap at once: each call and each lease goes to one of them.
func (m *Manager) Reap(ctx context.Context) {
	now := m.cfg.Clock()
	before := m.staleBefore(now)
	for {
		leases, err := m.cfg.Store.ClaimAbandonedLeases(ctx, before, now, m.cfg.Replica, claimHold, claimBatch)
		if err != nil {
			m.cfg.Logger.Error("claiming leases of gone replicas", "error", err)
			break
		}
		for _, rec := range leases {
			m.revokeRecord(ctx, rec, "its replica "+rec.Replica+" is gone")
		}
		if len(leases) < claimBatch || ctx.Err() != nil {
			break
		}
	}
	calls, err := m.cfg.Store.TakeAbandonedCalls(ctx, before, "")
	if err != nil {
		m.cfg.Logger.Error("taking calls of gone replicas", "error", err)
	}
	for _, c := range calls {
		m.interrupted(ctx, c)
	}
	gone, err := m.cfg.Store.RemoveStaleReplicas(ctx, before)
	if err != nil {
		m.cfg.Logger.Error("removing gone replicas", "error", err)
	}
	for _, id := range gone {
		m.cfg.Logger.Warn("replica gone: no heartbeat within the timeout; its leases were revoked", "replica", id, "timeout", m.cfg.HeartbeatTimeout)
	}
}

func (m *Manager) interrupted(ctx context.Context, c store.CallInFlight) {
	if err := m.cfg.OnInterrupted(ctx, c); err != nil {
		m.cfg.Logger.Error("recording an interrupted call", "call_id", c.CallID, "replica", c.Replica, "error", err)
		return
	}
	m.cfg.Logger.Warn("call interrupted: its replica stopped before it ended", "call_id", c.CallID, "replica", c.Replica, "tool", c.Tool)
}

// unregister ends this replica: the calls it still has in flight are
// interrupted and its row removed.
func (m *Manager) unregister(ctx context.Context) error {
	calls, err := m.cfg.Store.TakeAbandonedCalls(ctx, m.staleBefore(m.cfg.Clock()), m.cfg.Replica)
	for _, c := range calls {
		m.interrupted(ctx, c)
	}
	return errors.Join(err, m.cfg.Store.RemoveReplica(ctx, m.cfg.Replica))
}
