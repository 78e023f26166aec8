package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

func newTranscriptsCmd() *cobra.Command {
	var cfgPath, storeURL string
	cmd := &cobra.Command{
		Use:   "transcripts",
		Short: "List, show, verify and export call transcripts",
		Long: `Every step of every call is an event in an append-only, hash-chained log in the
store. These commands read it; the store is the one in --config, or --store.`,
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "airlock.yaml", "config file naming the store")
	cmd.PersistentFlags().StringVar(&storeURL, "store", "", "store URL (overrides the config), e.g. sqlite://./airlock.db")

	open := func(cmd *cobra.Command) (*recorder.Recorder, func(), error) {
		ctx := cmd.Context()
		url := storeURL
		// The config also gives the checkpoint key: it is read unless
		// --store alone is given.
		cfg := &config.Config{}
		if url == "" || cmd.Flags().Changed("config") {
			var err error
			if cfg, err = config.Load(cfgPath); err != nil {
				return nil, nil, err
			}
		}
		if url == "" {
			url = cfg.StoreURL()
		}
		st, err := store.Open(ctx, url)
		if err != nil {
			return nil, nil, err
		}
		rec, err := openRecorder(cfg, st)
		if err != nil {
			_ = st.Close()
			return nil, nil, err
		}
		return rec, func() { _ = st.Close() }, nil
	}

	// withRecorder opens the transcript for one command and closes it after.
	withRecorder := func(run func(cmd *cobra.Command, args []string, rec *recorder.Recorder) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			rec, done, err := open(cmd)
			if err != nil {
				return err
			}
			defer done()
			return run(cmd, args, rec)
		}
	}

	// Each command has its own filter flags: flag defaults are written to
	// their variables when the flag is defined.
	type filterFlags struct {
		f     recorder.Filter
		since time.Duration
	}
	addFilters := func(c *cobra.Command, limit int, limitHelp string) *filterFlags {
		ff := &filterFlags{}
		c.Flags().StringVar(&ff.f.Subject, "subject", "", "only calls by this identity")
		c.Flags().StringVar(&ff.f.Tool, "tool", "", "only calls of this tool ("+strings.Join(toolNames(), ", ")+")")
		c.Flags().StringVar(&ff.f.Resource, "resource", "", "only calls on this resource")
		c.Flags().StringVar(&ff.f.Effect, "effect", "", "only calls with this decision: "+strings.Join(effects, ", "))
		c.Flags().DurationVar(&ff.since, "since", 0, "only the last DURATION, e.g. 24h")
		c.Flags().IntVar(&ff.f.Limit, "limit", limit, limitHelp)
		return ff
	}
	// filter checks the flags and returns the filter they make: a value
	// that can match nothing is an error, not an empty listing.
	filter := func(ff *filterFlags) (recorder.Filter, error) {
		out := ff.f
		switch {
		case out.Effect != "" && !slices.Contains(effects, out.Effect):
			return out, fmt.Errorf("--effect %q is not a decision; use one of %s", out.Effect, strings.Join(effects, ", "))
		case out.Tool != "" && !slices.Contains(toolNames(), out.Tool):
			return out, fmt.Errorf("--tool %q is not a tool airlock serves; use one of %s", out.Tool, strings.Join(toolNames(), ", "))
		case ff.since < 0:
			return out, fmt.Errorf("--since %s is negative; give how far back to look, e.g. 24h", ff.since)
		case out.Limit < 0:
			return out, fmt.Errorf("--limit %d is negative; use 0 for no limit", out.Limit)
		}
		if ff.since > 0 {
			out.Since = time.Now().Add(-ff.since)
		}
		return out, nil
	}
	// withFilter checks the filter flags before the store is opened, and
	// hands the filter to run.
	withFilter := func(ff **filterFlags, run func(cmd *cobra.Command, rec *recorder.Recorder, fl recorder.Filter) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			fl, err := filter(*ff)
			if err != nil {
				return err
			}
			return withRecorder(func(cmd *cobra.Command, _ []string, rec *recorder.Recorder) error {
				return run(cmd, rec, fl)
			})(cmd, args)
		}
	}

	var listFlags, exportFlags *filterFlags
	list := &cobra.Command{
		Use:     "list",
		Short:   "List recent calls, newest first",
		Example: "  airlock transcripts list --config airlock.yaml --effect deny --since 24h",
		Args:    cobra.NoArgs,
		RunE: withFilter(&listFlags, func(cmd *cobra.Command, rec *recorder.Recorder, fl recorder.Filter) error {
			calls, err := rec.Calls(cmd.Context(), fl)
			if err != nil {
				return err
			}
			views := make([]callView, 0, len(calls))
			for _, c := range calls {
				events, err := rec.Events(cmd.Context(), recorder.Filter{CallID: c.CallID})
				if err != nil {
					return err
				}
				views = append(views, viewCall(events))
			}
			return writeCallList(cmd.OutOrStdout(), views)
		}),
	}
	listFlags = addFilters(list, 100, "at most this many calls, newest first (0: all)")

	var showJSON bool
	show := &cobra.Command{
		Use:   "show CALL_ID",
		Short: "Show one call: who, what, the decision, how it ended, and its events",
		Long: "Show one call for people: the identity, tool and resource, the SQL or command (as masked\n" +
			"in the transcript), the decision and its rule, the outcome (completed, denied, refused,\n" +
			"invalid, failed, pending, unfinished) and each event with its time from the first.\n" +
			"--json prints the events with their data as JSON lines, as transcripts export does.",
		Example: "  airlock transcripts show 0b6c1f3e-... --config airlock.yaml\n  airlock transcripts show 0b6c1f3e-... --json | jq .data",
		Args:    cobra.ExactArgs(1),
		RunE: withRecorder(func(cmd *cobra.Command, args []string, rec *recorder.Recorder) error {
			events, err := rec.Events(cmd.Context(), recorder.Filter{CallID: args[0]})
			if err != nil {
				return err
			}
			if len(events) == 0 {
				return fmt.Errorf("no call %s in the transcript", args[0])
			}
			if !showJSON {
				return writeCall(cmd.OutOrStdout(), events)
			}
			return rec.Export(cmd.Context(), cmd.OutOrStdout(), recorder.Filter{CallID: args[0]})
		}),
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print the events as JSON lines, for machines")

	verify := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the hash chain; exit non-zero naming the first event changed, removed or inserted",
		Long: `Recompute every event's hash from its content and its predecessor's hash, then
check the chain against the latest signed checkpoint of its head (written by
airlock serve every transcripts.checkpoint_interval): the chain must reach it,
with the same hash, and the checkpoint must be signed with the config's
checkpoint key. Exit 0 when the chain is intact, saying how far back the
checkpoint's proof reaches; exit 1 naming the first event that was changed,
removed or inserted, or the events cut off its end. It also checks the bounds
on the events' times that queries by time (--since) rely on, and exits 1
(time-bounds) when they are lower than the events need. Events after the latest
checkpoint are covered by the chain alone: compare the head it prints with one
you kept elsewhere (the checkpoint log lines).`,
		Example: "  airlock transcripts verify --config airlock.yaml",
		Args:    cobra.NoArgs,
		RunE: withRecorder(func(cmd *cobra.Command, _ []string, rec *recorder.Recorder) error {
			rep, err := rec.Verify(cmd.Context())
			if err != nil {
				return err
			}
			if !rep.OK {
				return &exitError{code: 1, msg: fmt.Sprintf("transcript chain is broken at event #%d (%s): %s; %d events before it verify", rep.BadSeq, rep.Reason, rep.Detail, rep.Count)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "transcript intact: %d events, head #%d %s\n", rep.Count, rep.HeadSeq, rep.HeadHash)
			fmt.Fprintln(cmd.OutOrStdout(), checkpointLine(rep.Checkpoint))
			return nil
		}),
	}

	export := &cobra.Command{
		Use:     "export",
		Short:   "Write events as JSON lines, for a SIEM",
		Example: "  airlock transcripts export --config airlock.yaml --since 24h > events.jsonl",
		Args:    cobra.NoArgs,
		RunE: withFilter(&exportFlags, func(cmd *cobra.Command, rec *recorder.Recorder, fl recorder.Filter) error {
			return rec.Export(cmd.Context(), cmd.OutOrStdout(), fl)
		}),
	}
	exportFlags = addFilters(export, 0, "at most this many events, oldest first (0: all)")

	cmd.AddCommand(list, show, verify, export)
	return cmd
}

// effects are the decisions --effect can select.
var effects = []string{string(policy.Allow), string(policy.Deny), string(policy.Approve)}

// toolNames lists every tool name a call can have, sorted.
func toolNames() []string {
	names := []string{broker.ListResourcesTool, broker.ApprovalStatusTool}
	for _, t := range allTools() {
		names = append(names, t.Name())
	}
	slices.Sort(names)
	return names
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
