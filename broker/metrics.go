package broker

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/masking"
)

// Metrics are the broker's Prometheus metrics.
type Metrics struct {
	calls          *prometheus.CounterVec
	callDuration   *prometheus.HistogramVec
	stageDuration  *prometheus.HistogramVec
	masked         *prometheus.CounterVec
	recordFailures prometheus.Counter

	// Approvals: decisions made through this process (web, API), the time
	// from request to the decision that settled it, webhook deliveries, and
	// the approvals pending in the store (read at each scrape, so every
	// replica reports the same number).
	decisions      *prometheus.CounterVec
	timeToDecision prometheus.Histogram
	webhooks       *prometheus.CounterVec
	pending        prometheus.GaugeFunc
	pendingSource  atomic.Pointer[pendingLister]
}

// pendingLister lists approvals; *approval.Manager implements it.
type pendingLister interface {
	List(ctx context.Context, f approval.ListFilter) ([]approval.Approval, error)
}

// Label values the approval metrics are created with, so each series is
// served (at 0) before its first event.
var (
	decisionVerdicts = []approval.Verdict{approval.Approve, approval.Deny}
	decisionVias     = []string{approval.ViaWeb, approval.ViaAPI, approval.ViaCLILocal}
	webhookOutcomes  = []string{webhookDelivered, webhookRetried, webhookFailed}
)

// Webhook delivery outcomes: delivered (a receiver answered 2xx), retried
// (an attempt failed and another follows), failed (the last attempt failed,
// or the delivery could not be queued).
const (
	webhookDelivered = "delivered"
	webhookRetried   = "retried"
	webhookFailed    = "failed"
)

// maxPendingCounted bounds the pending gauge's store read.
const maxPendingCounted = 10000

// NewMetrics creates the broker's metrics and registers them with reg (nil:
// not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_calls_total",
			Help: "Tool calls by tool, policy effect and outcome.",
		}, []string{"tool", "effect", "outcome"}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "airlock_call_duration_seconds",
			Help:    "Wall time of a tool call through the whole pipeline.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"tool"}),
		stageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "airlock_stage_duration_seconds",
			Help:    "Wall time of each pipeline stage (policy, lease, execute, mask, record).",
			Buckets: prometheus.ExponentialBuckets(0.00001, 3, 14),
		}, []string{"stage"}),
		masked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_masked_values_total",
			Help: "Values masked in tool output, by detector or rule.",
		}, []string{"detector"}),
		recordFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_transcript_write_failures_total",
			Help: "Transcript events that could not be written (each stopped its call).",
		}),
	}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_approval_decisions_total",
		Help: "Approval decisions recorded through this process, by verdict and where they were made (web, api, cli-local).",
	}, []string{"verdict", "via"})
	m.timeToDecision = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "airlock_approval_time_to_decision_seconds",
		Help:    "Time from an approval's request to the decision that approved or denied it.",
		Buckets: []float64{5, 15, 30, 45, 60, 120, 300, 600, 900, 1800, 3600},
	})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_approval_webhook_deliveries_total",
		Help: "Approval webhook delivery attempts by outcome: delivered, retried (another attempt follows), failed (given up).",
	}, []string{"outcome"})
	m.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "airlock_approvals_pending",
		Help: "Approvals waiting for a decision (pending and unexpired), read from the store.",
	}, m.countPending)
	for _, v := range decisionVerdicts {
		for _, via := range decisionVias {
			m.decisions.WithLabelValues(string(v), via)
		}
	}
	for _, o := range webhookOutcomes {
		m.webhooks.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.callDuration, m.stageDuration, m.masked, m.recordFailures,
			m.decisions, m.timeToDecision, m.webhooks, m.pending)
	}
	return m
}

// watchApprovals makes the pending gauge read from src (nil: 0).
func (m *Metrics) watchApprovals(src any) {
	if l, ok := src.(pendingLister); ok {
		m.pendingSource.Store(&l)
	}
}

func (m *Metrics) countPending() float64 {
	l := m.pendingSource.Load()
	if l == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := (*l).List(ctx, approval.ListFilter{State: approval.Pending, Limit: maxPendingCounted})
	if err != nil {
		return 0
	}
	return float64(len(list))
}

// ObserveApprovalEvent counts an approval event (decisions and webhook
// deliveries); the broker's RecordApproval calls it for every event.
func (m *Metrics) ObserveApprovalEvent(ev approval.Event, now time.Time) {
	switch ev.Type {
	case approval.EventDecided:
		verdict, _ := ev.Data["verdict"].(approval.Verdict)
		via, _ := ev.Data["via"].(string)
		m.decisions.WithLabelValues(string(verdict), via).Inc()
		state, _ := ev.Data["state"].(approval.State)
		created, _ := ev.Data["created_at"].(time.Time)
		if (state == approval.Approved || state == approval.Denied) && !created.IsZero() {
			m.timeToDecision.Observe(now.Sub(created).Seconds())
		}
	case approval.EventWebhookDelivered:
		m.webhooks.WithLabelValues(webhookDelivered).Inc()
	case approval.EventWebhookFailed:
		outcome := webhookRetried
		if final, _ := ev.Data["final"].(bool); final {
			outcome = webhookFailed
		}
		m.webhooks.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) countCall(tool, effect, outcome string, d time.Duration) {
	m.calls.WithLabelValues(tool, effect, outcome).Inc()
	m.callDuration.WithLabelValues(tool).Observe(d.Seconds())
}

func (m *Metrics) observeStage(stage string, d time.Duration) {
	m.stageDuration.WithLabelValues(stage).Observe(d.Seconds())
}

func (m *Metrics) countMasked(c masking.Counts) {
	for detector, n := range c {
		m.masked.WithLabelValues(detector).Add(float64(n))
	}
}
