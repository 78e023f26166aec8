package recorder

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Red team 5a: an append committing between a query's read of
// transcript_meta and its read of MIN/MAX(seq). seqRange searches
// [first, last] with last read after slack, so it searches events the
// slack it read does not cover. An event committed long before the query
// began, and matching it, is then missed: the result is the scan of no
// snapshot at all (every snapshot has that event, in the window).

type hookConnector struct {
	d    driver.Driver
	dsn  string
	hook func(query string)
}

func (c hookConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.d.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return hookConn{conn, c.hook}, nil
}
func (c hookConnector) Driver() driver.Driver { return c.d }

type hookConn struct {
	driver.Conn
	hook func(string)
}

func (c hookConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.hook(query)
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c hookConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func TestRedTeam5aAppendDuringQuery(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			driverName, dsn := b.dsn(t)
			wdb := openDSN(t, driverName, dsn)
			var (
				armed atomic.Bool
				r     *Recorder
			)
			armed.Store(false)
			read := sql.OpenDB(hookConnector{d: wdb.Driver(), dsn: dsn, hook: func(q string) {
				if strings.HasPrefix(q, "SELECT MIN(seq), MAX(seq)") && armed.CompareAndSwap(true, false) {
					// A skewed replica's events, committed while the query runs:
					// they are behind the one before them by an hour.
					for i := range 3 {
						if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived, CallID: "late", Time: t0.Add(-time.Hour + time.Duration(i))}); err != nil {
							t.Error(err)
						}
					}
				}
			}})
			t.Cleanup(func() { read.Close() })
			var err error
			if r, err = New(wdb, WithReadDB(read)); err != nil {
				t.Fatal(err)
			}
			first := mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "early", Time: t0})
			armed.Store(true)
			evs, err := r.Events(context.Background(), Filter{Since: t0})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 || evs[0].Seq != first.Seq {
				t.Errorf("Events(since %v) during appends = %d events, missing event %d (time %v) committed before the query began", t0, len(evs), first.Seq, first.Time)
			}
			// And quiet, the same query finds it.
			evs, err = r.Events(context.Background(), Filter{Since: t0})
			if err != nil || len(evs) != 1 {
				t.Fatalf("Events(since %v) afterwards = %d events (%v), want 1", t0, len(evs), err)
			}
		})
	}
}

// The same race without a hook, on fresh transcripts: m events a minute
// apart, in order; a query from the last one's time runs while a skewed
// replica commits a burst of events an hour behind.
func TestRedTeam5aAppendDuringQueryFresh(t *testing.T) {
	var queries, misses int
	rng := rand.New(rand.NewPCG(61, 62))
	for range 150 {
		r, _ := newRecorder(t, sqliteBackend)
		m := 1 + rng.IntN(6)
		var last Event
		for i := range m {
			last = mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "c", Time: t0.Add(time.Duration(i) * time.Minute)})
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 12 {
				if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived, CallID: "late", Time: t0.Add(-time.Hour + time.Duration(i))}); err != nil {
					t.Error(err)
				}
			}
		}()
		for {
			select {
			case <-done:
			default:
				evs, err := r.Events(context.Background(), Filter{Since: last.Time})
				if err != nil {
					t.Fatal(err)
				}
				queries++
				if len(evs) != 1 || evs[0].Seq != last.Seq {
					misses++
				}
				continue
			}
			break
		}
	}
	if misses > 0 {
		t.Errorf("%d of %d queries by time missed an event committed before they began", misses, queries)
	} else {
		t.Logf("%d queries, no miss", queries)
	}
}

// The same race without a hook: one writer appends, each round, a burst
// of events further behind than any before (a replica whose clock is
// ever further off, or events imported with their own times); a reader
// queries from the time of an event committed before its query began.
// This passes (no miss seen): the slack already covers earlier bursts, so
// many events are inside the widened window and the search finds them
// before it reaches the new burst. TestRedTeam5aAppendDuringQueryFresh is
// the shape that misses.
func TestRedTeam5aAppendDuringQueryNatural(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			driverName, dsn := b.dsn(t)
			wdb := openDSN(t, driverName, dsn)
			read := openDSN(t, driverName, dsn)
			read.SetMaxOpenConns(4)
			r, err := New(wdb, WithReadDB(read))
			if err != nil {
				t.Fatal(err)
			}
			var latest atomic.Pointer[Event]
			ev := mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "c", Time: t0})
			latest.Store(&ev)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for k := 1; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					ev := mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "c", Time: t0.Add(time.Duration(k) * time.Minute)})
					latest.Store(&ev)
					for i := range 4 {
						mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "late", Time: t0.Add(-time.Duration(k)*time.Hour + time.Duration(i))})
					}
				}
			}()
			deadline := time.Now().Add(3 * time.Second)
			var queries, misses int
			for time.Now().Before(deadline) {
				want := latest.Load()
				evs, err := r.Events(context.Background(), Filter{Since: want.Time})
				if err != nil {
					t.Fatal(err)
				}
				queries++
				found := false
				for _, e := range evs {
					found = found || e.Seq == want.Seq
				}
				if !found {
					misses++
				}
			}
			close(stop)
			<-done
			if misses > 0 {
				t.Errorf("%d of %d queries by time missed an event committed before they began", misses, queries)
			} else {
				t.Logf("%d queries, no miss", queries)
			}
		})
	}
}
