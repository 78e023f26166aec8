package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Migrate the store, or copy it to another (SQLite to PostgreSQL)",
		Long: `The store holds leases, approvals, decisions and transcripts: SQLite for one
process, PostgreSQL for several replicas. airlock migrates it when it starts;
these commands do it ahead of time, and move a store to another.`,
	}
	cmd.AddCommand(newStoreMigrateCmd(), newStoreCopyCmd())
	return cmd
}

func newStoreMigrateCmd() *cobra.Command {
	var cfgPath, storeURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the store's schema up to this airlock's version",
		Long: `Open the store and apply every migration it lacks, each in its own transaction
(replicas starting at the same time wait for each other). Running it again
changes nothing. An airlock older than the store refuses it: back the store up
before an upgrade you may want to roll back (docs/operations.md).`,
		Example: `  airlock store migrate --config airlock.yaml
  airlock store migrate --store 'postgres://airlock@db:5432/airlock?password_env=AIRLOCK_STORE_PASSWORD'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url, err := storeURLFrom(cmd, cfgPath, storeURL)
			if err != nil {
				return err
			}
			st, err := store.Open(cmd.Context(), url)
			if err != nil {
				return err
			}
			defer st.Close()
			if _, err := recorder.New(st.DB()); err != nil {
				return fmt.Errorf("creating the transcript tables: %w", err)
			}
			v, err := st.SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "store %s (%s): schema version %d, transcript tables ready\n", store.RedactURL(url), st.Dialect(), v)
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "airlock.yaml", "config file naming the store")
	cmd.Flags().StringVar(&storeURL, "store", "", "store URL (overrides the config)")
	return cmd
}

func newStoreCopyCmd() *cobra.Command {
	var from, to string
	var replace bool
	cmd := &cobra.Command{
		Use:   "copy --from URL --to URL",
		Short: "Copy leases, approvals, decisions and transcripts to another store, and verify the chain there",
		Long: `Copy every row of the store at --from into the store at --to (migrated first),
in one transaction on the target, then verify the transcript chain on the
target and check it is the source's: same number of events, same head. A target
that already holds rows is refused unless --replace, which empties it first.
Stop airlock while copying: events recorded during the copy are not in it.`,
		Example: `  airlock store copy --from sqlite:///var/lib/airlock/airlock.db \
    --to 'postgres://airlock@db:5432/airlock?sslmode=verify-full&password_env=AIRLOCK_STORE_PASSWORD'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("--from and --to are both required")
			}
			return copyStore(cmd, from, to, replace)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "source store URL, e.g. sqlite:///var/lib/airlock/airlock.db")
	cmd.Flags().StringVar(&to, "to", "", "target store URL, e.g. postgres://airlock@db/airlock?password_env=NAME")
	cmd.Flags().BoolVar(&replace, "replace", false, "empty a target that already holds rows, then copy")
	return cmd
}

func copyStore(cmd *cobra.Command, from, to string, replace bool) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	src, err := store.Open(ctx, from)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	dst, err := store.Open(ctx, to)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer dst.Close()
	srcRec, err := recorder.New(src.DB())
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	dstRec, err := recorder.New(dst.DB())
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	before, err := srcRec.Verify(ctx)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if !before.OK {
		return &exitError{code: 1, msg: fmt.Sprintf("the source's transcript chain is broken at event #%d (%s): %s; nothing copied", before.BadSeq, before.Reason, before.Detail)}
	}
	_, err = store.Copy(ctx, src, dst, store.CopyOptions{Replace: replace, Progress: func(table string, rows int64) {
		fmt.Fprintf(out, "copied %-22s %d rows\n", table, rows)
	}})
	if errors.Is(err, store.ErrTargetNotEmpty) {
		return fmt.Errorf("%w; pass --replace to empty it first", err)
	}
	if err != nil {
		return err
	}
	after, err := dstRec.Verify(ctx)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	switch {
	case !after.OK:
		return &exitError{code: 1, msg: fmt.Sprintf("the copied transcript chain is broken at event #%d (%s): %s", after.BadSeq, after.Reason, after.Detail)}
	case after.Count != before.Count || after.HeadHash != before.HeadHash:
		return &exitError{code: 1, msg: fmt.Sprintf("the copied transcript differs from the source: %d events, head %s; the source has %d, head %s", after.Count, after.HeadHash, before.Count, before.HeadHash)}
	}
	fmt.Fprintf(out, "copied %s to %s; transcript chain verified on the target: %d events, head #%d %s (the source's)\n",
		store.RedactURL(from), store.RedactURL(to), after.Count, after.HeadSeq, after.HeadHash)
	return nil
}

// storeURLFrom is --store, else the store of the --config file.
func storeURLFrom(cmd *cobra.Command, cfgPath, storeURL string) (string, error) {
	if storeURL != "" {
		return storeURL, nil
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return "", err
	}
	return cfg.StoreURL(), nil
}

// checkpointKey resolves transcripts.checkpoint_key_env / _file (nil when
// neither is set).
func checkpointKey(cfg *config.Config) ([]byte, error) {
	env := config.OSEnvironment{Dir: cfg.Dir}
	key, err := config.Secret(env, "transcripts.checkpoint_key", cfg.Transcripts.CheckpointKeyEnv, cfg.Transcripts.CheckpointKeyFile)
	if err != nil {
		return nil, err
	}
	if key != nil && len(key) < recorder.MinCheckpointKeyLen {
		return nil, fmt.Errorf("transcripts.checkpoint_key is %d bytes; it needs at least %d (openssl rand -base64 32)", len(key), recorder.MinCheckpointKeyLen)
	}
	return key, nil
}

// openRecorder opens the transcript on st with the checkpoint key of cfg.
func openRecorder(cfg *config.Config, st *store.Store) (*recorder.Recorder, error) {
	key, err := checkpointKey(cfg)
	if err != nil {
		return nil, err
	}
	var opts []recorder.Option
	if key != nil {
		opts = append(opts, recorder.WithCheckpointKey(key))
	}
	return recorder.New(st.DB(), opts...)
}

// startCheckpoints starts writing signed checkpoints of the chain head to
// the store and the log, at cfg's interval.
func (a *app) startCheckpoints(ctx context.Context) error {
	c, err := recorder.NewCheckpointer(recorder.CheckpointerConfig{
		Recorder: a.rec,
		Interval: a.cfg.Transcripts.CheckpointInterval,
		Logger:   a.logger,
		// Each new checkpoint also goes to the checkpoint webhook, if any.
		Publish: a.approvals.PublishCheckpoint,
	})
	if err != nil {
		return err
	}
	a.checkpoints = c
	c.Start(ctx)
	return nil
}

// stopCheckpoints stops the checkpointer after a last checkpoint.
func (a *app) stopCheckpoints(ctx context.Context) error {
	if a.checkpoints == nil {
		return nil
	}
	return a.checkpoints.Close(ctx)
}

// checkpointLine says how far back a verified checkpoint's proof reaches.
func checkpointLine(p *recorder.CheckpointProof) string {
	if p == nil {
		return "no checkpoint yet: events cut off the end would not be seen (airlock serve writes one every transcripts.checkpoint_interval)"
	}
	signed := "signature checked with the checkpoint key"
	if !p.Signed {
		signed = "signature NOT checked: no transcripts.checkpoint_key in the config"
	}
	return fmt.Sprintf("checkpoint %d of %s covers events #1 to #%d (%s); %d later events are covered by the chain alone",
		p.ID, p.Time.Local().Format(time.RFC3339), p.HeadSeq, signed, p.After)
}
