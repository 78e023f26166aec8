package recorder

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"
)

// Red team 5a: times near the int64 limits. Append accepts any time in
// [minTime, maxTime] (all of int64 as unix nanoseconds); timeBounds.add
// computes behind = high - t, which overflows when high is far in the
// future and t far in the past, so slack is not raised. Verify's
// timesSeen.add has the same subtraction, so it does not flag it either.

func TestRedTeam5aOverflow(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range []struct {
				name  string
				times []int64
			}{
				{"2116-then-1823", []int64{1 << 62, 1<<62 + 1, -(1 << 62)}},
				{"limits", []int64{math.MaxInt64 - 1, math.MaxInt64, math.MinInt64}},
				{"1970-then-1677", []int64{-2, -1, math.MinInt64 + int64(5*time.Second)}},
				{"2200-then-1900", []int64{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), time.Date(2200, 1, 2, 0, 0, 0, 0, time.UTC).UnixNano(), time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}},
			} {
				t.Run(c.name, func(t *testing.T) {
					r, _ := newRecorder(t, b)
					for _, n := range c.times {
						mustAppend(t, r, Event{Type: TypeCallReceived, CallID: "c", Time: time.Unix(0, n)})
					}
					all, err := r.Events(context.Background(), Filter{})
					if err != nil {
						t.Fatal(err)
					}
					until := time.Unix(0, c.times[2]+1)
					var want []int64
					for _, ev := range all {
						if ev.Time.Before(until) {
							want = append(want, ev.Seq)
						}
					}
					evs, err := r.Events(context.Background(), Filter{Until: until})
					if err != nil {
						t.Fatal(err)
					}
					var got []int64
					for _, ev := range evs {
						got = append(got, ev.Seq)
					}
					rep := mustVerify(t, r)
					if !slices.Equal(got, want) {
						t.Errorf("Events(until %v) = %v, a scan gives %v (Verify: OK=%v %s %s)", until, got, want, rep.OK, rep.Reason, rep.Detail)
					}
					if !slices.Equal(got, want) && rep.OK {
						t.Errorf("Verify passes a transcript whose bounds make a query miss events")
					}
				})
			}
		})
	}
}
