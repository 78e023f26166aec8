package approval

import (
	"context"
	"database/sql"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// Red team 5b: Manager.Request as Draft + InTx(RequestTx) + Announce.

func rt5bCount(t *testing.T, s *store.Store) (approvals, deliveries int) {
	t.Helper()
	ctx := context.Background()
	if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM approvals`).Scan(&approvals); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM webhook_outbox`).Scan(&deliveries); err != nil {
		t.Fatal(err)
	}
	return
}

// rt5bReceiver starts a webhook receiver that counts deliveries, and
// returns it with the webhook that sends to it.
func rt5bReceiver(t *testing.T) (*deliveryCounter, WebhookConfig) {
	t.Helper()
	rc := &deliveryCounter{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, WebhookConfig{URL: srv.URL + "/hook", Secret: testSecret}
}

// Concurrent identical Requests on two replicas: exactly one created, one
// id for all, one outbox row, the receiver told once.
func TestRedTeam5bConcurrentRequests(t *testing.T) {
	for _, b := range outboxBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			u := b.url(t)
			rc, hook := rt5bReceiver(t)
			s1, s2 := openURL(t, u), openURL(t, u)
			ms := []*Manager{
				outboxManager(t, s1, &events{}, "a", func(c *Config) { c.Webhooks = []WebhookConfig{hook} }),
				outboxManager(t, s2, &events{}, "b", func(c *Config) { c.Webhooks = []WebhookConfig{hook} }),
			}
			const n = 24
			var wg sync.WaitGroup
			ids := make([]string, n)
			created := make([]bool, n)
			errs := make([]error, n)
			start := make(chan struct{})
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					<-start
					a, c, err := ms[i%2].Request(context.Background(), input(sqlArgs, 1))
					ids[i], created[i], errs[i] = a.ID, c, err
				}(i)
			}
			close(start)
			wg.Wait()
			nc := 0
			for i := 0; i < n; i++ {
				if errs[i] != nil {
					t.Errorf("Request %d: %v", i, errs[i])
					continue
				}
				if created[i] {
					nc++
				}
				if ids[i] != ids[0] || ids[i] == "" {
					t.Errorf("Request %d id %q, want %q", i, ids[i], ids[0])
				}
			}
			if nc != 1 {
				t.Errorf("created %d times, want 1", nc)
			}
			na, nd := rt5bCount(t, s1)
			if na != 1 || nd != 1 {
				t.Errorf("store has %d approvals, %d outbox rows; want 1, 1", na, nd)
			}
			eventuallyLong(t, "delivery", allDelivered(t, s1, 1))
			time.Sleep(200 * time.Millisecond)
			byID, order, _, bad := rc.snapshot()
			if len(order) != 1 || len(byID) != 1 || len(bad) != 0 {
				t.Errorf("receiver got %v (bad %v), want one delivery once", order, bad)
			}
		})
	}
}

// A cancelled ctx (before, or while blocked mid-transaction on the lock):
// an error, no approval, no outbox row, no delivery; then a fresh Request
// creates one.
func TestRedTeam5bCancelled(t *testing.T) {
	for _, b := range outboxBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			u := b.url(t)
			rc, hook := rt5bReceiver(t)
			s := openURL(t, u)
			m := outboxManager(t, s, &events{}, "a", func(c *Config) { c.Webhooks = []WebhookConfig{hook} })

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if a, c, err := m.Request(ctx, input(sqlArgs, 1)); err == nil || c {
				t.Errorf("Request(cancelled) = %s, %v, %v; want an error", a.ID, c, err)
			}
			// Block the request mid-transaction behind another writer.
			other := openURL(t, u)
			tx, err := other.DB().BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if b.name == "postgres" {
				// Take the digest's advisory lock held by a pending approval request.
				d, _ := m.Draft(input(sqlArgs, 1))
				if _, err := tx.Exec(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, sqldialect.LockApprovals, d.rec.Digest); err != nil {
					t.Fatal(err)
				}
			} else {
				if _, err := tx.Exec(`INSERT INTO webhook_outbox (id, webhook, topic, approval_id, call_id, body, attempts, created_at, next_attempt_at) VALUES ('x','w','t','','','{}',0,0,0)`); err != nil {
					t.Fatal(err)
				}
			}
			tctx, tcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			a, c, err := m.Request(tctx, input(sqlArgs, 1))
			tcancel()
			if err == nil || c {
				t.Errorf("Request(blocked, timed out) = %s, %v, %v; want an error", a.ID, c, err)
			}
			_ = tx.Rollback()
			na, nd := rt5bCount(t, s)
			if na != 0 || nd != 0 {
				t.Errorf("after failed requests: %d approvals, %d outbox rows; want 0, 0", na, nd)
			}
			time.Sleep(300 * time.Millisecond)
			if _, order, _, _ := rc.snapshot(); len(order) != 0 {
				t.Errorf("receiver told %v about a request that failed", order)
			}
			a, c, err = m.Request(context.Background(), input(sqlArgs, 1))
			if err != nil || !c {
				t.Fatalf("Request after = %v, %v", c, err)
			}
			eventuallyLong(t, "delivery", allDelivered(t, s, 1))
		})
	}
}

// A store error after the approval row is written (the outbox insert
// fails): nothing stays, Request returns an error, not ErrExists.
func TestRedTeam5bStoreErrorMidTx(t *testing.T) {
	for _, b := range outboxBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			u := b.url(t)
			hook := WebhookConfig{URL: "http://127.0.0.1:1/hook", Secret: testSecret}
			s := openURL(t, u)
			m := outboxManager(t, s, &events{}, "a", func(c *Config) { c.Webhooks = []WebhookConfig{hook} })
			if _, err := s.DB().Exec(`ALTER TABLE webhook_outbox RENAME TO webhook_outbox_gone`); err != nil {
				t.Fatal(err)
			}
			a, c, err := m.Request(context.Background(), input(sqlArgs, 1))
			if err == nil || c || errors.Is(err, ErrExists) || a.ID != "" {
				t.Errorf("Request = %q, %v, %v; want a store error", a.ID, c, err)
			}
			if _, err := s.DB().Exec(`ALTER TABLE webhook_outbox_gone RENAME TO webhook_outbox`); err != nil {
				t.Fatal(err)
			}
			na, nd := rt5bCount(t, s)
			if na != 0 || nd != 0 {
				t.Errorf("after a failed request: %d approvals, %d outbox rows; want 0, 0", na, nd)
			}
		})
	}
}

var _ = sql.ErrNoRows
