package mcpserver

import (
	"context"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// sessionTable counts the MCP sessions mcp-go holds registered, by the
// identity that opened each, together with the slots that requests which may
// open a session have reserved, so that a cap is never passed even by
// requests racing each other. mcp-go's session hooks keep it true: a session
// is added when mcp-go registers it (after initialize, or for an event stream
// opened without one) and removed when mcp-go unregisters it (DELETE, idle
// expiry, shutdown, the end of such a stream).
type sessionTable struct {
	now func() time.Time

	mu    sync.Mutex
	byID  map[string]*trackedSession
	held  map[string]int // identity key → its sessions and reservations
	total int            // every session and reservation
}

type trackedSession struct {
	key      string    // the identity that opened it; "" when none was known
	lastSeen time.Time // its last request seen here
}

// reservation is a slot held by one request that may open a session. The
// session it opens takes the slot over; a request that opened none gives it
// back when it ends.
type reservation struct {
	key  string
	done bool // taken over or given back; guarded by sessionTable.mu
}

type reservationKey struct{}

// Why a reservation was refused.
type capScope int

const (
	capNone     capScope = iota
	capTotal             // every caller together holds MaxSessions
	capIdentity          // this caller holds MaxSessionsPerIdentity
)

func newSessionTable(now func() time.Time) *sessionTable {
	return &sessionTable{now: now, byID: map[string]*trackedSession{}, held: map[string]int{}}
}

// hooks returns the mcp-go hooks that keep the table true, and bound what a
// session keeps from its client.
func (t *sessionTable) hooks() *server.Hooks {
	h := &server.Hooks{}
	h.AddOnRegisterSession(t.registered)
	h.AddOnUnregisterSession(t.unregistered)
	h.AddBeforeInitialize(keepLittle)
	return h
}

// keepLittle drops from an initialize request, before mcp-go stores it with
// the session, the parts nothing reads that cost most to keep: experimental
// and extension capabilities (arbitrary JSON, held as maps: an empty object
// in 2 bytes of JSON costs over 40 of memory) and the client's icons. What
// stays — the client's name, version, title, description and website, and
// the standard capabilities (roots, sampling, elicitation, tasks), fixed
// structures — is no larger in memory than in the request, which
// HTTPConfig.MaxInitializeBytes bounds.
func keepLittle(_ context.Context, _ any, req *mcp.InitializeRequest) {
	req.Params.Capabilities.Experimental = nil
	req.Params.Capabilities.Extensions = nil
	req.Params.ClientInfo.Icons = nil
}

// reserve holds a slot for key, unless that would pass a cap.
func (t *sessionTable) reserve(key string, maxTotal, maxPerIdentity int) (*reservation, capScope) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.total >= maxTotal:
		return nil, capTotal
	case t.held[key] >= maxPerIdentity:
		return nil, capIdentity
	}
	t.total++
	t.held[key]++
	return &reservation{key: key}, capNone
}

// release gives back a reservation no session took over.
func (t *sessionTable) release(r *reservation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !r.done {
		r.done = true
		t.drop(r.key)
	}
}

func (t *sessionTable) drop(key string) {
	t.total--
	if t.held[key]--; t.held[key] <= 0 {
		delete(t.held, key)
	}
}

// registered is mcp-go's OnRegisterSession hook. The session takes over the
// reservation of the request that opened it, found in ctx; a session opened
// without one (stdio, in process) is counted all the same.
func (t *sessionTable) registered(ctx context.Context, session server.ClientSession) {
	r, _ := ctx.Value(reservationKey{}).(*reservation)
	t.mu.Lock()
	defer t.mu.Unlock()
	id := session.SessionID()
	if _, dup := t.byID[id]; dup {
		return
	}
	var key string
	if r != nil {
		key = r.key
	}
	if r == nil || r.done {
		t.total++
		t.held[key]++
	}
	if r != nil {
		r.done = true
	}
	t.byID[id] = &trackedSession{key: key, lastSeen: t.now()}
}

// unregistered is mcp-go's OnUnregisterSession hook.
func (t *sessionTable) unregistered(_ context.Context, session server.ClientSession) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := session.SessionID()
	s, ok := t.byID[id]
	if !ok {
		return
	}
	delete(t.byID, id)
	t.drop(s.key)
	if len(t.byID) == 0 {
		// A Go map keeps its size after a flood: start afresh.
		t.byID = map[string]*trackedSession{}
	}
}

// touch records a request of session id, if it is registered here.
func (t *sessionTable) touch(id string) {
	if id == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.byID[id]; ok {
		s.lastSeen = t.now()
	}
}

// has reports whether session id is registered here.
func (t *sessionTable) has(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byID[id]
	return ok
}

// count returns the sessions registered.
func (t *sessionTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// slots returns the slots held: sessions and reservations.
func (t *sessionTable) slots() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// retryAfter estimates when a slot frees: when the least recently seen
// session (of key, or of anyone for capTotal) may have been swept, having
// been idle for ttl and waited for the next sweep. It is at least a second.
func (t *sessionTable) retryAfter(scope capScope, key string, ttl, sweep time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var oldest time.Time
	for _, s := range t.byID {
		if scope == capIdentity && s.key != key {
			continue
		}
		if oldest.IsZero() || s.lastSeen.Before(oldest) {
			oldest = s.lastSeen
		}
	}
	wait := ttl + sweep
	if !oldest.IsZero() {
		wait = oldest.Add(ttl + sweep).Sub(t.now())
	}
	return max((wait + time.Second - 1).Truncate(time.Second), time.Second)
}
