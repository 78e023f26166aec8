package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// A SQLite file store's log is checkpointed in the background by
// walCheckpointer, not by the commits that fill it. SQLite's automatic
// checkpoint runs inside the commit that takes the log past 1,000 pages:
// it syncs the log, copies its pages into the database file and syncs
// that, all before the commit returns, so every hundred or so transcript
// commits one call waited for two fsyncs and a copy (about a seventh of a
// query_db call through the broker, averaged over calls:
// docs/benchmarks.md).
//
// Every walCheckpointEvery the checkpointer runs a PASSIVE checkpoint on
// a connection of its own, which waits on no reader or writer: the heavy
// part (the syncs, the copy) runs while appends go on. A log only starts
// again from its beginning when a write transaction finds every page of
// it copied, which never happens while appends keep coming during the
// checkpoints; so once the log holds walRestartPages or more, the
// checkpointer also runs a PASSIVE checkpoint on the writer connection,
// between two of its transactions: it copies what was appended since (a
// few pages, two syncs), and the next write starts the log again. Appends
// queue behind that one checkpoint (in Go, for the writer connection), a
// millisecond or two every walCheckpointEvery at most, rather than behind
// one in every hundred commits.
//
// The writer still checkpoints for itself past walWriterPages
// (wal_autocheckpoint), SQLite's own way: a backstop that bounds the log
// if appends outrun the checkpointer or its checkpoints fail (an I/O
// error); it is in the writer's connection string, so a connection
// database/sql opens again keeps it.
//
// What a commit promises is unchanged: it is in the log when it returns;
// at synchronous=NORMAL the log is synced at checkpoints, as before, and
// at FULL at every commit.

// walCheckpointEvery is how often the checkpointer runs. A PASSIVE
// checkpoint with nothing to copy costs a few microseconds.
const walCheckpointEvery = 100 * time.Millisecond

// walRestartPages is the size of the log (in pages of 4 KiB) from which
// the checkpointer has it start again: SQLite's own automatic checkpoint
// threshold.
const walRestartPages = 1000

// walWriterPages is the writer connection's wal_autocheckpoint: the log
// size past which a commit checkpoints as SQLite does by default, 16 MiB.
const walWriterPages = 4000

type walCheckpointer struct {
	dsn    string  // the store's, with the writer's synchronous: it decides whether a checkpoint syncs
	conn   *sql.DB // one connection to dsn, not query_only
	writer *sql.DB // the store's writer: a checkpoint on it lets the log start again
	every  time.Duration
	stop   context.CancelFunc
	done   chan struct{}
}

// startWALCheckpointer opens the checkpointer's connection to dsn and
// starts it.
func startWALCheckpointer(dsn string, writer *sql.DB, every time.Duration) (*walCheckpointer, error) {
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite for checkpoints: %w", err)
	}
	conn.SetMaxOpenConns(1)
	conn.SetConnMaxIdleTime(0)
	conn.SetConnMaxLifetime(0)
	ctx, stop := context.WithCancel(context.Background())
	c := &walCheckpointer{dsn: dsn, conn: conn, writer: writer, every: every, stop: stop, done: make(chan struct{})}
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
		// A checkpoint that fails (an I/O error) is tried again at the next
		// tick; meanwhile the writer's own (walWriterPages) bounds the log.
		if logPages, err := checkpoint(ctx, c.conn); err == nil && logPages >= walRestartPages {
			_, _ = checkpoint(ctx, c.writer)
		}
	}
}

// checkpoint runs a PASSIVE checkpoint on db and returns the pages the
// log holds. Another checkpoint under way (another process's) is not an
// error: this one copies nothing, and the next tick goes on.
func checkpoint(ctx context.Context, db *sql.DB) (logPages int64, err error) {
	var busy, copied int64
	err = db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logPages, &copied)
	return logPages, err
}

// close stops the checkpointer and closes its connection.
func (c *walCheckpointer) close() error {
	c.stop()
	<-c.done
	return c.conn.Close()
}
