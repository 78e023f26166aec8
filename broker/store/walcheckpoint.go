package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"time"
)

// A SQLite file store's writer connection does not checkpoint its log
// (wal_autocheckpoint=0); walCheckpointer does, in the background, on a
// connection of its own. SQLite's automatic checkpoint runs inside the
// commit that takes the log past 1,000 pages: it syncs the log, copies its
// pages into the database file and syncs that, all before the commit
// returns, so every few hundred transcript commits one call waited for two
// fsyncs and a copy (about a sixth of a query_db call through the broker,
// averaged over calls: docs/benchmarks.md). A PASSIVE checkpoint waits on
// no reader or writer: the writer goes on appending to the log while
// earlier pages are copied. What a commit promises is unchanged: it is in
// the log when it returns; at synchronous=NORMAL the log is synced at
// checkpoints, as before, and at FULL at every commit.
//
// If a checkpoint fails (an I/O error), the writer connection checkpoints
// for itself again, as SQLite does by default, so the log cannot grow
// without bound, and the checkpointer stops.

// walCheckpointEvery is how often the checkpointer runs. A PASSIVE
// checkpoint with nothing to copy costs a few microseconds.
const walCheckpointEvery = 250 * time.Millisecond

type walCheckpointer struct {
	path   string
	params url.Values
	conn   *sql.DB // one connection to path with params, not query_only
	writer *sql.DB // told to checkpoint for itself if this one fails
	every  time.Duration
	stop   context.CancelFunc
	done   chan struct{}
}

// startWALCheckpointer opens the checkpointer's connection to path with
// params (the writer's, synchronous included: it decides whether a
// checkpoint syncs) and starts it.
func startWALCheckpointer(path string, params url.Values, writer *sql.DB, every time.Duration) (*walCheckpointer, error) {
	conn, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening sqlite %s for checkpoints: %w", path, err)
	}
	conn.SetMaxOpenConns(1)
	conn.SetConnMaxIdleTime(0)
	conn.SetConnMaxLifetime(0)
	ctx, stop := context.WithCancel(context.Background())
	c := &walCheckpointer{path: path, params: params, conn: conn, writer: writer, every: every, stop: stop, done: make(chan struct{})}
	go c.run(ctx)
	return c, nil
}

func (c *walCheckpointer) run(ctx context.Context) {
	defer close(c.done)
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// The result row (busy, log pages, pages copied) says only how far
		// it got; another process's checkpoint under way makes busy 1, and
		// the next tick goes on.
		var busy, logPages, copied int64
		err := c.conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logPages, &copied)
		if err == nil || ctx.Err() != nil {
			continue
		}
		// Not a checkpoint this process can make: let the writer make its
		// own again, rather than let the log grow.
		_, _ = c.writer.ExecContext(ctx, `PRAGMA wal_autocheckpoint=1000`)
		return
	}
}

// close stops the checkpointer and closes its connection.
func (c *walCheckpointer) close() error {
	c.stop()
	<-c.done
	return c.conn.Close()
}
