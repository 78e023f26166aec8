package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
)

// Webhook delivery. Each webhook has its own bounded queue and
// workersPerWebhook workers, so a receiver that hangs delays only its own
// deliveries, and Request only ever enqueues (never blocks): a full queue
// drops the delivery and reports it. A delivery is tried WebhookAttempts
// times, each attempt bounded by WebhookTimeout, with exponential backoff
// and jitter between attempts. Every failed attempt is reported as
// approval.webhook_failed (host and status, never the URL or the secret).
// Deliveries are not persisted: after a restart, pending approvals are
// still listed by the API and the page, but their webhooks are not resent.

const (
	workersPerWebhook = 2
	maxBackoff        = 30 * time.Second
	userAgent         = "airlock-webhook/1"
)

type sender struct {
	m     *Manager
	hook  WebhookConfig
	host  string
	queue chan delivery
}

type delivery struct {
	id         string // Airlock-Delivery: the same on every attempt
	approvalID string
	callID     string
	body       []byte
}

// Start starts the webhook workers. ctx lends its values only (as in the
// lease sweeper); the workers run until Close.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.closed {
		return
	}
	m.started = true
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, s := range m.hooks {
		for range workersPerWebhook {
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				s.run(ctx)
			}()
		}
	}
}

// Close stops taking deliveries, lets the workers finish the queued ones
// until ctx ends, then aborts the rest and waits for the workers.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for _, s := range m.hooks {
		close(s.queue)
	}
	cancel := m.cancel
	m.mu.Unlock()
	if cancel == nil { // never started
		return nil
	}
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		cancel()
		return nil
	case <-ctx.Done():
		cancel()
		<-done
		return fmt.Errorf("closing approvals: webhook deliveries aborted: %w", ctx.Err())
	}
}

// notifyWebhooks queues a delivery of a to every webhook, without blocking;
// a delivery that cannot be queued is reported as failed.
func (m *Manager) notifyWebhooks(ctx context.Context, a Approval) {
	type failure struct {
		s   *sender
		err error
	}
	var failed []failure
	for _, s := range m.hooks {
		body, err := s.body(a)
		if err == nil {
			err = m.enqueue(s, delivery{id: uuid.NewString(), approvalID: a.ID, callID: a.CallID, body: body})
		}
		if err != nil {
			failed = append(failed, failure{s, err})
		}
	}
	for _, f := range failed {
		m.cfg.Logger.Error("approval webhook not queued", "approval_id", a.ID, "webhook", f.s.hook, "error", f.err)
		m.emit(ctx, Event{
			Type: EventWebhookFailed, ApprovalID: a.ID, CallID: a.CallID, Tool: a.Tool, Resource: a.Resource,
			Data: map[string]any{"host": f.s.host, "attempt": 0, "final": true, "error": f.err.Error()},
		})
	}
}

// enqueue hands d to s's workers unless the queue is full or closed.
func (m *Manager) enqueue(s *sender, d delivery) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("airlock is shutting down")
	}
	select {
	case s.queue <- d:
		return nil
	default:
		return errors.New("delivery queue is full")
	}
}

func (s *sender) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-s.queue:
			if !ok {
				return
			}
			s.deliver(ctx, d)
		}
	}
}

// deliver tries one delivery until it succeeds, fails for good, or ctx ends.
func (s *sender) deliver(ctx context.Context, d delivery) {
	cfg := &s.m.cfg
	for attempt := 1; ; attempt++ {
		status, err := s.post(ctx, d)
		if err == nil {
			s.m.emit(ctx, Event{
				Type: EventWebhookDelivered, ApprovalID: d.approvalID, CallID: d.callID,
				Data: map[string]any{"host": s.host, "status": status, "attempt": attempt},
			})
			return
		}
		final := attempt >= cfg.WebhookAttempts || !retryable(status) || ctx.Err() != nil
		data := map[string]any{"host": s.host, "attempt": attempt, "final": final, "error": err.Error()}
		if status != 0 {
			data["status"] = status
		}
		cfg.Logger.Warn("approval webhook failed", "approval_id", d.approvalID, "webhook", s.hook,
			"attempt", attempt, "status", status, "final", final, "error", err)
		s.m.emit(ctx, Event{Type: EventWebhookFailed, ApprovalID: d.approvalID, CallID: d.callID, Data: data})
		if final {
			return
		}
		t := time.NewTimer(backoff(cfg.WebhookBackoff, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			s.m.emit(ctx, Event{Type: EventWebhookFailed, ApprovalID: d.approvalID, CallID: d.callID,
				Data: map[string]any{"host": s.host, "attempt": attempt, "final": true, "error": "airlock is shutting down"}})
			return
		case <-t.C:
		}
	}
}

// post makes one attempt. The error never holds the URL: a webhook URL may
// be a credential.
func (s *sender) post(ctx context.Context, d delivery) (status int, err error) {
	cfg := &s.m.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.hook.URL, bytes.NewReader(d.body))
	if err != nil {
		return 0, errors.New("invalid webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(webhook.HeaderDelivery, d.id)
	if len(s.hook.Secret) > 0 {
		webhook.SetHeaders(req.Header, s.hook.Secret, cfg.Clock(), d.body)
	}
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return 0, fmt.Errorf("no answer within %s", cfg.WebhookTimeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, errors.New(strings.ReplaceAll(err.Error(), s.hook.URL, s.host))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("receiver answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// retryable reports whether an attempt that ended with status is worth
// repeating: network errors (status 0), 408, 429 and 5xx.
func retryable(status int) bool {
	return status == 0 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// backoff is the delay after attempt n (1-based): base·2^(n-1), ±20%, at
// most maxBackoff.
func backoff(base time.Duration, n int) time.Duration {
	d := base << (n - 1)
	if d > maxBackoff || d <= 0 {
		d = maxBackoff
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// body renders the delivery in the webhook's format.
func (s *sender) body(a Approval) ([]byte, error) {
	p := s.m.payload(a)
	if s.hook.format() == FormatSlack {
		return json.Marshal(slackMessage(p))
	}
	return json.Marshal(p)
}

func (m *Manager) payload(a Approval) webhook.Payload {
	rules := make([]webhook.Rule, 0, len(a.Rules))
	for _, r := range a.Rules {
		rules = append(rules, webhook.Rule{Rule: r.Rule, Effect: string(r.Effect), Message: r.Message})
	}
	return webhook.Payload{
		Type: webhook.EventApprovalRequested,
		Approval: webhook.PayloadApproval{
			ID:        a.ID,
			Requester: webhook.Person{Subject: a.Requester.Subject, Email: a.Requester.Email, Issuer: a.Requester.Issuer},
			Tool:      a.Tool,
			Resource:  a.Resource,
			Arguments: a.Arguments,
			Rule:      a.Rule,
			Rules:     rules,
			Approvers: webhook.Approvers{Groups: a.Approvers.Groups, Min: a.Approvers.Min},
			CreatedAt: a.CreatedAt,
			ExpiresAt: a.ExpiresAt,
			Links:     webhook.Links{Page: m.PageURL(a.ID), API: m.apiURL(a.ID)},
			Impact:    a.Impact,
		},
	}
}
