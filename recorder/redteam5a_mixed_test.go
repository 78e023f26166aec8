package recorder

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// Red team 5a: a rolling upgrade. One replica runs this airlock (it
// migrated: dropped the time index, wrote transcript_meta); another still
// runs the earlier one, which appends without touching transcript_meta.
// The earlier replica is modelled by appending through this recorder and
// then putting transcript_meta back as it was.
//
// Case "row kept": the earlier replica's events (clock an hour behind)
// are outside the slack the row says; queries miss them until Verify is
// run (it flags them).
//
// Case "no row": the transcript was empty at migration (no row written);
// the earlier replica appends; then this replica appends one event and
// wrote a row computed from its own event only, ignoring the events
// before it. Fixed: an append that finds events and no row sets the
// bounds to the int64 limits, and queries by time then read every event.
//
// Case "row kept" is a known limit (docs/transcripts.md, "Queries by
// time"): the test holds that Verify reports it, and
// TestRedTeam5aMixedVersionsRepairedByRemigration that the next
// migration mends it.

func TestRedTeam5aMixedVersions(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			t.Run("RowKept", func(t *testing.T) {
				r, db := newRecorder(t, b)
				rt5aMixedAppends(t, r, db, 90)
				if rep := mustVerify(t, r); rep.OK || rep.Reason != ReasonTimeBounds {
					t.Errorf("Verify of events the bounds do not cover: %+v, want a time-bounds failure", rep)
				}
			})
			t.Run("NoRow", func(t *testing.T) {
				r, db := newRecorder(t, b)
				// The earlier replica appends to a transcript migrated empty
				// (no row). Its clock is a minute ahead.
				a := mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "old", Time: t0.Add(time.Minute)})
				mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "old", Time: t0.Add(time.Minute + time.Second)})
				if _, err := db.Exec(`DELETE FROM transcript_meta`); err != nil {
					t.Fatal(err)
				}
				// This replica appends: its row covers its own event only.
				c := mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "new", Time: t0})
				evs, err := r.Events(context.Background(), Filter{Until: t0.Add(time.Millisecond)})
				if err != nil {
					t.Fatal(err)
				}
				rep := mustVerify(t, r)
				if len(evs) != 1 || evs[0].Seq != c.Seq {
					t.Errorf("Events(until %v) = %d events, want event %d (events from %d on; Verify: OK=%v %s)", t0.Add(time.Millisecond), len(evs), c.Seq, a.Seq, rep.OK, rep.Reason)
				}
				if !rep.OK {
					t.Errorf("Verify: %+v", rep)
				}
				checkTimeQueries(t, r, rand.New(rand.NewPCG(55, 56)), 50)
			})
		})
	}
}

// What held: once the earlier replica restarts (its New re-creates the
// time index), the next New of this airlock migrates again, and the scan
// repairs the bounds.
func TestRedTeam5aMixedVersionsRepairedByRemigration(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			driver, dsn := b.dsn(t)
			db := openDSN(t, driver, dsn)
			r, err := New(db)
			if err != nil {
				t.Fatal(err)
			}
			rt5aMixedAppends(t, r, db, 60)
			if _, err := db.Exec(`CREATE INDEX IF NOT EXISTS transcript_events_time ON transcript_events (time)`); err != nil {
				t.Fatal(err)
			}
			r2, err := New(openDSN(t, driver, dsn))
			if err != nil {
				t.Fatal(err)
			}
			if rep := mustVerify(t, r2); !rep.OK {
				t.Fatalf("Verify after re-migration: %+v", rep)
			}
			checkTimeQueries(t, r2, rand.New(rand.NewPCG(53, 54)), 300)
		})
	}
}

// rt5aMixedAppends appends n events a second apart, every seventh as the
// earlier replica would: its clock an hour behind, transcript_meta left
// as it was.
func rt5aMixedAppends(t *testing.T, r *Recorder, db *sql.DB, n int) {
	t.Helper()
	for i := range n {
		old := i%7 == 3
		var high, slack int64
		if old {
			if err := db.QueryRow(boundsSQL).Scan(&high, &slack); err != nil {
				t.Fatal(err)
			}
		}
		at := t0.Add(time.Duration(i) * time.Second)
		if old {
			at = at.Add(-time.Hour)
		}
		mustAppend(t, r, Event{Type: TypeCallReceived, CallID: fmt.Sprintf("c%d", i), Time: at})
		if old {
			if _, err := db.Exec(r.q(`UPDATE transcript_meta SET high = ?, slack = ?`), high, slack); err != nil {
				t.Fatal(err)
			}
		}
	}
}
