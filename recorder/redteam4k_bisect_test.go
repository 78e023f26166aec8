package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Attack 3: the bisection of a batch whose commit fails, not made, with
// several culprits (a deferred foreign key that fails at COMMIT), spread
// over a full batch, some of them also failing a hook once (suspects in
// the same write): it must end, blame no innocent, tell each culprit it
// failed, and finish within the batch's deadline (every innocent made,
// none timed out).
func TestRedTeam4kPGBisectManyGuilty(t *testing.T) {
	b := postgresBackend(t)
	db := b.openDB(t)
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	rt4jDeferredSide(t, db)
	never := func(int) bool { return false }
	cases := []struct {
		name   string
		n      int
		events int
		guilty func(i int) bool
		flaky  func(i int) bool // its first hook fails the first time it runs
	}{
		{"16-spread-of-256", maxBatch, 4, func(i int) bool { return i%16 == 7 }, never},
		{"every-other-of-64", 64, 4, func(i int) bool { return i%2 == 0 }, never},
		{"every-other-of-256", maxBatch, 8, func(i int) bool { return i%2 == 1 }, never},
		{"all-of-32", 32, 2, func(int) bool { return true }, never},
		{"guilty-and-flaky-of-64", 64, 3, func(i int) bool { return i%9 == 4 }, func(i int) bool { return i%7 == 2 }},
		{"first-and-last-of-256", maxBatch, 4, func(i int) bool { return i == 0 || i == maxBatch-1 }, func(i int) bool { return i == 128 }},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var batch []*request
			for i := range c.n {
				typ := fmt.Sprintf("rt4k.b%d.r%d", ci, i)
				ref := 1
				if c.guilty(i) {
					ref = 2
				}
				child := rt4jChild(typ, ref)
				flaky, runs := c.flaky(i), 0
				batch = append(batch, rt4iReq(t, r, typ, c.events, func(j int) TxHook {
					h := child(j)
					if !flaky || j != 0 {
						return h
					}
					return func(ctx context.Context, tx *sql.Tx) error {
						if runs++; runs == 1 {
							return errors.New("rt4k: flaky once")
						}
						return h(ctx, tx)
					}
				}))
			}
			start := time.Now()
			if hung := rt4iLead(t, r, batch, r.timeout+readBackTimeout+5*time.Second); len(hung) > 0 {
				t.Fatalf("requests %v never finished", hung)
			}
			took := time.Since(start)
			refused := 0
			var sample error
			for i, q := range batch {
				typ := fmt.Sprintf("rt4k.b%d.r%d", ci, i)
				rt4iCheck(t, r, q, typ, c.events)
				if got, want := rt4jChildren(t, db, typ), rt4iStored(t, r, typ); got != want {
					t.Errorf("%s: %d hook rows, %d events", typ, got, want)
				}
				switch {
				case c.guilty(i) && q.err == nil:
					t.Errorf("%s (guilty) told made", typ)
				case !c.guilty(i) && q.err != nil:
					refused++
					sample = q.err
				}
			}
			t.Logf("%d requests, %d events each: %v", c.n, c.events, took)
			if refused > 0 {
				t.Errorf("%d innocent requests refused (e.g. %v) in %v", refused, sample, took)
			}
		})
	}
	if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
		t.Errorf("verify: %+v %v", rep, err)
	}
}
