package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
)

var testSecret = Secret("s3cret-s3cret-s3cret-s3cret")

func TestVerifyWebhook(t *testing.T) {
	body := []byte(`{"type":"approval.requested","approval":{"id":"a1"}}`)
	now := time.Unix(1_750_000_000, 0)
	signed := func(secret []byte, at time.Time, b []byte) http.Header {
		h := http.Header{}
		h.Set(webhook.HeaderDelivery, "d-1")
		webhook.SetHeaders(h, secret, at, b)
		return h
	}
	tests := []struct {
		name    string
		header  http.Header
		body    []byte
		wantErr error
	}{
		{"valid", signed(testSecret, now, body), body, nil},
		{"valid, 4 minutes old", signed(testSecret, now.Add(-4*time.Minute), body), body, nil},
		{"wrong secret", signed([]byte("another-secret-entirely"), now, body), body, webhook.ErrBadSignature},
		{"body changed", signed(testSecret, now, body), []byte(`{"type":"approval.requested","approval":{"id":"a2"}}`), webhook.ErrBadSignature},
		{"replayed after 6 minutes", signed(testSecret, now.Add(-6*time.Minute), body), body, webhook.ErrStale},
		{"from the future", signed(testSecret, now.Add(6*time.Minute), body), body, webhook.ErrStale},
		{"no headers", http.Header{}, body, webhook.ErrMissingHeader},
		{"no signature", func() http.Header {
			h := signed(testSecret, now, body)
			h.Del(webhook.HeaderSignature)
			return h
		}(), body, webhook.ErrMissingHeader},
		{"malformed timestamp", func() http.Header {
			h := signed(testSecret, now, body)
			h.Set(webhook.HeaderTimestamp, "yesterday")
			return h
		}(), body, webhook.ErrBadTimestamp},
		{"timestamp swapped for a fresh one", func() http.Header {
			h := signed(testSecret, now.Add(-time.Hour), body)
			h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
			return h
		}(), body, webhook.ErrBadSignature},
		{"rotation: one of two signatures matches", func() http.Header {
			h := signed(testSecret, now, body)
			h.Set(webhook.HeaderSignature, "v2=00ff,"+h.Get(webhook.HeaderSignature))
			return h
		}(), body, nil},
		{"unknown scheme", func() http.Header {
			h := signed(testSecret, now, body)
			h.Set(webhook.HeaderSignature, strings.Replace(h.Get(webhook.HeaderSignature), "v2=", "v0=", 1))
			return h
		}(), body, webhook.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyWebhook(testSecret, tt.header, tt.body, now)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("VerifyWebhook = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// receiver is an httptest webhook receiver that records what it got.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []receivedRequest
	handle   func(w http.ResponseWriter, r *http.Request, n int) // n: 1-based request count
}

type receivedRequest struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *receiver {
	rc := &receiver{handle: handle}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, receivedRequest{r.Header.Clone(), body})
		n := len(rc.requests)
		rc.mu.Unlock()
		rc.handle(w, r, n)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) received() []receivedRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedRequest(nil), rc.requests...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func withWebhooks(hooks ...WebhookConfig) func(*Config) {
	return func(c *Config) {
		c.Webhooks = hooks
		c.WebhookBackoff = 10 * time.Millisecond
		c.WebhookTimeout = 200 * time.Millisecond
		c.WebhookAttempts = 3
		c.Clock = time.Now // signatures are checked against the receiver's clock
	}
}

func TestWebhookSignedJSON(t *testing.T) {
	ok := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusNoContent) })
	f := newFixture(t, withWebhooks(WebhookConfig{URL: ok.URL + "/hook", Secret: testSecret}))
	masked := `{"resource":"orders","sql":"UPDATE users SET email = '[EMAIL]'"}`
	in := input(`{"resource":"orders","sql":"UPDATE users SET email = 'x@y.z'"}`, 1)
	in.Arguments = []byte(masked)
	a := f.request(t, in)
	f.request(t, in) // the same call again: no second webhook

	eventually(t, "a delivery", func() bool { return len(f.events.ofType(EventWebhookDelivered)) == 1 })
	got := ok.received()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	req := got[0]
	if err := VerifyWebhook(testSecret, req.header, req.body, time.Now()); err != nil {
		t.Fatalf("receiver could not verify: %v", err)
	}
	if req.header.Get(webhook.HeaderDelivery) == "" || req.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", req.header)
	}
	var p webhook.Payload
	if err := json.Unmarshal(req.body, &p); err != nil {
		t.Fatal(err)
	}
	pa := p.Approval
	if p.Type != "approval.requested" || pa.ID != a.ID || pa.Requester.Subject != "alice" || pa.Requester.Email != "alice@example.com" ||
		pa.Tool != "query_db" || pa.Resource != "orders" || string(pa.Arguments) != masked ||
		pa.Rule != "writes-need-a-dba" || len(pa.Rules) != 2 || pa.Rules[1].Message != "writes need a DBA" ||
		pa.Approvers.Groups[0] != "dba" || pa.Approvers.Min != 1 || !pa.ExpiresAt.Equal(a.ExpiresAt) ||
		pa.Links.Page != "https://airlock.example.com/ui/approvals/"+a.ID || pa.Links.API != "https://airlock.example.com/api/approvals/"+a.ID {
		t.Errorf("payload = %s", req.body)
	}
	if strings.Contains(string(req.body), "x@y.z") {
		t.Error("the payload holds unmasked arguments")
	}
}

func TestWebhookFailures(t *testing.T) {
	t.Run("500 is retried, then recorded as failed", func(t *testing.T) {
		failing := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusInternalServerError) })
		f := newFixture(t, withWebhooks(WebhookConfig{URL: failing.URL + "/hook/path-is-secret", Secret: testSecret}))
		a := f.request(t, input(sqlArgs, 1))

		eventually(t, "the final failure", func() bool {
			ev := f.events.ofType(EventWebhookFailed)
			return len(ev) > 0 && ev[len(ev)-1].Data["final"] == true
		})
		failed := f.events.ofType(EventWebhookFailed)
		if len(failed) != 3 || len(failing.received()) != 3 {
			t.Fatalf("%d failure events, %d requests; want 3 and 3", len(failed), len(failing.received()))
		}
		for i, ev := range failed {
			host := strings.TrimPrefix(failing.URL, "http://")
			if ev.ApprovalID != a.ID || ev.Data["host"] != host || ev.Data["status"] != 500 || ev.Data["attempt"] != i+1 || ev.Data["final"] != (i == 2) {
				t.Errorf("failure %d = %+v", i, ev)
			}
			if s := eventText(ev); strings.Contains(s, "path-is-secret") || strings.Contains(s, string(testSecret)) {
				t.Errorf("failure event leaks the URL path or the secret: %s", s)
			}
		}
		// Nobody was told, and still nothing runs without a decision.
		if got, _ := f.m.Get(context.Background(), a.ID); got.State != Pending {
			t.Errorf("state = %s, want pending", got.State)
		}
		if err := f.m.Consume(context.Background(), a.ID, "call-2"); !errors.Is(err, ErrNotApproved) {
			t.Errorf("Consume = %v, want ErrNotApproved", err)
		}
	})

	t.Run("4xx is not retried", func(t *testing.T) {
		rejecting := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusUnauthorized) })
		f := newFixture(t, withWebhooks(WebhookConfig{URL: rejecting.URL, Secret: testSecret}))
		f.request(t, input(sqlArgs, 1))
		eventually(t, "the failure", func() bool { return len(f.events.ofType(EventWebhookFailed)) == 1 })
		time.Sleep(50 * time.Millisecond)
		if n := len(rejecting.received()); n != 1 {
			t.Errorf("%d attempts at a receiver answering 401, want 1", n)
		}
	})

	t.Run("a hanging receiver holds nothing up", func(t *testing.T) {
		release := make(chan struct{})
		hanging := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		defer close(release)
		fast := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {})
		f := newFixture(t, func(c *Config) {
			withWebhooks(
				WebhookConfig{URL: hanging.URL, Secret: testSecret},
				WebhookConfig{URL: fast.URL, Secret: testSecret},
			)(c)
			c.WebhookTimeout = 2 * time.Second
		})
		started := time.Now()
		var ids []string
		for i := range 5 {
			ids = append(ids, f.request(t, input(`{"n":`+strconv.Itoa(i)+`}`, 1)).ID)
		}
		// Waiting on the receiver even once would take the 2s attempt timeout.
		if d := time.Since(started); d > 1500*time.Millisecond {
			t.Errorf("5 Requests took %s with a hanging receiver", d)
		}
		// The other receiver is not held up by the hanging one.
		eventually(t, "deliveries to the other receiver", func() bool { return len(fast.received()) == 5 })
		// The hanging one times out and is retried.
		eventually(t, "a timeout", func() bool {
			for _, ev := range f.events.ofType(EventWebhookFailed) {
				if strings.Contains(ev.Data["error"].(string), "no answer within") {
					return true
				}
			}
			return false
		})
		for _, id := range ids {
			if got, _ := f.m.Get(context.Background(), id); got.State != Pending {
				t.Errorf("approval %s is %s, want pending", id, got.State)
			}
		}
	})

	t.Run("a backlog waits in the outbox, none dropped", func(t *testing.T) {
		release := make(chan struct{})
		hanging := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { <-release })
		f := newFixture(t, func(c *Config) {
			withWebhooks(WebhookConfig{URL: hanging.URL, Secret: testSecret})(c)
			c.WebhookTimeout = 10 * time.Second
		})
		for i := range 6 { // 2 in flight, 4 waiting; the in-memory queue of 1 used to drop 3
			f.request(t, input(`{"n":`+strconv.Itoa(i)+`}`, 1))
		}
		eventually(t, "two attempts in flight", func() bool { return len(hanging.received()) == 2 })
		close(release)
		eventually(t, "every delivery", func() bool { return len(f.events.ofType(EventWebhookDelivered)) == 6 })
		if failed := f.events.ofType(EventWebhookFailed); len(failed) != 0 {
			t.Errorf("failures: %v", failed)
		}
		ids := map[string]bool{}
		for _, r := range hanging.received() {
			ids[r.header.Get(webhook.HeaderDelivery)] = true
		}
		if len(ids) != 6 || len(hanging.received()) != 6 {
			t.Errorf("%d requests with %d delivery ids, want 6 and 6", len(hanging.received()), len(ids))
		}
	})
}

// eventText is the whole of ev as text, for checks that nothing secret is
// in it; an event that cannot be encoded fails them.
func eventText(ev Event) string {
	b, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("encoding event %s: %v", ev.Type, err))
	}
	return string(b)
}

func TestCloseAbortsHangingDeliveries(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	hanging := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	s := openStore(t, t.TempDir())
	m, err := New(Config{Store: s, PublicURL: "https://a.example", WebhookTimeout: time.Minute,
		Webhooks: []WebhookConfig{{URL: hanging.URL, Secret: testSecret}}})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	if _, _, err := m.Request(context.Background(), input(sqlArgs, 1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delivery to start", func() bool { return len(hanging.received()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	started := time.Now()
	if err := m.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want the deadline error", err)
	}
	if d := time.Since(started); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}
	// After Close, Request still works, and its webhook waits in the outbox
	// (with the aborted one, due again) for the next start.
	after, _, err := m.Request(context.Background(), input(`{"after":"close"}`, 1))
	if err != nil {
		t.Errorf("Request after Close: %v", err)
	}
	waiting, err := s.Deliveries(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(waiting) != 2 || waiting[1].ApprovalID != after.ID || waiting[0].Done() || waiting[1].Done() ||
		waiting[0].ClaimedBy != "" || waiting[0].Attempts != 0 {
		t.Errorf("outbox after Close = %+v; want both deliveries waiting, the aborted one unclaimed and uncounted", waiting)
	}
}

func TestSlackPayload(t *testing.T) {
	slack := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	f := newFixture(t, withWebhooks(WebhookConfig{URL: slack.URL + "/services/T0/B0/XXXX", Format: FormatSlack}))
	in := input(`{"sql":"SELECT 1 -- <!channel> <https://evil.example|Approve> `+"```"+` & more"}`, 1)
	a := f.request(t, in)
	eventually(t, "the Slack delivery", func() bool { return len(slack.received()) == 1 })
	body := slack.received()[0].body

	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type   string `json:"type"`
			Text   *struct{ Type, Text string }
			Fields []struct{ Type, Text string }
		} `json:"blocks"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Text != "Approval needed: alice@example.com wants to run query_db on orders" {
		t.Errorf("text = %q", msg.Text)
	}
	if len(msg.Blocks) < 4 {
		t.Fatalf("blocks = %s", body)
	}
	var all strings.Builder
	for _, b := range msg.Blocks {
		if b.Type != "section" {
			t.Errorf("block type %q", b.Type)
		}
		if b.Text != nil {
			if b.Text.Type != "mrkdwn" {
				t.Errorf("text type %q", b.Text.Type)
			}
			all.WriteString(b.Text.Text + "\n")
		}
		for _, fl := range b.Fields {
			all.WriteString(fl.Text + "\n")
		}
	}
	text := all.String()
	for _, want := range []string{
		"*Requester*\nalice@example.com", "*Approvers*\ndba (1 needed)", "*Tool*\nquery_db", "*Resource*\norders",
		"`writes-need-a-dba` (approve): writes need a DBA",
		"<https://airlock.example.com/ui/approvals/" + a.ID + "|Review and decide in Airlock>",
		"&lt;!channel&gt;", "&amp; more",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Slack message lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "<!channel>") || strings.Contains(text, "<https://evil") {
		t.Errorf("agent text forms Slack markup:\n%s", text)
	}
	if strings.Count(text, "```") != 2 {
		t.Errorf("arguments close their code block early:\n%s", text)
	}
}
