package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/recorder"
)

// The outbox tests run the Manager on real stores: a SQLite file and a
// real PostgreSQL, several Managers on one store standing for replicas.

var pgOutboxSchemas atomic.Int64

// pgStoreURL returns the URL of a new, empty store (a schema of its own)
// on pg.
func pgStoreURL(t *testing.T, pg *testenv.Postgres) string {
	t.Helper()
	schema := "outbox" + strconv.FormatInt(pgOutboxSchemas.Add(1), 10)
	pg.ExecDB(t, "store", "CREATE SCHEMA "+schema)
	q := url.Values{"host": {pg.SocketDir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}, "search_path": {schema}}
	return "postgres://postgres@/store?" + q.Encode()
}

// outboxBackends are the store URLs a test runs against: a new one per call.
func outboxBackends(t *testing.T) []struct {
	name string
	url  func(t *testing.T) string
} {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE store")
	return []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "airlock.db") }},
		{"postgres", func(t *testing.T) string { return pgStoreURL(t, pg) }},
	}
}

func openURL(t *testing.T, u string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// outboxManager is a started Manager on s with one webhook, as one replica;
// it is closed when t ends.
func outboxManager(t *testing.T, s *store.Store, ev *events, replica string, mutate func(*Config)) *Manager {
	t.Helper()
	if ev.store == nil {
		ev.store = s
	}
	cfg := Config{
		Store: s, PublicURL: "https://airlock.example.com/mcp", Wait: time.Second, Expire: 15 * time.Minute,
		OnEvent: ev.record, Replica: replica,
		WebhookAttempts: 5, WebhookBackoff: 10 * time.Millisecond, WebhookTimeout: 500 * time.Millisecond,
		WebhookPoll: 50 * time.Millisecond,
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
		_ = m.Close(ctx)
	})
	return m
}

// deliveryCounter is a receiver that verifies each request's signature and
// counts requests by Airlock-Delivery.
type deliveryCounter struct {
	mu     sync.Mutex
	byID   map[string]int
	order  []string
	at     []time.Time
	bad    []string
	handle func(w http.ResponseWriter, r *http.Request, n int) // n: 1-based request count
}

func (c *deliveryCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get(webhook.HeaderDelivery)
	c.mu.Lock()
	if err := webhook.Verify(testSecret, r.Header, body, time.Now()); err != nil {
		c.bad = append(c.bad, err.Error())
	}
	if c.byID == nil {
		c.byID = map[string]int{}
	}
	c.byID[id]++
	c.order = append(c.order, id)
	c.at = append(c.at, time.Now())
	n := len(c.order)
	c.mu.Unlock()
	if c.handle != nil {
		c.handle(w, r, n)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *deliveryCounter) snapshot() (byID map[string]int, order []string, at []time.Time, bad []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	byID = map[string]int{}
	for k, v := range c.byID {
		byID[k] = v
	}
	return byID, append([]string(nil), c.order...), append([]time.Time(nil), c.at...), append([]string(nil), c.bad...)
}

// eventuallyLong is eventually with room for a loaded machine: these
// tests run several stores, managers and receivers at once.
func eventuallyLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func allDelivered(t *testing.T, s *store.Store, n int) func() bool {
	return func() bool {
		ds, err := s.Deliveries(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, d := range ds {
			if !d.DeliveredAt.IsZero() {
				done++
			}
		}
		return len(ds) == n && done == n
	}
}

// A delivery enqueued by a process that then dies without delivering it
// (its receiver was down) is delivered by the next process on the store.
func TestWebhookSurvivesCrash(t *testing.T) {
	for _, b := range outboxBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			u := b.url(t)
			// The receiver's address, down for now.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			hook := WebhookConfig{URL: "http://" + addr + "/hook", Secret: testSecret}

			first, err := store.Open(context.Background(), u)
			if err != nil {
				t.Fatal(err)
			}
			evA := &events{}
			a := outboxManager(t, first, evA, "replica-a", func(c *Config) {
				c.Webhooks = []WebhookConfig{hook}
				c.WebhookBackoff = 2 * time.Second // the retry is due after the crash
			})
			approval, _, err := a.Request(context.Background(), input(sqlArgs, 1))
			if err != nil {
				t.Fatal(err)
			}
			eventuallyLong(t, "the first attempt to fail", func() bool { return len(evA.ofType(EventWebhookFailed)) == 1 })
			if ev := evA.ofType(EventWebhookFailed)[0]; ev.Data["final"] != false || ev.Data["attempt"] != 1 {
				t.Fatalf("first failure = %+v", ev)
			}
			// The process dies: its store goes away before it delivers.
			first.Close()

			// The receiver comes back, and a new process starts on the store.
			rc := &deliveryCounter{}
			srv := httptest.NewUnstartedServer(rc)
			if srv.Listener, err = net.Listen("tcp", addr); err != nil {
				t.Fatal(err)
			}
			srv.Start()
			t.Cleanup(srv.Close)
			second := openURL(t, u)
			evB := &events{}
			outboxManager(t, second, evB, "replica-b", func(c *Config) { c.Webhooks = []WebhookConfig{hook} })

			eventuallyLong(t, "the delivery by the new process", func() bool { return len(evB.ofType(EventWebhookDelivered)) == 1 })
			byID, order, _, bad := rc.snapshot()
			ds, err := second.Deliveries(context.Background(), "")
			if err != nil || len(ds) != 1 {
				t.Fatalf("outbox = %+v, %v", ds, err)
			}
			d := ds[0]
			if len(order) != 1 || byID[d.ID] != 1 || len(bad) != 0 {
				t.Errorf("receiver got %v (bad signatures %v); want delivery %s once", order, bad, d.ID)
			}
			if d.DeliveredAt.IsZero() || d.Attempts != 2 || d.ApprovalID != approval.ID {
				t.Errorf("delivery = %+v; want delivered at the second attempt", d)
			}
			ev := evB.ofType(EventWebhookDelivered)[0]
			if ev.ApprovalID != approval.ID || ev.Data["attempt"] != 2 || ev.Data["delivery"] != d.ID {
				t.Errorf("delivered event = %+v", ev)
			}
		})
	}
}

// Two replicas on one PostgreSQL store, one receiver: each delivery is
// received exactly once, though both replicas' workers compete for them
// (the other replica sends some of the deliveries the first one made).
func TestWebhookTwoReplicasDeliverOnce(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE store")
	u := pgStoreURL(t, pg)
	// A receiver slow enough that the creating replica's workers fall
	// behind and the other replica's claim some of its deliveries.
	rc := &deliveryCounter{handle: func(w http.ResponseWriter, r *http.Request, n int) {
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	hook := WebhookConfig{URL: srv.URL + "/hook", Secret: testSecret}
	stores := []*store.Store{openURL(t, u), openURL(t, u)}
	evs := []*events{{}, {}}
	var ms []*Manager
	for i := range 2 {
		ms = append(ms, outboxManager(t, stores[i], evs[i], fmt.Sprintf("replica-%d", i), func(c *Config) {
			c.Webhooks = []WebhookConfig{hook}
			c.WebhookPoll = 10 * time.Millisecond
		}))
	}
	// Every approval is created on replica 0, at once.
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := ms[0].Request(context.Background(), input(`{"n":`+strconv.Itoa(i)+`}`, 1)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	eventuallyLong(t, "every delivery", allDelivered(t, stores[0], n))
	time.Sleep(200 * time.Millisecond) // room for a duplicate to show
	byID, order, _, bad := rc.snapshot()
	if len(bad) != 0 {
		t.Errorf("bad signatures: %v", bad)
	}
	if len(byID) != n || len(order) != n {
		t.Errorf("receiver got %d requests for %d deliveries; want %d and %d", len(order), len(byID), n, n)
	}
	for id, k := range byID {
		if k != 1 {
			t.Errorf("delivery %s received %d times", id, k)
		}
	}
	a, b := len(evs[0].ofType(EventWebhookDelivered)), len(evs[1].ofType(EventWebhookDelivered))
	if a+b != n || b == 0 {
		t.Errorf("replicas reported %d + %d deliveries, want %d in all, some by the replica that created none", a, b, n)
	}
	t.Logf("replica 0 delivered %d, replica 1 delivered %d", a, b)
}

// A replica that dies in the middle of an attempt (the receiver got the
// request, no outcome was recorded) holds the delivery only until its
// claim runs out; then another replica sends it again, with the same
// Airlock-Delivery: at least once, and never two replicas at a time.
func TestWebhookClaimerDiesMidDelivery(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE store")
	u := pgStoreURL(t, pg)
	release := make(chan struct{})
	rc := &deliveryCounter{handle: func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 { // the dying replica's attempt: no answer
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	hook := WebhookConfig{URL: srv.URL + "/hook", Secret: testSecret}
	const timeout = time.Second // claims last 3 × timeout
	withHook := func(c *Config) {
		c.Webhooks = []WebhookConfig{hook}
		c.WebhookTimeout = timeout
		c.WebhookPoll = 20 * time.Millisecond
	}

	dying, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	evA := &events{}
	a := outboxManager(t, dying, evA, "replica-dying", withHook)
	if _, _, err := a.Request(context.Background(), input(sqlArgs, 1)); err != nil {
		t.Fatal(err)
	}
	eventuallyLong(t, "the first attempt to reach the receiver", func() bool { _, order, _, _ := rc.snapshot(); return len(order) == 1 })
	_, order, _, _ := rc.snapshot()
	claimed, err := dying.Delivery(context.Background(), order[0])
	if err != nil || claimed.ClaimedBy != "replica-dying" || claimed.Attempts != 1 {
		t.Fatalf("delivery in flight = %+v, %v", claimed, err)
	}
	// The replica dies with the attempt in flight: it can record nothing.
	dying.Close()

	live := openURL(t, u)
	evB := &events{}
	outboxManager(t, live, evB, "replica-live", withHook)
	deadline := time.Now().Add(4 * 3 * timeout)
	for len(evB.ofType(EventWebhookDelivered)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the live replica never delivered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	byID, order, at, bad := rc.snapshot()
	if len(order) != 2 || order[0] != order[1] || byID[order[0]] != 2 || len(bad) != 0 {
		t.Fatalf("receiver got %v (bad signatures %v); want the same delivery twice", order, bad)
	}
	// The second attempt waited for the dead replica's claim to run out.
	if at[1].Before(claimed.ClaimedUntil) {
		t.Errorf("the second attempt came at %s, inside the first one's claim (until %s)", at[1].Format(time.StampMilli), claimed.ClaimedUntil.Format(time.StampMilli))
	}
	if got := claimed.ClaimedUntil.Sub(at[0]); got > 3*timeout || got < timeout {
		t.Errorf("the first claim ran %s past its request; want about 3 × %s", got, timeout)
	}
	d, err := live.Delivery(context.Background(), order[0])
	if err != nil || d.DeliveredAt.IsZero() || d.Attempts != 2 {
		t.Errorf("delivery = %+v, %v; want delivered at attempt 2", d, err)
	}
	if len(evA.ofType(EventWebhookDelivered)) != 0 {
		t.Error("the dead replica reported a delivery")
	}
}

// The last attempt's claim running out leaves no attempts: the delivery
// fails for good instead of being tried forever.
func TestWebhookAttemptsBoundAcrossCrashes(t *testing.T) {
	s := openStore(t, t.TempDir())
	ev := &events{}
	ok := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	hook := WebhookConfig{URL: ok.URL, Secret: testSecret}
	name := webhookName(topicApproval, hook)
	now := time.Now()
	if err := s.EnqueueDeliveries(context.Background(), []store.Delivery{{
		ID: "d1", Webhook: name, Topic: topicApproval, ApprovalID: "a1", Body: []byte(`{}`), CreatedAt: now.Add(-time.Hour),
	}}); err != nil {
		t.Fatal(err)
	}
	// Two replicas each claimed it and died.
	for range 2 {
		if got, err := s.ClaimDeliveries(context.Background(), name, now.Add(-time.Hour), "dead", time.Millisecond, 1); err != nil || len(got) != 1 {
			t.Fatalf("claim = %v, %v", got, err)
		}
		now = now.Add(time.Millisecond)
	}
	outboxManager(t, s, ev, "replica", func(c *Config) {
		c.Webhooks = []WebhookConfig{hook}
		c.WebhookAttempts = 2
	})
	eventuallyLong(t, "the final failure", func() bool { return len(ev.ofType(EventWebhookFailed)) == 1 })
	f := ev.ofType(EventWebhookFailed)[0]
	if f.ApprovalID != "a1" || f.Data["final"] != true || f.Data["attempt"] != 2 {
		t.Errorf("failure = %+v", f)
	}
	if d, _ := s.Delivery(context.Background(), "d1"); d.FailedAt.IsZero() {
		t.Errorf("delivery = %+v, want failed", d)
	}
	if n := len(ok.received()); n != 0 {
		t.Errorf("receiver got %d requests after the attempts ran out", n)
	}
}

// Delivered and failed deliveries are pruned after the retention, and so
// is one that old still undone (its webhook is gone); recent ones stay.
func TestWebhookOutboxPruned(t *testing.T) {
	s := openStore(t, t.TempDir())
	old := time.Now().Add(-48 * time.Hour)
	var ds []store.Delivery
	for _, id := range []string{"delivered", "failed", "orphan", "waiting"} {
		created := old
		if id == "waiting" {
			created = time.Now()
		}
		ds = append(ds, store.Delivery{ID: id, Webhook: "h", Topic: topicApproval, Body: []byte(`{}`), CreatedAt: created, NextAttemptAt: time.Now().Add(time.Hour)})
	}
	if err := s.EnqueueDeliveries(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	s.ClaimDeliveries(context.Background(), "h", time.Now().Add(2*time.Hour), "r", time.Minute, 4)
	s.DeliverySucceeded(context.Background(), "delivered", old)
	s.FailDelivery(context.Background(), "failed", "r", old, "x")
	outboxManager(t, s, &events{}, "replica", func(c *Config) { c.WebhookRetention = 24 * time.Hour })
	eventuallyLong(t, "the prune", func() bool {
		left, _ := s.Deliveries(context.Background(), "")
		return len(left) == 1 && left[0].ID == "waiting"
	})
}

// The checkpoint webhook receives each new checkpoint, signed twice: the
// delivery with the webhook's secret, the checkpoint with the checkpoint
// key, and a receiver can check both.
func TestCheckpointWebhook(t *testing.T) {
	for _, b := range outboxBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := openURL(t, b.url(t))
			key := []byte("checkpoint-key-checkpoint-key-32b!")
			rec, err := recorder.New(s.DB(), recorder.WithCheckpointKey(key))
			if err != nil {
				t.Fatal(err)
			}
			var (
				mu     sync.Mutex
				bodies [][]byte
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, body)
				mu.Unlock()
				if err := webhook.Verify(testSecret, r.Header, body, time.Now()); err != nil {
					t.Errorf("webhook signature: %v", err)
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			ev := &events{}
			m := outboxManager(t, s, ev, "replica", func(c *Config) {
				c.CheckpointWebhook = &WebhookConfig{URL: srv.URL + "/checkpoints", Secret: testSecret}
			})
			cp, err := recorder.NewCheckpointer(recorder.CheckpointerConfig{Recorder: rec, Interval: time.Hour, Publish: m.PublishCheckpoint})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if _, err := rec.Append(context.Background(), recorder.Event{Type: recorder.TypeCallReceived, CallID: "c" + strconv.Itoa(i)}); err != nil {
					t.Fatal(err)
				}
			}
			cp.Start(context.Background())
			if err := cp.Close(context.Background()); err != nil { // writes the checkpoint
				t.Fatal(err)
			}
			latest, err := rec.LatestCheckpoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			eventuallyLong(t, "the checkpoint delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(bodies) == 1 })

			var p webhook.CheckpointPayload
			if err := json.Unmarshal(bodies[0], &p); err != nil {
				t.Fatal(err)
			}
			c := p.Checkpoint
			if p.Type != webhook.EventTranscriptCheckpoint || c.ID != latest.ID || c.HeadSeq != 3 || c.HeadHash != latest.HeadHash ||
				!c.Time.Equal(latest.Time) || c.KeyID != latest.KeyID || c.Signature != latest.Signature {
				t.Errorf("payload = %s, latest checkpoint %+v", bodies[0], latest)
			}
			if err := webhook.VerifyCheckpoint(key, c); err != nil {
				t.Errorf("VerifyCheckpoint: %v", err)
			}
			if err := webhook.VerifyCheckpoint([]byte("another-key-another-key-another-k"), c); !errors.Is(err, webhook.ErrCheckpointKey) {
				t.Errorf("VerifyCheckpoint with another key = %v", err)
			}
			forged := c
			forged.HeadSeq = 2 // a transcript cut back by one event
			if err := webhook.VerifyCheckpoint(key, forged); !errors.Is(err, webhook.ErrCheckpointSignature) {
				t.Errorf("VerifyCheckpoint of a forged head = %v", err)
			}
			// The same proof airlock transcripts verify uses.
			rep, err := rec.Verify(context.Background())
			if err != nil || !rep.OK || rep.Checkpoint == nil || !rep.Checkpoint.Signed || rep.Checkpoint.ID != c.ID {
				t.Errorf("Verify = %+v, %v", rep, err)
			}
			// Delivering it recorded nothing in the transcript: the head did
			// not move, so no checkpoint follows it.
			if _, written, err := rec.Checkpoint(context.Background()); err != nil || written {
				t.Errorf("a checkpoint after the delivery: written %v, %v", written, err)
			}
			if n := len(ev.ofType(EventWebhookDelivered)) + len(ev.ofType(EventWebhookFailed)); n != 0 {
				t.Errorf("checkpoint deliveries reported %d approval events", n)
			}
			// The approval webhooks are other rows, on other names.
			ds, _ := s.Deliveries(context.Background(), "")
			if len(ds) != 1 || ds[0].Topic != topicCheckpoint || ds[0].DeliveredAt.IsZero() {
				t.Errorf("outbox = %+v", ds)
			}
		})
	}
}

func TestCheckpointWebhookConfig(t *testing.T) {
	s := openStore(t, t.TempDir())
	for _, tt := range []struct {
		name string
		hook WebhookConfig
		want string
	}{
		{"no secret", WebhookConfig{URL: "https://cp.example/x"}, "signing secret"},
		{"short secret", WebhookConfig{URL: "https://cp.example/x", Secret: Secret("short")}, "signing secret"},
		{"bad url", WebhookConfig{URL: "ftp://cp.example/x", Secret: testSecret}, "http(s)"},
		{"slack", WebhookConfig{URL: "https://cp.example/x", Secret: testSecret, Format: FormatSlack}, "format must be json"},
		{"ok", WebhookConfig{URL: "https://cp.example/x", Secret: testSecret}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hook := tt.hook
			_, err := New(Config{Store: s, CheckpointWebhook: &hook})
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("New = %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), string(testSecret)) {
				t.Errorf("error quotes the secret: %v", err)
			}
		})
	}
}
