package approval

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const issuer = "https://idp.example.com/"

// clock is a settable clock for expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// events collects what the manager reports, storing a decision with its
// event as a transcript would (in one store transaction).
type events struct {
	store *store.Store
	mu    sync.Mutex
	list  []Event
}

func (e *events) record(ctx context.Context, ev Event) error {
	if ev.Write != nil {
		if err := e.store.InTx(ctx, ev.Write); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
	return nil
}

func (e *events) ofType(typ string) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	for _, ev := range e.list {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func person(subject string, groups ...string) policy.Identity {
	return policy.Identity{Subject: subject, Email: subject + "@example.com", Issuer: issuer, Groups: groups, Method: "oidc"}
}

var (
	alice = person("alice", "eng")        // the requester
	bob   = person("bob", "dba")          // an approver
	carol = person("carol", "dba", "eng") // another approver
	dave  = person("dave", "eng")         // not an approver
)

// openStore opens a file store in dir (shared by managers that act as
// separate processes).
func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite://"+filepath.Join(dir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type fixture struct {
	m      *Manager
	store  *store.Store
	clock  *clock
	events *events
}

// newFixture returns a started manager on a fresh file store; mutate
// adjusts its config.
func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{store: openStore(t, t.TempDir()), clock: &clock{now: t0}}
	f.events = &events{store: f.store}
	cfg := Config{
		Store:            f.store,
		PublicURL:        "https://airlock.example.com/mcp",
		Wait:             time.Second,
		Expire:           15 * time.Minute,
		PollInterval:     20 * time.Millisecond,
		ProgressInterval: time.Hour,
		OnEvent:          f.events.record,
		Clock:            f.clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	f.m = m
	return f
}

func approveDecision(min int, groups ...string) policy.Decision {
	return policy.Decision{
		Effect: policy.Approve, Rule: "writes-need-a-dba", Message: "writes need a DBA",
		Matched: []policy.Match{
			{Rule: "engineers-read-orders", Effect: policy.Allow},
			{Rule: "writes-need-a-dba", Effect: policy.Approve, Message: "writes need a DBA"},
		},
		Grant: "readwrite", Approvers: &policy.Approvers{Groups: groups, Min: min}, PolicyVersion: "pv1",
	}
}

// input is alice's call with these (unmasked) arguments.
func input(args string, min int) RequestInput {
	sum := sha256.Sum256([]byte(args))
	return RequestInput{
		Requester: alice, Tool: "query_db", Resource: "orders",
		Arguments: json.RawMessage(args), ArgumentsDigest: sum[:],
		Decision: approveDecision(min, "dba"), CallID: "call-1",
	}
}

// request creates an approval and fails the test on error.
func (f *fixture) request(t *testing.T, in RequestInput) Approval {
	t.Helper()
	a, _, err := f.m.Request(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// storeOpen opens the file store in dir without registering a cleanup, for
// tests that close and reopen it.
func storeOpen(dir string) (*store.Store, error) {
	return store.Open(context.Background(), "sqlite://"+filepath.Join(dir, "airlock.db"))
}
