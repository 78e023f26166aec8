package approval

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
)

// Red team 3 of the approval webhooks: replay protection as the docs
// describe it, redirects, slow receivers, and Slack rendering.

// dedupReceiver is the receiver docs/approvals.md and
// examples/webhooks/receiver.go describe: verify the signature and the
// timestamp, then process each Airlock-Delivery once.
type dedupReceiver struct {
	secret []byte
	mu     sync.Mutex
	seen   map[string]bool
	took   int // deliveries processed
}

func (rc *dedupReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := make([]byte, 0, 1024)
	buf := make([]byte, 1024)
	for {
		n, err := r.Body.Read(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			break
		}
	}
	if err := webhook.Verify(rc.secret, r.Header, body, time.Now()); err != nil {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	id := r.Header.Get(webhook.HeaderDelivery)
	if id != "" && rc.seen[id] {
		w.WriteHeader(http.StatusOK) // already handled
		return
	}
	rc.seen[id] = true
	rc.took++
	w.WriteHeader(http.StatusNoContent)
}

// TestRedTeam3ReplayWithAnotherDeliveryID: the signature covers the
// timestamp and the body, not Airlock-Delivery, and the body does not
// carry the delivery id. Someone who saw one signed delivery (a proxy, a
// log of requests) can send it again within the 5 minutes under any
// Airlock-Delivery (or none), and a receiver that deduplicates as the
// docs say processes it a second time: the replay protection the docs
// promise does not hold.
func TestRedTeam3ReplayWithAnotherDeliveryID(t *testing.T) {
	for _, b := range outboxBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := openURL(t, b.url(t))
			capture := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusNoContent) })
			ev := &events{}
			m := outboxManager(t, s, ev, "replica", func(c *Config) {
				c.Webhooks = []WebhookConfig{{URL: capture.URL + "/hook", Secret: testSecret}}
			})
			if _, _, err := m.Request(context.Background(), input(sqlArgs, 1)); err != nil {
				t.Fatal(err)
			}
			eventuallyLong(t, "the delivery", func() bool { return len(ev.ofType(EventWebhookDelivered)) == 1 })
			got := capture.received()[0]

			rc := &dedupReceiver{secret: testSecret, seen: map[string]bool{}}
			srv := httptest.NewServer(rc)
			t.Cleanup(srv.Close)
			send := func(delivery string) int {
				req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(got.body)))
				if err != nil {
					t.Fatal(err)
				}
				req.Header = got.header.Clone()
				if delivery == "" {
					req.Header.Del(webhook.HeaderDelivery)
				} else {
					req.Header.Set(webhook.HeaderDelivery, delivery)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			send(got.header.Get(webhook.HeaderDelivery)) // the genuine delivery
			send(got.header.Get(webhook.HeaderDelivery)) // an honest retry: deduplicated
			send("00000000-0000-4000-8000-000000000000") // a replay under another id
			send("")                                     // a replay with no id
			if rc.took != 1 {
				t.Errorf("the receiver processed one delivery %d times: Airlock-Delivery is not covered by the signature "+
					"(nor is the delivery id in the signed body), so a captured delivery replays under any id", rc.took)
			}
		})
	}
}

// TestRedTeam3RedirectNotFollowed: a receiver that answers 307 (which
// keeps the POST and its body) or 308 to another host gets the delivery
// failed, not retried, and the other host receives nothing: no signed
// payload travels on.
func TestRedTeam3RedirectNotFollowed(t *testing.T) {
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			elsewhere := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusNoContent) })
			// "localhost" is another host name for the client, on 127.0.0.1.
			target := strings.Replace(elsewhere.URL, "127.0.0.1", "localhost", 1) + "/stolen"
			redirecting := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
				http.Redirect(w, r, target, code)
			})
			f := newFixture(t, withWebhooks(WebhookConfig{URL: redirecting.URL + "/hook", Secret: testSecret}))
			f.request(t, input(sqlArgs, 1))
			eventually(t, "the final failure", func() bool {
				ev := f.events.ofType(EventWebhookFailed)
				return len(ev) > 0 && ev[len(ev)-1].Data["final"] == true
			})
			if n := len(redirecting.received()); n != 1 {
				t.Errorf("the redirecting receiver got %d attempts, want 1 (a redirect is not retried)", n)
			}
			if n := len(elsewhere.received()); n != 0 {
				t.Errorf("the redirect target got %d requests, want none", n)
			}
			if ev := f.events.ofType(EventWebhookFailed)[0]; ev.Data["status"] != code || strings.Contains(eventText(ev), "stolen") {
				t.Errorf("failure event = %+v", ev)
			}
		})
	}
}

// TestRedTeam3SlowReceiverBounded: a receiver that answers 200 at once
// and then drips its body one byte every 100ms, forever, has its attempt
// cut at the attempt timeout (it answered 2xx, so the delivery counts as
// delivered); a second webhook's delivery is not held up by it.
func TestRedTeam3SlowReceiverBounded(t *testing.T) {
	stop := make(chan struct{})
	slow := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-stop:
				return
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() { close(stop) }) // runs before slow.Close
	fast := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusNoContent) })
	const timeout = 2 * time.Second
	f := newFixture(t, func(c *Config) {
		withWebhooks(
			WebhookConfig{URL: slow.URL + "/hook", Secret: testSecret},
			WebhookConfig{URL: fast.URL + "/hook", Secret: testSecret},
		)(c)
		c.WebhookTimeout = timeout
	})
	started := time.Now()
	f.request(t, input(sqlArgs, 1))
	eventually(t, "the fast receiver's delivery", func() bool { return len(fast.received()) == 1 })
	if d := time.Since(started); d > timeout/2 {
		t.Errorf("the fast webhook waited %s (the slow one's attempt lasts %s)", d, timeout)
	}
	eventually(t, "both deliveries", func() bool { return len(f.events.ofType(EventWebhookDelivered)) == 2 })
	if d := time.Since(started); d < timeout*9/10 || d > timeout+time.Second {
		t.Errorf("the slow receiver's attempt ended after %s, want about the %s timeout", d, timeout)
	}
	if n := len(slow.received()); n != 1 {
		t.Errorf("slow receiver got %d attempts, want 1", n)
	}
}

// TestRedTeam3SlackCodeCutNeverSplits: for arguments made of the
// characters Slack gives meaning to, at every length around the limit, the
// code block text holds no raw < or >, no two backticks in a row, no cut
// entity, and stays within the limit.
func TestRedTeam3SlackCodeCutNeverSplits(t *testing.T) {
	pieces := []string{"&", "<", ">", "`", "``", "<!channel>", "<@U123>", "é", "a"}
	for _, p := range pieces {
		for pad := 0; pad < 8; pad++ {
			for n := slackArgsLimit/len(p) - 10; n < slackArgsLimit+10; n++ {
				in := strings.Repeat("a", pad) + strings.Repeat(p, n/len(pieces)+n%7)
				out := slackCode(in)
				body := strings.TrimSuffix(out, "…")
				switch {
				case strings.ContainsAny(out, "<>"):
					t.Fatalf("raw < or > in %q…", out[:40])
				case strings.Contains(out, "``"):
					t.Fatalf("two backticks in a row for piece %q", p)
				case utf8.RuneCountInString(body) > slackArgsLimit:
					t.Fatalf("%d characters, over the limit", utf8.RuneCountInString(body))
				case !utf8.ValidString(out):
					t.Fatalf("invalid UTF-8 for piece %q", p)
				}
				if i := strings.LastIndexByte(body, '&'); i >= 0 && !strings.Contains(body[i:], ";") {
					t.Fatalf("cut inside an escape: …%q", body[max(0, i-10):])
				}
			}
		}
	}
}

// TestRedTeam3SlackTextVerbatim: Slack parses mrkdwn text objects unless
// they are verbatim: "When set to false (as is default) URLs will be
// auto-converted into links, conversation names will be link-ified, and
// certain mentions will be automatically parsed" (Block Kit reference,
// text object). Escaping <, > and & stops manual links and mentions, not
// that automatic parsing of agent text (a URL or #channel in the SQL, the
// requester's name). Every mrkdwn object carrying agent or requester text
// should be verbatim.
func TestRedTeam3SlackTextVerbatim(t *testing.T) {
	ok := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusOK) })
	f := newFixture(t, withWebhooks(WebhookConfig{URL: ok.URL + "/services/T0/B0/X", Format: FormatSlack}))
	in := input(`{"resource":"orders","sql":"UPDATE t SET note = 'see https://evil.example/x #general @here'"}`, 1)
	f.request(t, in)
	eventually(t, "the Slack delivery", func() bool { return len(ok.received()) == 1 })
	var msg struct {
		Blocks []struct {
			Text   map[string]any   `json:"text"`
			Fields []map[string]any `json:"fields"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(ok.received()[0].body, &msg); err != nil {
		t.Fatal(err)
	}
	for i, b := range msg.Blocks {
		objs := b.Fields
		if b.Text != nil {
			objs = append(objs, b.Text)
		}
		for _, o := range objs {
			if o["type"] == "mrkdwn" && o["verbatim"] != true {
				t.Errorf("block %d: mrkdwn text without verbatim: true, so Slack auto-links and parses it: %.60q", i, o["text"])
			}
		}
	}
}
