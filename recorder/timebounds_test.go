package recorder

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// The transcript has no time index: queries by time search seq within
// the time bounds (timebounds.go). These tests hold the queries to a scan
// of every event, on transcripts whose times go backwards along seq by
// far more than the bounds' least slack.

func TestTimeBounds(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			t.Run("QueriesMatchAScan", func(t *testing.T) { testTimeQueriesMatchScan(t, b) })
			t.Run("LegacyTranscript", func(t *testing.T) { testTimeBoundsLegacy(t, b) })
			t.Run("VerifyCatchesLoweredBounds", func(t *testing.T) { testVerifyCatchesLoweredBounds(t, b) })
			t.Run("NoBoundsRow", func(t *testing.T) { testNoBoundsRow(t, b) })
			t.Run("SkewedWriters", func(t *testing.T) { testSkewedWriters(t, b) })
		})
	}
}

// jumpyTimes returns n times: mostly a few seconds apart, some an hour or
// two back or ahead.
func jumpyTimes(rng *rand.Rand, n int) []time.Time {
	out := make([]time.Time, n)
	now := t0
	for i := range out {
		switch p := rng.IntN(100); {
		case p < 6:
			now = now.Add(-time.Duration(rng.Int64N(int64(2 * time.Hour))))
		case p < 8:
			now = now.Add(time.Duration(rng.Int64N(int64(3 * time.Hour))))
		default:
			now = now.Add(time.Duration(rng.Int64N(int64(3 * time.Second))))
		}
		out[i] = now
	}
	return out
}

// appendAt appends one event per time, three to a call.
func appendAt(t *testing.T, r *Recorder, times []time.Time) {
	t.Helper()
	for i, at := range times {
		mustAppend(t, r, Event{Type: TypeCallReceived, CallID: fmt.Sprintf("c%d", i/3), Subject: "alice", Time: at})
	}
}

// checkTimeQueries compares Events and Calls for random windows with a
// scan of every event.
func checkTimeQueries(t *testing.T, r *Recorder, rng *rand.Rand, windows int) {
	t.Helper()
	ctx := context.Background()
	all, err := r.Events(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	pick := func() time.Time {
		switch rng.IntN(4) {
		case 0:
			return time.Time{}
		case 1: // between two events' times
			return all[rng.IntN(len(all))].Time.Add(time.Duration(rng.Int64N(int64(time.Second))) - time.Second/2)
		default: // exactly an event's time: the inclusive and exclusive edges
			return all[rng.IntN(len(all))].Time
		}
	}
	for range windows {
		f := Filter{Since: pick(), Until: pick()}
		var want []int64
		wantCalls := map[string]bool{}
		for _, ev := range all {
			if (f.Since.IsZero() || !ev.Time.Before(f.Since)) && (f.Until.IsZero() || ev.Time.Before(f.Until)) {
				want = append(want, ev.Seq)
				wantCalls[ev.CallID] = true
			}
		}
		evs, err := r.Events(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, ev := range evs {
			got = append(got, ev.Seq)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Events(since %v, until %v) = %d events %v…, a scan gives %d %v…", f.Since, f.Until, len(got), first8(got), len(want), first8(want))
		}
		calls, err := r.Calls(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != len(wantCalls) {
			t.Fatalf("Calls(since %v, until %v) = %d calls, a scan gives %d", f.Since, f.Until, len(calls), len(wantCalls))
		}
		for _, c := range calls {
			if !wantCalls[c.CallID] {
				t.Fatalf("Calls(since %v, until %v) has %s, which no event in the window is of", f.Since, f.Until, c.CallID)
			}
		}
	}
}

func first8(s []int64) []int64 { return s[:min(len(s), 8)] }

func mustVerify(t *testing.T, r *Recorder) VerifyReport {
	t.Helper()
	rep, err := r.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func testTimeQueriesMatchScan(t *testing.T, b backend) {
	r, _ := newRecorder(t, b)
	rng := rand.New(rand.NewPCG(1, 2))
	appendAt(t, r, jumpyTimes(rng, 600))
	mustNoTimeIndex(t, r)
	checkTimeQueries(t, r, rng, 400)
	if rep := mustVerify(t, r); !rep.OK {
		t.Fatalf("Verify: %+v", rep)
	}
}

// mustNoTimeIndex fails t if the transcript r writes still has the index
// on time.
func mustNoTimeIndex(t *testing.T, r *Recorder) {
	t.Helper()
	exists, err := r.timeIndexExists(context.Background(), r.db)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("the transcript has an index on time")
	}
}

// testTimeBoundsLegacy opens a transcript as an earlier airlock left it
// (a time index, no bounds) and checks that opening it records the bounds
// its times need and drops the index.
func testTimeBoundsLegacy(t *testing.T, b backend) {
	driver, dsn := b.dsn(t)
	db := openDSN(t, driver, dsn)
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	appendAt(t, r, jumpyTimes(rng, 300))
	for _, q := range []string{`DELETE FROM transcript_meta`, `CREATE INDEX transcript_events_time ON transcript_events (time)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if rep := mustVerify(t, r); rep.OK || rep.Reason != ReasonTimeBounds {
		t.Fatalf("Verify of a transcript whose times go back by hours, with no bounds row: %+v, want a time-bounds failure", rep)
	}

	r2, err := New(openDSN(t, driver, dsn))
	if err != nil {
		t.Fatal(err)
	}
	mustNoTimeIndex(t, r2)
	if rep := mustVerify(t, r2); !rep.OK {
		t.Fatalf("Verify after the migration: %+v", rep)
	}
	checkTimeQueries(t, r2, rng, 300)
	// New again: nothing to do, and the bounds stay.
	var high, slack int64
	if err := db.QueryRow(boundsSQL).Scan(&high, &slack); err != nil {
		t.Fatal(err)
	}
	if _, err := New(openDSN(t, driver, dsn)); err != nil {
		t.Fatal(err)
	}
	var high2, slack2 int64
	if err := db.QueryRow(boundsSQL).Scan(&high2, &slack2); err != nil || high2 != high || slack2 != slack {
		t.Fatalf("bounds after a second New: %d, %d (%v), want %d, %d", high2, slack2, err, high, slack)
	}
}

func testVerifyCatchesLoweredBounds(t *testing.T, b backend) {
	r, db := newRecorder(t, b)
	back := mustAppend(t, r, Event{Type: TypeCallReceived, Time: t0.Add(time.Hour)})
	behind := mustAppend(t, r, Event{Type: TypeCallReceived, Time: t0})
	if rep := mustVerify(t, r); !rep.OK {
		t.Fatalf("Verify: %+v", rep)
	}
	var high, slack int64
	if err := db.QueryRow(boundsSQL).Scan(&high, &slack); err != nil {
		t.Fatal(err)
	}
	if slack < int64(time.Hour) || high < back.Time.UnixNano() {
		t.Fatalf("bounds %v, %v for an event an hour behind the one before it", time.Unix(0, high), time.Duration(slack))
	}
	for _, c := range []struct {
		set string
		seq int64
	}{
		{"slack = 0", behind.Seq},
		{"high = 0", back.Seq},
	} {
		if _, err := db.Exec(`UPDATE transcript_meta SET ` + c.set); err != nil {
			t.Fatal(err)
		}
		rep := mustVerify(t, r)
		if rep.OK || rep.Reason != ReasonTimeBounds || rep.BadSeq != c.seq {
			t.Fatalf("Verify with %s: %+v, want a time-bounds failure at %d", c.set, rep, c.seq)
		}
		if _, err := db.Exec(r.q(`UPDATE transcript_meta SET high = ?, slack = ?`), high, slack); err != nil {
			t.Fatal(err)
		}
	}
	if rep := mustVerify(t, r); !rep.OK {
		t.Fatalf("Verify with the bounds restored: %+v", rep)
	}
}

// testNoBoundsRow: a transcript with events and no bounds row (written
// only by an earlier airlock's replica) is queried with the least slack.
func testNoBoundsRow(t *testing.T, b backend) {
	r, db := newRecorder(t, b)
	rng := rand.New(rand.NewPCG(5, 6))
	times := make([]time.Time, 200)
	for i := range times {
		times[i] = t0.Add(time.Duration(i)*time.Second - time.Duration(rng.Int64N(int64(timeStep))))
	}
	appendAt(t, r, times)
	if _, err := db.Exec(`DELETE FROM transcript_meta`); err != nil {
		t.Fatal(err)
	}
	checkTimeQueries(t, r, rng, 200)
	if rep := mustVerify(t, r); !rep.OK {
		t.Fatalf("Verify: %+v", rep)
	}
}

// testSkewedWriters: two writers of one transcript whose clocks are a
// minute apart append at the same time; each keeps the shared bounds true
// of the other's events.
func testSkewedWriters(t *testing.T, b backend) {
	driver, dsn := b.dsn(t)
	var recs []*Recorder
	for _, skew := range []time.Duration{0, -time.Minute} {
		clock := stepClock()
		r, err := New(openDSN(t, driver, dsn), WithClock(func() time.Time { return clock().Add(skew) }))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	var wg sync.WaitGroup
	for i, r := range recs {
		for g := range 4 {
			wg.Go(func() {
				for n := range 40 {
					if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived, CallID: fmt.Sprintf("w%d-%d-%d", i, g, n)}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if rep := mustVerify(t, recs[0]); !rep.OK {
		t.Fatalf("Verify: %+v", rep)
	}
	checkTimeQueries(t, recs[1], rand.New(rand.NewPCG(7, 8)), 200)
}
