package approval

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Red team of the webhook outbox: what a receiver sends back must not
// reach the outbox row, the transcript events or the logs beyond a status
// and a short, bounded sentence, and the webhook URL's credentials
// (userinfo, query token) and the signing secret never do.

const leakMarker = "RECEIVER-CONTROLLED-TEXT"

// rawReceiver is a TCP receiver on 127.0.0.1 that reads a request's head
// and answers with resp, bytes as they are (no HTTP library to tidy them).
func rawReceiver(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte(resp))
			}()
		}
	}()
	return ln.Addr().String()
}

// syncBuffer is a log sink for a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRedteamWebhookReceiverTextBounded(t *testing.T) {
	long := leakMarker + " token=url-token-123 " + strings.Repeat("x", 200<<10)
	answers := map[string]string{
		// A reason phrase is the receiver's to choose, up to the client's
		// header limit.
		"reason-phrase": "HTTP/1.1 503 " + long + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		// net/http quotes a malformed status line in its error.
		"malformed-status":   "HTTP/1.1 5x3 " + long + "\r\nContent-Length: 0\r\n\r\n",
		"malformed-response": long + "\r\n\r\n",
		// textproto quotes nothing of a header line it cannot parse.
		"malformed-header": "HTTP/1.1 503 Service Unavailable\r\n" + leakMarker + " token=url-token-123\r\n\r\n",
	}
	for _, b := range outboxBackends(t) {
		for name, resp := range answers {
			t.Run(b.name+"/"+name, func(t *testing.T) {
				s := openURL(t, b.url(t))
				addr := rawReceiver(t, resp)
				hook := WebhookConfig{URL: "http://user:url-password-456@" + addr + "/hook?token=url-token-123", Secret: testSecret}
				ev := &events{}
				logs := &syncBuffer{}
				m := outboxManager(t, s, ev, "replica", func(c *Config) {
					c.Webhooks = []WebhookConfig{hook}
					c.WebhookAttempts = 1
					c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
				})
				if _, _, err := m.Request(context.Background(), input(sqlArgs, 1)); err != nil {
					t.Fatal(err)
				}
				eventuallyLong(t, "the final failure", func() bool { return len(ev.ofType(EventWebhookFailed)) == 1 })
				ds, err := s.Deliveries(context.Background(), "")
				if err != nil || len(ds) != 1 {
					t.Fatalf("outbox = %+v, %v", ds, err)
				}
				evErr := fmt.Sprint(ev.ofType(EventWebhookFailed)[0].Data["error"])
				for where, text := range map[string]string{"last_error": ds[0].LastError, "event": evErr, "logs": logs.String()} {
					for _, bad := range []string{leakMarker, "url-token-123", "url-password-456", string(testSecret)} {
						if strings.Contains(text, bad) {
							t.Errorf("%s holds %q (%d bytes): %.300q", where, bad, len(text), text)
						}
					}
				}
				if len(ds[0].LastError) > 300 || len(evErr) > 300 {
					t.Errorf("last_error is %d bytes, the event's error %d: want a short sentence", len(ds[0].LastError), len(evErr))
				}
				if !strings.Contains(ds[0].LastError, addr) {
					t.Errorf("last_error = %.200q; want the receiver's host", ds[0].LastError)
				}
			})
		}
	}
}

// Arguments the agent fills with the characters mrkdwn escapes (each
// "<" becomes four, each "&" five) must still fit Slack's 3000-character
// limit for a section's text: a message over it is refused by Slack, and
// the approvers are never told. The cut never splits an escape or a
// character.
func TestRedteamSlackArgumentsFitAfterEscaping(t *testing.T) {
	for _, fill := range []string{"<", "&", "é", "a&", "`"} {
		args := `{"sql":"` + strings.Repeat(fill, 3000) + `"}`
		p := (&Manager{}).payload(Approval{ID: "a1", Tool: "query_db", Resource: "orders", Arguments: []byte(args)})
		msg := slackMessage(p)
		for _, b := range msg.Blocks {
			if b.Text == nil || !strings.HasPrefix(b.Text.Text, "*Arguments*") {
				continue
			}
			text := b.Text.Text
			if n := utf8.RuneCountInString(text); n > 3000 {
				t.Errorf("fill %q: the arguments section is %d characters, over Slack's 3000", fill, n)
			}
			if !utf8.ValidString(text) {
				t.Errorf("fill %q: the arguments section is not valid UTF-8", fill)
			}
			body := strings.TrimSuffix(strings.TrimPrefix(text, "*Arguments* (masked)\n```"), "…```")
			if i := strings.LastIndexByte(body, '&'); i >= 0 && !strings.Contains(body[i:], ";") {
				t.Errorf("fill %q: the cut splits an escape: …%q", fill, body[max(0, len(body)-8):])
			}
			if strings.Count(text, "```") != 2 {
				t.Errorf("fill %q: arguments close their code block early", fill)
			}
		}
	}
}

// A receiver answering a redirect does not get the signed payload sent
// elsewhere: the 3xx is a final failure, and the other host gets nothing.
func TestRedteamWebhookRedirectNotFollowed(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE store")
	s := openURL(t, pgStoreURL(t, pg))
	other := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		redirecting := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
			http.Redirect(w, r, other.URL+"/stolen", code)
		})
		ev := &events{}
		m := outboxManager(t, s, ev, "replica-"+strconv.Itoa(code), func(c *Config) {
			c.Webhooks = []WebhookConfig{{URL: redirecting.URL, Secret: testSecret}}
		})
		in := input(`{"code":`+strconv.Itoa(code)+`}`, 1)
		if _, _, err := m.Request(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		eventuallyLong(t, "the failure", func() bool { return len(ev.ofType(EventWebhookFailed)) == 1 })
		f := ev.ofType(EventWebhookFailed)[0]
		if f.Data["status"] != code || f.Data["final"] != true {
			t.Errorf("%d: failure = %+v; want the redirect, final", code, f.Data)
		}
		if n := len(redirecting.received()); n != 1 {
			t.Errorf("%d: the redirecting receiver got %d requests, want 1", code, n)
		}
	}
	if n := len(other.received()); n != 0 {
		t.Errorf("the redirect's target got %d requests", n)
	}
}

// Open finds only the approval Request would give this very call: not
// another requester's, not one under another policy version, tool,
// resource or arguments, and not a consumed or expired one.
func TestRedteamOpenBindsTheCall(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE store")
	s := openURL(t, pgStoreURL(t, pg))
	clk := &clock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	m := outboxManager(t, s, &events{}, "replica", func(c *Config) { c.Clock = clk.Now })
	ctx := context.Background()
	base := input(sqlArgs, 1)
	a, created, err := m.Request(ctx, base)
	if err != nil || !created {
		t.Fatalf("Request = %v, %v", created, err)
	}
	if got, ok, err := m.Open(ctx, base); err != nil || !ok || got.ID != a.ID || got.State != Pending {
		t.Fatalf("Open(same call) = %+v, %v, %v; want pending %s", got, ok, err, a.ID)
	}
	others := map[string]func(*RequestInput){
		"another requester": func(in *RequestInput) { in.Requester = dave },
		"same subject, another issuer": func(in *RequestInput) {
			in.Requester.Issuer = "https://other-issuer.example.com"
		},
		"another tool":           func(in *RequestInput) { in.Tool = "query_db2" },
		"another resource":       func(in *RequestInput) { in.Resource = "orders2" },
		"another policy version": func(in *RequestInput) { in.Decision.PolicyVersion = "pv2" },
		"other arguments": func(in *RequestInput) {
			sum := sha256.Sum256([]byte(sqlArgs + " "))
			in.ArgumentsDigest = sum[:]
		},
		// The approvers see masked arguments; the digest is of the call's own.
		"same masked arguments, other call": func(in *RequestInput) {
			sum := sha256.Sum256([]byte(`{"resource":"orders","sql":"DELETE FROM orders"}`))
			in.ArgumentsDigest = sum[:]
		},
		// Moving text between fields keeps their concatenation.
		"tool/resource boundary moved": func(in *RequestInput) { in.Tool, in.Resource = "query_dbo", "rders" },
	}
	for name, mutate := range others {
		in := base
		in.Decision = approveDecision(1, "dba")
		mutate(&in)
		if got, ok, err := m.Open(ctx, in); err != nil || ok {
			t.Errorf("Open(%s) = %s, %v, %v; want none", name, got.ID, ok, err)
		}
	}
	if _, err := m.Decide(ctx, a.ID, bob, Approve, "fine", ViaWeb); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := m.Open(ctx, base); !ok || got.State != Approved {
		t.Fatalf("Open after approval = %+v, %v", got, ok)
	}
	if err := m.Consume(ctx, a.ID, "call-1"); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := m.Open(ctx, base); err != nil || ok {
		t.Errorf("Open after consumption = %s %s, %v, %v; want none", got.ID, got.State, ok, err)
	}
	// An approval that Open found approved, and that expires before the
	// call uses it, cannot be used; and it is not found again.
	b, _, err := m.Request(ctx, base)
	if err != nil || b.ID == a.ID {
		t.Fatalf("second Request = %s, %v", b.ID, err)
	}
	if _, err := m.Decide(ctx, b.ID, bob, Approve, "fine", ViaWeb); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := m.Open(ctx, base); !ok || got.ID != b.ID || got.State != Approved {
		t.Fatalf("Open after the second approval = %+v, %v", got, ok)
	}
	clk.Advance(16 * time.Minute)
	if err := m.Consume(ctx, b.ID, "call-2"); !errors.Is(err, ErrExpired) {
		t.Errorf("Consume(expired) = %v, want ErrExpired", err)
	}
	if got, ok, err := m.Open(ctx, base); err != nil || ok {
		t.Errorf("Open after expiry = %s %s, %v, %v; want none", got.ID, got.State, ok, err)
	}
}
