package main

import (
	"context"
	"encoding/json"
	"fmt"

	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/store"
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

	open := func(ctx context.Context) (*recorder.Recorder, func(), error) {
		url := storeURL
		if url == "" {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return nil, nil, err
			}
			url = cfg.StoreURL()
		}
		st, err := store.Open(ctx, url)
		if err != nil {
			return nil, nil, err
		}
		rec, err := recorder.New(st.DB())
		if err != nil {
			_ = st.Close()
			return nil, nil, err
		}
		return rec, func() { _ = st.Close() }, nil
	}

	// withRecorder opens the transcript for one command and closes it after.
	withRecorder := func(run func(cmd *cobra.Command, args []string, rec *recorder.Recorder) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			rec, done, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			return run(cmd, args, rec)
		}
	}

	var f recorder.Filter
	var since time.Duration
	addFilters := func(c *cobra.Command) {
		c.Flags().StringVar(&f.Subject, "subject", "", "only calls by this identity")
		c.Flags().StringVar(&f.Tool, "tool", "", "only calls of this tool")
		c.Flags().StringVar(&f.Resource, "resource", "", "only calls on this resource")
		c.Flags().StringVar(&f.Effect, "effect", "", "only calls with this decision: allow, deny, approve")
		c.Flags().DurationVar(&since, "since", 0, "only the last DURATION, e.g. 24h")
		c.Flags().IntVar(&f.Limit, "limit", 100, "at most this many")
	}
	filter := func() recorder.Filter {
		out := f
		if since > 0 {
			out.Since = time.Now().Add(-since)
		}
		return out
	}

	list := &cobra.Command{
		Use:     "list",
		Short:   "List recent calls, newest first",
		Example: "  airlock transcripts list --config airlock.yaml --effect deny --since 24h",
		Args:    cobra.NoArgs,
		RunE: withRecorder(func(cmd *cobra.Command, _ []string, rec *recorder.Recorder) error {
			calls, err := rec.Calls(cmd.Context(), filter())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tCALL\tSUBJECT\tTOOL\tRESOURCE\tEFFECT\tOUTCOME")
			for _, c := range calls {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Time.Local().Format(time.DateTime), c.CallID, c.Subject, c.Tool, c.Resource, dash(c.Effect), c.Outcome)
			}
			return w.Flush()
		}),
	}
	addFilters(list)

	show := &cobra.Command{
		Use:     "show CALL_ID",
		Short:   "Show every event of one call",
		Example: "  airlock transcripts show 0b6c1f3e-... --config airlock.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: withRecorder(func(cmd *cobra.Command, args []string, rec *recorder.Recorder) error {
			events, err := rec.Events(cmd.Context(), recorder.Filter{CallID: args[0]})
			if err != nil {
				return err
			}
			if len(events) == 0 {
				return fmt.Errorf("no call %s in the transcript", args[0])
			}
			for _, ev := range events {
				var data any
				_ = json.Unmarshal(ev.Data, &data)
				pretty, _ := json.MarshalIndent(data, "    ", "  ")
				fmt.Fprintf(cmd.OutOrStdout(), "#%d %s %s subject=%s\n    %s\n", ev.Seq, ev.Time.Local().Format(time.RFC3339Nano), ev.Type, ev.Subject, pretty)
			}
			return nil
		}),
	}

	verify := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the hash chain; exit non-zero naming the first event changed, removed or inserted",
		Long: `Recompute every event's hash from its content and its predecessor's hash.
Exit 0 when the chain is intact; exit 1 naming the first event that was changed,
removed or inserted. Removing events from the very end cannot be seen from the
chain alone: compare the head it prints with one you kept elsewhere.`,
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
			return nil
		}),
	}

	export := &cobra.Command{
		Use:     "export",
		Short:   "Write events as JSON lines, for a SIEM",
		Example: "  airlock transcripts export --config airlock.yaml --since 24h > events.jsonl",
		Args:    cobra.NoArgs,
		RunE: withRecorder(func(cmd *cobra.Command, _ []string, rec *recorder.Recorder) error {
			fl := filter()
			if !cmd.Flags().Changed("limit") {
				fl.Limit = 0
			}
			return rec.Export(cmd.Context(), cmd.OutOrStdout(), fl)
		}),
	}
	addFilters(export)

	cmd.AddCommand(list, show, verify, export)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
