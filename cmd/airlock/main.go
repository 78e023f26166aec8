// Command airlock is an MCP server that brokers AI agents' access to
// databases and hosts: policy, short-lived credentials, masking and a
// tamper-evident transcript for every call.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker/config"
)

// version is set at build time with -ldflags "-X main.version=...";
// main replaces "dev" with what the binary's build info says (version.go).
var version = "dev"

func main() {
	version = currentBuild().Version
	if err := newRootCmd().Execute(); err != nil {
		var exit *exitError
		if errors.As(err, &exit) {
			if exit.msg != "" {
				fmt.Fprintln(os.Stderr, "airlock:", exit.msg)
			}
			os.Exit(exit.code)
		}
		fmt.Fprintln(os.Stderr, "airlock:", err)
		os.Exit(1)
	}
}

// exitError ends the command with a specific status.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "airlock",
		Short: "Brokered, audited access to databases and hosts for AI agents (an MCP server)",
		Long: `Airlock is an MCP server that agents register like any other. Agents call typed
tools (query_db, run_ssh, ...) and every call passes through identity, policy,
a just-in-time credential, execution, output masking and a tamper-evident
transcript. The agent never sees a secret.`,
		Example: `  airlock stdio --config airlock.yaml          # for Claude Desktop, Claude Code, Cursor
  airlock serve --config airlock.yaml          # streamable HTTP at http://127.0.0.1:8080/mcp
  airlock policy test --policy policy.yaml cases.yaml
  airlock transcripts verify --config airlock.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newStdioCmd(), newLoginCmd(), newApprovalsCmd(), newPolicyCmd(), newTranscriptsCmd(), newStoreCmd(), newConfigCmd(), newDoctorCmd(), newVersionCmd())
	return root
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "defaults",
		Short:   "Print the embedded default configuration every config file is read on top of",
		Example: "  airlock config defaults",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(config.Defaults())
			return err
		},
	}, newConfigCheckCmd())
	return cmd
}

// newLogger returns the process logger. Logs go to stderr: over stdio,
// stdout carries the MCP protocol.
func newLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	level := slog.LevelInfo
	format := "text"
	if cfg != nil {
		_ = level.UnmarshalText([]byte(cfg.Log.Level))
		format = cfg.Log.Format
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
