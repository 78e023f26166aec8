package recorder

import (
	"context"
	"database/sql"
	"errors"
	"testing"
)

// TestAppendAll: several events of one append are committed in one
// transaction, next to each other in the chain, or not at all when one of
// them (its hook) fails. Against SQLite and a real PostgreSQL.
func TestAppendAll(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			r, _ := newRecorder(t, b)
			before := r.commits.Load()
			evs, err := r.AppendAll(ctx, []Event{{Type: TypeCallReceived, CallID: "c1"}, {Type: TypeCallDecided, CallID: "c1"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 2 || evs[0].Seq != 1 || evs[1].Seq != 2 || evs[1].PrevHash != evs[0].Hash {
				t.Fatalf("appended %+v; want seq 1 and 2, chained", evs)
			}
			if n := r.commits.Load() - before; n != 1 {
				t.Errorf("%d commits for two events appended together, want 1", n)
			}

			boom := errors.New("boom")
			_, err = r.AppendAllWith(ctx, []Event{{Type: TypeCallReceived, CallID: "c2"}, {Type: TypeCallDecided, CallID: "c2"}},
				[]TxHook{nil, func(context.Context, *sql.Tx) error { return boom }})
			if !errors.Is(err, boom) {
				t.Fatalf("AppendAllWith with a failing hook = %v; want the hook's error", err)
			}
			got, err := r.Events(ctx, Filter{CallID: "c2"})
			if err != nil || len(got) != 0 {
				t.Errorf("events of the failed append: %v %v; want none (the first rolled back with the second)", got, err)
			}
			if rep, err := r.Verify(ctx); err != nil || !rep.OK {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			if _, err := r.AppendAll(ctx, nil); !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("AppendAll of nothing = %v; want ErrInvalidEvent", err)
			}
		})
	}
}
