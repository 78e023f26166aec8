package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// approvalsClient is where the approvals commands read and decide: the
// server's JSON API with the approver's token, or the store itself.
type approvalsClient interface {
	list(ctx context.Context) ([]approval.Approval, error)
	get(ctx context.Context, id string) (approval.Approval, error)
	decide(ctx context.Context, id string, v approval.Verdict, reason string) (approval.Approval, error)
	close()
}

func newApprovalsCmd() *cobra.Command {
	var (
		cfgPath, server, tokenFile string
		as                         string
		groups                     []string
	)
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List, show, approve and deny calls held for human approval",
		Long: `Calls that a policy rule with effect: approve holds wait for approvers. These
commands decide them.

With OIDC (auth.mode oidc), they call the server's API as you: the token comes
from --token-file, $AIRLOCK_TOKEN or "airlock login", and the server is
--server or the origin of public_url in the config.

Without OIDC (a local, single-operator setup where you hold the store), the
commands work on the store directly: list and show read it as they are (every
approval), and approve and deny need --as NAME --groups G1,G2 to name the
approver; the transcript records that the decision came from the local CLI.

show prints the approval for people (the call, its SQL or command, who asked,
the rule, the decisions and who made them); --json prints it for machines.

Either way the same rules hold: the approver must be in the rule's approver
groups and must not be the requester, and min distinct approvers are needed.`,
		Example: `  airlock approvals list --config airlock.yaml
  airlock approvals show 3f0c... --config airlock.yaml
  airlock approvals approve 3f0c... --reason "ticket OPS-142" --config airlock.yaml
  airlock approvals deny 3f0c... --reason "not during the freeze" --as dora --groups dba --config airlock.yaml`,
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "airlock.yaml", "config file (store, public_url, auth)")
	cmd.PersistentFlags().StringVar(&server, "server", "", "airlock's base URL for the API (default: the origin of public_url)")
	cmd.PersistentFlags().StringVar(&tokenFile, "token-file", "", "file holding your bearer token (API mode)")
	cmd.PersistentFlags().StringVar(&as, "as", "", "local mode: decide on the store directly as this approver")
	cmd.PersistentFlags().StringSliceVar(&groups, "groups", nil, "local mode: the approver's groups (comma-separated)")

	// open finds where to read (and, for decisions, decide): without OIDC
	// the store itself, where reading needs no name and deciding needs --as.
	open := func(ctx context.Context, deciding bool) (approvalsClient, error) {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, err
		}
		if as != "" {
			if cfg.Auth.Mode == config.AuthOIDC {
				return nil, errors.New("--as is for setups without OIDC; with auth.mode oidc, log in (airlock login) and decide through the server")
			}
			if !utf8.ValidString(as) || strings.IndexFunc(as, unicode.IsControl) >= 0 {
				return nil, errors.New("--as must be a name in UTF-8 without control characters: the transcript records the decision under it")
			}
			return openLocalApprovals(ctx, cfg, &policy.Identity{Subject: as, Groups: groups, Method: "cli-local"})
		}
		if cfg.Auth.Mode != config.AuthOIDC {
			if deciding {
				return nil, errors.New("without OIDC, name yourself to decide: --as NAME --groups G1,G2 (the decision is made on the store and recorded as from the local CLI)")
			}
			return openLocalApprovals(ctx, cfg, nil)
		}
		base := server
		if base == "" {
			u, err := url.Parse(cfg.PublicURL)
			if err != nil || u.Host == "" {
				return nil, errors.New("no server: pass --server or set public_url in the config")
			}
			base = u.Scheme + "://" + u.Host
		}
		token, err := approverToken(ctx, cfg, tokenFile)
		if err != nil {
			return nil, err
		}
		return &apiApprovals{base: strings.TrimSuffix(base, "/"), token: token}, nil
	}

	var (
		reason string
		asJSON bool
	)
	list := &cobra.Command{
		Use: "list", Short: "List approvals you requested or may decide, pending first", Args: cobra.NoArgs,
		Example: "  airlock approvals list --config airlock.yaml",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := open(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer c.close()
			as, err := c.list(cmd.Context())
			if err != nil {
				return err
			}
			return writeApprovalList(cmd.OutOrStdout(), as, time.Now())
		},
	}
	show := &cobra.Command{
		Use: "show ID", Short: "Show one approval: the call, the rules that asked, the decisions", Args: cobra.ExactArgs(1),
		Example: "  airlock approvals show 3f0c... --config airlock.yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := open(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer c.close()
			a, err := c.get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				out, _ := json.MarshalIndent(a, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(out))
				return nil
			}
			return writeApproval(cmd.OutOrStdout(), a, time.Now())
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the approval as JSON, for machines")
	decide := func(v approval.Verdict) *cobra.Command {
		c := &cobra.Command{
			Use:     string(v) + " ID",
			Short:   strings.ToUpper(string(v)[:1]) + string(v)[1:] + " a held call",
			Args:    cobra.ExactArgs(1),
			Example: fmt.Sprintf("  airlock approvals %s 3f0c... --reason \"...\" --config airlock.yaml", v),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := open(cmd.Context(), true)
				if err != nil {
					return err
				}
				defer c.close()
				a, err := c.decide(cmd.Context(), args[0], v, reason)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "approval %s is now %s (%d of %d approvals)\n", a.ID, a.State, a.Approvals(), max(a.Approvers.Min, 1))
				return nil
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why (recorded in the transcript and shown to the requester)")
		return c
	}
	cmd.AddCommand(list, show, decide(approval.Approve), decide(approval.Deny))
	return cmd
}

// approverToken finds the approver's bearer token: --token-file,
// $AIRLOCK_TOKEN, or the cache `airlock login` fills.
func approverToken(ctx context.Context, cfg *config.Config, tokenFile string) (string, error) {
	if tokenFile != "" || os.Getenv(authn.TokenEnv) != "" {
		return authn.StdioToken(tokenFile)
	}
	tok, err := authn.CachedToken(ctx, loginConfig(cfg))
	if err != nil {
		return "", fmt.Errorf("no token (%v): run airlock login, or set %s or --token-file", err, authn.TokenEnv)
	}
	return tok.AccessToken, nil
}

// localApprovals reads and decides on the store directly (setups without
// OIDC). who is the approver --as names; without it the store is read as
// it is (whoever holds the store file sees every approval) and nothing can
// be decided.
type localApprovals struct {
	st  *store.Store
	m   *approval.Manager
	who *policy.Identity
}

func openLocalApprovals(ctx context.Context, cfg *config.Config, who *policy.Identity) (*localApprovals, error) {
	st, err := store.Open(ctx, cfg.StoreURL())
	if err != nil {
		return nil, err
	}
	rec, err := recorder.New(st.DB())
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	m, err := approval.New(approval.Config{
		Store:     st,
		PublicURL: cfg.PublicURL,
		Wait:      cfg.Approvals.Wait,
		Expire:    cfg.Approvals.Expire,
		OnEvent: func(ctx context.Context, ev approval.Event) error {
			return broker.RecordApprovalEvent(ctx, rec, ev)
		},
		// Why a decision could not be stored (a full disk, say) is the
		// operator's to read: they hold the store.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return &localApprovals{st: st, m: m, who: who}, nil
}

func (l *localApprovals) list(ctx context.Context) ([]approval.Approval, error) {
	return l.m.List(ctx, approval.ListFilter{Viewer: l.who})
}

func (l *localApprovals) get(ctx context.Context, id string) (approval.Approval, error) {
	if l.who == nil {
		return l.m.Get(ctx, id)
	}
	return l.m.Status(ctx, id, *l.who)
}

func (l *localApprovals) decide(ctx context.Context, id string, v approval.Verdict, reason string) (approval.Approval, error) {
	if l.who == nil {
		return approval.Approval{}, errors.New("name yourself to decide: --as NAME --groups G1,G2")
	}
	return l.m.Decide(ctx, id, *l.who, v, reason, approval.ViaCLILocal)
}

func (l *localApprovals) close() { _ = l.st.Close() }

// apiApprovals calls the server's approvals API with the approver's token.
type apiApprovals struct {
	base, token string
}

func (c *apiApprovals) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("calling %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("airlock answered HTTP %d", resp.StatusCode)
	}
	return json.Unmarshal(data, out)
}

func (c *apiApprovals) list(ctx context.Context) ([]approval.Approval, error) {
	var out struct {
		Approvals []approval.Approval `json:"approvals"`
	}
	err := c.do(ctx, http.MethodGet, "/api/approvals", nil, &out)
	return out.Approvals, err
}

func (c *apiApprovals) get(ctx context.Context, id string) (a approval.Approval, err error) {
	err = c.do(ctx, http.MethodGet, "/api/approvals/"+url.PathEscape(id), nil, &a)
	return a, err
}

func (c *apiApprovals) decide(ctx context.Context, id string, v approval.Verdict, reason string) (a approval.Approval, err error) {
	err = c.do(ctx, http.MethodPost, "/api/approvals/"+url.PathEscape(id)+"/"+string(v), map[string]string{"reason": reason}, &a)
	return a, err
}

func (c *apiApprovals) close() {}
