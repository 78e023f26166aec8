package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/lease"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/sqldialect"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
	httpkind "github.com/airlock-mcp/airlock/tools/http"
	"github.com/airlock-mcp/airlock/tools/kubernetes"
	"github.com/airlock-mcp/airlock/tools/postgres"
	"github.com/airlock-mcp/airlock/tools/ssh"
)

// kinds is the explicit list of resource kinds this build serves.
func kinds() map[string]tools.Kind {
	out := map[string]tools.Kind{}
	for _, k := range []tools.Kind{postgres.NewKind(), ssh.NewKind(), kubernetes.NewKind(), httpkind.NewKind()} {
		out[k.Name()] = k
	}
	return out
}

// allTools is the explicit list of tools this build serves.
func allTools() []tools.Tool {
	var out []tools.Tool
	out = append(out, postgres.Tools()...)
	out = append(out, ssh.Tools()...)
	out = append(out, kubernetes.Tools()...)
	out = append(out, httpkind.Tools()...)
	return out
}

// app is one running airlock: store, transcript, leases and broker, wired.
type app struct {
	cfgPath  string
	logger   *slog.Logger
	registry *prometheus.Registry

	store     *store.Store
	rec       *recorder.Recorder
	leases    *lease.Manager
	approvals *approval.Manager
	broker    *broker.Broker
	// notifier wakes held calls on a decision taken on another replica
	// (PostgreSQL store only; nil on SQLite, where Wait polls).
	notifier *approval.StoreNotifier

	// checkpoints writes signed checkpoints of the transcript head (store.go).
	checkpoints *recorder.Checkpointer

	// strict refuses to start, or to reload, with a resource unavailable.
	strict bool

	mu  sync.Mutex // serialises reloads
	cfg *config.Config
}

// newApp loads the config and wires every component. It revokes whatever an
// earlier run left behind before it returns. A resource that cannot be
// opened (a secret that is not set) is served as unavailable, and the
// others work; with strict, it fails the start instead.
func newApp(ctx context.Context, cfgPath string, strict bool, logger *slog.Logger) (*app, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	a := &app{cfgPath: cfgPath, cfg: cfg, strict: strict, logger: logger, registry: prometheus.NewRegistry()}
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	state, err := broker.BuildState(cfg, kinds(), nil)
	if err != nil {
		return nil, err
	}
	if err := a.checkUnavailable(state, nil); err != nil {
		state.Close()
		return nil, err
	}
	a.store, err = store.Open(ctx, cfg.StoreURL())
	if err != nil {
		state.Close()
		return nil, fmt.Errorf("opening store: %w", err)
	}
	a.rec, err = openRecorder(cfg, a.store)
	if err != nil {
		a.closeStore(state)
		return nil, fmt.Errorf("opening transcript: %w", err)
	}
	// The installation id marks minted credentials, so orphan cleanup
	// spares another installation's on a shared backend.
	installation, err := a.store.Installation(ctx, uuid.NewString(), time.Now())
	if err != nil {
		a.closeStore(state)
		return nil, err
	}
	a.leases, err = lease.New(lease.Config{
		Store: a.store,
		Resolve: func(name string) (tools.Resource, bool) {
			r, ok := a.broker.State().Resources[name]
			return r, ok
		},
		OnEvent: func(ctx context.Context, ev lease.Event) error { return a.broker.RecordLease(ctx, ev) },
		OnInterrupted: func(ctx context.Context, c store.CallInFlight) error {
			return interrupted(ctx, a.rec, c, a.leases.Replica())
		},
		ReuseMargin:       cfg.Leases.ReuseMargin,
		SweepInterval:     cfg.Leases.SweepInterval,
		Version:           version,
		HeartbeatInterval: cfg.Leases.HeartbeatInterval,
		HeartbeatTimeout:  cfg.Leases.HeartbeatTimeout,
		Installation:      installation,
		Logger:            logger,
	})
	if err != nil {
		a.closeStore(state)
		return nil, err
	}
	webhooks, err := resolveWebhooks(cfg)
	if err != nil {
		a.closeStore(state)
		return nil, err
	}
	checkpointHook, err := resolveCheckpointWebhook(cfg)
	if err != nil {
		a.closeStore(state)
		return nil, err
	}
	var notifier approval.Notifier // nil: in-process only
	if a.store.Dialect() == sqldialect.Postgres {
		a.notifier = approval.NewStoreNotifier(a.store, logger)
		notifier = a.notifier
	}
	a.approvals, err = approval.New(approval.Config{
		Store:     a.store,
		Notifier:  notifier,
		Webhooks:  webhooks,
		PublicURL: cfg.PublicURL,
		Wait:      cfg.Approvals.Wait,
		Expire:    cfg.Approvals.Expire,
		OnEvent:   func(ctx context.Context, ev approval.Event) error { return a.broker.RecordApproval(ctx, ev) },
		Logger:    logger,
		// Webhook deliveries are claimed in the outbox under the replica's id.
		Replica:           a.leases.Replica(),
		CheckpointWebhook: checkpointHook,
	})
	if err != nil {
		a.closeStore(state)
		return nil, fmt.Errorf("approvals: %w", err)
	}
	a.broker, err = broker.New(broker.Config{
		Tools:     allTools(),
		Recorder:  &inflightRecorder{rec: a.rec, store: a.store, replica: a.leases.Replica()},
		Leases:    a.leases,
		Approvals: a.approvals,
		Metrics:   broker.NewMetrics(a.registry),
		Logger:    logger,
	}, state)
	if err != nil {
		a.closeStore(state)
		return nil, err
	}
	a.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "airlock_transcript_commits_total",
		Help: "Store transactions that appended transcript events (group commits: events_total / commits_total is events per commit).",
	}, func() float64 { return float64(a.rec.Stats().Commits) }))
	a.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "airlock_transcript_events_total",
		Help: "Transcript events appended by this process.",
	}, func() float64 { return float64(a.rec.Stats().Events) }))
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "airlock_leases_live",
		Help: "Credential leases currently live (minted and not yet revoked).",
	}, func() float64 { return float64(a.leases.Live()) }))

	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "airlock_resources_unavailable",
		Help: "Configured resources that could not be opened (see /readyz and the log for why).",
	}, func() float64 { return float64(len(a.broker.State().Unavailable())) }))

	resources := make([]tools.Resource, 0, len(state.Resources))
	for _, r := range state.Resources {
		if !broker.IsUnavailable(r) {
			resources = append(resources, r)
		}
	}
	if err := a.leases.Register(ctx); err != nil {
		a.closeStore(state)
		return nil, err
	}
	if err := a.leases.Recover(ctx, resources); err != nil {
		// A backend that is down now cannot be cleaned now; the sweeper and
		// the next start try again. Calls to it fail with a clear error.
		logger.Warn("could not revoke every credential an earlier run left behind", "error", err)
	}
	a.leases.Start(ctx)
	if err := a.startCheckpoints(ctx); err != nil {
		a.closeStore(state)
		return nil, err
	}
	if a.notifier != nil {
		if err := a.notifier.Start(ctx); err != nil {
			a.closeStore(state)
			return nil, fmt.Errorf("approval notifications: %w", err)
		}
	}
	a.approvals.Start(ctx)
	return a, nil
}

// resolveWebhooks reads each webhook's signing secret from the environment
// variable or file the config names.
func resolveWebhooks(cfg *config.Config) ([]approval.WebhookConfig, error) {
	env := config.OSEnvironment{Dir: cfg.Dir}
	out := make([]approval.WebhookConfig, len(cfg.Approvals.Webhooks))
	for i, w := range cfg.Approvals.Webhooks {
		secret, err := config.Secret(env, fmt.Sprintf("approvals.webhooks[%d].secret", i), w.SecretEnv, w.SecretFile)
		if err != nil {
			return nil, err
		}
		w.Secret = approval.Secret(secret)
		out[i] = w
	}
	return out, nil
}

// checkUnavailable logs the resources of st that could not be opened, and
// refuses st when airlock runs --strict, or when a reload (prev not nil)
// would make a resource that works now unavailable: a reload never takes
// down what runs.
func (a *app) checkUnavailable(st, prev *broker.State) error {
	down := st.Unavailable()
	var refused []string
	for _, name := range slices.Sorted(maps.Keys(down)) {
		reason := down[name]
		switch {
		case a.strict:
			refused = append(refused, fmt.Sprintf("resource %s is unavailable: %s", name, reason))
		case prev != nil && prev.Resources[name] != nil && !broker.IsUnavailable(prev.Resources[name]):
			refused = append(refused, fmt.Sprintf("resource %s would become unavailable: %s", name, reason))
		default:
			a.logger.Warn("resource unavailable: its calls are refused until the configuration is fixed (--strict makes this fatal)", "resource", name, "reason", reason)
		}
	}
	if len(refused) > 0 {
		return errors.New(strings.Join(refused, "; "))
	}
	return nil
}

// closeNew closes the resources of a state that will not be used, leaving
// those carried over from prev.
func closeNew(st, prev *broker.State) {
	for name, r := range st.Resources {
		if prev.Resources[name] != r {
			r.Close()
		}
	}
}

func (a *app) closeStore(state *broker.State) {
	state.Close()
	_ = a.store.Close()
}

// config returns the config in force.
func (a *app) config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// reload re-reads the config and policy. If anything fails to load, the
// running state stays and the error says why; calls in flight finish on the
// state they started with.
func (a *app) reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg, err := config.Load(a.cfgPath)
	if err != nil {
		return err
	}
	if cfg.Store != a.cfg.Store || cfg.Listen != a.cfg.Listen || !reflect.DeepEqual(cfg.Auth, a.cfg.Auth) {
		a.logger.Warn("store, listen and auth changes take effect only after a restart")
	}
	next, err := broker.BuildState(cfg, kinds(), a.broker.State())
	if err != nil {
		return err
	}
	if err := a.checkUnavailable(next, a.broker.State()); err != nil {
		closeNew(next, a.broker.State())
		return err
	}
	a.broker.Swap(next)
	a.cfg = cfg
	a.logger.Info("configuration reloaded", "policy_version", next.Policy.Version(), "resources", len(next.Resources))
	return nil
}

// close revokes every live lease and closes everything, in order, even when
// ctx is already cancelled (a signal), within a bounded time.
func (a *app) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var errs []error
	if err := a.approvals.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if a.notifier != nil {
		a.notifier.Close()
	}
	if err := a.stopCheckpoints(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := a.leases.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	a.broker.State().Close()
	if err := a.store.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		a.logger.Error("shutdown", "error", err)
	}
}

// localIdentity is who calls when nothing authenticates the caller: --as,
// else the config's identity, else the operating-system user.
func localIdentity(cfg *config.Config, as string, groups []string, method string) policy.Identity {
	id := policy.Identity{Method: method}
	switch {
	case as != "":
		id.Subject, id.Groups = as, groups
	case cfg.Identity != nil:
		id.Subject, id.Email, id.Groups = cfg.Identity.Subject, cfg.Identity.Email, cfg.Identity.Groups
	default:
		id.Subject = "local:" + os.Getenv("USER")
		if id.Subject == "local:" {
			id.Subject = "local"
		}
	}
	if as != "" && len(groups) == 0 && cfg.Identity != nil && cfg.Identity.Subject == as {
		id.Groups = cfg.Identity.Groups
	}
	return id
}
