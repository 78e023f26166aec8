package recorder

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Red team 5a: attacks that held.

func TestRedTeam5aHeld(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			t.Run("SeqGaps", func(t *testing.T) { rt5aSeqGaps(t, b) })
			t.Run("FarTimesNoOverflow", func(t *testing.T) { rt5aFarTimes(t, b) })
			t.Run("GroupCommitsJumpy", func(t *testing.T) { rt5aGroupCommits(t, b) })
			t.Run("LegacyMigrationRace", func(t *testing.T) { rt5aMigrationRace(t, b) })
			t.Run("AfterSeqAndLimit", func(t *testing.T) { rt5aAfterSeq(t, b) })
		})
	}
}

// Events deleted here and there (seq gaps): queries still match a scan.
func rt5aSeqGaps(t *testing.T, b backend) {
	r, db := newRecorder(t, b)
	rng := rand.New(rand.NewPCG(11, 12))
	appendAt(t, r, jumpyTimes(rng, 400))
	if _, err := db.Exec(`DELETE FROM transcript_events WHERE seq % 5 = 0 OR (seq > 100 AND seq < 180) OR seq = 1 OR seq = 400`); err != nil {
		t.Fatal(err)
	}
	checkTimeQueries(t, r, rng, 300)
}

// Times spread over the representable range but one side of zero, where
// high - t does not overflow.
func rt5aFarTimes(t *testing.T, b backend) {
	for _, sign := range []int64{1, -1} {
		r, _ := newRecorder(t, b)
		rng := rand.New(rand.NewPCG(13, uint64(sign+5)))
		var times []time.Time
		for i := range 200 {
			var n int64
			switch rng.IntN(5) {
			case 0:
				n = rng.Int64N(math.MaxInt64 - int64(20*time.Second))
			case 1:
				n = math.MaxInt64 / 2
			case 2:
				// 20 s short of the limit: checkTimeQueries picks
				// windows up to half a second either side of an event, and
				// a Filter time past the limit wraps in UnixNano (as before
				// the change)
				n = math.MaxInt64 - int64(20*time.Second) - rng.Int64N(100)
			default:
				n = int64(i) * int64(time.Second)
			}
			if sign < 0 {
				n = -n - 1 // down to MinInt64 + 20 s: nearer, high - t overflows (redteam5a_overflow_test.go)
			}
			times = append(times, time.Unix(0, n))
		}
		appendAt(t, r, times)
		checkTimeQueries(t, r, rng, 200)
		if rep := mustVerify(t, r); !rep.OK {
			t.Fatalf("Verify: %+v", rep)
		}
	}
}

// Many goroutines on two writers append events with explicit jumpy times
// at once (group commits): the bounds are kept across batches.
func rt5aGroupCommits(t *testing.T, b backend) {
	driver, dsn := b.dsn(t)
	var recs []*Recorder
	for range 2 {
		r, err := New(openDSN(t, driver, dsn))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	var wg sync.WaitGroup
	for i, r := range recs {
		for g := range 6 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(i), uint64(g)))
				for n, at := range jumpyTimes(rng, 40) {
					if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived, CallID: fmt.Sprintf("g%d-%d-%d", i, g, n/3), Time: at}); err != nil {
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
	checkTimeQueries(t, recs[1], rand.New(rand.NewPCG(14, 15)), 300)
}

// A legacy transcript opened by several New at once while recorders
// already open append: the bounds cover every event.
func rt5aMigrationRace(t *testing.T, b backend) {
	driver, dsn := b.dsn(t)
	db := openDSN(t, driver, dsn)
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(16, 17))
	appendAt(t, r, jumpyTimes(rng, 200))
	for _, q := range []string{`DELETE FROM transcript_meta`, `CREATE INDEX transcript_events_time ON transcript_events (time)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var opened []*Recorder
	for range 3 {
		wg.Go(func() {
			r2, err := New(openDSN(t, driver, dsn))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			opened = append(opened, r2)
			mu.Unlock()
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(18, 19))
		for n, at := range jumpyTimes(rng, 60) {
			at = at.Add(-30 * time.Minute)
			if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived, CallID: fmt.Sprintf("m%d", n), Time: at}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	mustNoTimeIndex(t, opened[0])
	if rep := mustVerify(t, opened[0]); !rep.OK {
		t.Fatalf("Verify: %+v", rep)
	}
	checkTimeQueries(t, opened[0], rng, 300)
}

// Since/Until combined with AfterSeq and Limit: the page a listing
// resumes from is the scan's.
func rt5aAfterSeq(t *testing.T, b backend) {
	r, _ := newRecorder(t, b)
	rng := rand.New(rand.NewPCG(20, 21))
	appendAt(t, r, jumpyTimes(rng, 300))
	all, err := r.Events(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		f := Filter{Since: all[rng.IntN(len(all))].Time, Until: all[rng.IntN(len(all))].Time.Add(time.Hour), AfterSeq: rng.Int64N(300), Limit: 1 + rng.IntN(20)}
		var want []int64
		for _, ev := range all {
			if !ev.Time.Before(f.Since) && ev.Time.Before(f.Until) && ev.Seq > f.AfterSeq && len(want) < f.Limit {
				want = append(want, ev.Seq)
			}
		}
		evs, err := r.Events(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != len(want) {
			t.Fatalf("%+v: %d events, want %d", f, len(evs), len(want))
		}
		for i := range evs {
			if evs[i].Seq != want[i] {
				t.Fatalf("%+v: event %d is %d, want %d", f, i, evs[i].Seq, want[i])
			}
		}
	}
}
