package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/mcpserver"
	"github.com/airlock-mcp/airlock/broker/web"
	"github.com/airlock-mcp/airlock/policy"
)

func newServeCmd() *cobra.Command {
	var (
		cfgPath string
		strict  bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve MCP over streamable HTTP at /mcp, with /healthz, /readyz and /metrics",
		Long: `Serve MCP over streamable HTTP. Agents connect to http://LISTEN/mcp.
/healthz answers while the process runs, /readyz when it can serve calls, and
/metrics exposes Prometheus metrics (calls by tool and effect, stage latencies,
live leases, unavailable resources).

A resource that cannot be set up (a secret that is not set, a key file that
does not parse) does not stop the others: airlock serves it as unavailable —
list_resources and /readyz name it with the reason, its calls are refused with
it — and the log says so. --strict refuses to start instead. Agents are
offered the tools of the kinds configured, and list_resources.

SIGHUP reloads the config and policy without dropping calls in flight; if the
new policy or config does not load, or would make a working resource
unavailable, the old one keeps running and the log says why. Connected clients
are told when the tools on offer change (notifications/tools/list_changed). SIGINT or SIGTERM stops accepting calls, waits for those in flight, and
revokes every live credential lease before exiting.

Authentication: with auth.mode oidc every request to /mcp needs a bearer token
from the configured provider (OAuth 2.1 resource server, per the MCP
authorization spec; metadata at /.well-known/oauth-protected-resource/mcp).
With auth.mode none, unauthenticated calls are accepted only when listen is a
loopback address.

Limits (the http block; docs/config.md): /mcp refuses requests from web pages
of other origins (403), bodies and initialize requests that are too large
(413), and new sessions past http.max_sessions or
http.max_sessions_per_identity (429, with Retry-After); a session idle for
http.session_idle_timeout ends.`,
		Example: `  airlock serve --config examples/demo/airlock.yaml
  claude mcp add --transport http airlock http://127.0.0.1:8080/mcp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), cfgPath, strict)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "airlock.yaml", "config file")
	cmd.Flags().BoolVar(&strict, "strict", false, "refuse to start (or to reload) when a resource cannot be set up, instead of serving it as unavailable")
	return cmd
}

func runServe(ctx context.Context, cfgPath string, strict bool) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(os.Stderr, cfg)
	if cfg.Auth.Mode == config.AuthNone && !cfg.IsLoopback() {
		return fmt.Errorf("auth.mode is none, which is only allowed when listen is a loopback address (listen is %s); use 127.0.0.1 or configure auth.mode oidc", cfg.Listen)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := newApp(ctx, cfgPath, strict, logger)
	if err != nil {
		return err
	}
	defer a.close(ctx)

	mux := http.NewServeMux()
	var (
		identity mcpserver.IdentityFunc
		guard    = func(h http.Handler) http.Handler { return h }
		verifier *authn.Verifier
	)
	switch cfg.Auth.Mode {
	case config.AuthOIDC:
		verifier = authn.NewVerifier(*cfg.Auth.OIDC, authn.WithLogger(logger))
		verifier.Start(ctx)
		defer verifier.Close()
		rs, err := authn.NewResourceServer(verifier, cfg.PublicURL, cfg.Auth.OIDC.RequiredScopes, logger)
		if err != nil {
			return err
		}
		mux.Handle(rs.MetadataPath(), rs.MetadataHandler())
		guard = rs.Middleware
		// Approvers decide through the JSON API with their own tokens.
		api := a.approvals.APIHandler(func(r *http.Request) (policy.Identity, error) {
			raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || raw == "" {
				return policy.Identity{}, errors.New("an Authorization: Bearer token is required")
			}
			return verifier.Verify(r.Context(), raw)
		})
		mux.Handle("/api/approvals", http.MaxBytesHandler(api, cfg.HTTP.MaxAPIRequestBytes))
		mux.Handle("/api/approvals/", http.MaxBytesHandler(api, cfg.HTTP.MaxAPIRequestBytes))
		if cfg.UI != nil {
			ui, err := newUI(cfg, a, logger)
			if err != nil {
				return err
			}
			mux.Handle("/ui/", http.MaxBytesHandler(ui, cfg.HTTP.MaxAPIRequestBytes))
			mux.Handle("/ui", http.RedirectHandler("/ui/", http.StatusFound))
		}
		identity = func(ctx context.Context) (policy.Identity, error) {
			id, ok := authn.IdentityFromContext(ctx)
			if !ok {
				return policy.Identity{}, errors.New("the call carries no verified identity; it was refused")
			}
			return id, nil
		}
	default:
		logger.Warn("auth.mode is none: every caller on this machine is treated as the local identity; configure auth.mode oidc before exposing airlock", "listen", cfg.Listen)
		identity = func(context.Context) (policy.Identity, error) {
			return localIdentity(a.config(), "", nil, "none"), nil
		}
		// The pages in local mode: a person picks a name and groups
		// (loopback only; broker/web/local.go).
		ui, err := newLocalUI(cfg, a, logger)
		if err != nil {
			return err
		}
		mux.Handle("/ui/", http.MaxBytesHandler(ui, cfg.HTTP.MaxAPIRequestBytes))
		mux.Handle("/ui", http.RedirectHandler("/ui/", http.StatusFound))
		logger.Info("web UI in local mode (no identity provider)", "url", "http://"+cfg.Listen+"/ui")
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	mcpSrv := mcpserver.New(a.broker, identity, version, logger)
	// Task watchers end (their calls recorded) before the broker and the
	// store close (a.close, deferred above).
	defer mcpSrv.Close()
	// /mcp checks the Origin, bounds bodies, caps and expires sessions
	// (cfg.HTTP), then authenticates and hands over to mcp-go.
	mcpHTTP, err := mcpSrv.HTTPHandler(mcpserver.HTTPConfig{
		MaxSessions:            cfg.HTTP.MaxSessions,
		MaxSessionsPerIdentity: cfg.HTTP.MaxSessionsPerIdentity,
		SessionIdleTimeout:     cfg.HTTP.SessionIdleTimeout,
		MaxRequestBytes:        cfg.HTTP.MaxRequestBytes,
		MaxInitializeBytes:     cfg.HTTP.MaxInitializeBytes,
		PublicURL:              cfg.PublicURL,
		Listen:                 ln.Addr().String(),
		AllowedOrigins:         cfg.HTTP.AllowedOrigins,
		Authenticate:           guard,
		// The identity the middleware verified travels with the request
		// into the tool handler.
		ContextFunc: func(ctx context.Context, r *http.Request) context.Context {
			if id, ok := authn.IdentityFromContext(r.Context()); ok {
				return authn.WithIdentity(ctx, id)
			}
			return ctx
		},
		Logger:     logger,
		Registerer: a.registry,
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	mux.Handle("/mcp", mcpHTTP)
	mux.HandleFunc("/healthz", a.healthz)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if a.rec.Stuck() {
			http.Error(w, "not ready: "+writerStuck, http.StatusServiceUnavailable)
			return
		}
		if err := a.store.DB().PingContext(r.Context()); err != nil {
			http.Error(w, "not ready: the store does not answer: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if verifier != nil {
			if ok, why := verifier.Ready(); !ok {
				http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
				return
			}
		}
		// A resource that could not be set up does not make airlock unready:
		// the others serve. It is named, with why.
		down := a.broker.State().Unavailable()
		if len(down) == 0 {
			_, _ = w.Write([]byte("ready\n"))
			return
		}
		var b strings.Builder
		fmt.Fprintf(&b, "ready, degraded: %d of %d resources unavailable\n", len(down), len(a.broker.State().Resources))
		for _, name := range slices.Sorted(maps.Keys(down)) {
			fmt.Fprintf(&b, "resource %s unavailable: %s\n", name, down[name])
		}
		_, _ = w.Write([]byte(b.String()))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("airlock serving", "mcp", "http://"+ln.Addr().String()+"/mcp", "version", version,
		"policy_version", a.broker.State().Policy.Version(), "resources", strings.Join(cfg.ResourceNames(), ","))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := a.reload(); err != nil {
				logger.Error("reload failed; the previous configuration and policy stay in force", "error", err)
			} else {
				if !reflect.DeepEqual(a.config().HTTP, cfg.HTTP) {
					logger.Warn("http changes take effect only after a restart")
				}
				if mcpSrv.Sync() {
					logger.Info("tools offered changed", "tools", strings.Join(mcpSrv.Offered(), ","))
				}
			}
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		case <-ctx.Done():
			// Calls in flight may be held for approval or running up to
			// their timeout: wait for the longest of those.
			grace := cfg.Approvals.Wait + cfg.Limits.Timeout + 10*time.Second
			logger.Info("shutting down: waiting for calls in flight", "at_most", grace)
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
			err := srv.Shutdown(shutdownCtx)
			cancel()
			_ = mcpHTTP.Shutdown(context.WithoutCancel(ctx))
			return err
		}
	}
}

// newLocalUI builds the pages in local mode, for auth.mode none on a
// loopback listener: a random session key per process, and the approver
// groups the policy names offered at login.
func newLocalUI(cfg *config.Config, a *app, logger *slog.Logger) (*web.Handler, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	var groups []string
	for _, r := range a.broker.State().Policy.Rules() {
		if r.Approvers != nil {
			for _, g := range r.Approvers.Groups {
				if !slices.Contains(groups, g) {
					groups = append(groups, g)
				}
			}
		}
	}
	return web.New(web.Config{
		Approvals: a.approvals, Recorder: a.rec, Local: true, LocalGroups: groups,
		PublicURL: "http://" + cfg.Listen + "/mcp", SessionKey: key, Logger: logger,
	})
}

// newUI builds the pages for approvers and reviewers, with their OAuth
// client's secret and the session key resolved from the environment.
func newUI(cfg *config.Config, a *app, logger *slog.Logger) (*web.Handler, error) {
	env := config.OSEnvironment{Dir: cfg.Dir}
	secret, err := config.Secret(env, "ui.client_secret", cfg.UI.ClientSecretEnv, cfg.UI.ClientSecretFile)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if n := cfg.UI.SessionKeyEnv; n != "" {
		v, _ := env.Getenv(n)
		decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil || len(decoded) != 32 {
			return nil, fmt.Errorf("ui.session_key_env names %s, which must hold 32 bytes in base64 (openssl rand -base64 32)", n)
		}
		key = decoded
	} else if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return web.New(web.Config{
		Approvals:      a.approvals,
		Recorder:       a.rec,
		OIDC:           *cfg.Auth.OIDC,
		ClientID:       cfg.UI.ClientID,
		ClientSecret:   string(secret),
		PublicURL:      cfg.PublicURL,
		SessionKey:     key,
		ReviewersGroup: cfg.UI.ReviewersGroup,
		Logger:         logger,
	})
}

// healthz answers the liveness probe: the process serves, and its
// transcript's writer is not stuck (recorder.Stuck), which only a
// restart mends: every call is refused meanwhile.
func (a *app) healthz(w http.ResponseWriter, _ *http.Request) {
	if a.rec.Stuck() {
		http.Error(w, writerStuck, http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

const writerStuck = "the transcript's writer is stuck (an append outlived its timeout and the store's read-back): calls are refused until it returns or airlock restarts"
