package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/server"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/mcpserver"
	"github.com/airlock-mcp/airlock/broker/web"
	"github.com/airlock-mcp/airlock/policy"
)

// maxRequestBytes bounds one MCP request body.
const maxRequestBytes = 4 << 20

func newServeCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve MCP over streamable HTTP at /mcp, with /healthz, /readyz and /metrics",
		Long: `Serve MCP over streamable HTTP. Agents connect to http://LISTEN/mcp.
/healthz answers while the process runs, /readyz when it can serve calls, and
/metrics exposes Prometheus metrics (calls by tool and effect, stage latencies,
live leases).

SIGHUP reloads the config and policy without dropping calls in flight; if the
new policy or config does not load, the old one keeps running and the log says
why. SIGINT or SIGTERM stops accepting calls, waits for those in flight, and
revokes every live credential lease before exiting.

Authentication: with auth.mode oidc every request to /mcp needs a bearer token
from the configured provider (OAuth 2.1 resource server, per the MCP
authorization spec; metadata at /.well-known/oauth-protected-resource/mcp).
With auth.mode none, unauthenticated calls are accepted only when listen is a
loopback address.`,
		Example: `  airlock serve --config examples/demo/airlock.yaml
  claude mcp add --transport http airlock http://127.0.0.1:8080/mcp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), cfgPath)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "airlock.yaml", "config file")
	return cmd
}

func runServe(ctx context.Context, cfgPath string) error {
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
	a, err := newApp(ctx, cfgPath, logger)
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
		mux.Handle("/api/approvals", http.MaxBytesHandler(api, 64<<10))
		mux.Handle("/api/approvals/", http.MaxBytesHandler(api, 64<<10))
		if cfg.UI != nil {
			ui, err := newUI(cfg, a, logger)
			if err != nil {
				return err
			}
			mux.Handle("/ui/", http.MaxBytesHandler(ui, 64<<10))
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
	}

	mcpSrv := mcpserver.New(a.broker, identity, version, logger)
	streamable := server.NewStreamableHTTPServer(mcpSrv,
		server.WithEndpointPath("/mcp"),
		server.WithStreamableHTTPLogger(logger),
		// The identity the middleware verified travels with the request
		// into the tool handler.
		server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
			if id, ok := authn.IdentityFromContext(r.Context()); ok {
				return authn.WithIdentity(ctx, id)
			}
			return ctx
		}),
	)
	mux.Handle("/mcp", guard(http.MaxBytesHandler(streamable, maxRequestBytes)))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
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
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
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
			_ = streamable.Shutdown(context.WithoutCancel(ctx))
			return err
		}
	}
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
