package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/mcpserver"
	"github.com/airlock-mcp/airlock/policy"
)

func newStdioCmd() *cobra.Command {
	var (
		cfgPath   string
		as        string
		groups    []string
		tokenFile string
		strict    bool
	)
	cmd := &cobra.Command{
		Use:   "stdio",
		Short: "Serve MCP over standard input and output, for a local agent",
		Long: `Serve MCP over stdin/stdout: the agent's MCP client starts this process and
talks to it through pipes. Logs go to stderr.

Identity: with auth.mode oidc the caller proves who it is with a bearer token,
verified exactly as over HTTP: --token-file (read again on every call), else
$AIRLOCK_TOKEN, else the token cached by ` + "`airlock login`" + ` (refreshed before it
expires). With auth.mode none the caller is the local identity: --as (with
--groups), else identity: in the config file.

A resource that cannot be set up (a secret that is not set) is served as
unavailable and the others work, so the client still connects; --strict
refuses to start instead.

When stdin closes or on SIGTERM, airlock revokes every live credential lease
before exiting. SIGHUP reloads the config and policy.`,
		Example: `  airlock stdio --config examples/demo/airlock.yaml
  airlock stdio --config airlock.yaml --as alice --groups eng,oncall
  AIRLOCK_TOKEN=$(cat token) airlock stdio --config airlock.yaml   # auth.mode oidc
  claude mcp add airlock -- airlock stdio --config /path/to/airlock.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStdio(cmd.Context(), cfgPath, as, groups, tokenFile, strict, os.Stdin, os.Stdout)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "airlock.yaml", "config file")
	cmd.Flags().StringVar(&as, "as", "", "subject of the local identity (overrides identity.subject in the config)")
	cmd.Flags().StringSliceVar(&groups, "groups", nil, "groups of the local identity given with --as (comma-separated)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the bearer token (auth.mode oidc)")
	cmd.Flags().BoolVar(&strict, "strict", false, "refuse to start (or to reload) when a resource cannot be set up, instead of serving it as unavailable")
	return cmd
}

func runStdio(ctx context.Context, cfgPath, as string, groups []string, tokenFile string, strict bool, in io.Reader, out io.Writer) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(os.Stderr, cfg)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := newApp(ctx, cfgPath, strict, logger)
	if err != nil {
		return err
	}
	defer a.close(ctx)

	var identity mcpserver.IdentityFunc
	if cfg.Auth.Mode == config.AuthOIDC {
		if as != "" {
			return errors.New("--as names a local identity; with auth.mode oidc the identity comes from the token")
		}
		v := authn.NewVerifier(*cfg.Auth.OIDC, authn.WithLogger(logger))
		v.Start(ctx)
		defer v.Close()
		login := loginConfig(cfg)
		identity = func(ctx context.Context) (policy.Identity, error) {
			if tokenFile != "" || os.Getenv(authn.TokenEnv) != "" {
				return v.AuthenticateStdio(ctx, tokenFile)
			}
			tok, err := authn.CachedToken(ctx, login)
			if err != nil {
				return policy.Identity{}, fmt.Errorf("no usable token (%v): run \"airlock login\", or set %s or --token-file", err, authn.TokenEnv)
			}
			return v.Verify(ctx, tok.AccessToken)
		}
		logger.Info("airlock serving over stdio", "version", version, "auth", "oidc", "issuer", cfg.Auth.OIDC.Issuer,
			"policy_version", a.broker.State().Policy.Version())
	} else {
		identity = func(context.Context) (policy.Identity, error) {
			return localIdentity(a.config(), as, groups, "local"), nil
		}
		id, _ := identity(ctx)
		logger.Info("airlock serving over stdio", "version", version, "subject", id.Subject,
			"policy_version", a.broker.State().Policy.Version())
	}

	mcpSrv := mcpserver.New(a.broker, identity, version, logger)
	// Task watchers end (their calls recorded) before the broker and the
	// store close (a.close, deferred above).
	defer mcpSrv.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := a.reload(); err != nil {
				logger.Error("reload failed; the previous configuration and policy stay in force", "error", err)
			} else if mcpSrv.Sync() {
				logger.Info("tools offered changed", "tools", strings.Join(mcpSrv.Offered(), ","))
			}
		}
	}()

	// mcp-go's stdio server, behind the task layer's line filter.
	err = mcpSrv.ServeStdio(ctx, in, out)
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
