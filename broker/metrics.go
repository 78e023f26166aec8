package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-mcp/airlock/masking"
)

// Metrics are the broker's Prometheus metrics.
type Metrics struct {
	calls          *prometheus.CounterVec
	callDuration   *prometheus.HistogramVec
	stageDuration  *prometheus.HistogramVec
	masked         *prometheus.CounterVec
	recordFailures prometheus.Counter
}

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
	if reg != nil {
		reg.MustRegister(m.calls, m.callDuration, m.stageDuration, m.masked, m.recordFailures)
	}
	return m
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
