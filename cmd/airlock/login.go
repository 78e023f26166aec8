package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/broker/config"
)

// loginConfig is what `airlock login` and `airlock stdio` use to obtain and
// refresh a token, from the config's auth section.
func loginConfig(cfg *config.Config) authn.LoginConfig {
	lc := authn.LoginConfig{ClientID: cfg.Auth.CLIClientID}
	if o := cfg.Auth.OIDC; o != nil {
		lc.Issuer, lc.Audience, lc.Scopes = o.Issuer, o.Audience, o.RequiredScopes
	}
	return lc
}

func newLoginCmd() *cobra.Command {
	var (
		cfgPath, issuer, audience, clientID, secretEnv string
		scopes                                         []string
		printToken                                     bool
	)
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Get a short-lived token from your identity provider and cache it for airlock stdio",
		Long: `Get an access token for airlock and cache it in your user config directory
(mode 0600), where airlock stdio finds it and refreshes it before it expires.

People: the OAuth device authorization grant; open the URL printed and confirm
the code. Machines (an agent in CI): the client credentials grant, with the
client secret read from the environment variable --client-secret-env names.

Issuer, audience, scopes and client come from --config (auth.oidc and
auth.cli_client_id) and can be overridden by flags.`,
		Example: `  airlock login --config airlock.yaml
  airlock login --issuer https://idp.example.com/ --audience https://airlock.example.com/mcp --client-id airlock-cli
  AIRLOCK_CLIENT_SECRET=... airlock login --config airlock.yaml --client-id ci-agent --client-secret-env AIRLOCK_CLIENT_SECRET`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lc := authn.LoginConfig{}
			if cfgPath != "" {
				cfg, err := config.Load(cfgPath)
				if err != nil {
					return err
				}
				lc = loginConfig(cfg)
			}
			if issuer != "" {
				lc.Issuer = issuer
			}
			if audience != "" {
				lc.Audience = audience
			}
			if clientID != "" {
				lc.ClientID = clientID
			}
			if len(scopes) > 0 {
				lc.Scopes = scopes
			}
			if secretEnv != "" {
				lc.ClientSecret = os.Getenv(secretEnv)
				if lc.ClientSecret == "" {
					return fmt.Errorf("--client-secret-env names %s, which is empty", secretEnv)
				}
			}
			switch {
			case lc.Issuer == "":
				return fmt.Errorf("no issuer: pass --config with auth.oidc, or --issuer")
			case lc.ClientID == "":
				return fmt.Errorf("no client: set auth.cli_client_id in the config, or pass --client-id")
			}
			lc.Out = cmd.ErrOrStderr()
			tok, err := authn.Login(cmd.Context(), lc)
			if err != nil {
				return err
			}
			if printToken {
				fmt.Fprintln(cmd.OutOrStdout(), tok.AccessToken)
				return nil
			}
			path, _ := authn.DefaultTokenCachePath()
			fmt.Fprintf(cmd.ErrOrStderr(), "Logged in; token cached in %s, valid until %s.\n", path, tok.Expiry.Local().Format(time.DateTime))
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "config file (auth.oidc, auth.cli_client_id)")
	cmd.Flags().StringVar(&issuer, "issuer", "", "identity provider's issuer URL")
	cmd.Flags().StringVar(&audience, "audience", "", "airlock's resource URL (its public /mcp URL)")
	cmd.Flags().StringVar(&clientID, "client-id", "", "OAuth client to log in with")
	cmd.Flags().StringVar(&secretEnv, "client-secret-env", "", "environment variable holding the client secret (client credentials grant, for machines)")
	cmd.Flags().StringSliceVar(&scopes, "scope", nil, "scopes to request (repeatable)")
	cmd.Flags().BoolVar(&printToken, "print-token", false, "also print the access token on stdout (for AIRLOCK_TOKEN)")
	return cmd
}
