package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
)

// The fix proposed for attack 1, shown on the same half-open cut: a
// transaction that sets idle_in_transaction_session_timeout locally (to
// the append's timeout, say) is ended by the server itself when its
// COMMIT never arrives, so the chain lock is freed in bounded time and a
// read-back that waits for it (a little longer than that) always tells.
func TestRedTeam4gPGFixIdleInTransactionTimeout(t *testing.T) {
	ctx := context.Background()
	u := rt4gPGURL(t)
	st := rt4eOpen(t, u)
	h := rt4gCommitHalf()
	db := rt4hHalfDB(t, u, h)
	tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	tx, err := db.BeginTx(tctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`SET LOCAL idle_in_transaction_session_timeout = '1500ms'`, fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, 0)`, sqldialect.LockChain)} {
		if _, err := tx.ExecContext(tctx, q); err != nil {
			t.Fatal(err)
		}
	}
	h.armed.Store(true)
	started := time.Now()
	err = tx.Commit()
	t.Logf("Commit = %v after %v (swallowed: %d)", err, time.Since(started).Round(time.Millisecond), h.hung.Load())
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
	defer lcancel()
	ltx, err := st.DB().BeginTx(lctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ltx.Rollback()
	_, err = ltx.ExecContext(lctx, fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, 0)`, sqldialect.LockChain))
	t.Logf("chain lock from another session: %v, %v after the commit was sent", err, time.Since(started).Round(time.Millisecond))
	if err != nil {
		t.Errorf("the server did not end the lost transaction")
	}
}
