package approval

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

// Webhook delivery through the store's outbox (store/outbox.go).
//
//	Request ─▶ approval row ─▶ one outbox row per webhook (its id is Airlock-Delivery) ─▶ wake
//	                                   │ (committed in the approval's own transaction)
//	workers (workersPerWebhook per webhook, on every replica)
//	   claim a due row (PostgreSQL: FOR UPDATE SKIP LOCKED) for 3 × WebhookTimeout
//	   ─▶ POST, signed at this attempt ─▶ 2xx: delivered
//	                                   ─▶ 408/429/5xx/network: due again after backoff (any replica)
//	                                   ─▶ other 4xx, or WebhookAttempts used: failed
//	   a replica that dies mid-attempt leaves its claim to expire; the row is due again
//
// Request only writes rows (it never waits for a receiver), and each
// webhook has its own workers claiming only its rows, so a receiver that
// hangs delays only its own deliveries. Deliveries survive a restart and
// are sent at least once: a receiver dedups by Airlock-Delivery. Each
// attempt is bounded by WebhookTimeout, with exponential backoff and
// jitter between attempts, and every failed one is reported as
// approval.webhook_failed (host and status, never the URL or the secret).
// Workers wake at once on deliveries enqueued in this process and poll
// every WebhookPoll for the rest (other replicas, expired claims).
// Delivered and failed rows, and rows that old for a webhook no longer
// configured, are pruned after WebhookRetention.

const (
	workersPerWebhook = 2
	maxBackoff        = 30 * time.Second
	userAgent         = "airlock-webhook/1"
	pruneInterval     = time.Hour
	// settleTimeout bounds the store write that settles an attempt.
	settleTimeout = 10 * time.Second
)

// Outbox topics: what a delivery's body is.
const (
	topicApproval   = webhook.EventApprovalRequested
	topicCheckpoint = webhook.EventTranscriptCheckpoint
)

// Outbox is the webhook outbox the manager needs; *store.Store implements it.
type Outbox interface {
	EnqueueDeliveries(ctx context.Context, ds []store.Delivery) error
	ClaimDeliveries(ctx context.Context, webhook string, now time.Time, claimer string, hold time.Duration, limit int) ([]store.Delivery, error)
	DeliverySucceeded(ctx context.Context, id string, now time.Time) error
	RetryDelivery(ctx context.Context, id, claimer string, next time.Time, lastError string) (bool, error)
	FailDelivery(ctx context.Context, id, claimer string, now time.Time, lastError string) (bool, error)
	ReleaseDelivery(ctx context.Context, id, claimer string) (bool, error)
	PruneDeliveries(ctx context.Context, before time.Time) (int64, error)
}

// sender delivers the outbox rows of one webhook.
type sender struct {
	m     *Manager
	hook  WebhookConfig
	host  string
	name  string // the webhook's name in the outbox
	topic string
	wake  chan struct{}
}

func newSender(m *Manager, w WebhookConfig, topic string) *sender {
	return &sender{m: m, hook: w, host: hostOf(w.URL), name: webhookName(topic, w), topic: topic, wake: make(chan struct{}, 1)}
}

// webhookName names a webhook in the outbox, the same on every replica
// with the same config: its topic, its host and a short hash of its URL
// and format. Never the URL itself, which can be a credential.
func webhookName(topic string, w WebhookConfig) string {
	sum := sha256.Sum256([]byte("airlock-webhook-name\n" + topic + "\n" + w.format() + "\n" + w.URL))
	return topic + ":" + hostOf(w.URL) + "#" + hex.EncodeToString(sum[:6])
}

// poke wakes one idle worker of s, without blocking.
func (s *sender) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// checkOutbox fills in the outbox defaults and checks the checkpoint webhook.
func (c *Config) checkOutbox() error {
	if c.Replica == "" {
		c.Replica = "approvals-" + uuid.NewString()
	}
	if c.WebhookPoll <= 0 {
		c.WebhookPoll = 5 * time.Second
	}
	if c.WebhookRetention <= 0 {
		c.WebhookRetention = 24 * time.Hour
	}
	if w := c.CheckpointWebhook; w != nil {
		u, err := url.Parse(w.URL)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			return fmt.Errorf("checkpoint webhook: url must be an absolute http(s) URL (host %q)", hostOf(w.URL))
		case w.format() != FormatJSON:
			return fmt.Errorf("checkpoint webhook %s: format must be json", *w)
		case len(w.Secret) < minSecret:
			return fmt.Errorf("checkpoint webhook %s: a signing secret of at least %d bytes is required (secret_env or secret_file)", *w, minSecret)
		}
	}
	return nil
}

// claimHold is how long a claim on a delivery lasts: the attempt's timeout
// with room for the writes around it and for clocks that disagree.
func (c *Config) claimHold() time.Duration { return 3 * c.WebhookTimeout }

func (m *Manager) senders() []*sender {
	if m.checkpoint == nil {
		return m.hooks
	}
	return append(slices.Clip(m.hooks), m.checkpoint)
}

// Start starts the webhook workers and the outbox pruner. ctx lends its
// values only (as in the lease sweeper); they run until Close.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.closed {
		return
	}
	m.started = true
	abort, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop, stopClaiming := context.WithCancel(abort)
	m.cancel, m.stop = cancel, stopClaiming
	for _, s := range m.senders() {
		for range workersPerWebhook {
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				s.run(stop, abort)
			}()
		}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.prune(stop)
	}()
}

// Close stops claiming deliveries, lets the attempts in flight finish
// until ctx ends, then aborts the rest (they stay in the outbox, due at
// once, for another replica or the next start) and waits for the workers.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	stop, cancel := m.stop, m.cancel
	m.mu.Unlock()
	if cancel == nil { // never started
		return nil
	}
	stop()
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

// announcement is what announcing a new approval to the webhooks takes:
// the outbox rows, written in the approval's own transaction
// (store.RequestApprovalTx), and the webhooks whose body could not be built.
type announcement struct {
	deliveries []store.Delivery
	queued     []*sender
	failed     []webhookFailure
}

type webhookFailure struct {
	s   *sender
	err error
}

// announce builds the deliveries telling every webhook about a.
func (m *Manager) announce(a Approval) announcement {
	var (
		n   announcement
		now = m.cfg.Clock()
	)
	for _, s := range m.hooks {
		body, err := s.body(a)
		if err != nil {
			n.failed = append(n.failed, webhookFailure{s, err})
			continue
		}
		n.queued = append(n.queued, s)
		n.deliveries = append(n.deliveries, store.Delivery{
			ID: uuid.NewString(), Webhook: s.name, Topic: topicApproval,
			ApprovalID: a.ID, CallID: a.CallID, Body: body, CreatedAt: now,
		})
	}
	return n
}

// announced wakes the workers of the webhooks whose deliveries were
// written with the approval, and reports those whose body could not be
// built.
func (m *Manager) announced(ctx context.Context, a Approval, n announcement) {
	for _, s := range n.queued {
		s.poke()
	}
	for _, f := range n.failed {
		m.cfg.Logger.Error("approval webhook not queued", "approval_id", a.ID, "webhook", f.s.hook, "error", f.err)
		m.emit(ctx, Event{
			Type: EventWebhookFailed, ApprovalID: a.ID, CallID: a.CallID, Tool: a.Tool, Resource: a.Resource,
			Data: map[string]any{"host": f.s.host, "attempt": 0, "final": true, "error": f.err.Error()},
		})
	}
}

// PublishCheckpoint writes a delivery of c to the checkpoint webhook into
// the outbox (nothing when none is configured) and wakes its workers; it
// does not wait for the receiver. It works after Close too: the delivery
// waits in the outbox for another replica or the next start.
func (m *Manager) PublishCheckpoint(ctx context.Context, c recorder.Checkpoint) error {
	s := m.checkpoint
	if s == nil {
		return nil
	}
	body, err := json.Marshal(webhook.CheckpointPayload{
		Type: webhook.EventTranscriptCheckpoint,
		Checkpoint: webhook.PayloadCheckpoint{
			ID: c.ID, Time: c.Time, HeadSeq: c.HeadSeq, HeadHash: c.HeadHash, KeyID: c.KeyID, Signature: c.Signature,
		},
	})
	if err != nil {
		return fmt.Errorf("encoding checkpoint %d: %w", c.ID, err)
	}
	d := store.Delivery{ID: uuid.NewString(), Webhook: s.name, Topic: topicCheckpoint, Body: body, CreatedAt: m.cfg.Clock()}
	if err := m.cfg.Store.EnqueueDeliveries(context.WithoutCancel(ctx), []store.Delivery{d}); err != nil {
		return fmt.Errorf("queueing checkpoint %d for its webhook: %w", c.ID, err)
	}
	s.poke()
	return nil
}

// run claims and attempts s's due deliveries until stop; abort cancels an
// attempt in flight.
func (s *sender) run(stop, abort context.Context) {
	cfg := &s.m.cfg
	poll := time.NewTicker(cfg.WebhookPoll)
	defer poll.Stop()
	for stop.Err() == nil {
		// Not cut short by stop: a claim the store made and this process
		// did not hear of would hold the delivery until it runs out.
		ds, err := cfg.Store.ClaimDeliveries(abort, s.name, cfg.Clock(), cfg.Replica, cfg.claimHold(), 1)
		if err != nil && stop.Err() == nil {
			cfg.Logger.Warn("claiming webhook deliveries failed; trying again", "webhook", s.hook, "error", err)
		}
		if len(ds) == 1 {
			s.poke() // there may be more: let a sibling look too
			s.attempt(abort, ds[0])
			continue
		}
		select {
		case <-stop.Done():
			return
		case <-s.wake:
		case <-poll.C:
		}
	}
}

// attempt makes one attempt at a claimed delivery and settles it in the
// store: delivered, due again after a backoff, failed for good, or (airlock
// is stopping) released.
func (s *sender) attempt(abort context.Context, d store.Delivery) {
	cfg := &s.m.cfg
	// The store writes that settle an attempt outlive a shutdown.
	settle, cancel := context.WithTimeout(context.WithoutCancel(abort), settleTimeout)
	defer cancel()
	if d.Attempts > cfg.WebhookAttempts {
		// The last attempt's claim ran out without an outcome: the replica
		// making it stopped, and the receiver may or may not have it.
		err := errors.New("no outcome of the last attempt: the replica making it stopped")
		if _, serr := cfg.Store.FailDelivery(settle, d.ID, cfg.Replica, cfg.Clock(), s.host+": "+err.Error()); serr != nil {
			cfg.Logger.Error("recording a webhook failure failed", "webhook", s.hook, "delivery", d.ID, "error", serr)
		}
		s.failed(abort, d, cfg.WebhookAttempts, 0, true, err)
		return
	}
	status, err := s.post(abort, d)
	now := cfg.Clock()
	switch {
	case err == nil:
		// Should this write fail, the claim runs out and the delivery is
		// sent again: at least once.
		if serr := cfg.Store.DeliverySucceeded(settle, d.ID, now); serr != nil {
			cfg.Logger.Error("recording a webhook delivery failed; it will be sent again", "webhook", s.hook, "delivery", d.ID, "error", serr)
		}
		s.delivered(abort, d, status)
	case abort.Err() != nil:
		// Airlock is stopping: not the receiver's doing. Leave the delivery
		// due, its attempt uncounted.
		if _, serr := cfg.Store.ReleaseDelivery(settle, d.ID, cfg.Replica); serr != nil {
			cfg.Logger.Warn("releasing a webhook delivery failed; its claim runs out instead", "webhook", s.hook, "delivery", d.ID, "error", serr)
		}
	default:
		final := d.Attempts >= cfg.WebhookAttempts || !retryable(status)
		lastError := s.host + ": " + err.Error()
		var serr error
		if final {
			_, serr = cfg.Store.FailDelivery(settle, d.ID, cfg.Replica, now, lastError)
		} else {
			delay := backoff(cfg.WebhookBackoff, d.Attempts)
			_, serr = cfg.Store.RetryDelivery(settle, d.ID, cfg.Replica, now.Add(delay), lastError)
			time.AfterFunc(delay, s.poke)
		}
		if serr != nil {
			cfg.Logger.Error("recording a webhook attempt failed; its claim runs out and it is tried again", "webhook", s.hook, "delivery", d.ID, "error", serr)
		}
		s.failed(abort, d, d.Attempts, status, final, err)
	}
}

// delivered reports a 2xx: approval.webhook_delivered for an approval's
// webhook; the log only for the checkpoint webhook, whose outcomes are not
// recorded in the transcript (each would move the head it reports).
func (s *sender) delivered(ctx context.Context, d store.Delivery, status int) {
	if s.topic != topicApproval {
		s.m.cfg.Logger.Info("checkpoint webhook delivered", "webhook", s.hook, "delivery", d.ID, "status", status, "attempt", d.Attempts)
		return
	}
	s.m.emit(ctx, Event{
		Type: EventWebhookDelivered, ApprovalID: d.ApprovalID, CallID: d.CallID,
		Data: map[string]any{"host": s.host, "status": status, "attempt": d.Attempts, "delivery": d.ID},
	})
}

// failed reports a failed attempt (approval.webhook_failed, and the log).
func (s *sender) failed(ctx context.Context, d store.Delivery, attempt, status int, final bool, err error) {
	cfg := &s.m.cfg
	attrs := []any{"webhook", s.hook, "delivery", d.ID, "attempt", attempt, "status", status, "final", final, "error", err}
	if s.topic != topicApproval {
		cfg.Logger.Warn("checkpoint webhook failed", attrs...)
		return
	}
	cfg.Logger.Warn("approval webhook failed", append([]any{"approval_id", d.ApprovalID}, attrs...)...)
	data := map[string]any{"host": s.host, "attempt": attempt, "final": final, "error": err.Error(), "delivery": d.ID}
	if status != 0 {
		data["status"] = status
	}
	s.m.emit(ctx, Event{Type: EventWebhookFailed, ApprovalID: d.ApprovalID, CallID: d.CallID, Data: data})
}

// prune deletes outbox rows older than the retention (see
// store.PruneDeliveries), at start and every pruneInterval, until stop.
func (m *Manager) prune(stop context.Context) {
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		n, err := m.cfg.Store.PruneDeliveries(stop, m.cfg.Clock().Add(-m.cfg.WebhookRetention))
		switch {
		case err != nil && stop.Err() == nil:
			m.cfg.Logger.Warn("pruning the webhook outbox failed", "error", err)
		case n > 0:
			m.cfg.Logger.Debug("pruned the webhook outbox", "deliveries", n)
		}
		select {
		case <-stop.Done():
			return
		case <-t.C:
		}
	}
}

// post makes one attempt. The error never holds the URL: a webhook URL may
// be a credential.
func (s *sender) post(ctx context.Context, d store.Delivery) (status int, err error) {
	cfg := &s.m.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.hook.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, errors.New("invalid webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(webhook.HeaderDelivery, d.ID)
	if len(s.hook.Secret) > 0 {
		webhook.SetHeaders(req.Header, s.hook.Secret, cfg.Clock(), d.Body)
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
		return 0, errors.New(s.transportError(err.Error()))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The code and its standard text: the reason phrase is the
		// receiver's to choose (any text, up to the header limit).
		return resp.StatusCode, fmt.Errorf("receiver answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return resp.StatusCode, nil
}

// maxTransportError bounds the text of a failed attempt's network error.
const maxTransportError = 200

// transportError is the sentence recorded for an attempt that got no
// response: msg without the webhook's URL or its credentials (userinfo,
// query), without what net/http quotes of a malformed response (the
// receiver's bytes, from the first quote on), at most maxTransportError
// bytes.
func (s *sender) transportError(msg string) string {
	msg = strings.ReplaceAll(msg, s.hook.URL, s.host)
	if u, err := url.Parse(s.hook.URL); err == nil {
		if u.User != nil {
			msg = strings.ReplaceAll(msg, u.User.String(), "…")
		}
		if u.RawQuery != "" {
			msg = strings.ReplaceAll(msg, u.RawQuery, "…")
		}
	}
	if i := strings.IndexAny(msg, "\"`"); i >= 0 {
		msg = strings.TrimRight(msg[:i], " :")
	}
	if len(msg) > maxTransportError {
		msg = strings.ToValidUTF8(msg[:maxTransportError], "") + "…"
	}
	return msg
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
