package recorder

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"
)

// Red team 4j: a commit that fails, not made, for what one request of the
// batch wrote, when that request is not the batch's last. Here the state a
// hook writes has a deferred foreign key (DEFERRABLE INITIALLY DEFERRED):
// a guilty request's hook writes a row that references nothing, and the
// check fails at COMMIT, whichever request's statements come after it.

// rt4jDeferredSide creates the side tables: rt4j_parent (id 1 exists) and
// rt4j_child, whose ref is checked at commit.
func rt4jDeferredSide(t *testing.T, db *sql.DB) {
	t.Helper()
	for _, q := range []string{
		`CREATE TABLE rt4j_parent (id INT PRIMARY KEY)`,
		`INSERT INTO rt4j_parent VALUES (1)`,
		`CREATE TABLE rt4j_child (typ TEXT, ref INT REFERENCES rt4j_parent (id) DEFERRABLE INITIALLY DEFERRED)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// rt4jChild is a hook that writes a child row for typ: ref 1 (valid) or
// 2 (no such parent: the commit fails).
func rt4jChild(typ string, ref int) func(int) TxHook {
	return func(int) TxHook {
		return func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO rt4j_child VALUES ($1, $2)`, typ, ref)
			return err
		}
	}
}

// rt4jChildren counts typ's child rows.
func rt4jChildren(t *testing.T, db *sql.DB, typ string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM rt4j_child WHERE typ = $1`, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Attack 1: the guilty request first, in the middle, last; and two
// guilty. Each request must be told made iff its events (and its hook's
// rows) are stored, and only the guilty ones fail.
func TestRedTeam4jPGDeferredRejectNotLast(t *testing.T) {
	b := postgresBackend(t)
	db := b.openDB(t)
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	rt4jDeferredSide(t, db)
	for ci, guilty := range [][]int{{0}, {2}, {4}, {1, 3}, {0, 4}} {
		t.Run(fmt.Sprint(guilty), func(t *testing.T) {
			const n = 5
			isGuilty := map[int]bool{}
			for _, g := range guilty {
				isGuilty[g] = true
			}
			var batch []*request
			for i := range n {
				typ := fmt.Sprintf("rt4j.c%d.r%d", ci, i)
				ref := 1
				if isGuilty[i] {
					ref = 2
				}
				batch = append(batch, rt4iReq(t, r, typ, 2, rt4jChild(typ, ref)))
			}
			if hung := rt4iLead(t, r, batch, 30*time.Second); len(hung) > 0 {
				t.Fatalf("requests %v never finished", hung)
			}
			for i, q := range batch {
				typ := fmt.Sprintf("rt4j.c%d.r%d", ci, i)
				rt4iCheck(t, r, q, typ, 2)
				if got, want := rt4jChildren(t, db, typ), rt4iStored(t, r, typ); got != want {
					t.Errorf("%s: %d hook rows, %d events", typ, got, want)
				}
				switch {
				case isGuilty[i] && q.err == nil:
					t.Errorf("%s (guilty) told made", typ)
				case !isGuilty[i] && q.err != nil:
					t.Errorf("%s (innocent) told not made: %v", typ, q.err)
				}
			}
		})
	}
	if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
		t.Errorf("verify: %+v %v", rep, err)
	}
}

// Attack 2: the guilty request first in a full batch (maxBatch requests of
// a few events each, as a burst of calls gives). The commit fails, the
// last request is sent to the retry-alone list, and the rest are written
// again: maxBatch-1 transactions that all fail at COMMIT, each writing all
// the events still in it (quadratic in the batch), before the guilty one
// is alone. The batch runs past the earliest deadline in it, and the
// innocent requests, all maxBatch-1 of them, are refused for one guilty
// neighbour. A fail-closed recorder may refuse the guilty one; the others
// must be made, within their timeout.
func TestRedTeam4jPGDeferredRejectFirstOfFullBatch(t *testing.T) {
	b := postgresBackend(t)
	db := b.openDB(t)
	r, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	rt4jDeferredSide(t, db)
	const events = 12
	var batch []*request
	for i := range maxBatch {
		typ := fmt.Sprintf("rt4j.full.r%d", i)
		ref := 1
		if i == 0 {
			ref = 2
		}
		batch = append(batch, rt4iReq(t, r, typ, events, rt4jChild(typ, ref)))
	}
	start := time.Now()
	if hung := rt4iLead(t, r, batch, 2*r.timeout+readBackTimeout); len(hung) > 0 {
		t.Fatalf("requests %v never finished", hung)
	}
	took := time.Since(start)
	failed := 0
	var sample error
	for i, q := range batch {
		rt4iCheck(t, r, q, fmt.Sprintf("rt4j.full.r%d", i), events)
		if i > 0 && q.err != nil {
			failed++
			sample = q.err
		}
	}
	t.Logf("a batch of %d requests (%d events each), the first guilty at commit: %v; innocent requests refused: %d", maxBatch, events, took, failed)
	if batch[0].err == nil {
		t.Errorf("the guilty request was told made")
	}
	if failed > 0 {
		t.Errorf("%d of the %d innocent requests were refused for the first one's failure at commit (e.g. %v); the batch took %v (append timeout %v)", failed, maxBatch-1, sample, took, r.timeout)
	}
	if rep, err := r.Verify(context.Background()); err != nil || !rep.OK {
		t.Errorf("verify: %+v %v", rep, err)
	}
}
